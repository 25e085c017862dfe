"""``PerceptualImageRetriever``: a LangChain retriever whose query is an image.

It wraps :class:`percep_rag.retrieval.ExampleRetriever`: the query image is embedded with
the collection's own embedder, the nearest stored images come back as ``Document`` s, and
the query image itself is never among them (RICES behaviour, so an indexed image can be
used as a query without retrieving itself).

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
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables.config import run_in_executor
from pydantic import Field, PrivateAttr

from percep_rag.config import EmbedderSpec
from percep_rag.embedder import AlignedEmbedder
from percep_rag.errors import ConfigError
from percep_rag.io.images import ImageSource
from percep_rag.retrieval import Example, ExampleRetriever, VectorName
from percep_rag.store import StoreSpec, VectorStore, open_store

__all__ = ["PerceptualImageRetriever"]


class PerceptualImageRetriever(BaseRetriever):
    """Few-shot examples for a query image, as LangChain ``Document`` s.

    The query (``invoke``'s input) is an image: a path, a ``file://`` URI, a
    ``data:image/...;base64,...`` URI, or encoded bytes. Each ``Document`` has:

    * ``id``: the point id in the collection;
    * ``page_content``: the example's prompt, else its label, else ``""``;
    * ``metadata``: every payload field (``uri``, ``label``, ``record_id``, ...), then
      ``image_uri`` (where the example image is), ``label``, ``score`` (cosine similarity),
      ``using`` (the vector searched) and ``collection``; these five win over payload
      fields of the same name.

    ``k``, ``filter`` (the dict language of :mod:`percep_rag.store.filters`) and ``using``
    (``"aligned"`` or ``"base"``) set the defaults; the same keywords on
    ``invoke``/``ainvoke`` replace them for one call (a per-call ``filter`` replaces the
    constructor's, it is not merged with it). Documents come most similar first, the
    LangChain convention; ``most_similar_last=True`` gives RICES prompt order instead
    (the most similar example right before the query).

    Errors: an unreadable query image raises :class:`~percep_rag.errors.ImageDecodeError`;
    a collection written by another embedder raises
    :class:`~percep_rag.errors.FingerprintMismatchError` and a missing one
    :class:`~percep_rag.store.CollectionNotFoundError`, both at construction; an empty
    collection (or a filter nothing matches) gives ``[]``, as every LangChain retriever does
    when nothing is relevant.
    """

    store: VectorStore
    collection: str
    embedder: AlignedEmbedder
    k: int = Field(default=4, gt=0)
    filter: dict[str, Any] | None = None
    using: VectorName = "aligned"
    most_similar_last: bool = False

    _examples: ExampleRetriever | None = PrivateAttr(default=None)

    def __init__(self, **data: Any) -> None:
        super().__init__(**data)
        # Checked here rather than in a pydantic hook, which would wrap ValueError
        # subclasses into a ValidationError and hide our precise exception types.
        self._examples = ExampleRetriever(self.store, self.collection, self.embedder)

    @classmethod
    def from_specs(
        cls,
        store: StoreSpec | str,
        collection: str,
        embedder: EmbedderSpec | AlignedEmbedder,
        **fields: Any,
    ) -> Self:
        """Open ``store`` (e.g. ``"edge:/data/store"``) and build the embedder from its spec.

        The retriever then owns the store: call ``retriever.store.close()`` when done. If
        construction fails (e.g. a fingerprint mismatch) the store is closed again.

        Example (needs that store and the backbone's weights on disk)::

            retriever = PerceptualImageRetriever.from_specs(
                "edge:/data/store", "photos", EmbedderSpec(backbone="dreamsim-ensemble"), k=8
            )
        """
        opened = open_store(store)
        try:
            model = embedder if isinstance(embedder, AlignedEmbedder) else AlignedEmbedder.from_spec(embedder)
            return cls(store=opened, collection=collection, embedder=model, **fields)
        except BaseException:
            opened.close()
            raise

    def _get_relevant_documents(
        self,
        query: ImageSource,
        *,
        run_manager: CallbackManagerForRetrieverRun,
        k: int | None = None,
        filter: Mapping[str, Any] | None = None,
        using: VectorName | None = None,
    ) -> list[Document]:
        # k, filter and using are in the signature (not **kwargs) so that BaseRetriever
        # forwards invoke()'s keywords, and a misspelt one fails instead of being ignored.
        count = self.k if k is None else _checked_k(k)
        vector = self.using if using is None else using
        examples = self._example_retriever().examples(
            query, k=count, using=vector, filter=self.filter if filter is None else filter
        )
        if not self.most_similar_last:
            examples = examples[::-1]  # ExampleRetriever gives RICES order
        return [self._document(example, vector) for example in examples]

    async def _aget_relevant_documents(
        self,
        query: ImageSource,
        *,
        run_manager: AsyncCallbackManagerForRetrieverRun,
        k: int | None = None,
        filter: Mapping[str, Any] | None = None,
        using: VectorName | None = None,
    ) -> list[Document]:
        # Embedding is CPU/GPU-bound torch work and the store calls block, so they run in a
        # worker thread rather than stalling the event loop. BaseRetriever's own default
        # would do the same but drops the per-call k/filter/using.
        return await run_in_executor(
            None,
            self._get_relevant_documents,
            query,
            run_manager=run_manager.get_sync(),
            k=k,
            filter=filter,
            using=using,
        )

    def _example_retriever(self) -> ExampleRetriever:
        # model_construct()/model_validate() skip __init__; build (and check) on first use then.
        if self._examples is None:
            self._examples = ExampleRetriever(self.store, self.collection, self.embedder)
        return self._examples

    def _document(self, example: Example, using: str) -> Document:
        metadata = {
            **example.payload,
            "image_uri": example.uri,
            "label": example.label,
            "score": example.score,
            "using": using,
            "collection": self.collection,
        }
        return Document(id=example.id, page_content=example.text, metadata=metadata)


def _checked_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise ConfigError(f"k must be a positive int, got {k!r}")
    return k
