"""LangChain integration for percep-rag: image-query retrieval and image embeddings.

Install with ``pip install "percep-rag[langchain]"``. See this package's README for a
chain that retrieves few-shot examples for an image and formats them into a VLM prompt.

* :class:`PerceptualImageRetriever`: a ``BaseRetriever`` whose query is an image.
* :class:`PerceptualImageEmbeddings`: an ``Embeddings`` with ``embed_image(uris)``.
"""

from langchain_percep_rag.embeddings import PerceptualImageEmbeddings
from langchain_percep_rag.retriever import PerceptualImageRetriever

__all__ = ["PerceptualImageEmbeddings", "PerceptualImageRetriever"]
