"""The alignment interface every method implements.

An alignment may change two things: the backbone (LoRA fine-tuning gives a new one) and
the pooled features (gLocal applies ``x -> W x + b``). The embedder asks for both, so
one interface serves every method::

    >>> import torch
    >>> alignment = IdentityAlignment()
    >>> alignment.transform(torch.ones(2, 4)).shape
    torch.Size([2, 4])
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch

if TYPE_CHECKING:
    from percep_rag.backbones.base import Backbone


@runtime_checkable
class Alignment(Protocol):
    """Maps a backbone's features into a human-aligned space."""

    kind: str

    @property
    def digest(self) -> str:
        """A short content hash that changes whenever the alignment's numbers change."""

    def adapt_backbone(self, backbone: Backbone) -> Backbone | None:
        """Return the aligned backbone, or ``None`` when the base backbone serves as is."""

    def transform(self, pooled: torch.Tensor) -> torch.Tensor:
        """Map pooled features ``(B, D)`` to aligned features ``(B, D')``, on their device."""

    def check_compatible(self, backbone: Backbone, pooled_dim: int) -> None:
        """Raise :class:`~percep_rag.errors.AlignmentError` if this alignment does not fit."""


class IdentityAlignment:
    """No alignment: the aligned vector equals the base vector."""

    kind = "identity"
    digest = "-"

    def adapt_backbone(self, backbone: Backbone) -> Backbone | None:
        return None

    def transform(self, pooled: torch.Tensor) -> torch.Tensor:
        return pooled

    def check_compatible(self, backbone: Backbone, pooled_dim: int) -> None:
        return None
