"""The error evaluation code raises on inconsistent data."""

from __future__ import annotations

from percep_rag.errors import PercepRagError


class EvaluationError(PercepRagError, ValueError):
    """Evaluation data is inconsistent (a role or instance value that cannot be read,
    arrays of different lengths); the message names the record or the argument."""
