"""Human alignment of image features: the interface, the kinds (gLocal, LoRA) and the agreement metrics.

``base`` states the :class:`Alignment` interface, ``factory`` loads a kind by name,
``glocal`` and ``lora`` are the two methods (each split into what inference needs and
how to fit it), ``metrics`` scores agreement with human votes, and ``workflow`` runs
fitting and evaluation on image files (import it from its module: it needs the embedder).

>>> list_alignments()
['identity', 'glocal', 'lora', 'dreamsim']
>>> two_afc_agreement([0.1], [0.3], [0.0])
1.0
"""

from percep_rag.alignment.base import Alignment, IdentityAlignment
from percep_rag.alignment.factory import ALIGNMENTS, list_alignments, load_alignment, register_alignment
from percep_rag.alignment.glocal import FitReport, GlocalFitConfig, GlocalTransform, TripletFeatures, fit_glocal
from percep_rag.alignment.lora import LoraAlignment, LoraFitConfig, LoraFitReport, fit_lora
from percep_rag.alignment.metrics import (
    MetricInputError,
    cosine_distance,
    odd_one_out_accuracy,
    two_afc_agreement,
    two_afc_from_embeddings,
)

__all__ = [
    "ALIGNMENTS",
    "Alignment",
    "FitReport",
    "GlocalFitConfig",
    "GlocalTransform",
    "IdentityAlignment",
    "LoraAlignment",
    "LoraFitConfig",
    "LoraFitReport",
    "MetricInputError",
    "TripletFeatures",
    "cosine_distance",
    "fit_glocal",
    "fit_lora",
    "list_alignments",
    "load_alignment",
    "odd_one_out_accuracy",
    "register_alignment",
    "two_afc_agreement",
    "two_afc_from_embeddings",
]
