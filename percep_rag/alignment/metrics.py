"""Human-agreement scores: 2AFC agreement (NIGHTS, BAPPS) and odd-one-out accuracy (THINGS).

Inputs may be NumPy arrays, torch tensors (any device) or nested lists; scores come back
as Python floats. Everything is computed in float64 so
that ties and near-ties do not depend on the input precision::

    >>> two_afc_agreement(d_left=[0.1, 0.5], d_right=[0.3, 0.2], target=[0.0, 1.0])
    1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, get_args

import numpy as np
import torch

from percep_rag.errors import DimensionMismatchError, PercepRagError

Similarity = Literal["cosine", "dot", "euclidean"]
Distance = Literal["cosine", "euclidean"]
SIMILARITIES: tuple[str, ...] = get_args(Similarity)
DISTANCES: tuple[str, ...] = get_args(Distance)
ArrayLike = np.ndarray | torch.Tensor | Sequence[Any]

# Rows gathered per chunk (times the feature dimension): bounds memory on THINGS-sized sets.
_CHUNK_ELEMENTS = 1 << 22


class MetricInputError(PercepRagError, ValueError):
    """A metric got values it cannot score (empty input, targets outside [0, 1], ...)."""


def _tensor(values: ArrayLike, name: str) -> torch.Tensor:
    if isinstance(values, torch.Tensor):
        return values.detach().to(torch.float64)
    try:
        return torch.as_tensor(np.asarray(values, dtype=np.float64))
    except (TypeError, ValueError) as error:
        raise MetricInputError(f"{name} is not numeric: {error}") from error


def _check_target(target: torch.Tensor, n: int) -> None:
    if target.shape != (n,):
        raise DimensionMismatchError(f"target has shape {tuple(target.shape)}, expected ({n},)")
    if not bool(torch.isfinite(target).all()) or bool((target < 0).any()) or bool((target > 1).any()):
        raise MetricInputError("target must be a share of votes in [0, 1]")


def cosine_distance(a: ArrayLike, b: ArrayLike) -> np.ndarray | torch.Tensor:
    """Row-wise ``1 - cos(a_i, b_i)`` of two ``(N, D)`` arrays (or two ``(D,)`` vectors).

    Two torch tensors give a tensor, on ``a``'s device, in their dtype and differentiable
    (LoRA training uses it as the loss's distance); anything else gives a float64 NumPy
    array. A zero vector is at distance 1 from everything, not NaN.

    >>> cosine_distance([[1, 0], [1, 1]], [[0, 1], [2, 2]]).round(6).tolist()
    [1.0, 0.0]
    >>> cosine_distance(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 0.0]]))
    tensor([1.])
    """
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
        return cosine_distance(_tensor(a, "a"), _tensor(b, "b")).cpu().numpy()
    if a.shape != b.shape:
        raise DimensionMismatchError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    a_unit = torch.nn.functional.normalize(a, dim=-1, eps=1e-12)
    b_unit = torch.nn.functional.normalize(b.to(a.device), dim=-1, eps=1e-12)
    return 1.0 - (a_unit * b_unit).sum(-1)


def _two_afc(d_left: torch.Tensor, d_right: torch.Tensor, target: torch.Tensor) -> float:
    if d_left.ndim != 1 or d_left.shape != d_right.shape:
        raise DimensionMismatchError(
            f"d_left {tuple(d_left.shape)} and d_right {tuple(d_right.shape)} must be equal-length 1-D"
        )
    if len(d_left) == 0:
        raise MetricInputError("no triplets to score")
    _check_target(target, len(d_left))
    d_right, target = d_right.to(d_left.device), target.to(d_left.device)
    score = (d_left < d_right) * (1 - target) + (d_right < d_left) * target + (d_left == d_right) * 0.5
    return float(score.mean())


def two_afc_agreement(d_left: ArrayLike, d_right: ArrayLike, target: ArrayLike) -> float:
    """DreamSim's 2AFC test score: how often the metric sides with the humans.

    ``target`` is the share of votes saying RIGHT is more similar to the reference; per
    triplet the score is ``1 - target`` when ``d_left < d_right``, ``target`` when
    ``d_right < d_left`` and 0.5 on a tie, averaged. Soft votes therefore give partial
    credit: with 5 of 6 votes for RIGHT, choosing RIGHT scores 5/6.

    >>> two_afc_agreement([0.1, 0.5, 0.3], [0.2, 0.4, 0.3], [0.0, 1.0, 1.0])  # last is a tie
    0.8333333333333334
    >>> two_afc_agreement([0.4], [0.2], [5 / 6])
    0.8333333333333334
    """
    return _two_afc(_tensor(d_left, "d_left"), _tensor(d_right, "d_right"), _tensor(target, "target"))


def _distance(a: torch.Tensor, b: torch.Tensor, distance: str) -> torch.Tensor:
    if distance == "cosine":
        return cosine_distance(a, b)
    if distance == "euclidean":
        return (a - b).norm(dim=-1)
    raise MetricInputError(f"unknown distance {distance!r}; use {' or '.join(DISTANCES)}")


def two_afc_from_embeddings(
    emb_anchor: ArrayLike,
    emb_left: ArrayLike,
    emb_right: ArrayLike,
    target: ArrayLike,
    distance: Distance = "cosine",
) -> float:
    """2AFC agreement of embeddings ``(N, D)``: distances anchor-left vs anchor-right.

    >>> two_afc_from_embeddings([[1, 0]], [[1, 0.1]], [[0, 1]], [0.0])
    1.0
    """
    anchor, left, right = (
        _tensor(x, name) for x, name in ((emb_anchor, "emb_anchor"), (emb_left, "emb_left"), (emb_right, "emb_right"))
    )
    if anchor.ndim != 2 or anchor.shape != left.shape or anchor.shape != right.shape:
        raise DimensionMismatchError(
            "embeddings must be equal (N, D) arrays, got "
            f"{tuple(anchor.shape)}, {tuple(left.shape)}, {tuple(right.shape)}"
        )
    left, right = left.to(anchor.device), right.to(anchor.device)
    return _two_afc(_distance(anchor, left, distance), _distance(anchor, right, distance), _tensor(target, "target"))


def _pair_similarities(features: torch.Tensor, rows: torch.Tensor, similarity: str) -> torch.Tensor:
    """``(N, 3)`` similarities of the pairs (0,1), (0,2), (1,2) of each triplet of rows."""
    a, b, c = features[rows[:, 0]], features[rows[:, 1]], features[rows[:, 2]]
    if similarity == "euclidean":
        return -torch.stack([(a - b).norm(dim=-1), (a - c).norm(dim=-1), (b - c).norm(dim=-1)], dim=1)
    return torch.stack([(a * b).sum(-1), (a * c).sum(-1), (b * c).sum(-1)], dim=1)


def odd_one_out_accuracy(features: ArrayLike, triplets: ArrayLike, similarity: Similarity = "cosine") -> float:
    """THINGS zero-shot odd-one-out accuracy (chance 1/3).

    ``triplets`` is ``(N, 3)`` rows of ``features`` with the human odd-one-out in column 2.
    A triplet counts as correct when the pair (0, 1) is strictly the most similar of the
    three pairs; any tie counts as wrong (gLocal predicts -1 when all three tie; we also
    refuse partial ties with the (0, 1) pair, so the score never depends on argmax order).
    ``similarity`` is ``cosine``, ``dot`` or ``euclidean`` (negative distance).

    >>> feats = [[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]
    >>> odd_one_out_accuracy(feats, [[0, 1, 2], [0, 2, 1]])
    0.5
    """
    if similarity not in SIMILARITIES:
        raise MetricInputError(f"unknown similarity {similarity!r}; use {', '.join(SIMILARITIES)}")
    matrix = _tensor(features, "features")
    if matrix.ndim != 2:
        raise DimensionMismatchError(f"features must be (n, D), got shape {tuple(matrix.shape)}")
    rows = torch.as_tensor(np.asarray(triplets.cpu() if isinstance(triplets, torch.Tensor) else triplets))
    if rows.ndim != 2 or rows.shape[1] != 3 or rows.dtype.is_floating_point or rows.dtype == torch.bool:
        raise DimensionMismatchError(f"triplets must be an integer (N, 3) array, got {tuple(rows.shape)} {rows.dtype}")
    if len(rows) == 0:
        raise MetricInputError("no triplets to score")
    if int(rows.min()) < 0 or int(rows.max()) >= len(matrix):
        raise MetricInputError(f"triplet rows must be in [0, {len(matrix)})")
    if similarity == "cosine":
        matrix = torch.nn.functional.normalize(matrix, dim=-1, eps=1e-12)
    rows = rows.to(device=matrix.device, dtype=torch.long)
    chunk = max(1, _CHUNK_ELEMENTS // max(1, matrix.shape[1]))
    correct = 0
    for start in range(0, len(rows), chunk):
        sims = _pair_similarities(matrix, rows[start : start + chunk], similarity)
        correct += int(((sims[:, 0] > sims[:, 1]) & (sims[:, 0] > sims[:, 2])).sum())
    return correct / len(rows)
