"""gLocal: an affine map of pooled features towards human similarity judgments.

:mod:`~percep_rag.alignment.glocal.transform` applies, reads and writes the map (what
inference needs); :mod:`~percep_rag.alignment.glocal.fit` fits one on triplets, with
:mod:`~.config` (hyper-parameters, report), :mod:`~.search` (the validation grid that
chooses them), :mod:`~.features` (fitting data) and :mod:`~.losses` (the objective).

>>> import torch
>>> GlocalTransform(torch.eye(3), mean=1.0, std=2.0).transform(torch.tensor([[3.0, 1.0, 5.0]]))
tensor([[1., 0., 2.]])
"""

from percep_rag.alignment.glocal.config import FitReport, GlocalFitConfig
from percep_rag.alignment.glocal.features import TripletFeatures
from percep_rag.alignment.glocal.fit import fit_glocal
from percep_rag.alignment.glocal.search import GlocalSearch
from percep_rag.alignment.glocal.transform import (
    KNOWN_DEFECTS,
    GlocalDefectWarning,
    GlocalDimensionError,
    GlocalTransform,
    file_sha256,
    warn_known_defects,
)

__all__ = [
    "KNOWN_DEFECTS",
    "FitReport",
    "GlocalDefectWarning",
    "GlocalDimensionError",
    "GlocalFitConfig",
    "GlocalSearch",
    "GlocalTransform",
    "TripletFeatures",
    "file_sha256",
    "fit_glocal",
    "warn_known_defects",
]
