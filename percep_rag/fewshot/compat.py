"""Moved to :mod:`percep_rag.vlm.openflamingo.compat`; this old import path re-exports it."""

from percep_rag.vlm.openflamingo.compat import *  # noqa: F403
from percep_rag.vlm.openflamingo.compat import __all__  # noqa: F401
