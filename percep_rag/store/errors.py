"""Exceptions raised by the store layer (re-exported by :mod:`percep_rag.store.base`).

All derive from :class:`StoreError`, itself a :class:`~percep_rag.errors.PercepRagError`.
Fingerprint and dimension errors reuse the project-wide
:class:`~percep_rag.errors.FingerprintMismatchError` and
:class:`~percep_rag.errors.DimensionMismatchError`.
"""

from __future__ import annotations

from percep_rag.errors import PercepRagError


class StoreError(PercepRagError):
    """A vector-store operation failed; the message names the collection or server."""


class StoreUnavailableError(StoreError, ConnectionError):
    """The store could not be reached (after retries); ``url`` names where we tried."""

    def __init__(self, url: str, reason: str, attempts: int = 1):
        self.url = url
        self.reason = reason
        self.attempts = attempts
        tries = f" after {attempts} attempts" if attempts > 1 else ""
        super().__init__(f"vector store at {url} is unavailable{tries}: {reason}")


class StoreLockedError(StoreError):
    """An on-disk store is already open in another process or store object."""


class StoreRequestError(StoreError):
    """The store rejected a request (a 4xx-like error that retrying cannot fix)."""


class CollectionNotFoundError(StoreError, KeyError):
    """The named collection does not exist."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0]) if self.args else ""


class CollectionExistsError(StoreError):
    """``create_collection`` was asked for a collection that already exists."""


class UnknownVectorNameError(StoreError, ValueError):
    """A named vector (``using=`` or a point's vector name) is not in the collection."""


class InvalidVectorError(StoreError, ValueError):
    """A vector is not finite or has zero norm (cosine is undefined)."""


class InvalidPointError(StoreError, ValueError):
    """A point is malformed: bad id, reserved id or payload key, missing vectors."""


class FilterError(StoreError, ValueError):
    """A filter dict does not follow the documented filter language."""
