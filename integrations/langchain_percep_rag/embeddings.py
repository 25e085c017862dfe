"""``PerceptualImageEmbeddings``: an :class:`AlignedEmbedder` behind LangChain's ``Embeddings``.

LangChain's ``Embeddings`` interface is about text; image embedders follow the community
convention of a duck-typed ``embed_image(uris)`` (``OpenCLIPEmbeddings``), which
``Chroma.add_images`` and ``similarity_search_by_image`` look for.

What ``embed_documents`` / ``embed_query`` take is one rule, the ``queries`` field:

* ``"auto"`` (the default): **text** where the embedder gives text a meaning (a CLIP-family
  backbone with ``cls`` pooling: ``embedder.text_queries != "none"``), as ``OpenCLIPEmbeddings``
  does; **image sources** otherwise (DINO, DINOv2, the ensembles, ``cls+patchmean``).
* ``"text"``: always text (refused at construction where text has no meaning).
* ``"images"``: always image sources: the image-only behaviour of earlier releases, on any backbone.

``embed_image`` always takes images. Text vectors are in the ``text_using`` space (``base``, the
CLIP image-text space, by default; see :mod:`percep_rag.text_space`), image vectors in ``using``.

>>> from PIL import Image
>>> import tempfile, pathlib
>>> from percep_rag import EmbedderSpec
>>> path = pathlib.Path(tempfile.mkdtemp()) / "red.png"
>>> Image.new("RGB", (32, 32), "red").save(path)
>>> embeddings = PerceptualImageEmbeddings.from_spec(EmbedderSpec(backbone="tiny-vit-random"))
>>> vectors = embeddings.embed_image([str(path), path.as_uri()])
>>> len(vectors), len(vectors[0]), vectors[0] == vectors[1]
(2, 64, True)
>>> embeddings.embed_both([str(path)]).base.shape  # both vector spaces, as a collection stores them
(1, 64)
>>> embeddings.takes_text  # DINO-style tiny model: no text tower, so queries are images
False
>>> clip = PerceptualImageEmbeddings.from_spec(EmbedderSpec(backbone="tiny-clip-random"))
>>> clip.takes_text, len(clip.embed_query("a red square")), len(clip.embed_image([str(path)])[0])
(True, 32, 32)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Self

import numpy as np
from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, PrivateAttr

from percep_rag.config import EmbedderSpec
from percep_rag.embedder import AlignedEmbedder
from percep_rag.embedder import Embeddings as EmbedderOutput
from percep_rag.io.images import ImageSource
from percep_rag.retrieval import VectorName

__all__ = ["PerceptualImageEmbeddings", "QueryKind"]

#: What ``embed_documents`` / ``embed_query`` take (see the module docstring).
QueryKind = Literal["auto", "text", "images"]


class PerceptualImageEmbeddings(BaseModel, Embeddings):
    """Human-aligned (or, with ``using="base"``, backbone) unit vectors for images, and on a
    CLIP-family backbone for text.

    Image methods take image sources (paths, ``file://`` or ``data:`` URIs, encoded bytes) and
    raise :class:`~percep_rag.errors.ImageDecodeError` for the first one that cannot be read, so
    text given as an image (e.g. the ``"dummy_text"`` some vector stores embed to learn the
    dimension) is refused rather than embedded as garbage. ``embed_documents`` / ``embed_query``
    take text or images by the ``queries`` rule (module docstring); bad text (empty, not a
    string, longer than the text tower's context) raises :class:`~percep_rag.errors.TextQueryError`.
    The async variants (``aembed_documents``, ``aembed_query``) are LangChain's defaults: the
    sync methods in a worker thread.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    embedder: AlignedEmbedder
    using: VectorName = "aligned"
    queries: QueryKind = "auto"
    text_using: VectorName = "base"

    _takes_text: bool = PrivateAttr(default=False)

    def __init__(self, **data: object) -> None:
        super().__init__(**data)
        # Checked here rather than in a pydantic hook, which would wrap our precise TextQueryError.
        available = self.embedder.text_queries
        self._takes_text = self.queries == "text" or (self.queries == "auto" and available != "none")
        if self._takes_text:
            # Checked now, with the reason, rather than at the first query.
            from percep_rag.text_space import check_text_space

            check_text_space(self.embedder.fingerprint_fields(), self.text_using)

    @classmethod
    def from_spec(
        cls, spec: EmbedderSpec, *, using: VectorName = "aligned", queries: QueryKind = "auto", **fields: object
    ) -> Self:
        """Build the embedder ``spec`` names (weights are found locally, never downloaded)."""
        return cls(embedder=AlignedEmbedder.from_spec(spec), using=using, queries=queries, **fields)

    @property
    def takes_text(self) -> bool:
        """Whether ``embed_documents`` / ``embed_query`` take text (else image sources)."""
        return self._takes_text

    @property
    def query_vector(self) -> VectorName:
        """The stored vector that ``embed_query`` 's vectors are compared with."""
        return self.text_using if self._takes_text else self.using

    @property
    def dim(self) -> int:
        """Length of the vectors this adapter returns."""
        return self.embedder.dim if self.using == "aligned" else self.embedder.base_dim

    def embed_image(self, uris: Sequence[ImageSource]) -> list[list[float]]:
        """One vector per image, in input order."""
        both = self.embed_both(uris)
        return (both.aligned if self.using == "aligned" else both.base).tolist()

    def embed_both(self, uris: Sequence[ImageSource]) -> EmbedderOutput:
        """Base and aligned vectors of every image (what a percep-rag collection stores)."""
        if isinstance(uris, (str, bytes)):
            # A lone string is a Sequence too: it would be embedded character by character.
            raise TypeError("embed_image takes a list of image sources; use embed_query for a single one")
        # Chunks bound memory: each chunk's pixels are decoded before the forward pass.
        step = self.embedder.batch_size
        parts = [self.embedder.embed_both(list(uris[start : start + step])) for start in range(0, len(uris), step)]
        if not parts:
            empty = np.zeros((0, self.embedder.base_dim), np.float32), np.zeros((0, self.embedder.dim), np.float32)
            return EmbedderOutput(*empty)
        return EmbedderOutput(
            base=np.concatenate([part.base for part in parts]), aligned=np.concatenate([part.aligned for part in parts])
        )

    def embed_text(self, texts: Sequence[str]) -> list[list[float]]:
        """One vector per text (in the ``text_using`` space), whatever ``queries`` says."""
        return self.embedder.embed_text(texts, using=self.text_using).tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Text vectors (:meth:`embed_text`) or, when :attr:`takes_text` is false, :meth:`embed_image`."""
        return self.embed_text(texts) if self._takes_text else self.embed_image(texts)

    def embed_query(self, text: str) -> list[float]:
        """The vector of one text (or, when :attr:`takes_text` is false, of one image source)."""
        return self.embed_text([text])[0] if self._takes_text else self.embed_image([text])[0]
