"""Retrieval-augmented few-shot classification: the protocol, whatever the VLM.

Examples come from the retriever in its order (most similar LAST, never reordered),
:mod:`percep_rag.fewshot.prompt` decides how many and whether they show their images (0-shot
styles), and :mod:`percep_rag.fewshot.evaluate` runs the paper's VTAB protocol. The models are
:mod:`percep_rag.vlm`'s backends, reached through :class:`~percep_rag.vlm.base.FewShotVLM` and
:func:`~percep_rag.vlm.load_vlm`; this package imports them, never the reverse.

The OpenFlamingo names this package used to hold (``FewShotClassifier``, ``build_tiny_flamingo``,
``load_openflamingo``, ...) moved to :mod:`percep_rag.vlm.openflamingo`; they are still importable
from here (on first use, so importing :mod:`percep_rag.fewshot` does not need open-flamingo).

>>> from percep_rag.fewshot import demonstrations_needed
>>> demonstrations_needed(0, "openflamingo")
2
"""

from __future__ import annotations

from typing import Any

from percep_rag.fewshot.prompt import demonstrations_needed, prompt_examples
from percep_rag.vlm.errors import PromptError

#: Names that moved to percep_rag.vlm.openflamingo, importable from here as before.
_MOVED = (
    "DEFAULT_RELEASE",
    "RELEASES",
    "CheckpointMismatchError",
    "FewShotClassifier",
    "FlamingoBundle",
    "FlamingoRelease",
    "MediaStateError",
    "PromptTemplate",
    "apply_compat",
    "build_prompt",
    "build_tiny_flamingo",
    "build_vision_x",
    "cached_media",
    "check_checkpoint_keys",
    "get_release",
    "is_compat",
    "list_releases",
    "load_openflamingo",
    "register_release",
)

__all__ = ["PromptError", "demonstrations_needed", "prompt_examples", *_MOVED]


def __getattr__(name: str) -> Any:
    if name not in _MOVED:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from percep_rag.vlm import openflamingo

    return getattr(openflamingo, name)
