"""What the read commands share: an existing store, a collection's embedder, filters that cannot silently miss.

* A read command (``search``, ``show``, ``classify``, ``info``, ``collections``) never creates a
  store or a folder: :func:`open_existing_store` refuses an on-disk store that is not there.
* :class:`CollectionEmbedderOptions` are the embedder options with no defaults of their own:
  what is not given comes from the collection's fingerprint (:func:`collection_embedder`).
* :func:`checked_filter` parses ``--filter`` texts; a field that no point has is a usage error
  (exit code 2) listing the fields that exist, a filter that matches nothing an error (exit 1).

>>> CollectionEmbedderOptions().backbone is None
True
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from percep_rag.cli.errors import ERROR, USAGE, fail
from percep_rag.cli.options import AlignmentOption, BackboneOption, EmbedderOptions, PoolingOption, store_spec
from percep_rag.config import PATHLESS_ALIGNMENTS
from percep_rag.store.describe import payload_fields, unknown_filter_fields

if TYPE_CHECKING:
    from percep_rag.store import VectorStore
    from percep_rag.store.schema import CollectionInfo

@dataclass(frozen=True)
class CollectionEmbedderOptions(EmbedderOptions):
    """Embedder options whose backbone, pooling and alignment default to the collection's own."""

    backbone: BackboneOption = None  # type: ignore[assignment]
    pooling: PoolingOption = None  # type: ignore[assignment]
    alignment: AlignmentOption = None  # type: ignore[assignment]


@contextmanager
def open_existing_store(text: str | None) -> Iterator[VectorStore]:
    """The store ``--store`` names, opened for reading: an on-disk store that does not exist is an error.

    >>> with open_existing_store(":memory:") as store:
    ...     store.list_collections()
    []
    """
    from percep_rag.store import open_store

    spec = store_spec(text)
    if spec.path is not None and not spec.path.expanduser().is_dir():
        fail(f"no store at {spec.path.expanduser()} (a read command never creates one; index images first)")
    with open_store(spec) as store:
        yield store


def existing_collection(store: VectorStore, collection: str) -> CollectionInfo:
    """The collection's recorded info; a missing collection is an error naming the ones that exist."""
    if not store.has_collection(collection):
        names = store.list_collections()
        known = f"collections here: {', '.join(names)}" if names else "the store holds no collection"
        fail(f"no collection {collection!r} in {store.location} ({known})")
    return store.collection_info(collection)


def collection_embedder(options: EmbedderOptions, info: CollectionInfo, **extra: Any) -> Any:
    """The embedder for ``info``'s vectors: options not given are taken from its fingerprint.

    A gLocal or LoRA alignment is recorded by digest only, so its file must be given again.
    """
    return EmbedderOptions.build(options_for_collection(options, info), **extra)


def options_for_collection(options: EmbedderOptions, info: CollectionInfo) -> EmbedderOptions:
    """``options`` completed from ``info``'s fingerprint (see :func:`collection_embedder`)."""
    fingerprint = info.fingerprint
    alignment = options.alignment
    if alignment is None and fingerprint.alignment in PATHLESS_ALIGNMENTS:
        alignment = fingerprint.alignment  # nothing to give again (a DreamSim release's adapter comes with it)
    if alignment is None:
        if fingerprint.alignment != "identity":
            fail(
                f"collection {info.name!r} holds {fingerprint.alignment}-aligned vectors: pass "
                f"--alignment {fingerprint.alignment}:<{'file' if fingerprint.alignment == 'glocal' else 'dir'}>",
                USAGE,
            )
        alignment = "identity"
    backbone = options.backbone or fingerprint.backbone
    weights = options.weights
    same_backbone = backbone == fingerprint.backbone
    if weights is None and fingerprint.random_weights and same_backbone and not _reads_folder(backbone):
        weights = "random"
    resolved = replace(
        options,
        backbone=backbone,
        pooling=options.pooling or fingerprint.pooling,
        alignment=alignment,
        weights=weights,
    )
    return EmbedderOptions(**{field.name: getattr(resolved, field.name) for field in fields(EmbedderOptions)})


def _reads_folder(backbone: str) -> bool:
    """Whether ``backbone`` reads a folder of its own (a DreamSim release: random ones are folders too)."""
    from percep_rag.backbones import get_backbone_entry
    from percep_rag.errors import UnknownNameError

    try:
        return get_backbone_entry(backbone).own_files is not None
    except UnknownNameError:
        return False


def default_options(options: EmbedderOptions) -> EmbedderOptions:
    """``options`` with the usual defaults (``dreamsim-ensemble``, ``cls``, ``identity``) where none was given."""
    defaults = EmbedderOptions()
    return replace(
        options,
        backbone=options.backbone or defaults.backbone,
        pooling=options.pooling or defaults.pooling,
        alignment=options.alignment or defaults.alignment,
    )


def checked_filter(store: VectorStore, collection: str, texts: list[str] | None) -> dict[str, object] | None:
    """``--filter`` texts as a filter dict that matches at least one point of ``collection``.

    A field that no point has: usage error (exit 2) listing the fields that exist. A filter
    that matches nothing: ``no point matches --filter ...`` and exit code 1.
    """
    from percep_rag.store.filters import collection_value_type, parse_filter_texts

    if not texts:
        return None
    parsed = parse_filter_texts(texts, collection_value_type(store, collection), name="--filter")
    if store.count(collection, parsed) > 0:
        return parsed
    fields = payload_fields(store, collection, sample=None)
    unknown = unknown_filter_fields(parsed, fields)
    if unknown:
        fail(
            f"--filter names {', '.join(map(repr, unknown))}, a field no point of {collection!r} has "
            f"(fields: {', '.join(fields) or 'none'})",
            USAGE,
        )
    fail(f"no point of {collection!r} matches --filter {' --filter '.join(texts)}", ERROR)
