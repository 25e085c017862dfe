"""Maximal marginal relevance (MMR): pick results that are relevant AND unlike each other.

Each step picks the candidate with the best ``lambda_mult * similarity(query)
- (1 - lambda_mult) * max similarity(already picked)`` (cosine). ``lambda_mult=1`` is plain
similarity order; ``lambda_mult=0`` only avoids redundancy (after the first, most similar
pick). The first pick is always the candidate most similar to the query; ties go to the
earlier candidate, as in LangChain's ``maximal_marginal_relevance``, whose picks this
reproduces. Candidates come from a similarity search over ``fetch_k`` results.

>>> import numpy as np
>>> query = np.array([1.0, 0.0])
>>> candidates = np.array([[1.0, 0.0], [0.99, 0.14], [0.6, 0.8]])  # the second duplicates the first
>>> maximal_marginal_relevance(query, candidates, k=2, lambda_mult=1.0)
[0, 1]
>>> maximal_marginal_relevance(query, candidates, k=2, lambda_mult=0.3)
[0, 2]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from percep_rag.errors import ConfigError
from percep_rag.store import ScoredPoint

__all__ = ["DEFAULT_FETCH_K", "check_lambda_mult", "check_positive_int", "maximal_marginal_relevance", "rerank_hits"]

#: Candidates fetched for MMR when none is said (LangChain's default too).
DEFAULT_FETCH_K = 20


def maximal_marginal_relevance(query: np.ndarray, candidates: np.ndarray, *, k: int, lambda_mult: float) -> list[int]:
    """Indices of up to ``k`` rows of ``candidates`` in MMR pick order (the first is the most similar).

    >>> maximal_marginal_relevance(np.ones(3), np.zeros((0, 3)), k=4, lambda_mult=0.5)
    []
    """
    check_lambda_mult(lambda_mult)
    check_positive_int(k, "k")
    rows = _unit_rows(np.atleast_2d(np.asarray(candidates, dtype=np.float64)))
    count = min(int(k), len(rows)) if rows.size else 0
    if count == 0:
        return []
    relevance = rows @ _unit_rows(np.asarray(query, dtype=np.float64).reshape(1, -1))[0]
    picked = [int(np.argmax(relevance))]
    redundancy = rows @ rows[picked[0]]  # each candidate's highest similarity to a picked one
    available = np.ones(len(rows), dtype=bool)
    available[picked[0]] = False
    while len(picked) < count:
        score = lambda_mult * relevance - (1.0 - lambda_mult) * redundancy
        best = int(np.argmax(np.where(available, score, -np.inf)))
        picked.append(best)
        available[best] = False
        redundancy = np.maximum(redundancy, rows @ rows[best])
    return picked


def rerank_hits(
    query: np.ndarray, hits: Sequence[ScoredPoint], *, using: str, k: int, lambda_mult: float
) -> list[ScoredPoint]:
    """MMR over search hits fetched ``with_vectors=True``, in pick order.

    >>> from percep_rag.store import ScoredPoint
    >>> hits = [ScoredPoint(str(i), 0.0, {}, {"v": np.array(v)}) for i, v in enumerate([[1, 0], [1, 0.1], [0, 1]])]
    >>> [hit.id for hit in rerank_hits(np.array([1.0, 0.2]), hits, using="v", k=2, lambda_mult=0.0)]
    ['1', '2']
    """
    if not hits:
        check_lambda_mult(lambda_mult)
        return []
    vectors = np.stack([_vector_of(hit, using) for hit in hits])
    return [hits[i] for i in maximal_marginal_relevance(query, vectors, k=k, lambda_mult=lambda_mult)]


def check_lambda_mult(lambda_mult: float) -> float:
    """``lambda_mult`` itself when it is a number in [0, 1]; :class:`ConfigError` otherwise.

    >>> check_lambda_mult(1)
    1
    """
    if isinstance(lambda_mult, bool) or not isinstance(lambda_mult, int | float) or not 0 <= lambda_mult <= 1:
        raise ConfigError(f"lambda_mult must be a number in [0, 1], got {lambda_mult!r}")
    return lambda_mult


def check_positive_int(value: object, name: str) -> int:
    """``value`` itself when it is a positive int (``k``, ``fetch_k``); :class:`ConfigError` otherwise.

    >>> check_positive_int(True, "k")
    Traceback (most recent call last):
    ...
    percep_rag.errors.ConfigError: k must be a positive int, got True
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ConfigError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _vector_of(hit: ScoredPoint, using: str) -> np.ndarray:
    if hit.vectors is None or using not in hit.vectors:
        raise ConfigError(f"hit {hit.id} has no {using!r} vector: search with with_vectors=True for MMR")
    return hit.vectors[using]


def _unit_rows(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)  # a zero row stays zero: similarity 0 to everything
