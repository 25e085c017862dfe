"""Moved to :mod:`percep_rag.vlm.openflamingo.errors`; this old import path re-exports it."""

from percep_rag.vlm.openflamingo.errors import *  # noqa: F403
from percep_rag.vlm.openflamingo.errors import __all__  # noqa: F401
