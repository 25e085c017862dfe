"""Fitting data for gLocal: a feature matrix and triplets over its rows, on the host and the device.

>>> data = TripletFeatures.from_odd_one_out(np.eye(3), np.array([[0, 1, 2]]))
>>> len(data), data.dim
(1, 3)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from percep_rag.alignment.glocal.transform import ArrayLike, GlocalDimensionError, to_numpy
from percep_rag.datasets.triplet_set import TripletError, TripletSet
from percep_rag.errors import AlignmentError


def _as_index(values: Any, name: str) -> np.ndarray:
    array = to_numpy(values).reshape(-1)
    if array.dtype.kind not in "iu":
        raise AlignmentError(f"{name} must hold integer feature rows, got dtype {array.dtype}")
    return array.astype(np.int64)


@dataclass
class TripletFeatures:
    """A feature matrix and triplets over its rows, ready to fit on.

    ``features`` is ``(n, p)``; ``anchor``/``left``/``right`` are row indices and
    ``target`` is the share of votes for RIGHT (see :mod:`percep_rag.datasets.triplets`).

    >>> data = TripletFeatures.from_odd_one_out(np.eye(3), np.array([[0, 1, 2]]))
    >>> data.right.tolist(), data.left.tolist(), data.target.tolist()
    ([1], [2], [1.0])
    """

    features: ArrayLike
    anchor: np.ndarray
    left: np.ndarray
    right: np.ndarray
    target: np.ndarray
    weight: np.ndarray | None = None

    def __post_init__(self) -> None:
        shape = tuple(self.features.shape)
        if len(shape) != 2:
            raise GlocalDimensionError(f"features must be (n, p), got shape {shape}")
        self.anchor, self.left, self.right = (
            _as_index(values, name)
            for values, name in ((self.anchor, "anchor"), (self.left, "left"), (self.right, "right"))
        )
        weight = None if self.weight is None else to_numpy(self.weight)
        try:
            # A triplet set's own checks: equal lengths, vote shares in [0, 1], weights finite and >= 0.
            rows = TripletSet(self.anchor, self.left, self.right, to_numpy(self.target), weight=weight)
        except TripletError as error:
            raise AlignmentError(str(error)) from error
        self.target, self.weight = rows.target, rows.weight
        if len(rows) and (
            min(self.anchor.min(), self.left.min(), self.right.min()) < 0
            or max(self.anchor.max(), self.left.max(), self.right.max()) >= shape[0]
        ):
            raise AlignmentError(f"triplet rows must be in [0, {shape[0]})")

    def __len__(self) -> int:
        return len(self.anchor)

    @property
    def dim(self) -> int:
        return int(self.features.shape[1])

    @classmethod
    def from_odd_one_out(cls, features: ArrayLike, triplets: ArrayLike) -> TripletFeatures:
        """THINGS convention: ``(N, 3)`` rows, columns 0-1 most similar, column 2 odd."""
        rows = to_numpy(triplets)
        if rows.ndim != 2 or rows.shape[1] != 3:
            raise AlignmentError(f"odd-one-out triplets must be (N, 3), got shape {rows.shape}")
        return cls(features, rows[:, 0], rows[:, 2], rows[:, 1], np.ones(len(rows)))

    @classmethod
    def from_triplets(cls, features: ArrayLike, triplets: TripletSet, refs: Any = None) -> TripletFeatures:
        """From a :class:`TripletSet`; ``refs`` is the features' row order when the triplets name images."""
        rows = triplets.indices(refs)
        return cls(features, rows[:, 0], rows[:, 1], rows[:, 2], triplets.target, triplets.weight)

    @classmethod
    def coerce(cls, data: Any) -> TripletFeatures:
        """Accept ``TripletFeatures``, ``(features, TripletSet[, refs])`` or ``(features, (N, 3) array)``."""
        if isinstance(data, TripletFeatures):
            return data
        if isinstance(data, (tuple, list)) and len(data) in (2, 3):
            features, triplets, *refs = data
            if isinstance(triplets, TripletSet):
                return cls.from_triplets(features, triplets, refs[0] if refs else None)
            if not refs:
                return cls.from_odd_one_out(features, triplets)
        raise AlignmentError(
            "training data must be TripletFeatures, (features, TripletSet[, refs]) "
            "or (features, (N, 3) odd-one-out array)"
        )

    def hard_odd_one_out(self) -> np.ndarray:
        """``(N', 3)`` rows ``(anchor, majority choice, other)`` for evaluation; 50/50 ties dropped."""
        right_wins = self.target > 0.5
        keep = self.target != 0.5
        positive = np.where(right_wins, self.right, self.left)
        negative = np.where(right_wins, self.left, self.right)
        return np.stack([self.anchor, positive, negative], axis=1)[keep]


def standardize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(x - mean) / std`` in float32."""
    # The same float32 arithmetic GlocalTransform.transform does at inference.
    return (x - mean.to(torch.float32)) / std.to(torch.float32)


@dataclass
class DeviceTriplets:
    """One split's triplets on the device: rows and the target distribution over the 3 pairs."""

    anchor: torch.Tensor
    left: torch.Tensor
    right: torch.Tensor
    labels: torch.Tensor  # (N, 3) over the pairs (anchor, right), (anchor, left), (left, right)
    weight: torch.Tensor

    @classmethod
    def build(cls, data: TripletFeatures, soft_targets: str, device: torch.device) -> DeviceTriplets:
        target = data.target
        weight = np.ones(len(data)) if data.weight is None else data.weight.copy()
        if soft_targets == "majority":
            # Hard label by majority, weighted by how clear the majority was (50/50 -> 0).
            weight = weight * np.abs(2 * target - 1)
            target = (target > 0.5).astype(np.float64)
        labels = np.stack([target, 1 - target, np.zeros_like(target)], axis=1)
        keep = weight > 0
        as_long = lambda values: torch.as_tensor(values[keep], dtype=torch.long, device=device)  # noqa: E731
        return cls(
            as_long(data.anchor),
            as_long(data.left),
            as_long(data.right),
            torch.as_tensor(labels[keep], dtype=torch.float32, device=device),
            torch.as_tensor(weight[keep], dtype=torch.float32, device=device),
        )

    def __len__(self) -> int:
        return len(self.anchor)

    def batch(self, index: torch.Tensor) -> DeviceTriplets:
        return DeviceTriplets(
            self.anchor[index], self.left[index], self.right[index], self.labels[index], self.weight[index]
        )


def device_features(features: ArrayLike, device: torch.device, name: str) -> torch.Tensor:
    """``features`` as finite float32 on ``device``; NaN or infinity is an :class:`AlignmentError` naming ``name``."""
    tensor = features.detach() if isinstance(features, torch.Tensor) else torch.as_tensor(np.asarray(features))
    if not tensor.is_floating_point():
        tensor = tensor.float()
    tensor = tensor.to(device=device, dtype=torch.float32)
    if not bool(torch.isfinite(tensor).all()):
        raise AlignmentError(f"{name} contain NaN or infinite values")
    return tensor
