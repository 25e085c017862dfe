"""Exceptions of the few-shot stage; all derive from :class:`~percep_rag.errors.PercepRagError`."""

from __future__ import annotations

from percep_rag.errors import PercepRagError
from percep_rag.vlm.errors import PromptError

__all__ = ["CheckpointMismatchError", "MediaStateError", "PromptError"]


class CheckpointMismatchError(PercepRagError, KeyError):
    """An OpenFlamingo checkpoint does not fit the model: keys are missing or unexpected.

    ``missing`` and ``unexpected`` hold the offending keys, so callers can inspect them.
    """

    def __init__(self, missing: list[str], unexpected: list[str], *, limit: int = 20):
        self.missing = missing
        self.unexpected = unexpected
        parts = []
        if missing:
            parts.append(
                f"{len(missing)} perceiver/cross-attention keys missing from the checkpoint: {_head(missing, limit)}"
            )
        if unexpected:
            parts.append(f"{len(unexpected)} checkpoint keys the model does not have: {_head(unexpected, limit)}")
        hint = (
            "the checkpoint and the model disagree (wrong release for this LM, wrong "
            "cross_attn_every_n_layers, or a renamed decoder-layers attribute); loading it with "
            "strict=False would silently leave the cross-attention at its zero-gated init"
        )
        super().__init__("; ".join(parts) + f". {hint}")

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return self.args[0]


class MediaStateError(PercepRagError, RuntimeError):
    """The Flamingo model is in the wrong media-caching state for the requested call."""


def _head(keys: list[str], limit: int) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... (+{len(keys) - limit} more)" if len(keys) > limit else "")
