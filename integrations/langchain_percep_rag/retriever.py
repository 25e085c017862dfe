"""``PerceptualImageRetriever``: a LangChain retriever whose query is an image (or, with
``queries="text"`` on a CLIP-family collection, a text question).

It wraps :class:`percep_rag.retrieval.ExampleRetriever`: the query image is embedded with
the collection's own embedder, the nearest stored images come back as ``Document`` s, and
the query image itself is never among them (RICES behaviour, so an indexed image can be
used as a query without retrieving itself). ``search_type`` and ``search_kwargs`` work as
in LangChain's ``VectorStoreRetriever``.

>>> import tempfile, pathlib
>>> from PIL import Image
>>> from percep_rag import AlignedEmbedder, EmbedderSpec
>>> from percep_rag.datasets.records import ImageRecord
>>> from percep_rag.indexing import index_records
>>> from percep_rag.store import open_store
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> records = []
>>> for name in ("red", "green", "blue"):
...     Image.new("RGB", (32, 32), name).save(folder / f"{name}.png")
...     records.append(ImageRecord(id=name, uri=str(folder / f"{name}.png"), label=name))
>>> embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random"))
>>> store = open_store(":memory:")
>>> _ = index_records(records, embedder=embedder, store=store, collection="colours", progress=False)
>>> retriever = PerceptualImageRetriever(store=store, collection="colours", embedder=embedder, k=2)
>>> documents = retriever.invoke(str(folder / "red.png"))
>>> sorted(document.page_content for document in documents)  # never the query itself
['blue', 'green']
>>> {key: documents[0].metadata[key] for key in ("using", "collection")}
{'using': 'aligned', 'collection': 'colours'}
>>> len(retriever.invoke(str(folder / "red.png"), k=1, filter={"label": "blue"}))
1
>>> diverse = PerceptualImageRetriever(
...     store=store, collection="colours", embedder=embedder, search_type="mmr", search_kwargs={"k": 2, "fetch_k": 3}
... )
>>> len(diverse.invoke(str(folder / "red.png")))
2
>>> [len(found) for found in retriever.documents_for([str(folder / "red.png"), str(folder / "blue.png")], k=1)]
[1, 1]
>>> clip = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-clip-random"))
>>> _ = index_records(records, embedder=clip, store=store, collection="clip-colours", progress=False)
>>> asker = PerceptualImageRetriever(store=store, collection="clip-colours", embedder=clip, k=2, queries="text")
>>> [document.metadata["using"] for document in asker.invoke("something red")]  # text searches base
['base', 'base']
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Any, Literal, Self

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever, LangSmithRetrieverParams
from langchain_core.runnables import RunnableConfig
from langchain_core.runnables.config import run_in_executor
from pydantic import ConfigDict, Field, PrivateAttr

from langchain_percep_rag.batching import batch_runs
from langchain_percep_rag.search_options import SearchOptions, SearchType, relevance_score, search_options
from percep_rag.config import EmbedderSpec
from percep_rag.embedder import AlignedEmbedder
from percep_rag.errors import ConfigError
from percep_rag.io.images import ImageSource
from percep_rag.point_records import payload_records
from percep_rag.retrieval import Example, ExampleRetriever, VectorName
from percep_rag.store import StoreSpec, VectorStore, open_store
from percep_rag.store.filters import parse_filter

__all__ = ["PerceptualImageRetriever"]


class PerceptualImageRetriever(BaseRetriever):
    """Few-shot examples for a query image, as LangChain ``Document`` s.

    The query (``invoke``'s input) is an image: a path, a ``file://`` URI, a
    ``data:image/...;base64,...`` URI, or encoded bytes; with ``queries="text"`` it is a text
    question instead, embedded by the collection's CLIP-family text tower (the rule of
    :mod:`percep_rag.text_space`: ``base`` by default; a collection where text has no meaning is
    refused at construction, bad text raises :class:`~percep_rag.errors.TextQueryError`).
    ``using`` defaults to ``aligned`` for image queries and ``base`` for text. Each ``Document`` has:

    * ``id``: the point id in the collection;
    * ``page_content``: the example's prompt, else its label, else ``""``;
    * ``metadata``: every payload field (``uri``, ``label``, ``record_id``, ...), then
      ``image_uri`` (where the example image is), ``label``, ``score`` (cosine similarity),
      ``using`` (the vector searched), ``collection``, ``copy_of_query`` (``"exact"``: the
      query's pixels in another file; ``"near"``: cosine at or above the collection's
      calibrated near-copy threshold, or ``duplicate_threshold`` when given; else ``None``),
      ``duplicate_of_query`` (``copy_of_query is not None``) and ``files`` (how many
      byte-identical files the image stands for); these win over payload fields of the same name.

    The query itself (percep-rag's one rule, :meth:`percep_rag.retrieval.Retriever.search_batch`):
    its own point (same content id) never comes back; its other copies do, marked
    ``copy_of_query``. Without a calibrated threshold (``percep-rag duplicates --calibrate``)
    or ``duplicate_threshold``, nothing is a near copy: a cosine means different things in
    different backbones. ``exclude_query_copies=True`` applies the few-shot rule instead (no
    copy of the query at all: same file, same pixels or same vector), as
    :class:`~langchain_percep_rag.PerceptualExampleSelector` does.

    Searching, as LangChain's ``VectorStoreRetriever``: ``search_type`` is ``"similarity"``,
    ``"similarity_score_threshold"`` (keeps the ``k`` nearest whose cosine similarity reaches
    ``score_threshold``) or ``"mmr"`` (maximal marginal relevance: ``k`` picked among the
    ``fetch_k`` nearest, ``lambda_mult`` 1 = plain similarity, 0 = most diverse);
    ``search_kwargs`` holds ``k``, ``filter`` and the search type's own keys (a key the search
    type does not read is refused, see :mod:`langchain_percep_rag.search_options`). The
    fields ``k`` and ``filter`` are shorthands for the same keys (give each once). The same
    keywords, and ``using`` (``"aligned"`` or ``"base"``), on ``invoke``/``ainvoke`` replace
    them for one call (a per-call ``filter`` replaces the constructor's, it is not merged).
    A filter is percep-rag's dict language (:mod:`percep_rag.store.filters`) or a qdrant-client
    ``models.Filter``. Unknown constructor fields raise ``ValidationError``.

    Documents come in search order (most similar first; MMR pick order), the LangChain
    convention; ``most_similar_last=True`` reverses it into RICES prompt order (the most
    similar example right before the query). ``batch`` / ``abatch`` embed all their queries
    together, in one forward pass per ``embedder.batch_size`` images. Leaving a ``with
    retriever:`` block closes the store.

    Errors: an unreadable query image raises :class:`~percep_rag.errors.ImageDecodeError`;
    a collection written by another embedder raises
    :class:`~percep_rag.errors.FingerprintMismatchError` and a missing one
    :class:`~percep_rag.store.CollectionNotFoundError`, both at construction, as do bad search
    options (:class:`~percep_rag.errors.ConfigError`) and filters
    (:class:`~percep_rag.store.FilterError`); an empty collection (or a filter nothing
    matches) gives ``[]``, as every LangChain retriever does when nothing is relevant.
    """

    model_config = ConfigDict(extra="forbid")

    store: VectorStore
    collection: str
    embedder: AlignedEmbedder
    k: int = Field(default=4, gt=0)
    filter: Any = None
    using: VectorName | None = None
    queries: Literal["images", "text"] = "images"
    most_similar_last: bool = False
    exclude_query_copies: bool = False
    duplicate_threshold: float | None = Field(default=None, ge=-1.0, le=1.0)
    search_type: SearchType = "similarity"
    search_kwargs: dict[str, Any] = Field(default_factory=dict)

    _examples: ExampleRetriever | None = PrivateAttr(default=None)

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        # Checked here rather than in a pydantic hook, which would wrap ValueError
        # subclasses into a ValidationError and hide our precise exception types.
        for key in ("k", "filter"):
            if key in self.model_fields_set and key in self.search_kwargs:
                raise ConfigError(f"{key} is given both as a field and in search_kwargs; give it once")
        parse_filter(self._options().filter)
        self._examples = ExampleRetriever(self.store, self.collection, self.embedder)
        if self.queries == "text":
            from percep_rag.text_space import check_text_space

            check_text_space(self.store.get_fingerprint(self.collection), self._default_using, self.collection)

    @property
    def _default_using(self) -> VectorName:
        if self.using is not None:
            return self.using
        return "base" if self.queries == "text" else "aligned"

    @classmethod
    def from_specs(
        cls,
        store: StoreSpec | str,
        collection: str,
        embedder: EmbedderSpec | AlignedEmbedder,
        **fields: Any,
    ) -> Self:
        """Open ``store`` (e.g. ``"edge:/data/store"``) and build the embedder from its spec.

        The retriever then owns the store: use it in a ``with`` block, or call
        ``retriever.store.close()`` when done. If construction fails (e.g. a fingerprint
        mismatch) the store is closed again.

        Example (needs that store and the backbone's weights on disk)::

            with PerceptualImageRetriever.from_specs(
                "edge:/data/store", "photos", EmbedderSpec(backbone="dreamsim-ensemble"), k=8
            ) as retriever:
                documents = retriever.invoke("query.jpg")
        """
        opened = open_store(store)
        try:
            model = embedder if isinstance(embedder, AlignedEmbedder) else AlignedEmbedder.from_spec(embedder)
            return cls(store=opened, collection=collection, embedder=model, **fields)
        except BaseException:
            opened.close()
            raise

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.store.close()

    # ----------------------------------------------------------------- LangChain hooks

    def _get_relevant_documents(
        self,
        query: ImageSource,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        filter: Any = None,
        using: VectorName | None = None,
        score_threshold: float | None = None,
        fetch_k: int | None = None,
        lambda_mult: float | None = None,
    ) -> list[Document]:
        # The options are in the signature (not **kwargs) so that BaseRetriever forwards
        # invoke()'s keywords, and a misspelt one fails instead of being ignored.
        return self.documents_for(
            [query],
            using=using,
            k=k,
            filter=filter,
            score_threshold=score_threshold,
            fetch_k=fetch_k,
            lambda_mult=lambda_mult,
        )[0]

    async def _aget_relevant_documents(
        self,
        query: ImageSource,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        **options: Any,
    ) -> list[Document]:
        # Embedding is CPU/GPU-bound torch work and the store calls block, so they run in a
        # worker thread rather than stalling the event loop. BaseRetriever's own default
        # would do the same but drops the per-call options.
        return await run_in_executor(
            None, self._get_relevant_documents, query, run_manager=run_manager.get_sync(), **options
        )

    def batch(
        self,
        inputs: list[ImageSource],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        """``invoke`` for each query image, all embedded together (one forward per ``embedder.batch_size``).

        Each query still gets its own traced run; when the batched search fails (say one
        image is unreadable) the queries are searched one by one so that the error lands on
        the query that caused it.
        """
        return batch_runs(
            self,
            inputs,
            config,
            lambda queries: self.documents_for(queries, **kwargs),
            return_exceptions=return_exceptions,
        )

    async def abatch(
        self,
        inputs: list[ImageSource],
        config: RunnableConfig | list[RunnableConfig] | None = None,
        *,
        return_exceptions: bool = False,
        **kwargs: Any,
    ) -> list[Any]:
        """:meth:`batch` in a worker thread."""
        return await run_in_executor(None, self.batch, inputs, config, return_exceptions=return_exceptions, **kwargs)

    def _get_ls_params(self, **kwargs: Any) -> LangSmithRetrieverParams:
        params = super()._get_ls_params(**kwargs)
        params["ls_vector_store_provider"] = type(self.store).__name__
        params["ls_embedding_provider"] = type(self.embedder).__name__
        params["ls_embedding_model"] = self.embedder.backbone.name
        return params

    # ----------------------------------------------------------------- searching

    def documents_for(
        self,
        queries: Sequence[ImageSource],
        *,
        using: VectorName | None = None,
        **overrides: Any,
    ) -> list[list[Document]]:
        """The documents for each query image (embedded in one pass), with per-call options.

        ``overrides`` are ``search_kwargs`` keys; ``None`` values keep the retriever's own.
        """
        options = self._options(**overrides)
        vector = self._default_using if using is None else using
        retriever = self._example_retriever()
        if self.queries == "text":
            hits = retriever.search_texts(
                list(queries), k=options.k, using=vector, filter=options.filter,
                lambda_mult=options.mmr_lambda, fetch_k=options.fetch_k,
            )  # fmt: skip
        elif self.exclude_query_copies:
            hits = retriever.examples_batch(
                list(queries), k=options.k, using=vector, filter=options.filter,
                diversity=1.0 - options.mmr_lambda, fetch_k=options.fetch_k, as_hits=True,
            )  # fmt: skip
        else:
            hits = retriever.search_batch(
                list(queries),
                k=options.k,
                using=vector,
                filter=options.filter,
                lambda_mult=options.mmr_lambda,
                fetch_k=options.fetch_k,
                duplicate_threshold=self.duplicate_threshold,
            )
        results = []
        for found in hits:
            if options.search_type == "similarity_score_threshold":
                found = [hit for hit in found if relevance_score(hit.score) >= options.score_threshold]
            documents = [self._document(Example.from_hit(hit), vector, hit.copy_of_query) for hit in found]
            results.append(documents[::-1] if self.most_similar_last else documents)
        return results

    def _options(self, **overrides: Any) -> SearchOptions:
        defaults: dict[str, Any] = {"k": self.k}
        if self.filter is not None:
            defaults["filter"] = self.filter
        given = {key: value for key, value in overrides.items() if value is not None}
        return search_options(self.search_type, {**defaults, **self.search_kwargs, **given})

    def _example_retriever(self) -> ExampleRetriever:
        # model_construct()/model_validate() skip __init__; build (and check) on first use then.
        if self._examples is None:
            self._examples = ExampleRetriever(self.store, self.collection, self.embedder)
        return self._examples

    def _document(self, example: Example, using: str, copy_of_query: str | None) -> Document:
        metadata = {
            **example.payload,
            "image_uri": example.uri,
            "label": example.label,
            "score": example.score,
            "using": using,
            "collection": self.collection,
            "copy_of_query": copy_of_query,
            "duplicate_of_query": copy_of_query is not None,
            "files": len(payload_records(example.payload)),
        }
        return Document(id=example.id, page_content=example.text, metadata=metadata)
