"""Moved to :mod:`percep_rag.study.run`; this path keeps working."""

from percep_rag.study.run import LOWER_IS_BETTER as LOWER_IS_BETTER
from percep_rag.study.run import METHODS as METHODS
from percep_rag.study.run import SeedResult as SeedResult
from percep_rag.study.run import StudyConfig as StudyConfig
from percep_rag.study.run import StudyResult as StudyResult
from percep_rag.study.run import downstream_metrics as downstream_metrics
from percep_rag.study.run import run_study as run_study
from percep_rag.study.run import run_study_seed as run_study_seed

__all__ = [
    "LOWER_IS_BETTER",
    "METHODS",
    "SeedResult",
    "StudyConfig",
    "StudyResult",
    "downstream_metrics",
    "run_study",
    "run_study_seed",
]
