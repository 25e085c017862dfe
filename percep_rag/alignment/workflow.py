"""Alignment on images, end to end: read triplets, embed their images, fit, evaluate.

This is what ``percep-rag align fit`` and ``percep-rag align eval`` run; the triplet files
are read by :mod:`~percep_rag.datasets.triplets`, the fitting methods live in
:mod:`~percep_rag.alignment.glocal` and :mod:`~percep_rag.alignment.lora`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from percep_rag.alignment.glocal import FitReport, GlocalFitConfig, GlocalTransform, TripletFeatures, fit_glocal
from percep_rag.alignment.glocal.search import GlocalSearch
from percep_rag.alignment.metrics import two_afc_from_embeddings
from percep_rag.datasets.triplets import TripletError, TripletSet
from percep_rag.datasets.triplets import read_triplets as read_triplets  # its old home: `align fit` reads here
from percep_rag.embedder import AlignedEmbedder
from percep_rag.errors import ImageDecodeError


def train_val_split(triplets: TripletSet, *, val_fraction: float = 0.2, seed: int = 0) -> tuple[TripletSet, TripletSet]:
    """The file's own ``train``/``val`` splits when it has both, else an image-disjoint split."""
    counts = triplets.split_counts() if triplets.split is not None else {}
    if counts.get("train") and counts.get("val"):
        return triplets.by_split("train"), triplets.by_split("val")
    train, val = triplets.object_disjoint_split(val_fraction=val_fraction, seed=seed)
    if not len(train) or not len(val):
        raise TripletError(
            f"an image-disjoint split of {len(triplets)} triplets left {len(train)} train / {len(val)} val: "
            "give the file 'train' and 'val' splits or more triplets"
        )
    return train, val


@dataclass
class TripletImageVectors:
    """Vectors of every image the triplets name, rows in ``refs`` order."""

    refs: list[Any]
    base: np.ndarray
    aligned: np.ndarray


def embed_triplet_images(
    embedder: AlignedEmbedder, *sets: TripletSet, normalized: bool = True, progress: bool = False
) -> TripletImageVectors:
    """Embed each distinct image of ``sets`` once; any undecodable image is an error naming it."""
    refs = list(dict.fromkeys(ref for triplets in sets for ref in triplets.refs().tolist()))
    result = embedder.embed_many([str(ref) for ref in refs], progress=progress, normalized=normalized)
    if result.failures:
        shown = "; ".join(f"{f.source}: {f.reason}" for f in result.failures[:5])
        more = f" (and {len(result.failures) - 5} more)" if len(result.failures) > 5 else ""
        raise ImageDecodeError(f"{len(result.failures)} triplet images", f"could not be decoded: {shown}{more}")
    return TripletImageVectors(refs, result.base, result.aligned)


@dataclass
class TwoAfcScores:
    """2AFC agreement with the human votes, without and with the embedder's alignment."""

    triplets: int
    base: float
    aligned: float

    def __str__(self) -> str:
        return (
            f"2AFC agreement on {self.triplets} triplets: base {self.base:.4f}, aligned {self.aligned:.4f} "
            f"({self.aligned - self.base:+.4f})"
        )


def evaluate_2afc(embedder: AlignedEmbedder, triplets: TripletSet, *, progress: bool = False) -> TwoAfcScores:
    """Base vs aligned 2AFC agreement of ``embedder`` on ``triplets`` (ties count 0.5).

    >>> from percep_rag import EmbedderSpec
    >>> from PIL import Image
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> for name, colour in [("a", "red"), ("b", "red"), ("c", "blue")]:
    ...     Image.new("RGB", (32, 32), colour).save(root / f"{name}.png")
    >>> triplets = TripletSet.from_ranked([str(root / "a.png")], [str(root / "b.png")], [str(root / "c.png")])
    >>> scores = evaluate_2afc(AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random")), triplets)
    >>> scores.base == scores.aligned == 1.0
    True
    """
    vectors = embed_triplet_images(embedder, triplets, progress=progress)
    rows = triplets.indices(vectors.refs)

    def score(matrix: np.ndarray) -> float:
        return two_afc_from_embeddings(matrix[rows[:, 0]], matrix[rows[:, 1]], matrix[rows[:, 2]], triplets.target)

    return TwoAfcScores(len(triplets), score(vectors.base), score(vectors.aligned))


def fit_glocal_on_images(
    embedder: AlignedEmbedder,
    train: TripletSet,
    val: TripletSet,
    *,
    config: GlocalFitConfig | None = None,
    progress: bool = False,
    search: GlocalSearch | bool = True,
) -> tuple[GlocalTransform, FitReport]:
    """Fit gLocal on the raw pooled features of the base embedder (its alignment is ignored).

    ``search`` as in :func:`~percep_rag.alignment.glocal.fit.fit_glocal` (on by default)."""
    vectors = embed_triplet_images(embedder, train, val, normalized=False, progress=progress)
    return fit_glocal(
        TripletFeatures.from_triplets(vectors.base, train, vectors.refs),
        val=TripletFeatures.from_triplets(vectors.base, val, vectors.refs),
        config=config,
        backbone=embedder.backbone.name,
        pooling=embedder.pooling,
        progress=progress,
        search=search,
    )
