"""Moved to :mod:`percep_rag.vlm.openflamingo.model`; this old import path re-exports it."""

from percep_rag.vlm.openflamingo.model import *  # noqa: F403
from percep_rag.vlm.openflamingo.model import __all__  # noqa: F401
