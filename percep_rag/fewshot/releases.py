"""Moved to :mod:`percep_rag.vlm.openflamingo.releases`; this old import path re-exports it."""

from percep_rag.vlm.openflamingo.releases import *  # noqa: F403
from percep_rag.vlm.openflamingo.releases import __all__  # noqa: F401
