"""CLIP and OpenCLIP vision towers through ``open_clip``.

The branch returns CLIP's image embedding as the CLS feature (``ln_post(CLS) @ proj``,
exactly ``encode_image``) and the patch tokens through the same ``ln_post`` and
projection, so CLS and patches live in one space.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from percep_rag.backbones._seed import build_seeded
from percep_rag.backbones.base import Branch, TokenFeatures
from percep_rag.errors import ConfigError

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class OpenClipBranch(Branch):
    """An ``open_clip`` ``VisionTransformer`` as a backbone branch.

    >>> import open_clip
    >>> visual = open_clip.model._build_vision_tower(16, dict(image_size=32, patch_size=8,
    ...     width=32, layers=1, head_width=16))
    >>> OpenClipBranch(visual)(torch.rand(1, 3, 32, 32)).patches.shape
    torch.Size([1, 16, 16])
    """

    def __init__(self, visual: nn.Module, mean=OPENAI_MEAN, std=OPENAI_STD):
        super().__init__(tuple(mean), tuple(std))
        from open_clip.transformer import VisionTransformer

        if not isinstance(visual, VisionTransformer):
            raise ConfigError(f"only open_clip VisionTransformer towers expose tokens, got {type(visual).__name__}")
        if visual.attn_pool is not None or visual.final_ln_after_pool or visual.pool_type != "tok":
            raise ConfigError("only CLS-token pooled open_clip ViTs are supported")
        self.visual = visual
        self.dim = visual.output_dim

    def lora_targets(self) -> list[str]:
        # open_clip blocks use nn.MultiheadAttention (fused in_proj), which peft adapts as a whole.
        return [name for name, module in self.named_modules() if isinstance(module, nn.MultiheadAttention)]

    def tokens(self, normalized: torch.Tensor) -> TokenFeatures:
        visual = self.visual
        hidden = visual.transformer(visual._embeds(normalized))
        pooled, patches = visual._pool(hidden)
        if visual.proj is not None:
            pooled = pooled @ visual.proj
            patches = patches @ visual.proj
        return TokenFeatures(cls=pooled, patches=patches)


def load_openclip_branch(
    model_name: str, checkpoint: Path | None, *, seed: int = 0, mean=OPENAI_MEAN, std=OPENAI_STD
) -> OpenClipBranch:
    """Build an open_clip model (``checkpoint=None``: random weights) and keep its vision tower.

    >>> load_openclip_branch("ViT-B-32", None).dim   # random weights
    512
    """
    import open_clip

    def build() -> nn.Module:
        return open_clip.create_model(model_name, pretrained=str(checkpoint) if checkpoint else None)

    model = build_seeded(build, seed)
    return OpenClipBranch(model.visual, mean=mean, std=std)


def tiny_openclip_branch(*, quick_gelu: bool, seed: int, image_size: int = 32) -> OpenClipBranch:
    """A two-layer open_clip ViT with random weights, for tests and demos."""
    from open_clip.model import _build_vision_tower

    vision_cfg = dict(image_size=image_size, patch_size=8, width=64, layers=2, head_width=32, mlp_ratio=2.0)
    visual = build_seeded(lambda: _build_vision_tower(32, vision_cfg, quick_gelu=quick_gelu), seed)
    return OpenClipBranch(visual)
