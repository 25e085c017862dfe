"""Human-aligned (HA) LoRA fine-tuning, DreamSim style.

:mod:`~percep_rag.alignment.lora.adapter` is what inference needs (load a trained
adapter, merge it into the backbone); :mod:`~percep_rag.alignment.lora.fit` trains one.

>>> LoraFitConfig().resolved(multi_branch=True).batch_size
16
"""

from percep_rag.alignment.lora.adapter import ADAPTER_DIR, METADATA_FILE, LoraAlignment
from percep_rag.alignment.lora.fit import (
    CHECKPOINT_FILE,
    LoraFitConfig,
    LoraFitReport,
    TripletImages,
    fit_lora,
    hinge_loss,
    path_resolver,
    summarize,
)
from percep_rag.alignment.lora.fit import _Trainer as _Trainer  # benchmarks/alignment_speed.py drives it
from percep_rag.alignment.lora.search import LoraSearch
from percep_rag.alignment.metrics import cosine_distance

__all__ = [
    "ADAPTER_DIR",
    "CHECKPOINT_FILE",
    "METADATA_FILE",
    "LoraAlignment",
    "LoraFitConfig",
    "LoraFitReport",
    "LoraSearch",
    "TripletImages",
    "cosine_distance",
    "fit_lora",
    "hinge_loss",
    "path_resolver",
    "summarize",
]
