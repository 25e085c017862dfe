"""percep-rag: human-aligned image vectors in Qdrant, retrieved as few-shot examples.

>>> from percep_rag import AlignedEmbedder, EmbedderSpec
>>> embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-ensemble-random"))
>>> embedder.dim, embedder.normalization
(128, 'center+l2')
"""

from percep_rag._version import __version__
from percep_rag.alignment.base import Alignment, IdentityAlignment
from percep_rag.alignment.factory import load_alignment
from percep_rag.backbones import Backbone, TokenFeatures, create_backbone, list_backbones
from percep_rag.config import AlignmentSpec, EmbedderSpec, Fingerprint, PreprocessSpec
from percep_rag.embedder import AlignedEmbedder, EmbeddingResult, Embeddings
from percep_rag.errors import (
    AlignmentError,
    ConfigError,
    DimensionMismatchError,
    FingerprintMismatchError,
    ImageDecodeError,
    PercepRagError,
    UnknownBackboneError,
    WeightsNotFoundError,
)

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
    "Fingerprint",
    "FingerprintMismatchError",
    "IdentityAlignment",
    "ImageDecodeError",
    "PercepRagError",
    "PreprocessSpec",
    "TokenFeatures",
    "UnknownBackboneError",
    "WeightsNotFoundError",
    "__version__",
    "create_backbone",
    "list_backbones",
    "load_alignment",
]
