"""Moved to :mod:`percep_rag.vlm.openflamingo.tiny`; this old import path re-exports it."""

from percep_rag.vlm.openflamingo.tiny import *  # noqa: F403
from percep_rag.vlm.openflamingo.tiny import __all__  # noqa: F401
