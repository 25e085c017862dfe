"""What every backbone is: image tensor in, CLS and patch tokens out.

A :class:`Backbone` is one or more :class:`Branch` es (one for CLIP or DINO, three for
the DreamSim ensemble) sharing one geometric preprocessing. Each branch normalises
pixels with its own mean/std on the device, so the loader only resizes and crops.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from percep_rag.config import Normalization, PreprocessSpec, TokenSource
from percep_rag.errors import ConfigError, TextQueryError

#: The libraries a :class:`NetworkCfg` can name.
Library = Literal["open_clip", "timm"]


@dataclass(frozen=True)
class NetworkCfg:
    """One upstream network as data (the idea of timm's ``PretrainedCfg``): what builds it and its pixel statistics.

    ``model`` is an open_clip model name (with the pretrained ``tag``) or a timm model name
    (``architecture.tag``). ``mean``/``std`` left at ``None`` are read from the library's own
    pretrained config, as is the Hugging Face repo of the weights. ``token_source`` says where
    a timm ViT's tokens are read; ``model_args`` go to the library's ``create_model``.

    >>> NetworkCfg("open_clip", "ViT-B-16", "laion400m_e31").token_source
    'norm'
    """

    library: Library
    model: str
    tag: str = ""
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    token_source: TokenSource = "norm"
    model_args: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class TokenFeatures:
    """A backbone's output for a batch: ``cls`` is ``(B, D)``, ``patches`` is ``(B, N, D)``."""

    cls: torch.Tensor
    patches: torch.Tensor

    @staticmethod
    def concat(parts: list[TokenFeatures]) -> TokenFeatures:
        """Concatenate branch outputs along the feature dimension (ensembles)."""
        if len(parts) == 1:
            return parts[0]
        grids = {part.patches.shape[1] for part in parts}
        if len(grids) != 1:
            raise ConfigError(f"ensemble branches have different patch counts {sorted(grids)}")
        return TokenFeatures(
            cls=torch.cat([part.cls for part in parts], dim=-1),
            patches=torch.cat([part.patches for part in parts], dim=-1),
        )


class Branch(nn.Module):
    """One network of a backbone. Subclasses set ``dim`` and implement ``tokens``.

    ``forward`` takes pixels in [0, 1] and applies the branch's mean/std first.
    """

    dim: int

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]):
        super().__init__()
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, pixels: torch.Tensor) -> TokenFeatures:
        normalized = (pixels - self.pixel_mean.to(pixels.dtype)) / self.pixel_std.to(pixels.dtype)
        # A bf16 copy (percep_rag.precision.compute_copy) takes bf16 input: normalise in fp32 first.
        return self.tokens(normalized.to(self.compute_dtype))

    @property
    def compute_dtype(self) -> torch.dtype:
        """The dtype of the branch's weights, which its input is cast to."""
        return next(self.parameters()).dtype

    def tokens(self, normalized: torch.Tensor) -> TokenFeatures:
        raise NotImplementedError

    def lora_targets(self) -> list[str]:
        """Names (relative to the branch) of the fused attention projections LoRA adapts."""
        raise NotImplementedError

    #: Whether the network came with a text tower in the same embedding space (CLIP family).
    has_text_tower: bool = False

    def text_tower(self, backbone: str) -> nn.Module:
        """The network's text tower (a :class:`~percep_rag.backbones.text.TextTower`), built now."""
        raise TextQueryError(no_text_tower_message(backbone))


class Backbone(nn.Module):
    """Branches that share a preprocessing and whose tokens are concatenated.

    >>> from percep_rag.backbones import create_backbone
    >>> backbone = create_backbone("tiny-vit-random")
    >>> out = backbone(torch.rand(2, 3, 32, 32))
    >>> out.cls.shape, out.patches.shape
    (torch.Size([2, 64]), torch.Size([2, 16, 64]))
    """

    def __init__(
        self,
        name: str,
        branches: list[Branch],
        preprocess: PreprocessSpec,
        *,
        random_weights: bool,
        default_normalization: Normalization = "l2",
        weights_source: str = "",
    ):
        super().__init__()
        if not branches:
            raise ConfigError("a backbone needs at least one branch")
        self.name = name
        self.branches = nn.ModuleList(branches)
        self.preprocess = preprocess
        self.random_weights = random_weights
        self.default_normalization = default_normalization
        self.weights_source = weights_source

    @property
    def dim(self) -> int:
        """Dimension of the CLS (and of each patch) token."""
        return sum(branch.dim for branch in self.branches)

    def forward(self, pixels: torch.Tensor) -> TokenFeatures:
        return TokenFeatures.concat([branch(pixels) for branch in self.branches])

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def lora_target_modules(self) -> list[str]:
        """Full module names of every branch's fused attention projections (for peft).

        >>> from percep_rag.backbones import create_backbone
        >>> create_backbone("tiny-vit-random").lora_target_modules()
        ['branches.0.model.blocks.0.attn.qkv', 'branches.0.model.blocks.1.attn.qkv']
        """
        return [f"branches.{i}.{name}" for i, branch in enumerate(self.branches) for name in branch.lora_targets()]

    @property
    def has_text_tower(self) -> bool:
        """Whether text can be embedded beside the images: one CLIP-family network (an ensemble's
        concatenated vector is no text tower's space)."""
        return len(self.branches) == 1 and self.branches[0].has_text_tower

    def text_tower(self) -> nn.Module:
        """The :class:`~percep_rag.backbones.text.TextTower` from the image tower's checkpoint, built now
        (on the backbone's device); a backbone without one raises :class:`~percep_rag.errors.TextQueryError` naming it.

        >>> from percep_rag.backbones import create_backbone
        >>> create_backbone("tiny-vit-random").text_tower()
        Traceback (most recent call last):
        ...
        percep_rag.errors.TextQueryError: backbone 'tiny-vit-random' has no text tower: ...
        """
        if not self.has_text_tower:
            raise TextQueryError(no_text_tower_message(self.name))
        return self.branches[0].text_tower(self.name).to(self.device)

    def weights_digest(self) -> str:
        """Hash of every parameter and buffer: equal digests mean equal weights.

        >>> from percep_rag.backbones import create_backbone
        >>> create_backbone("tiny-vit-random").weights_digest() == \\
        ...     create_backbone("tiny-vit-random").weights_digest()
        True
        """
        return state_digest(self)


def no_text_tower_message(backbone: str) -> str:
    """Why ``backbone`` takes no text query, in one line."""
    return (
        f"backbone {backbone!r} has no text tower: text queries need a CLIP-family backbone "
        "(clip-*, openclip-*, tiny-clip-random, tiny-openclip-random)"
    )


def state_digest(module: nn.Module) -> str:
    """A 16-hex-digit hash of a module's state dict (names, dtypes, shapes and values)."""
    hasher = hashlib.blake2b(digest_size=8)
    for key, tensor in sorted(module.state_dict().items()):
        hasher.update(f"{key}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        hasher.update(tensor.detach().reshape(-1).contiguous().cpu().view(torch.uint8).numpy().tobytes())
    return hasher.hexdigest()
