"""Exceptions of the VLM backends; all derive from :class:`~percep_rag.errors.PercepRagError`."""

from __future__ import annotations

from percep_rag.errors import ConfigError, WeightsNotFoundError


class VlmNotFoundError(WeightsNotFoundError):
    """A VLM's files are not on this machine; the message says where to put them."""


class PromptError(ConfigError):
    """A prompt, template, label or class name cannot be used as given (every backend raises it)."""


class VlmSpecError(ConfigError):
    """A ``--vlm`` spec, or an option given with it, cannot be used."""
