"""Perceptual distance as DreamSim users call it: ``model(img_a, img_b)``, higher means more different.

The distance is ``1 - cosine`` of an embedder's unit vectors (its aligned space by default), so
for a released DreamSim model (``dreamsim:<type>``) it is ``dreamsim``'s own ``PerceptualModel``
distance (tests/test_dreamsim_parity.py); for any other embedder it is the distance its
vectors are searched by.

>>> from percep_rag import AlignedEmbedder, EmbedderSpec
>>> from PIL import Image
>>> model = PerceptualDistance(AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random")))
>>> red, blue = Image.new("RGB", (32, 32), "red"), Image.new("RGB", (32, 32), "blue")
>>> model(red, [red, blue]).round(4).tolist()[0]
0.0
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from percep_rag.config import EmbedderSpec, Precision
from percep_rag.embedder import AlignedEmbedder, ImageInput
from percep_rag.errors import DimensionMismatchError

Space = Literal["aligned", "base"]


class PerceptualDistance:
    """``model(img_a, img_b)``: ``1 - cos`` of the embedder's vectors, one per pair (a single image broadcasts)."""

    def __init__(self, embedder: AlignedEmbedder, space: Space = "aligned"):
        self.embedder = embedder
        self.space: Space = space

    @classmethod
    def dreamsim(
        cls,
        kind: str = "ensemble",
        folder: str | Path | None = None,
        *,
        device: str = "auto",
        precision: Precision = "auto",
        batch_size: int = 16,
    ) -> PerceptualDistance:
        """DreamSim's released model ``kind`` from its release ``folder`` (default ``$PERCEP_RAG_WEIGHTS/dreamsim``),
        as ``dreamsim.dreamsim(dreamsim_type=kind)`` gives it (``*_patch`` kinds: ``use_patch_model=True``).

        ``precision="fp32"`` reproduces ``dreamsim``'s numbers to 1e-5; ``auto`` runs bf16 where fast.
        """
        from percep_rag.backbones.dreamsim_types import release_type

        release = release_type(kind)
        spec = EmbedderSpec(
            backbone=release.backbone_name,
            weights=None if folder is None else str(folder),
            pooling=release.pooling,
            device=device,
            precision=precision,
            batch_size=batch_size,
        )
        return cls(AlignedEmbedder.from_spec(spec))

    def embed(self, images: Sequence[ImageInput] | ImageInput) -> np.ndarray:
        """Unit vectors ``(N, D)`` of this space (DreamSim's ``model.embed``, the patch models' pooled)."""
        both = self.embedder.embed_both(images)
        return both.aligned if self.space == "aligned" else both.base

    def __call__(
        self, img_a: Sequence[ImageInput] | ImageInput, img_b: Sequence[ImageInput] | ImageInput
    ) -> np.ndarray:
        a, b = self.embed(img_a), self.embed(img_b)
        if len(a) != len(b) and 1 not in (len(a), len(b)):
            raise DimensionMismatchError(f"{len(a)} images cannot be paired with {len(b)}: give as many, or one")
        return (1.0 - np.sum(a * b, axis=-1)).astype(np.float32)
