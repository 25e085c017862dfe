"""The OpenFlamingo backend behind the VLM interface: the classifier, loaded by release name.

Nothing about its prompts or scores changes: :class:`OpenFlamingoVLM` is the
:class:`~percep_rag.vlm.openflamingo.classify.FewShotClassifier` plus the interface's ``name`` and
``prompt_text``.
"""

from __future__ import annotations

from collections.abc import Sequence

from percep_rag.config import Precision
from percep_rag.vlm.errors import VlmSpecError

try:
    from percep_rag.vlm.openflamingo.classify import FewShotClassifier
    from percep_rag.vlm.openflamingo.prompt import build_prompt
except ImportError as missing:  # open-flamingo is installed on its own (it pins an old torch)
    raise VlmSpecError(
        f"the openflamingo backend needs open-flamingo ({missing}): pip install --no-deps open-flamingo==2.0.1 "
        "einops einops-exts"
    ) from None
from percep_rag.precision import resolve_precision
from percep_rag.vlm.base import Example

__all__ = ["OpenFlamingoVLM", "load_openflamingo_vlm"]


class OpenFlamingoVLM(FewShotClassifier):
    """A :class:`~percep_rag.vlm.openflamingo.classify.FewShotClassifier` with the VLM interface's extras.

    >>> vlm = load_openflamingo_vlm("tiny-flamingo-random")
    >>> vlm.prompt_text([("a.png", "cat")])
    '<image>Output:cat<|endofchunk|><image>Output:'
    """

    name: str = ""
    random_weights: bool = False

    def prompt_text(self, examples: Sequence[Example]) -> str:
        """The interleaved prompt for ``examples`` (in this order) and the query."""
        return build_prompt(examples, self.template)[0]


def load_openflamingo_vlm(
    release: str = "tiny-flamingo-random",
    *,
    checkpoint: str | None = None,
    lang: str | None = None,
    vision_weights: str | None = None,
    device: str = "cpu",
    precision: Precision = "auto",
) -> OpenFlamingoVLM:
    """The tiny random-weight test model, or a released OpenFlamingo loaded from local files.

    ``precision="auto"`` loads bf16 weights on CUDA and on CPUs with native bf16 (AMX,
    AVX-512 BF16), fp32 elsewhere (:func:`percep_rag.precision.resolve_precision`).

    >>> load_openflamingo_vlm("tiny-flamingo-random").predict([], "nonexistent.png", ["a"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    percep_rag.errors.ImageDecodeError: nonexistent.png: ...
    """
    from percep_rag.vlm.openflamingo.model import load_openflamingo
    from percep_rag.vlm.openflamingo.tiny import TINY_NAME, build_tiny_flamingo

    dtype = resolve_precision(precision, device)
    if release == TINY_NAME:
        bundle = build_tiny_flamingo()
        bundle.model.to(device=device, dtype=dtype)
    else:
        bundle = load_openflamingo(
            checkpoint, release=release, lang=lang, vision_weights=vision_weights, device=device, dtype=dtype
        )
    vlm = OpenFlamingoVLM.from_bundle(bundle)
    vlm.name = bundle.name
    vlm.random_weights = bundle.random_weights
    return vlm
