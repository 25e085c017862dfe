"""Where a store lives: :class:`StoreSpec`, parsed from the CLI's ``--store`` text.

=================================  ===========================================
``edge:/data/store`` or a path     Qdrant Edge collections under that directory
``:memory:``                       qdrant-client in RAM (nothing persists)
``local:/data/qdrant``             qdrant-client local mode on disk
``http(s)://host:6333``            a Qdrant server or cluster (REST; gRPC with ``prefer_grpc``)
=================================  ===========================================

Example::

    >>> StoreSpec.parse("edge:/tmp/s").kind
    'edge'
    >>> StoreSpec.parse("http://qdrant:6333", prefer_grpc=True).prefer_grpc
    True
    >>> str(StoreSpec.parse(":memory:"))
    ':memory:'
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from percep_rag.errors import ConfigError
from percep_rag.store.retry import RetryPolicy

StoreKind = Literal["edge", "memory", "local", "url"]
#: Kinds that live in a directory (written ``<kind>:<dir>``); the others take none.
_PATH_KINDS: tuple[StoreKind, ...] = ("edge", "local")
_URL_SCHEMES = ("http://", "https://")
#: How a location is written, for messages.
_FORMS = "edge:<dir>, :memory:, local:<dir> or http(s)://host:port"


#: Where the default Qdrant Edge store lives when ``$PERCEP_RAG_STORE`` says nothing.
DEFAULT_EDGE_PATH = Path("~/.cache/percep_rag/store")


class StoreSpec(BaseModel):
    """A store location plus how to talk to it.

    ``path`` is required for ``edge`` and ``local``, ``url`` for ``url``. The remote
    options (``api_key``, ``prefer_grpc``, ``grpc_port``, ``timeout`` in seconds,
    ``retry``) only apply to ``url``; ``auto_optimize`` and ``sync_writes`` only to
    ``edge`` (see :class:`~percep_rag.store.edge.EdgeStore`). ``api_key`` is a secret:
    it is never printed.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: StoreKind
    path: Path | None = None
    url: str | None = None
    api_key: SecretStr | None = None
    prefer_grpc: bool = False
    grpc_port: int = Field(6334, ge=1, le=65535)
    timeout: float = Field(10.0, gt=0)
    retry: RetryPolicy = RetryPolicy()
    auto_optimize: bool = True
    sync_writes: bool = False

    @model_validator(mode="after")
    def _check_location(self) -> StoreSpec:
        if self.kind in _PATH_KINDS and self.path is None:
            raise ValueError(f"a {self.kind!r} store needs a path")
        if self.kind == "url" and not self.url:
            raise ValueError("a 'url' store needs a url")
        if self.kind == "url" and not self.url.startswith(_URL_SCHEMES):  # type: ignore[union-attr]
            raise ValueError(f"the url must start with http:// or https://, got {self.url!r}")
        if self.kind != "url" and self.url is not None:
            raise ValueError(f"a {self.kind!r} store takes no url")
        if self.kind not in _PATH_KINDS and self.path is not None:
            raise ValueError(f"a {self.kind!r} store takes no path")
        return self

    @classmethod
    def parse(cls, text: str | StoreSpec, **options: Any) -> StoreSpec:
        """Read ``edge:<dir>``, ``:memory:``, ``local:<dir>``, an ``http(s)://`` URL, or a
        bare directory (= ``edge``); ``options`` set the other fields.

        >>> StoreSpec.parse("local:/tmp/q").path
        PosixPath('/tmp/q')
        >>> StoreSpec.parse("runs/store").kind
        'edge'
        """
        if isinstance(text, StoreSpec):
            return text.model_copy(update=options) if options else text
        raw = str(text).strip()
        if not raw:
            raise ConfigError(f"empty store location; use {_FORMS}")
        try:
            if raw in (":memory:", "memory", "memory:"):
                return cls(kind="memory", **options)
            if raw.startswith(_URL_SCHEMES):
                return cls(kind="url", url=raw, **options)
            scheme, sep, rest = raw.partition(":")
            if sep and scheme in _PATH_KINDS:
                if not rest:
                    raise ConfigError(f"store {raw!r} needs a directory: write '{scheme}:<dir>'")
                return cls(kind=scheme, path=Path(rest), **options)  # type: ignore[arg-type]
            if sep and len(scheme) > 1 and "/" not in scheme and "\\" not in scheme:
                raise ConfigError(f"unknown store scheme {scheme!r} in {raw!r}; use {_FORMS}")
            return cls(kind="edge", path=Path(raw), **options)
        except ValidationError as exc:
            raise ConfigError(f"invalid store {raw!r}: {exc}") from exc

    @classmethod
    def default(cls) -> StoreSpec:
        """``$PERCEP_RAG_STORE`` when set, else a Qdrant Edge store in ``~/.cache/percep_rag/store``.

        >>> StoreSpec.default().kind in ("edge", "memory", "local", "url")
        True
        """
        env = os.environ.get("PERCEP_RAG_STORE")
        if env:
            return cls.parse(env)
        return cls(kind="edge", path=DEFAULT_EDGE_PATH.expanduser())

    def __str__(self) -> str:
        if self.kind == "memory":
            return ":memory:"
        if self.kind == "url":
            return str(self.url)
        return f"{self.kind}:{self.path}"
