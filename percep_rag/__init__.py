"""percep-rag: human-aligned image vectors in Qdrant, retrieved as few-shot examples.

The whole data path is one import away: images -> :class:`AlignedEmbedder` -> a store
(:func:`open_store`, :func:`index_records`) -> :class:`Retriever` / :class:`ExampleRetriever`;
alignments are fitted with :func:`fit_glocal` / :func:`fit_lora` on :func:`read_triplets`.

>>> from percep_rag import AlignedEmbedder, EmbedderSpec
>>> embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-ensemble-random"))
>>> embedder.dim, embedder.normalization
(128, 'center+l2')
"""

from percep_rag._version import __version__
from percep_rag.alignment import (
    Alignment,
    GlocalTransform,
    IdentityAlignment,
    LoraAlignment,
    fit_glocal,
    fit_lora,
    list_alignments,
    load_alignment,
)
from percep_rag.backbones import Backbone, TokenFeatures, create_backbone, list_backbones
from percep_rag.config import AlignmentSpec, EmbedderSpec, Fingerprint, PreprocessSpec
from percep_rag.datasets.records import ImageRecord, ManifestError, load_records
from percep_rag.datasets.triplets import TripletError, TripletSet, read_triplets
from percep_rag.embedder import AlignedEmbedder, EmbeddingResult, Embeddings
from percep_rag.errors import (
    AlignmentError,
    ConfigError,
    DimensionMismatchError,
    FingerprintMismatchError,
    ImageDecodeError,
    PercepRagError,
    TextQueryError,
    UnknownBackboneError,
    UnknownNameError,
    WeightsNotFoundError,
)
from percep_rag.failures import Failure
from percep_rag.indexing import IndexReport, index_records
from percep_rag.perceptual import PerceptualDistance
from percep_rag.retrieval import Example, ExampleRetriever, Retriever
from percep_rag.store import StoreError, StoreSpec, VectorStore, open_store
from percep_rag.sync import SyncReport, sync_records

__all__ = [
    "AlignedEmbedder",
    "Alignment",
    "AlignmentError",
    "AlignmentSpec",
    "Backbone",
    "ConfigError",
    "DimensionMismatchError",
    "EmbedderSpec",
    "EmbeddingResult",
    "Embeddings",
    "Example",
    "ExampleRetriever",
    "Failure",
    "Fingerprint",
    "FingerprintMismatchError",
    "GlocalTransform",
    "IdentityAlignment",
    "ImageDecodeError",
    "ImageRecord",
    "IndexReport",
    "LoraAlignment",
    "ManifestError",
    "PercepRagError",
    "PerceptualDistance",
    "PreprocessSpec",
    "Retriever",
    "StoreError",
    "StoreSpec",
    "SyncReport",
    "TextQueryError",
    "TokenFeatures",
    "TripletError",
    "TripletSet",
    "UnknownBackboneError",
    "UnknownNameError",
    "VectorStore",
    "WeightsNotFoundError",
    "__version__",
    "create_backbone",
    "fit_glocal",
    "fit_lora",
    "index_records",
    "list_alignments",
    "list_backbones",
    "load_alignment",
    "load_records",
    "open_store",
    "read_triplets",
    "sync_records",
]
