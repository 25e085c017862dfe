"""LangChain's ``search_type`` / ``search_kwargs`` conventions, checked once for every entry point.

``VectorStore.as_retriever`` takes ``search_type`` (``"similarity"``,
``"similarity_score_threshold"`` or ``"mmr"``) and ``search_kwargs``; each search type reads
its own keys. Here a key that the search type would not read is refused rather than
silently ignored:

=================================  ===================================================
``"similarity"``                   ``k``, ``filter``
``"similarity_score_threshold"``   ``k``, ``filter``, ``score_threshold`` (required)
``"mmr"``                          ``k``, ``filter``, ``fetch_k``, ``lambda_mult``
=================================  ===================================================

Defaults are LangChain's: ``k=4``, ``fetch_k=20``, ``lambda_mult=0.5``.

>>> options = search_options("mmr", {"k": 2, "lambda_mult": 0.25})
>>> options.k, options.fetch_k, options.lambda_mult
(2, 20, 0.25)
>>> search_options("similarity", {"fetch_k": 10})
Traceback (most recent call last):
...
percep_rag.errors.ConfigError: search_kwargs key 'fetch_k' does not apply to search_type='similarity'; ...
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from percep_rag.errors import ConfigError
from percep_rag.mmr import DEFAULT_FETCH_K, check_lambda_mult, check_positive_int

__all__ = ["SEARCH_KEYS", "SearchOptions", "SearchType", "relevance_score", "search_options"]

SearchType = Literal["similarity", "similarity_score_threshold", "mmr"]

#: The ``search_kwargs`` each search type reads.
SEARCH_KEYS: dict[str, tuple[str, ...]] = {
    "similarity": ("k", "filter"),
    "similarity_score_threshold": ("k", "filter", "score_threshold"),
    "mmr": ("k", "filter", "fetch_k", "lambda_mult"),
}


@dataclass(frozen=True)
class SearchOptions:
    """Validated search options; ``filter`` is a percep-rag filter dict or a qdrant ``models.Filter``."""

    search_type: SearchType = "similarity"
    k: int = 4
    filter: Any = None
    score_threshold: float | None = None
    fetch_k: int = DEFAULT_FETCH_K
    lambda_mult: float = 0.5

    @property
    def mmr_lambda(self) -> float:
        """The ``lambda_mult`` a search uses: 1 (plain similarity) unless the search type is MMR."""
        return self.lambda_mult if self.search_type == "mmr" else 1.0


def search_options(search_type: str, kwargs: Mapping[str, Any]) -> SearchOptions:
    """Check ``kwargs`` against ``search_type`` (see the module docstring); :class:`ConfigError` if wrong."""
    if search_type not in get_args(SearchType):
        raise ConfigError(f"search_type must be one of {list(get_args(SearchType))}, got {search_type!r}")
    allowed = SEARCH_KEYS[search_type]
    for key in kwargs:
        if key not in allowed:
            raise ConfigError(
                f"search_kwargs key {key!r} does not apply to search_type={search_type!r}; it reads {list(allowed)}"
            )
    options = SearchOptions(search_type=search_type, **kwargs)  # type: ignore[arg-type]
    check_positive_int(options.k, "k")
    check_positive_int(options.fetch_k, "fetch_k")
    check_lambda_mult(options.lambda_mult)
    if search_type == "similarity_score_threshold":
        threshold = options.score_threshold
        if isinstance(threshold, bool) or not isinstance(threshold, int | float):
            raise ConfigError(
                "search_type='similarity_score_threshold' needs a number score_threshold (0..1) in search_kwargs"
            )
    return options


def relevance_score(cosine: float) -> float:
    """LangChain's relevance score in [0, 1] from a cosine similarity: the cosine, 0 when negative.

    So ``score_threshold=0.8`` keeps results whose cosine similarity is at least 0.8.

    >>> relevance_score(0.8), relevance_score(-0.3)
    (0.8, 0.0)
    """
    return min(1.0, max(0.0, float(cosine)))
