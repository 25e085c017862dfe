"""``load_alignment(spec)``: the one place that turns an :class:`AlignmentSpec` into an alignment."""

from __future__ import annotations

from percep_rag.alignment.base import Alignment, IdentityAlignment
from percep_rag.config import AlignmentSpec


def load_alignment(spec: AlignmentSpec | str | None) -> Alignment:
    """Load the alignment a spec names.

    >>> load_alignment("identity").kind
    'identity'
    """
    spec = AlignmentSpec.parse(spec)
    if spec.kind == "glocal":
        from percep_rag.alignment.glocal import GlocalTransform

        return GlocalTransform.load(spec.path)
    if spec.kind == "lora":
        from percep_rag.alignment.lora import LoraAlignment

        return LoraAlignment.load(spec.path)
    return IdentityAlignment()
