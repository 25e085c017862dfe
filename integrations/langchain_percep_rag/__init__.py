"""LangChain integration for percep-rag: image-query retrieval, a vector store, image embeddings
and an example selector for few-shot prompts.

Install with ``pip install "percep-rag[langchain]"``. See this package's README for the
three entry points and a chain that puts retrieved few-shot examples into a VLM prompt.

* :class:`PerceptualImageVectorStore`: a ``VectorStore`` on a percep-rag store, for any ``Embeddings``.
* :class:`PerceptualImageRetriever`: a ``BaseRetriever`` whose query is an image.
* :class:`PerceptualExampleSelector`: a ``BaseExampleSelector`` of labelled image examples.
* :class:`PerceptualImageEmbeddings`: an ``Embeddings`` with ``embed_image(uris)``.
* :func:`image_data_uri`: an image as a ``data:`` URI, for image content blocks.
"""

from langchain_percep_rag.embeddings import PerceptualImageEmbeddings
from langchain_percep_rag.example_selector import PerceptualExampleSelector, image_data_uri
from langchain_percep_rag.retriever import PerceptualImageRetriever
from langchain_percep_rag.vectorstore import PerceptualImageVectorStore

__all__ = [
    "PerceptualExampleSelector",
    "PerceptualImageEmbeddings",
    "PerceptualImageRetriever",
    "PerceptualImageVectorStore",
    "image_data_uri",
]
