"""Exceptions raised by percep-rag.

Library code raises these; only the CLI turns them into messages and exit codes.
Every class derives from :class:`PercepRagError`, so ``except PercepRagError`` catches
anything the library raises on purpose.
"""

from __future__ import annotations


class PercepRagError(Exception):
    """Base class of every error percep-rag raises on purpose."""


class ConfigError(PercepRagError, ValueError):
    """A configuration value is invalid or inconsistent."""


class UnknownNameError(ConfigError, KeyError):
    """A name is not in a registry (backbones, alignment kinds, store kinds, VLM releases)."""

    def __init__(self, kind: str, name: str, known: list[str]):
        self.kind = kind
        self.name = name
        self.known = known
        super().__init__(f"unknown {kind} {name!r}; known {kind}s: {', '.join(known) or '(none)'}")

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.args[0]


class UnknownBackboneError(UnknownNameError):
    """A backbone name is not in the registry."""

    def __init__(self, name: str, known: list[str]):
        super().__init__("backbone", name, known)


class WeightsNotFoundError(PercepRagError, FileNotFoundError):
    """Pretrained weights are not on this machine; the message says where to put them."""


class ImageDecodeError(PercepRagError, ValueError):
    """An image could not be decoded; ``source`` names it and ``reason`` says why."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


class DimensionMismatchError(PercepRagError, ValueError):
    """Vectors or features do not have the dimension that was expected."""


class AlignmentError(PercepRagError):
    """An alignment could not be fitted, loaded or applied."""


class FingerprintMismatchError(PercepRagError):
    """Data written by one embedder is used with another."""


class TextQueryError(ConfigError):
    """A text query cannot be answered: the text is not usable (empty, not a string, longer than
    the text tower's context) or the backbone, pooling or alignment gives text no meaning."""


class CalibrationError(PercepRagError, ValueError):
    """Labelled pairs admit no near-copy threshold: no pair of the same image scores above every
    pair of different images in that vector space."""
