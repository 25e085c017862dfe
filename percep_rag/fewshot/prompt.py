"""What the few-shot protocol puts in a prompt: how many demonstrations, and with or without images.

0 shots come in two styles (:data:`ZeroShotStyle`): ``"plain"``, the query alone, and
``"openflamingo"``, what open_flamingo's evaluation ran for its published 0-shot numbers:
two demonstrations (retrieved or random, as the shots would be) whose TEXT stays in the
prompt without their images (``compute_effective_num_shots`` -> 2, then ``<image>`` removed
from the context and only the query image fed). A demonstration whose image is ``None`` is
such a text-only one. Examples are never reordered: retrieval hands them over most-similar-LAST
(RICES), so the best match sits next to the query.

How a model lays the examples out is the backend's (:mod:`percep_rag.vlm`); OpenFlamingo's
interleaved template (:class:`PromptTemplate`, :func:`build_prompt`, :func:`build_vision_x`) lives
in :mod:`percep_rag.vlm.openflamingo.prompt` and is re-exported here for older imports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import get_args

from percep_rag.config import ZeroShotStyle
from percep_rag.vlm.base import Example
from percep_rag.vlm.errors import PromptError
from percep_rag.vlm.openflamingo.prompt import PromptTemplate, build_prompt, build_vision_x

__all__ = [
    "PromptTemplate",
    "build_prompt",
    "build_vision_x",
    "Example",
    "ZeroShotStyle",
    "demonstrations_needed",
    "prompt_examples",
]


#: A 0-shot prompt: the query alone, or open_flamingo's two text-only demonstrations.
ZERO_SHOT_STYLES: tuple[str, ...] = get_args(ZeroShotStyle)
#: open_flamingo's ``compute_effective_num_shots``: 0 shots -> 2 demonstrations (text only).
OPENFLAMINGO_ZERO_SHOT_DEMOS = 2


def demonstrations_needed(shots: int, zero_shot_style: ZeroShotStyle = "plain") -> int:
    """How many examples to retrieve (or draw) for ``shots`` in this 0-shot style.

    >>> demonstrations_needed(3), demonstrations_needed(0), demonstrations_needed(0, "openflamingo")
    (3, 0, 2)
    """
    if zero_shot_style not in ZERO_SHOT_STYLES:
        raise PromptError(f"zero_shot_style must be one of {', '.join(ZERO_SHOT_STYLES)}, got {zero_shot_style!r}")
    return OPENFLAMINGO_ZERO_SHOT_DEMOS if shots == 0 and zero_shot_style == "openflamingo" else shots


def prompt_examples(examples: Sequence[Example], shots: int) -> list[Example]:
    """The demonstrations as the prompt shows them: as given, or text only when ``shots == 0``.

    >>> prompt_examples([("a.png", "cat"), ("b.png", "dog")], 0)
    [(None, 'cat'), (None, 'dog')]
    """
    return list(examples) if shots > 0 else [(None, label) for _, label in examples]
