"""``PerceptualExampleSelector``: labelled image examples for LangChain's few-shot prompt templates.

LangChain retrieves few-shot examples with an example selector: ``FewShotPromptTemplate``
and ``FewShotChatMessagePromptTemplate`` call ``select_examples(input_variables)`` and format
each returned dict with their ``example_prompt``. This selector reads the query image from
the input variables, retrieves labelled examples with a
:class:`~langchain_percep_rag.PerceptualImageRetriever` (similarity, score threshold or MMR,
filters, as that retriever's ``search_type`` / ``search_kwargs`` say) and returns them in
prompt order: the most similar example last, right before the query. Each example is
``{"image": <stored uri>, "image_url": <data URI of the image>, "label": <prompt or label>}``
(the key names are fields) plus every other key the example was added with (``{"reason": ...}``,
any payload field of the indexed image), so a chat prompt can show every example as an image
content block followed by its label, for any chat model:

>>> import tempfile, pathlib
>>> from PIL import Image
>>> from langchain_core.prompts import ChatPromptTemplate, FewShotChatMessagePromptTemplate
>>> from percep_rag import AlignedEmbedder, EmbedderSpec
>>> from percep_rag.datasets.records import ImageRecord
>>> from percep_rag.indexing import index_records, record_payload
>>> from percep_rag.store import open_store
>>> from langchain_percep_rag import PerceptualImageRetriever
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> records = []
>>> for name in ("red", "green", "blue"):
...     Image.new("RGB", (32, 32), name).save(folder / f"{name}.png")
...     records.append(ImageRecord(id=name, uri=str(folder / f"{name}.png"), label=name))
>>> embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random"))
>>> store = open_store(":memory:")
>>> _ = index_records(records, embedder=embedder, store=store, collection="colours", progress=False)
>>> selector = PerceptualExampleSelector(
...     retriever=PerceptualImageRetriever(store=store, collection="colours", embedder=embedder, k=2)
... )
>>> shot = ChatPromptTemplate.from_messages(
...     [("human", [{"type": "image_url", "image_url": {"url": "{image_url}"}}]), ("ai", "{label}")]
... )
>>> few_shot = FewShotChatMessagePromptTemplate(
...     example_selector=selector, example_prompt=shot, input_variables=["image"]
... )
>>> messages = few_shot.format_messages(image=str(folder / "red.png"))
>>> [message.type for message in messages]
['human', 'ai', 'human', 'ai']
>>> messages[0].content[0]["image_url"]["url"][:22]
'data:image/png;base64,'
>>> sorted(message.content for message in messages[1::2])  # never the query itself
['blue', 'green']
"""

from __future__ import annotations

import base64
import io
from typing import Any

from langchain_core.documents import Document
from langchain_core.example_selectors import BaseExampleSelector
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict

from langchain_percep_rag.retriever import PerceptualImageRetriever
from percep_rag.datasets.records import ImageRecord
from percep_rag.errors import ConfigError, ImageDecodeError
from percep_rag.indexing import index_records, record_payload
from percep_rag.io.images import ImageSource, describe_source, read_image_bytes
from percep_rag.store import content_hash, point_id

__all__ = ["PerceptualExampleSelector", "image_data_uri"]


class PerceptualExampleSelector(BaseExampleSelector, BaseModel):
    """Few-shot examples for the query image in ``input_variables[image_key]``, in prompt order.

    ``retriever`` decides how examples are found (``k``, ``filter``, ``using``,
    ``search_type`` and ``search_kwargs``; the query image itself is never an example).
    Each example dict has ``image_key`` (the stored image's uri), ``image_url_key`` (the
    image as a ``data:`` URI, which chat model APIs accept where they cannot read local
    files; ``None`` leaves it out) and ``label_key`` (the example's prompt, else its label).
    Every other key of an added example (and every payload field of an indexed image) is kept
    in the example dict, so an ``example_prompt`` may use ``{reason}`` or any such key.
    :meth:`add_example` indexes a new labelled image into the retriever's collection.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    retriever: PerceptualImageRetriever
    image_key: str = "image"
    image_url_key: str | None = "image_url"
    label_key: str = "label"

    def select_examples(self, input_variables: dict[str, Any]) -> list[dict[str, Any]]:
        """The examples for the query image, most similar last."""
        if self.image_key not in input_variables:
            raise ConfigError(
                f"no query image: the input variables have no {self.image_key!r} (they have {sorted(input_variables)})"
            )
        retriever = self.retriever
        if not retriever.exclude_query_copies:  # few-shot: no copy of the query may be its example
            retriever = retriever.model_copy(update={"exclude_query_copies": True})
        documents = retriever.invoke(input_variables[self.image_key])
        if not retriever.most_similar_last:
            documents = documents[::-1]
        return [self._example(document) for document in documents]

    def add_example(self, example: dict[str, Any]) -> str:
        """Index ``example[image_key]`` labelled ``example[label_key]``, with every other key of
        ``example`` in its payload (``prompt`` and ``split`` as those fields); its point id.

        The image is the example's identity (its content point id): re-adding an image already
        in the collection, under any file name, keeps its vectors and REPLACES its label and other
        keys with the new example's (the latest example wins; keys it lacks are gone).
        """
        source = example.get(self.image_key)
        if not isinstance(source, str):
            raise ConfigError(f"an example needs its image (a path or URI) under {self.image_key!r}, got {source!r}")
        label = example.get(self.label_key)
        own = {self.image_key, self.label_key, self.image_url_key}
        extra = {key: value for key, value in example.items() if key not in own}
        fields = {key: extra.pop(key) for key in ("prompt", "split") if key in extra}
        record = ImageRecord(
            id=source,
            uri=source,
            label=None if label is None else str(label),
            **{key: None if value is None else str(value) for key, value in fields.items()},
            extra=extra,
        )
        retriever = self.retriever
        digest = content_hash(read_image_bytes(source))
        pid = point_id(digest, retriever.collection)
        known = retriever.store.has_collection(retriever.collection) and retriever.store.retrieve(
            retriever.collection, [pid], with_vectors=True
        )
        if known:  # the same image again: new example fields, the same vectors
            [stored] = known
            payload = record_payload(record, digest, stored.payload.get("dataset"))
            retriever.store.upsert_arrays(
                retriever.collection,
                [pid],
                {name: vector[None, :] for name, vector in _arrays(stored.vectors).items()},
                [payload],
            )
            return pid
        report = index_records(
            [record],
            embedder=retriever.embedder,
            store=retriever.store,
            collection=retriever.collection,
            progress=False,
        )
        if report.failures:
            raise ImageDecodeError(report.failures[0].source, report.failures[0].reason)
        return pid

    def _example(self, document: Document) -> dict[str, Any]:
        image = document.metadata["image_uri"]
        kept = {key: value for key, value in document.metadata.items() if key not in _RETRIEVAL_KEYS}
        example = {**kept, self.image_key: image, self.label_key: document.page_content}
        if self.image_url_key is not None:
            example[self.image_url_key] = image_data_uri(image)
        return example


#: Metadata the retriever adds to each document (about the search, not the example).
_RETRIEVAL_KEYS = frozenset(
    {"image_uri", "score", "using", "collection", "duplicate_of_query", "copy_of_query", "files"}
)


def _arrays(vectors: Any) -> dict[str, Any]:
    import numpy as np

    return {name: np.asarray(vector, dtype=np.float32) for name, vector in vectors.items()}


def image_data_uri(source: ImageSource) -> str:
    """An image as a ``data:<mime>;base64,...`` URI (a data URI is returned as it is).

    >>> buffer = io.BytesIO()
    >>> Image.new("RGB", (2, 2)).save(buffer, format="JPEG")
    >>> image_data_uri(buffer.getvalue())[:23]
    'data:image/jpeg;base64,'
    """
    if isinstance(source, str) and source[:5].lower() == "data:":
        return source
    data = bytes(source) if isinstance(source, bytes | bytearray) else read_image_bytes(source)
    try:
        with Image.open(io.BytesIO(data)) as image:  # reads the header only
            mime = Image.MIME.get(image.format or "")
    except (UnidentifiedImageError, OSError):
        mime = None
    if mime is None:
        raise ImageDecodeError(describe_source(source), "not an image in a format with a known MIME type")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
