"""The OpenFlamingo backend: the model, its transformers-5 compat layer, the releases, the tiny test model.

Retrieved examples (most similar last) become an interleaved prompt
``<image>Output:{label}<|endofchunk|>`` x k + ``<image>Output:`` (:mod:`.prompt`), and the class
names are ranked by their mean token log-probability, the prompt computed once per query
(:mod:`.classify`). :mod:`.model` assembles released models from local files, :mod:`.tiny`
builds a random-weight one in code, :mod:`.compat` makes ``open_flamingo==2.0.1`` run on
transformers 5 and :mod:`.backend` puts it behind :class:`~percep_rag.vlm.base.FewShotVLM`.

Most of it needs ``open-flamingo`` (``pip install --no-deps open-flamingo==2.0.1 einops einops-exts``);
the names below are imported on first use, so :mod:`.prompt` and :mod:`.releases` work without it.

>>> from percep_rag.vlm.openflamingo import get_release
>>> get_release("OpenFlamingo-4B-vitl-rpj3b").lm_repo
'togethercomputer/RedPajama-INCITE-Base-3B-v1'
"""

from __future__ import annotations

import importlib
from typing import Any

#: Public name -> the submodule that defines it (imported when the name is first used).
_EXPORTS = {
    "OpenFlamingoVLM": "backend",
    "load_openflamingo_vlm": "backend",
    "FewShotClassifier": "classify",
    "apply_compat": "compat",
    "cached_media": "compat",
    "check_checkpoint_keys": "compat",
    "is_compat": "compat",
    "CheckpointMismatchError": "errors",
    "MediaStateError": "errors",
    "PromptError": "errors",
    "FlamingoBundle": "model",
    "load_openflamingo": "model",
    "EOC_TOKEN": "prompt",
    "MEDIA_TOKEN": "prompt",
    "PromptTemplate": "prompt",
    "build_prompt": "prompt",
    "build_vision_x": "prompt",
    "DEFAULT_RELEASE": "releases",
    "RELEASES": "releases",
    "FlamingoRelease": "releases",
    "get_release": "releases",
    "list_releases": "releases",
    "register_release": "releases",
    "TINY_NAME": "tiny",
    "build_tiny_flamingo": "tiny",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
