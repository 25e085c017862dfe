"""Alignment kinds by name: the one place that turns an :class:`AlignmentSpec` into an alignment.

Each kind (``identity``, ``glocal``, ``lora``, ``dreamsim``: :data:`~percep_rag.config.AlignmentKind`)
is registered with a loader ``loader(path) -> Alignment``; :func:`load_alignment` looks
the spec's kind up, and an unknown kind names the known ones.

>>> list_alignments()
['identity', 'glocal', 'lora', 'dreamsim']
>>> load_alignment("identity").kind
'identity'
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from percep_rag.alignment.base import Alignment, IdentityAlignment
from percep_rag.alignment.glocal.transform import GlocalTransform
from percep_rag.alignment.lora.adapter import LoraAlignment
from percep_rag.alignment.lora.dreamsim import DreamsimAdapterAlignment
from percep_rag.config import AlignmentSpec
from percep_rag.registry import Registry

#: ``loader(path)``: the alignment stored at ``path`` (``None`` for kinds that take no path).
AlignmentLoader = Callable[[Path | None], Alignment]

#: Alignment kind -> loader (a read-only mapping; add one with :func:`register_alignment`).
ALIGNMENTS: Registry[AlignmentLoader] = Registry("alignment kind")


def register_alignment(kind: str, loader: AlignmentLoader) -> None:
    """Register ``loader`` for ``kind``; a kind registered twice is a :class:`~percep_rag.errors.ConfigError`.

    :class:`AlignmentSpec` accepts the kinds of :data:`~percep_rag.config.AlignmentKind`,
    so a new kind is also added there.
    """
    ALIGNMENTS.register(kind, loader)


def list_alignments() -> list[str]:
    """The registered alignment kinds, in registration order."""
    return ALIGNMENTS.names()


def load_alignment(spec: AlignmentSpec | str | None) -> Alignment:
    """Load the alignment a spec (or its text, ``identity``, ``glocal:<file>``, ``lora:<dir>``) names.

    >>> load_alignment(None).digest
    '-'
    """
    spec = AlignmentSpec.parse(spec)
    return ALIGNMENTS.get(spec.kind)(spec.path)


def _identity(path: Path | None) -> Alignment:
    return IdentityAlignment()


register_alignment("identity", _identity)
register_alignment("glocal", GlocalTransform.load)
register_alignment("lora", LoraAlignment.load)
register_alignment("dreamsim", DreamsimAdapterAlignment.load)
