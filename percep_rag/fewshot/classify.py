"""Moved to :mod:`percep_rag.vlm.openflamingo.classify`; this old import path re-exports it."""

from percep_rag.vlm.openflamingo.classify import *  # noqa: F403
from percep_rag.vlm.openflamingo.classify import __all__  # noqa: F401
