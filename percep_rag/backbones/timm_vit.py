"""DINO and DINOv2 (any timm ``VisionTransformer``) as backbone branches.

Tokens come from timm's public ``forward_intermediates``, which returns the last block's
output either through the final norm or before it.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import torch
from torch import nn

from percep_rag.backbones._seed import build_seeded
from percep_rag.backbones.base import Branch, NetworkCfg, TokenFeatures
from percep_rag.backbones.weights import HubFile
from percep_rag.config import TOKEN_SOURCES
from percep_rag.config import TokenSource as TokenSource
from percep_rag.errors import ConfigError

# ImageNet's pixel statistics: the tiny ViT's and the default for ViTs built by hand.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: The checkpoint file names timm publishes on the Hugging Face Hub.
TIMM_FILES = ("model.safetensors", "pytorch_model.bin")


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
        if not model.has_class_token:
            raise ConfigError("the timm ViT has no class token to read the CLS feature from")
        if token_source not in TOKEN_SOURCES:
            raise ConfigError(f"token_source must be one of {TOKEN_SOURCES}, got {token_source!r}")
        self.model = model
        self.token_source = token_source
        self.dim = model.embed_dim

    def lora_targets(self) -> list[str]:
        return [
            name for name, module in self.named_modules() if name.endswith("attn.qkv") and isinstance(module, nn.Linear)
        ]

    def tokens(self, normalized: torch.Tensor) -> TokenFeatures:
        ((patches, prefix),) = self.model.forward_intermediates(
            normalized,
            indices=1,  # the last block
            norm=self.token_source == "norm",
            output_fmt="NLC",
            intermediates_only=True,
            return_prefix_tokens=True,
        )
        return TokenFeatures(cls=prefix[:, 0], patches=patches)


def pretrained_cfg(network: NetworkCfg):
    """timm's ``PretrainedCfg`` for ``network.model`` (hub repo, mean, std...).

    >>> pretrained_cfg(NetworkCfg("timm", "vit_base_patch16_224.dino")).hf_hub_id
    'timm/vit_base_patch16_224.dino'
    """
    import timm

    cfg = timm.models.get_pretrained_cfg(network.model)
    if cfg is None:
        raise ConfigError(f"timm has no pretrained config {network.model!r}")
    return cfg


def hub_file(network: NetworkCfg) -> HubFile:
    """Where timm publishes the weights of ``network`` on the Hugging Face Hub."""
    return HubFile(pretrained_cfg(network).hf_hub_id or f"timm/{network.model}", TIMM_FILES)


def pixel_stats(network: NetworkCfg) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean and std ``network`` was trained with, from timm's pretrained config."""
    cfg = pretrained_cfg(network)
    return tuple(cfg.mean), tuple(cfg.std)


def build_branch(network: NetworkCfg, checkpoint: Path | None, *, seed: int, image_size: int) -> TimmVitBranch:
    """The branch ``network`` (with its mean/std filled in) describes, for ``image_size`` pixels."""
    # Random weights build the bare architecture, so timm does not look for the tag's weights.
    model_name = network.model if checkpoint else network.model.partition(".")[0]
    return load_timm_branch(
        model_name,
        checkpoint,
        image_size=image_size,
        token_source=network.token_source,
        seed=seed,
        mean=network.mean,
        std=network.std,
        **network.model_args,
    )


def load_timm_branch(
    model_name: str,
    checkpoint: Path | None,
    *,
    image_size: int,
    token_source: TokenSource = "norm",
    seed: int = 0,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    **model_args,
) -> TimmVitBranch:
    """Create ``model_name`` with timm, loading ``checkpoint`` (a local file) when given.

    timm's own checkpoint filter runs on the file, so e.g. DINOv2's 518-px position
    embeddings are resampled to ``image_size``. ``model_args`` go to ``timm.create_model``.
    """
    import timm

    def build() -> nn.Module:
        kwargs: dict = dict(num_classes=0, img_size=image_size, **model_args)
        if checkpoint is None:
            return timm.create_model(model_name, pretrained=False, **kwargs)
        return timm.create_model(
            model_name, pretrained=True, pretrained_cfg_overlay=dict(file=str(checkpoint)), **kwargs
        )

    return TimmVitBranch(build_seeded(build, seed), mean=mean, std=std, token_source=token_source)


#: The tiny ViT's architecture on top of ``vit_base_patch16_224`` (the catalog's ``tiny-vit-random``).
TINY_VIT_ARGS = MappingProxyType(dict(patch_size=8, embed_dim=64, depth=2, num_heads=2, mlp_ratio=2.0))


def tiny_timm_branch(*, seed: int, token_source: TokenSource = "norm", image_size: int = 32) -> TimmVitBranch:
    """A two-layer timm ViT with random weights, for tests and demos."""
    return load_timm_branch(
        "vit_base_patch16_224", None, image_size=image_size, token_source=token_source, seed=seed, **TINY_VIT_ARGS
    )
