"""Alignment on images, end to end: read triplets, embed their images, fit, evaluate.

This is what ``percep-rag align fit`` and ``percep-rag align eval`` run; the triplet files
are read by :mod:`~percep_rag.datasets.triplets`, the fitting methods live in
:mod:`~percep_rag.alignment.glocal` and :mod:`~percep_rag.alignment.lora`.
"""

from __future__ import annotations

from collections.abc import Sequence
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

#: Splits that never enter fitting or model selection unless named otherwise.
HELD_OUT_SPLITS: tuple[str, ...] = ("test",)


@dataclass(frozen=True)
class FitSplit:
    """The triplets a fit trains on and selects its model on, and what was kept out.

    ``held_out`` counts the rows of each held-out split (never fitted on, never used to
    choose an epoch or a hyper-parameter); ``unused`` the other rows no role took (rows of
    other splits when the file's own train/val are used; rows that mix train and val
    images in the image-disjoint fallback).
    """

    train: TripletSet
    val: TripletSet
    held_out: dict[str, int]
    unused: int
    how: str

    def describe(self) -> str:
        """Which rows went where, in two lines (what ``percep-rag align fit`` prints)."""
        unused = f"; {self.unused} rows unused ({self._unused_reason})" if self.unused else ""
        held = ", ".join(f"{count} rows of split {name!r}" for name, count in self.held_out.items() if count)
        return (
            f"fitting: {len(self.train)} train / {len(self.val)} val triplets, {self.how}{unused}\n"
            f"held out (not fitted on, not used to choose the model): {held or 'no rows'}"
        )

    @property
    def _unused_reason(self) -> str:
        return "they mix train and val images" if "image-disjoint" in self.how else "other splits"


def fit_split(
    triplets: TripletSet,
    *,
    val_fraction: float = 0.2,
    seed: int = 0,
    held_out: Sequence[str] = HELD_OUT_SPLITS,
) -> FitSplit:
    """Train and val triplets for a fit, never from a ``held_out`` split (or subsplit).

    The file's own ``train``/``val`` splits when both are outside ``held_out``; else an
    image-disjoint split (:meth:`~percep_rag.datasets.triplet_set.TripletSet.object_disjoint_split`)
    of the rows that are left once the held-out rows are taken out.

    >>> refs = [[f"{role}{i}" for i in range(9)] for role in "apn"]
    >>> split = fit_split(TripletSet.from_ranked(*refs, split=["train"] * 4 + ["val", "extra"] + ["test"] * 3))
    >>> print(split.describe())
    fitting: 4 train / 1 val triplets, the file's own 'train' and 'val' splits; 1 rows unused (other splits)
    held out (not fitted on, not used to choose the model): 3 rows of split 'test'
    """
    names = tuple(dict.fromkeys(held_out))
    held_counts = {name: len(triplets.by_split(name)) for name in names}
    held_mask = _split_mask(triplets, names)
    left = triplets.subset(~held_mask)
    counts = left.split_counts() if left.split is not None else {}
    if counts.get("train") and counts.get("val"):
        train, val = left.by_split("train"), left.by_split("val")
        how = "the file's own 'train' and 'val' splits"
        return FitSplit(train, val, held_counts, len(left) - len(train) - len(val), how)
    train, val = left.object_disjoint_split(val_fraction=val_fraction, seed=seed)
    if not len(train) or not len(val):
        outside = f" outside the held-out splits {list(names)}" if held_mask.any() else ""
        raise TripletError(
            f"an image-disjoint split of the {len(left)} triplets{outside} left {len(train)} train / "
            f"{len(val)} val: give the file 'train' and 'val' splits or more triplets"
        )
    labels = ", ".join(f"{name} ({count})" for name, count in counts.items()) or "unlabelled"
    how = (
        f"an image-disjoint split ({val_fraction:.0%} of the images to val, seed {seed}) of the {len(left)} "
        f"rows outside the held-out splits (splits: {labels})"
    )
    return FitSplit(train, val, held_counts, len(left) - len(train) - len(val), how)


def _split_mask(triplets: TripletSet, names: Sequence[str]) -> np.ndarray:
    wanted = set(names)
    mask = np.zeros(len(triplets), dtype=bool)
    for labels in (triplets.split, triplets.subsplit):
        if labels is not None:
            mask |= np.fromiter((label in wanted for label in labels), dtype=bool, count=len(labels))
    return mask


def train_val_split(
    triplets: TripletSet, *, val_fraction: float = 0.2, seed: int = 0, held_out: Sequence[str] = HELD_OUT_SPLITS
) -> tuple[TripletSet, TripletSet]:
    """``(train, val)`` of :func:`fit_split`: the file's own ``train``/``val`` splits when it
    has both, else an image-disjoint split of the rows outside the ``held_out`` splits."""
    split = fit_split(triplets, val_fraction=val_fraction, seed=seed, held_out=held_out)
    return split.train, split.val


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
