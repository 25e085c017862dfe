"""``PerceptualImageVectorStore``: LangChain's ``VectorStore`` on a percep-rag store.

One collection of a percep-rag store (Qdrant Edge on disk by default, or any store spec:
``":memory:"``, ``"local:<dir>"``, a Qdrant URL) holds the documents. It works with any
LangChain ``Embeddings``, as ``QdrantVectorStore`` does; with
:class:`~langchain_percep_rag.PerceptualImageEmbeddings` the documents are images (their
``page_content`` is the image's path, ``file://`` or ``data:`` URI) and the collection is an
ordinary percep-rag collection. The collection records which embedding wrote it and refuses
another (:mod:`langchain_percep_rag.fingerprints`); how documents become points is in
:mod:`langchain_percep_rag.documents`.

LangChain's multimodal convention (as ``Chroma`` with ``OpenCLIPEmbeddings``): ``add_images(uris,
metadatas)`` stores images, ``similarity_search(question)`` / ``as_retriever().invoke(question)``
search them by text and ``similarity_search_by_image(uri)`` by image, when the embedding is a
``PerceptualImageEmbeddings`` on a CLIP-family backbone (``takes_text``). With
``PerceptualImageEmbeddings`` the documents are always images: ``add_texts`` / ``add_documents``
/ ``from_texts`` / LangChain's ``index()`` take image sources as ``add_images`` does; the
queries of ``similarity_search`` and ``max_marginal_relevance_search`` are what the embedding's
``embed_query`` takes (text, or with ``queries="images"`` image sources).

>>> from langchain_core.embeddings import DeterministicFakeEmbedding
>>> store = PerceptualImageVectorStore.from_texts(
...     ["tomato", "lime", "plum"], DeterministicFakeEmbedding(size=8), metadatas=[{"n": 1}, {"n": 2}, {"n": 3}],
...     ids=["a", "b", "c"], store=":memory:", collection="fruit",
... )
>>> [document.id for document in store.similarity_search("lime", k=2)][0]
'b'
>>> store.similarity_search("lime", k=3, filter={"n": {"gte": 3}})[0].page_content
'plum'
>>> store.delete(["b"])
True
>>> [document.id for document in store.get_by_ids(["a", "b"])]
['a']
>>> retriever = store.as_retriever(search_type="mmr", search_kwargs={"k": 2, "lambda_mult": 0.2})
>>> len(retriever.invoke("tomato"))
2
>>> store.close()
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.runnables.config import run_in_executor
from langchain_core.vectorstores import VectorStore

from langchain_percep_rag.documents import ID_KEY, document_payload, legacy_point_id, point_id_for, to_document
from langchain_percep_rag.embeddings import PerceptualImageEmbeddings
from langchain_percep_rag.fingerprints import (
    check_written_by,
    embedding_fingerprint,
    image_search_vector,
    search_vector,
    vector_names,
)
from langchain_percep_rag.search_options import relevance_score
from percep_rag.errors import ConfigError
from percep_rag.indexing import DEFAULT_PAYLOAD_INDEXES
from percep_rag.io.images import read_image_bytes
from percep_rag.mmr import DEFAULT_FETCH_K, rerank_hits
from percep_rag.store import PayloadType, ScoredPoint, StoreSpec, content_hash, open_store, point_id
from percep_rag.store import VectorStore as PercepStore

__all__ = ["PerceptualImageVectorStore"]

Metadatas = Sequence[Mapping[str, Any] | None] | None


class PerceptualImageVectorStore(VectorStore):
    """Documents of one collection in a percep-rag store, searched by an ``Embeddings``.

    ``store`` is a percep-rag store object, or a store spec to open (default: ``StoreSpec.default()``,
    ``$PERCEP_RAG_STORE`` or Qdrant Edge in ``~/.cache/percep_rag/store``). The collection is
    created on the first write; until then searches find nothing. :meth:`close` (or leaving a
    ``with`` block) closes the store.

    * Adding: ``add_texts`` / ``add_documents`` / ``add_images``; metadata becomes the payload,
      explicit ids (``ids=`` or ``Document.id``) are honoured and adding an id again replaces
      its document. With ``PerceptualImageEmbeddings`` the texts are image sources, both
      ``base`` and ``aligned`` vectors are written, the payload also gets the image's ``uri``
      and ``content_hash`` (as ``index_records`` writes them) and ids default to the image's
      content point id, so adding the same image twice keeps one point; otherwise they
      default to random UUIDs.
    * Searching: ``similarity_search`` (``_with_score``, ``_by_vector``, ``_by_image``,
      ``_with_relevance_scores``), ``max_marginal_relevance_search`` (``_by_vector``), each with
      a ``filter`` (percep-rag's dict language or a qdrant-client ``models.Filter``). Scores
      are cosine similarities; relevance scores clip them to [0, 1]. ``as_retriever`` takes
      ``search_type`` and ``search_kwargs`` as for every LangChain vector store.
    * Every method has its ``a``-prefixed async variant, run in a worker thread.

    Errors: a collection written by another embedding raises
    :class:`~percep_rag.errors.FingerprintMismatchError` at construction; an unreadable image
    :class:`~percep_rag.errors.ImageDecodeError`; reserved or non-JSON metadata
    :class:`~percep_rag.store.InvalidPointError`; a bad filter :class:`~percep_rag.store.FilterError`.
    """

    def __init__(
        self,
        embedding: Embeddings,
        *,
        collection: str,
        store: PercepStore | StoreSpec | str | None = None,
        payload_indexes: Mapping[str, PayloadType] | None = None,
    ) -> None:
        self._embedding = embedding
        self.collection = collection
        self.store: PercepStore = store if isinstance(store, PercepStore) else open_store(store or StoreSpec.default())
        self._payload_indexes = dict(payload_indexes or {})
        if isinstance(embedding, PerceptualImageEmbeddings):
            self._payload_indexes = {**DEFAULT_PAYLOAD_INDEXES, **self._payload_indexes}
        self._using = search_vector(embedding)  # what embed_query's vectors are compared with
        self._image_using = image_search_vector(embedding)
        self._lock = threading.Lock()  # serialises collection creation and writes
        self._writer_checked = False
        try:
            self._exists()
        except BaseException:
            if self.store is not store:
                self.store.close()
            raise

    @property
    def embeddings(self) -> Embeddings:
        """The embedding that writes and searches this collection."""
        return self._embedding

    def close(self) -> None:
        """Close the percep-rag store (idempotent)."""
        self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def delete_collection(self) -> None:
        """Drop the collection and every document in it (it is created again by the next write)."""
        self.store.delete_collection(self.collection, missing_ok=True)
        self._writer_checked = False

    # ----------------------------------------------------------------- adding

    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: Metadatas = None,
        *,
        ids: Sequence[str | None] | None = None,
        batch_size: int | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Embed ``texts`` (image sources for ``PerceptualImageEmbeddings``) and store them; their ids.

        ``batch_size`` (as LangChain's ``index()`` passes it) embeds and writes that many
        documents at a time; any other keyword is refused with a ``TypeError``.
        """
        if kwargs:
            raise TypeError(f"add_texts() got unexpected keyword arguments {sorted(kwargs)}")
        contents = list(texts)
        metadatas, ids = _aligned(contents, metadatas, ids)
        if batch_size is not None and (type(batch_size) is not int or batch_size < 1):
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        step = batch_size or max(len(contents), 1)
        written: list[str] = []
        for start in range(0, len(contents), step):
            part = slice(start, start + step)
            written += self._add_batch(contents[part], metadatas[part], ids[part])
        return written

    def _add_batch(self, contents: list[str], metadatas: list[Any], ids: list[str | None]) -> list[str]:
        if isinstance(self._embedding, PerceptualImageEmbeddings):
            return self._add_perceptual_images(contents, metadatas, ids)
        vectors = np.asarray(self._embedding.embed_documents(contents), dtype=np.float32)
        document_ids = [given or str(uuid.uuid4()) for given in ids]
        return self._write(contents, {search_vector(self._embedding): vectors}, metadatas, document_ids)

    def add_images(
        self, uris: Iterable[str], metadatas: Metadatas = None, *, ids: Sequence[str | None] | None = None
    ) -> list[str]:
        """Embed images (paths, ``file://`` or ``data:`` URIs) and store them; their ids.

        Uses the embedding's ``embed_image`` (the ``OpenCLIPEmbeddings`` convention); an
        embedding without one is refused (:class:`~percep_rag.errors.ConfigError`), as
        ``Chroma`` does, rather than embedding the paths as text.
        """
        sources = list(uris)
        embed_image = self._embed_image_function("add_images")
        if isinstance(self._embedding, PerceptualImageEmbeddings):
            return self.add_texts(sources, metadatas, ids=ids)
        metadatas, ids = _aligned(sources, metadatas, ids)
        if not sources:
            return []
        vectors = np.asarray(embed_image(sources), dtype=np.float32)
        document_ids = [given or str(uuid.uuid4()) for given in ids]
        return self._write(sources, {image_search_vector(self._embedding): vectors}, metadatas, document_ids)

    def _embed_image_function(self, method: str) -> Callable[[list[str]], Sequence[Sequence[float]]]:
        embed_image = getattr(self._embedding, "embed_image", None)
        if not callable(embed_image):
            raise ConfigError(
                f"{method} needs an embedding with embed_image (e.g. PerceptualImageEmbeddings or "
                f"OpenCLIPEmbeddings); {type(self._embedding).__name__} embeds text only"
            )
        return embed_image

    async def aadd_images(
        self, uris: Iterable[str], metadatas: Metadatas = None, *, ids: Sequence[str | None] | None = None
    ) -> list[str]:
        """:meth:`add_images` in a worker thread."""
        return await run_in_executor(None, self.add_images, list(uris), metadatas, ids=ids)

    def _add_perceptual_images(self, sources: list[str], metadatas: list[Any], ids: list[str | None]) -> list[str]:
        assert isinstance(self._embedding, PerceptualImageEmbeddings)
        digests = [content_hash(read_image_bytes(source)) for source in sources]  # unreadable: raise first
        document_ids = [given or point_id(digest, self.collection) for given, digest in zip(ids, digests, strict=True)]
        image_fields = [
            {"uri": source, "content_hash": digest} for source, digest in zip(sources, digests, strict=True)
        ]
        metadatas = [{**fields, **(metadata or {})} for fields, metadata in zip(image_fields, metadatas, strict=True)]
        both = self._embedding.embed_both(sources)
        return self._write(sources, {"base": both.base, "aligned": both.aligned}, metadatas, document_ids)

    def _write(
        self, contents: list[str], vectors: dict[str, np.ndarray], metadatas: list[Any], document_ids: list[str]
    ) -> list[str]:
        payloads = [
            document_payload(content, metadata, document_id)
            for content, metadata, document_id in zip(contents, metadatas, document_ids, strict=True)
        ]
        dim = next(iter(vectors.values())).shape[1]
        with self._lock:
            self.store.ensure_collection(
                self.collection,
                embedding_fingerprint(self._embedding, dim),
                vectors=vector_names(self._embedding, dim),
                payload_indexes=self._payload_indexes,
            )
            self._writer_checked = True  # ensure_collection compared the whole fingerprint
            legacy = self._legacy_points(document_ids)
            if legacy:  # written by an earlier release under the canonical UUID: the new point replaces it
                self.store.delete(self.collection, legacy)
            self.store.upsert_arrays(self.collection, [point_id_for(i) for i in document_ids], vectors, payloads)
        return document_ids

    # ----------------------------------------------------------------- reading and deleting

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The documents with these ids, in the order asked for; absent ids are skipped."""
        if not ids or not self._exists():
            return []
        points = {}
        for point in self._points_of(ids).values():
            points.setdefault(point.id, point)
        return [to_document(point) for point in points.values()]

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool:
        """Delete the documents with these ids (absent ids are ignored); ``True``.

        ``ids=None`` is refused rather than read as "everything": use :meth:`delete_collection`.
        """
        if kwargs:
            raise TypeError(f"delete() got unexpected keyword arguments {sorted(kwargs)}")
        if ids is None:
            raise ConfigError("delete() needs the ids to delete; delete_collection() drops every document")
        if ids and self._exists():
            with self._lock:
                self.store.delete(self.collection, [point.id for point in self._points_of(ids).values()])
        return True

    def _points_of(self, ids: Sequence[str]) -> dict[str, Any]:
        """The stored point of each id that has one, in the order given: the id's own point
        (:func:`~langchain_percep_rag.documents.point_id_for`), or the point an earlier release
        wrote for another spelling of a UUID (at the canonical UUID). A point is an id's only if
        it records exactly that id as its ``document_id`` (or none: a point ``index_records`` wrote)."""
        candidates = {document_id: (point_id_for(document_id), legacy_point_id(document_id)) for document_id in ids}
        wanted = {pid for pair in candidates.values() for pid in pair if pid is not None}
        stored = {point.id: point for point in self.store.retrieve(self.collection, sorted(wanted))}
        found = {}
        for document_id, (own, legacy) in candidates.items():
            point = stored.get(own)
            if point is not None and point.payload.get(ID_KEY, document_id) == document_id:
                found[document_id] = point
            elif legacy is not None and legacy in stored and stored[legacy].payload.get(ID_KEY) == document_id:
                found[document_id] = stored[legacy]
        return found

    def _legacy_points(self, ids: Sequence[str]) -> list[str]:
        """Points an earlier release wrote for these ids under their canonical UUID (replaced on rewrite)."""
        own = {document_id: point_id_for(document_id) for document_id in ids}
        return [point.id for document_id, point in self._points_of(ids).items() if point.id != own[document_id]]

    # ----------------------------------------------------------------- similarity search

    def similarity_search(self, query: str, k: int = 4, *, filter: Any = None) -> list[Document]:
        """The ``k`` documents most similar to ``query``, most similar first."""
        return [document for document, _ in self.similarity_search_with_score(query, k, filter=filter)]

    def similarity_search_with_score(
        self, query: str, k: int = 4, *, filter: Any = None
    ) -> list[tuple[Document, float]]:
        """:meth:`similarity_search` with each document's cosine similarity to ``query``."""
        return self._scored(lambda: self._embedding.embed_query(query), k=k, filter=filter)

    def similarity_search_by_vector(self, embedding: list[float], k: int = 4, *, filter: Any = None) -> list[Document]:
        """The ``k`` documents most similar to a query vector."""
        return [document for document, _ in self._scored(lambda: embedding, k=k, filter=filter)]

    def similarity_search_with_score_by_vector(
        self, embedding: list[float], k: int = 4, *, filter: Any = None
    ) -> list[tuple[Document, float]]:
        """:meth:`similarity_search_by_vector` with cosine similarities."""
        return self._scored(lambda: embedding, k=k, filter=filter)

    def similarity_search_by_image(self, uri: str, k: int = 4, *, filter: Any = None) -> list[Document]:
        """The ``k`` documents most similar to an image (path, ``file://`` or ``data:`` URI)."""
        return [document for document, _ in self.similarity_search_by_image_with_score(uri, k, filter=filter)]

    def similarity_search_by_image_with_score(
        self, uri: str, k: int = 4, *, filter: Any = None
    ) -> list[tuple[Document, float]]:
        """:meth:`similarity_search_by_image` with cosine similarities."""
        return self._scored(lambda: self._image_vector(uri), k=k, filter=filter, using=self._image_using)

    async def asimilarity_search_by_image(self, uri: str, k: int = 4, *, filter: Any = None) -> list[Document]:
        """:meth:`similarity_search_by_image` in a worker thread."""
        return await run_in_executor(None, self.similarity_search_by_image, uri, k, filter=filter)

    async def asimilarity_search_by_image_with_score(
        self, uri: str, k: int = 4, *, filter: Any = None
    ) -> list[tuple[Document, float]]:
        """:meth:`similarity_search_by_image_with_score` in a worker thread."""
        return await run_in_executor(None, self.similarity_search_by_image_with_score, uri, k, filter=filter)

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        return relevance_score

    def _scored(
        self, vector: Callable[[], Sequence[float]], *, k: int, filter: Any, using: str | None = None
    ) -> list[tuple[Document, float]]:
        # The query is embedded only when there is a collection to search: an empty store
        # answers [] whatever the query, as LangChain's stores do.
        if not self._exists():
            return []
        hits = self.store.query(self.collection, vector(), using=using or self._using, k=k, filter=filter)
        return [(to_document(hit), hit.score) for hit in hits]

    def _image_vector(self, uri: str) -> Sequence[float]:
        if not isinstance(uri, str | bytes):
            raise ConfigError(f"similarity_search_by_image takes one image (a path or URI), got {type(uri).__name__}")
        return self._embed_image_function("similarity_search_by_image")([uri])[0]

    # ----------------------------------------------------------------- maximal marginal relevance

    def max_marginal_relevance_search(
        self, query: str, k: int = 4, fetch_k: int = DEFAULT_FETCH_K, lambda_mult: float = 0.5, *, filter: Any = None
    ) -> list[Document]:
        """``k`` documents picked for similarity to ``query`` AND variety among the ``fetch_k`` nearest.

        ``lambda_mult`` 1 is plain similarity, 0 the most variety (see :mod:`percep_rag.mmr`).
        """
        return self._mmr(lambda: self._embedding.embed_query(query), k, fetch_k, lambda_mult, filter)

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = DEFAULT_FETCH_K,
        lambda_mult: float = 0.5,
        *,
        filter: Any = None,
    ) -> list[Document]:
        """:meth:`max_marginal_relevance_search` for a query vector."""
        return self._mmr(lambda: embedding, k, fetch_k, lambda_mult, filter)

    def _mmr(
        self, vector: Callable[[], Sequence[float]], k: int, fetch_k: int, lambda_mult: float, filter: Any
    ) -> list[Document]:
        if not self._exists():
            return []
        query = np.asarray(vector(), dtype=np.float32)
        hits: list[ScoredPoint] = self.store.query(
            self.collection, query, using=self._using, k=fetch_k, filter=filter, with_vectors=True
        )
        return [to_document(hit) for hit in rerank_hits(query, hits, using=self._using, k=k, lambda_mult=lambda_mult)]

    # ----------------------------------------------------------------- construction

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: Metadatas = None,
        *,
        ids: Sequence[str | None] | None = None,
        collection: str | None = None,
        store: PercepStore | StoreSpec | str | None = None,
        payload_indexes: Mapping[str, PayloadType] | None = None,
    ) -> Self:
        """A vector store on ``store`` holding ``texts``; ``collection`` defaults to a new random name."""
        vectorstore = cls(embedding, collection=collection or _new_name(), store=store, payload_indexes=payload_indexes)
        vectorstore.add_texts(texts, metadatas, ids=ids)
        return vectorstore

    @classmethod
    def from_images(
        cls,
        uris: list[str],
        embedding: Embeddings,
        metadatas: Metadatas = None,
        *,
        ids: Sequence[str | None] | None = None,
        collection: str | None = None,
        store: PercepStore | StoreSpec | str | None = None,
        payload_indexes: Mapping[str, PayloadType] | None = None,
    ) -> Self:
        """A vector store on ``store`` holding the images ``uris`` (see :meth:`add_images`)."""
        vectorstore = cls(embedding, collection=collection or _new_name(), store=store, payload_indexes=payload_indexes)
        vectorstore.add_images(uris, metadatas, ids=ids)
        return vectorstore

    @classmethod
    async def afrom_images(cls, uris: list[str], embedding: Embeddings, **kwargs: Any) -> Self:
        """:meth:`from_images` in a worker thread."""
        return await run_in_executor(None, cls.from_images, uris, embedding, **kwargs)

    def _exists(self) -> bool:
        """Whether the collection exists; the first time it does, check who wrote it."""
        exists = self.store.has_collection(self.collection)
        if exists and not self._writer_checked:
            check_written_by(self.store.get_fingerprint(self.collection), self._embedding, self.collection)
            self._writer_checked = True
        return exists


def _aligned(items: list[str], metadatas: Metadatas, ids: Sequence[str | None] | None) -> tuple[list[Any], list[Any]]:
    """``metadatas`` and ``ids`` as lists as long as ``items`` (``None`` where not given)."""
    metadata_list = list(metadatas) if metadatas is not None else [None] * len(items)
    id_list = list(ids) if ids is not None else [None] * len(items)
    for name, values in (("metadatas", metadata_list), ("ids", id_list)):
        if len(values) != len(items):
            raise ConfigError(f"{len(items)} documents but {len(values)} {name}")
    return metadata_list, id_list


def _new_name() -> str:
    return f"langchain-{uuid.uuid4().hex[:16]}"
