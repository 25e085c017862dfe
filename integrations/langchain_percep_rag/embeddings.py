"""``PerceptualImageEmbeddings``: an :class:`AlignedEmbedder` behind LangChain's ``Embeddings``.

LangChain's ``Embeddings`` interface is about text; image embedders follow the community
convention of a duck-typed ``embed_image(uris)`` (``OpenCLIPEmbeddings``), which
``Chroma.add_images`` and ``similarity_search_by_image`` look for. This adapter is image
only: ``embed_documents`` and ``embed_query`` take image sources too, so any LangChain code
that embeds "documents" and "queries" works with images.

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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Self

import numpy as np
from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict

from percep_rag.config import EmbedderSpec
from percep_rag.embedder import AlignedEmbedder
from percep_rag.embedder import Embeddings as EmbedderOutput
from percep_rag.io.images import ImageSource
from percep_rag.retrieval import VectorName

__all__ = ["PerceptualImageEmbeddings"]


class PerceptualImageEmbeddings(BaseModel, Embeddings):
    """Human-aligned (or, with ``using="base"``, backbone) unit vectors for images.

    Every method takes image sources (paths, ``file://`` or ``data:`` URIs, encoded bytes)
    and raises :class:`~percep_rag.errors.ImageDecodeError` for the first one that cannot
    be read, so text (e.g. the ``"dummy_text"`` some vector stores embed to learn the
    dimension) is refused rather than embedded as garbage. The async variants
    (``aembed_documents``, ``aembed_query``) are LangChain's defaults: the sync methods in
    a worker thread.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    embedder: AlignedEmbedder
    using: VectorName = "aligned"

    @classmethod
    def from_spec(cls, spec: EmbedderSpec, *, using: VectorName = "aligned") -> Self:
        """Build the embedder ``spec`` names (weights are found locally, never downloaded)."""
        return cls(embedder=AlignedEmbedder.from_spec(spec), using=using)

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

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """:meth:`embed_image` under LangChain's name: ``texts`` are image sources."""
        return self.embed_image(texts)

    def embed_query(self, text: str) -> list[float]:
        """The vector of one image source (equal to ``embed_image([text])[0]``)."""
        return self.embed_image([text])[0]
