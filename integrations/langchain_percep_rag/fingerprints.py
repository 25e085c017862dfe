"""Which LangChain ``Embeddings`` wrote a collection, recorded in its percep-rag fingerprint.

Every percep-rag collection records the fingerprint of its writer and refuses vectors from
another. For :class:`~langchain_percep_rag.PerceptualImageEmbeddings` that is its embedder's
own fingerprint, so the collection is an ordinary percep-rag collection (``base`` and
``aligned`` vectors, readable by ``PerceptualImageRetriever``, ``index_records`` and the
CLI). Any other ``Embeddings`` is identified by its class and its model-naming fields
(``model``, ``model_name``, ``model_id``, ``deployment``, ``dimensions``, ``size``: those it
has) and writes one vector named ``embedding``; ``pooling``, ``normalization`` and
``alignment`` are fixed placeholders for it.

>>> from langchain_core.embeddings import DeterministicFakeEmbedding
>>> fingerprint = embedding_fingerprint(DeterministicFakeEmbedding(size=6), dim=6)
>>> fingerprint.backbone, fingerprint.weights_digest
('langchain:langchain_core.embeddings.fake.DeterministicFakeEmbedding', 'size=6')
>>> vector_names(DeterministicFakeEmbedding(size=6), dim=6)
{'embedding': 6}
"""

from __future__ import annotations

from langchain_core.embeddings import Embeddings

from langchain_percep_rag.embeddings import PerceptualImageEmbeddings
from percep_rag.config import Fingerprint
from percep_rag.errors import FingerprintMismatchError

__all__ = [
    "EMBEDDING_VECTOR",
    "check_written_by",
    "embedding_fingerprint",
    "image_search_vector",
    "search_vector",
    "vector_names",
]

#: The one named vector a collection written by a non-percep-rag ``Embeddings`` holds.
EMBEDDING_VECTOR = "embedding"
_MODEL_FIELDS = ("model", "model_name", "model_id", "deployment", "dimensions", "size")


def embedding_fingerprint(embedding: Embeddings, dim: int) -> Fingerprint:
    """The fingerprint a collection written by ``embedding`` (vectors of length ``dim``) records."""
    if isinstance(embedding, PerceptualImageEmbeddings):
        return embedding.embedder.fingerprint
    kind = type(embedding)
    named = [
        f"{field}={getattr(embedding, field)}" for field in _MODEL_FIELDS if _is_name(getattr(embedding, field, None))
    ]
    return Fingerprint(
        backbone=f"langchain:{kind.__module__}.{kind.__qualname__}",
        weights_digest=";".join(named) or "-",
        random_weights=False,
        pooling="cls",
        normalization="l2",
        alignment="identity",
        alignment_digest="-",
        base_dim=dim,
        dim=dim,
    )


def vector_names(embedding: Embeddings, dim: int) -> dict[str, int]:
    """The named vectors (and sizes) a collection written by ``embedding`` holds."""
    if isinstance(embedding, PerceptualImageEmbeddings):
        fingerprint = embedding.embedder.fingerprint
        return {"base": fingerprint.base_dim, "aligned": fingerprint.dim}
    return {EMBEDDING_VECTOR: dim}


def search_vector(embedding: Embeddings) -> str:
    """The named vector that ``embedding`` 's ``embed_query`` vectors are compared with (for
    ``PerceptualImageEmbeddings`` taking text: its ``text_using``, ``base`` by default)."""
    return embedding.query_vector if isinstance(embedding, PerceptualImageEmbeddings) else EMBEDDING_VECTOR


def image_search_vector(embedding: Embeddings) -> str:
    """The named vector that ``embedding`` 's ``embed_image`` vectors are compared with."""
    return embedding.using if isinstance(embedding, PerceptualImageEmbeddings) else EMBEDDING_VECTOR


def check_written_by(stored: Fingerprint, embedding: Embeddings, collection: str) -> None:
    """Refuse ``embedding`` for a collection whose recorded writer is another embedding.

    The vector length of a non-percep-rag embedding is only known once it has embedded
    something, so it is taken from ``stored`` here; the store checks it on every write
    and query.
    """
    differences = stored.differences(embedding_fingerprint(embedding, stored.dim))
    if differences:
        raise FingerprintMismatchError(
            f"collection {collection!r} was written by another embedding; stored vs this one: {'; '.join(differences)}"
        )


def _is_name(value: object) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool) and value != ""
