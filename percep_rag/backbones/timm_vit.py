"""DINO and DINOv2 (any timm ``VisionTransformer``) as backbone branches."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from torch import nn

from percep_rag.backbones._seed import build_seeded
from percep_rag.backbones.base import Branch, TokenFeatures
from percep_rag.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

TokenSource = Literal["norm", "prenorm"]


class TimmVitBranch(Branch):
    """A timm ViT whose tokens are read after the final norm (``"norm"``, what
    ``forward_features`` returns and what gLocal used) or before it (``"prenorm"``,
    the last block's output, what DreamSim uses for DINO).

    >>> import timm
    >>> vit = timm.create_model("vit_base_patch16_224", pretrained=False, img_size=32,
    ...     patch_size=8, embed_dim=32, depth=1, num_heads=2, num_classes=0)
    >>> TimmVitBranch(vit)(torch.rand(1, 3, 32, 32)).cls.shape
    torch.Size([1, 32])
    """

    def __init__(
        self,
        model: nn.Module,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        token_source: TokenSource = "norm",
    ):
        super().__init__(tuple(mean), tuple(std))
        from timm.models.vision_transformer import VisionTransformer

        if not isinstance(model, VisionTransformer):
            raise ConfigError(f"expected a timm VisionTransformer, got {type(model).__name__}")
        self.model = model
        self.token_source = token_source
        self.dim = model.embed_dim

    def lora_targets(self) -> list[str]:
        return [
            name for name, module in self.named_modules() if name.endswith("attn.qkv") and isinstance(module, nn.Linear)
        ]

    def tokens(self, normalized: torch.Tensor) -> TokenFeatures:
        model = self.model
        hidden = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(normalized))))
        hidden = model.blocks(hidden)
        if self.token_source == "norm":
            hidden = model.norm(hidden)
        return TokenFeatures(cls=hidden[:, 0], patches=hidden[:, model.num_prefix_tokens :])


def load_timm_branch(
    model_name: str,
    checkpoint: Path | None,
    *,
    image_size: int,
    token_source: TokenSource = "norm",
    seed: int = 0,
) -> TimmVitBranch:
    """Create ``model_name`` with timm, loading ``checkpoint`` (a local file) when given.

    timm's own checkpoint filter runs on the file, so e.g. DINOv2's 518-px position
    embeddings are resampled to ``image_size``.
    """
    import timm

    def build() -> nn.Module:
        kwargs: dict = dict(num_classes=0, img_size=image_size)
        if checkpoint is None:
            return timm.create_model(model_name, pretrained=False, **kwargs)
        return timm.create_model(
            model_name, pretrained=True, pretrained_cfg_overlay=dict(file=str(checkpoint)), **kwargs
        )

    return TimmVitBranch(build_seeded(build, seed), token_source=token_source)


def tiny_timm_branch(*, seed: int, token_source: TokenSource = "norm", image_size: int = 32) -> TimmVitBranch:
    """A two-layer timm ViT with random weights, for tests and demos."""
    import timm

    def build() -> nn.Module:
        return timm.create_model(
            "vit_base_patch16_224",
            pretrained=False,
            img_size=image_size,
            patch_size=8,
            embed_dim=64,
            depth=2,
            num_heads=2,
            mlp_ratio=2.0,
            num_classes=0,
        )

    return TimmVitBranch(build_seeded(build, seed), token_source=token_source)
