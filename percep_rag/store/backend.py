"""The primitives a back end implements: the ``_``-prefixed half of the store interface.

:class:`~percep_rag.store.base.VectorStore` builds its public methods (checks, the
reserved metadata point, chunking) on these, so a back end (:mod:`~percep_rag.store.edge`,
:mod:`~percep_rag.store.client`) only talks to its engine. Arguments arrive validated:
names are legal, ids canonical, arrays float32 of the right shape, payloads plain JSON.

>>> sorted(StoreBackend.__abstractmethods__)[:3]
['_close', '_count', '_create']
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from percep_rag.store.filters import ParsedFilter
from percep_rag.store.schema import CollectionInfo, PayloadType, ScoredPoint, StoredPoint


class StoreBackend(ABC):
    """What one storage engine must provide; see :class:`~percep_rag.store.base.VectorStore`."""

    @property
    @abstractmethod
    def location(self) -> str:
        """Where the store is (``:memory:``, a path or a URL); for messages."""

    @abstractmethod
    def _exists(self, name: str) -> bool: ...

    @abstractmethod
    def _list(self) -> list[str]: ...

    @abstractmethod
    def _create(self, name: str, info: CollectionInfo) -> None:
        """Create the collection, its payload indexes and its reserved point."""

    @abstractmethod
    def _drop(self, name: str) -> None: ...

    @abstractmethod
    def _read_meta(self, name: str) -> dict[str, Any] | None:
        """Payload of the reserved point, ``None`` if absent; CollectionNotFoundError if no collection."""

    @abstractmethod
    def _write_meta(self, name: str, meta: dict[str, Any]) -> None: ...

    @abstractmethod
    def _create_payload_index(self, name: str, field_name: str, kind: PayloadType) -> None: ...

    @abstractmethod
    def _upsert(
        self,
        name: str,
        ids: list[str],
        vectors: dict[str, np.ndarray],
        payloads: list[dict[str, Any]],
    ) -> None: ...

    def _after_upsert(self, name: str, n_written: int) -> None:  # noqa: B027 - optional hook
        """Hook after a whole upsert call (e.g. to start indexing); nothing by default."""

    @abstractmethod
    def _delete(self, name: str, ids: list[str]) -> None: ...

    @abstractmethod
    def _retrieve(
        self,
        name: str,
        ids: list[str],
        *,
        with_payload: bool,
        with_vectors: bool,
        info: CollectionInfo,
    ) -> list[StoredPoint]: ...

    @abstractmethod
    def _count(self, name: str, flt: ParsedFilter) -> int: ...

    @abstractmethod
    def _query_batch(
        self,
        name: str,
        vectors: np.ndarray,
        *,
        using: str,
        k: int,
        filters: list[ParsedFilter],
        with_vectors: bool,
        with_payload: bool,
        exact: bool,
        info: CollectionInfo,
    ) -> list[list[ScoredPoint]]: ...

    @abstractmethod
    def _scroll(
        self,
        name: str,
        flt: ParsedFilter,
        *,
        limit: int,
        offset: str | None,
        with_vectors: bool,
        info: CollectionInfo,
    ) -> tuple[list[StoredPoint], str | None]: ...

    @abstractmethod
    def _optimize(self, name: str) -> bool: ...

    @abstractmethod
    def _close(self) -> None: ...
