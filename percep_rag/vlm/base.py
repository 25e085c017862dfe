"""What a few-shot classifier needs from a VLM, and how a ``--vlm`` spec names one.

Every backend's classifier has the same duck-typed methods (:class:`FewShotVLM`): the
examples are ``(image, label)`` pairs in prompt order, most similar LAST (the retriever's
order, never changed), a ``None`` image makes a text-only demonstration; the class names
are ranked by their log-likelihood after the prompt.

A spec is ``<backend>:<target>`` (``openflamingo:OpenFlamingo-4B-vitl-rpj3b``,
``smolvlm:/models/SmolVLM-256M-Instruct``, ``idefics3:HuggingFaceM4/Idefics3-8B-Llama3``,
``qwen-vl:Qwen/Qwen2.5-VL-3B-Instruct``, ``gemma3:google/gemma-3-4b-it``, ``hf:<any of those>``),
a backend alone (its default target), or a bare name that a backend claims (a released
OpenFlamingo, ``tiny-flamingo-random``, ``tiny-smolvlm-random``, ``tiny-qwen2.5-vl-random``, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
from pydantic import BaseModel, ConfigDict

from percep_rag.io.images import ImageSource

__all__ = ["Example", "FewShotVLM", "VlmSpec"]

#: One demonstration: an image (anything :func:`~percep_rag.io.images.decode_image` reads, or
#: ``None`` for a text-only one) and its label.
Example = tuple[ImageSource | None, str]


@runtime_checkable
class FewShotVLM(Protocol):
    """A VLM prompted with labelled examples that ranks class names for a query image.

    ``score_classes`` shares the prompt's work across the class names; ``naive_scores`` is
    its reference (one full forward per class) and returns the same scores.
    """

    #: The model's name (a release, a folder, a hub id).
    name: str
    #: True when the weights are random (test models): predictions mean nothing.
    random_weights: bool

    def score_classes(
        self, examples: Sequence[Example], query_image: ImageSource, class_names: Sequence[str]
    ) -> np.ndarray:
        """One score per class name (higher is likelier), shape ``(len(class_names),)``."""
        ...

    def naive_scores(
        self, examples: Sequence[Example], query_image: ImageSource, class_names: Sequence[str]
    ) -> np.ndarray:
        """:meth:`score_classes` computed with one full forward per class (the reference)."""
        ...

    def predict(self, examples: Sequence[Example], query_image: ImageSource, class_names: Sequence[str]) -> str:
        """The class name with the highest score (the first one on ties)."""
        ...

    def prompt_text(self, examples: Sequence[Example]) -> str:
        """The prompt's text for these examples and a query, each image as the model's image token."""
        ...


class VlmSpec(BaseModel):
    """A parsed ``--vlm`` value (:func:`~percep_rag.vlm.registry.parse_vlm_spec`): which backend, and what
    it loads (``None``: the backend's default).

    >>> str(VlmSpec(backend="openflamingo", target="OpenFlamingo-4B-vitl-rpj3b"))
    'openflamingo:OpenFlamingo-4B-vitl-rpj3b'
    """

    model_config = ConfigDict(frozen=True)

    backend: str
    target: str | None = None

    def __str__(self) -> str:
        return self.backend if self.target is None else f"{self.backend}:{self.target}"
