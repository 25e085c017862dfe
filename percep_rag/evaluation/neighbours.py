"""Exact cosine nearest neighbours and the majority vote over them.

The one ranking rule (best first; equal scores: the earlier gallery item first) and the
one vote rule (most frequent label; a tie goes to the best-ranked label) that recall@k,
the few-shot ``knn-*`` baselines and the perceptual-world study all use.

>>> import numpy as np
>>> gallery = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
>>> nearest(np.array([[0.0, 2.0]]), gallery, k=2).tolist()
[[1, 2]]
>>> majority_vote(["b", "a", "a"]), majority_vote(["b", "a"])
('a', 'b')
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from typing import TypeVar

import numpy as np

from percep_rag.errors import DimensionMismatchError
from percep_rag.evaluation.errors import EvaluationError

Label = TypeVar("Label", bound=Hashable)

# Similarity blocks are at most this many float32 entries (64 MB), whatever the gallery size.
BLOCK_ENTRIES = 1 << 24


def unit_rows(vectors: np.ndarray, name: str = "vectors") -> np.ndarray:
    """``vectors`` as float32 rows of length 1; a zero, NaN or infinite row is an
    :class:`EvaluationError` (its cosine is undefined).

    >>> unit_rows(np.array([[3.0, 4.0]])).tolist()
    [[0.6000000238418579, 0.800000011920929]]
    """
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2:
        raise DimensionMismatchError(f"{name} must be an (n, d) array, got shape {array.shape}")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if len(array) and not (np.isfinite(norms).all() and (norms > 0).all()):
        raise EvaluationError(f"{name} has a zero, NaN or infinite row; cosine is undefined for it")
    return array / np.where(norms > 0, norms, 1.0)


def top_rows(similarity: np.ndarray, depth: int) -> np.ndarray:
    """Column indices of the ``depth`` largest entries per row, best first, earlier
    column first on ties, also at the cut: of a group tied at the ``depth``-th score, the
    earliest columns get in (``np.argpartition`` alone would pick any of them).

    >>> top_rows(np.array([[0.1, 0.9, 0.9, 0.2]]), 3).tolist()
    [[1, 2, 3]]
    >>> top_rows(np.array([[0.5, 0.9, 0.5, 0.5]]), 2).tolist()
    [[1, 0]]
    """
    if depth < 1:
        raise EvaluationError(f"depth must be >= 1, got {depth}")
    rows, columns = similarity.shape
    depth = min(depth, columns)
    if not rows or not depth:
        return np.zeros((rows, depth), dtype=np.int64)
    if depth < columns:
        # Every entry at least as large as the depth-th largest is a candidate, ties at the cut included.
        cut = -np.partition(-similarity, depth - 1, axis=1)[:, depth - 1]
        row_of, column = np.nonzero(similarity >= cut[:, None])
    else:
        row_of, column = np.divmod(np.arange(rows * columns), columns)
    values = similarity[row_of, column]
    # lexsort's last key is primary: by row, then score descending, then column ascending.
    order = np.lexsort((column, -values, row_of))
    starts = np.concatenate(([0], np.cumsum(np.bincount(row_of, minlength=rows))[:-1]))
    picked = order[starts[:, None] + np.arange(depth)]
    return column[picked].astype(np.int64, copy=False)


def nearest(
    queries: np.ndarray,
    gallery: np.ndarray,
    k: int,
    *,
    exclude: Sequence[Sequence[int]] | None = None,
    block_entries: int = BLOCK_ENTRIES,
) -> np.ndarray:
    """The ``k`` gallery rows most cosine-similar to each query, best first (earlier
    gallery row first on ties), as an ``(n_queries, min(k, n_gallery))`` int array.

    ``exclude[i]`` lists gallery rows query ``i`` may not retrieve (e.g. itself); they
    rank last. Similarities are computed in blocks of at most ``block_entries`` floats.

    >>> v = np.eye(3)
    >>> nearest(v, v, 2, exclude=[[0], [1], [2]]).tolist()
    [[1, 2], [0, 2], [0, 1]]
    """
    queries = unit_rows(queries, "queries")
    gallery = unit_rows(gallery, "gallery")
    if queries.shape[1] != gallery.shape[1]:
        raise DimensionMismatchError(f"queries are {queries.shape[1]}-d but the gallery is {gallery.shape[1]}-d")
    if exclude is not None and len(exclude) != len(queries):
        raise EvaluationError(f"exclude has {len(exclude)} entries for {len(queries)} queries")
    if k < 1:
        raise EvaluationError(f"k must be >= 1, got {k}")
    depth = min(int(k), len(gallery))
    if not len(queries) or not depth:
        return np.zeros((len(queries), depth), dtype=np.int64)
    step = max(1, block_entries // len(gallery))
    blocks = []
    for start in range(0, len(queries), step):
        similarity = queries[start : start + step] @ gallery.T
        if exclude is not None:
            for row, rows in enumerate(exclude[start : start + step]):
                similarity[row, list(rows)] = -np.inf
        blocks.append(top_rows(similarity, depth))
    return np.concatenate(blocks).astype(np.int64, copy=False)


def majority_vote(ranked_labels: Sequence[Label]) -> Label:
    """The most frequent label of neighbours listed best first; a tie goes to the tied
    label that is ranked best (the one whose most similar example is more similar).

    This is the one vote of the package: the few-shot ``knn-*`` baselines
    (:func:`percep_rag.fewshot.evaluate.majority_label`) and the study's kNN metrics.

    >>> majority_vote(["cat", "dog", "dog"]), majority_vote(["cat", "dog"]), majority_vote([3, 1, 1, 3])
    ('dog', 'cat', 3)
    """
    if not len(ranked_labels):
        raise EvaluationError("majority_vote needs at least one label")
    counts = Counter(ranked_labels)
    best = max(counts.values())
    return next(label for label in ranked_labels if counts[label] == best)
