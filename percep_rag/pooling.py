"""Pooling token features into one vector per image, and normalising vectors.

>>> import torch
>>> from percep_rag.backbones import TokenFeatures
>>> tokens = TokenFeatures(cls=torch.ones(2, 4), patches=torch.zeros(2, 9, 4))
>>> pool(tokens, "cls+patchmean").shape
torch.Size([2, 8])
"""

from __future__ import annotations

import torch

from percep_rag.backbones.base import TokenFeatures
from percep_rag.config import NORMALIZATIONS, POOLINGS, Normalization, Pooling
from percep_rag.errors import ConfigError


def pool(tokens: TokenFeatures, pooling: Pooling) -> torch.Tensor:
    """``cls``: the CLS feature; ``cls+patchmean``: ``[CLS, mean of patch tokens]`` (the
    patch-level objective of DreamSim's ``cls_patch`` models)."""
    if pooling == "cls":
        return tokens.cls
    if pooling == "cls+patchmean":
        if tokens.patches.shape[1] == 0:
            raise ConfigError("cls+patchmean pooling needs patch tokens, the backbone returned none")
        return torch.cat([tokens.cls, tokens.patches.mean(dim=1)], dim=-1)
    raise ConfigError(f"unknown pooling {pooling!r}; use one of {', '.join(POOLINGS)}")


def pooled_dim(token_dim: int, pooling: Pooling) -> int:
    """Dimension of the pooled vector for a backbone whose tokens have ``token_dim``."""
    return token_dim * (2 if pooling == "cls+patchmean" else 1)


def normalize(vectors: torch.Tensor, normalization: Normalization) -> torch.Tensor:
    """Unit-length rows; ``center+l2`` first subtracts each row's own mean (DreamSim's
    ``normalize_embeds``, which makes cosine similarity a Pearson correlation).

    >>> normalize(torch.tensor([[3.0, 4.0]]), "l2")
    tensor([[0.6000, 0.8000]])
    """
    if normalization == "center+l2":
        vectors = vectors - vectors.mean(dim=-1, keepdim=True)
    elif normalization != "l2":
        raise ConfigError(f"unknown normalization {normalization!r}; use one of {', '.join(NORMALIZATIONS)}")
    return torch.nn.functional.normalize(vectors, dim=-1)
