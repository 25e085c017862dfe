"""The backbones percep-rag knows, registered by name.

Names say what they are: ``clip-*`` are OpenAI CLIP weights (open_clip ``-quickgelu``
configs), ``openclip-*`` LAION-trained OpenCLIP, ``dino*`` timm ViTs, and every
``tiny-*-random`` model has random weights and exists only for tests and demos.
"""

from __future__ import annotations

from pathlib import Path

from percep_rag.backbones.base import Backbone
from percep_rag.backbones.openclip import OPENAI_MEAN, OPENAI_STD, load_openclip_branch, tiny_openclip_branch
from percep_rag.backbones.registry import register_backbone, register_ensemble
from percep_rag.backbones.timm_vit import load_timm_branch, tiny_timm_branch
from percep_rag.backbones.weights import HubFile
from percep_rag.config import PreprocessSpec

OPEN_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
TIMM_FILES = ("model.safetensors", "pytorch_model.bin")

# open_clip's own transform: shorter side to 224, centre crop, bicubic.
CLIP_PREPROCESS = PreprocessSpec(image_size=224, resize="crop", interpolation="bicubic")
# DINO's evaluation transform (also thingsvision's for gLocal): 256 -> centre crop 224.
DINO_PREPROCESS = PreprocessSpec(image_size=224, resize="crop", resize_size=256, interpolation="bicubic")
# DreamSim: squash to 224x224, no crop.
DREAMSIM_PREPROCESS = PreprocessSpec(image_size=224, resize="squash", interpolation="bicubic")
TINY_PREPROCESS = PreprocessSpec(image_size=32, resize="crop", interpolation="bicubic")


def _register_open_clip(
    name: str, model_name: str, tag: str, hub_repo: str, description: str, family: str, mean=OPENAI_MEAN, std=OPENAI_STD
) -> None:
    # The hub repo and mean/std are open_clip's pretrained config for (model_name, tag), written
    # out so that importing percep-rag does not import open_clip (a test checks they agree).
    def factory(checkpoint: Path | None, seed: int) -> Backbone:
        branch = load_openclip_branch(model_name, checkpoint, seed=seed, mean=mean, std=std)
        return Backbone(
            name,
            [branch],
            CLIP_PREPROCESS,
            random_weights=checkpoint is None,
            weights_source=str(checkpoint or "random"),
        )

    register_backbone(
        name,
        family=family,
        description=f"{description} (open_clip {model_name} / {tag})",
        hub=HubFile(hub_repo, OPEN_CLIP_FILES),
        source=(model_name, tag),
    )(factory)


def _register_timm(name: str, model_name: str, description: str) -> None:
    architecture, _, _ = model_name.partition(".")

    def factory(checkpoint: Path | None, seed: int) -> Backbone:
        branch = load_timm_branch(model_name if checkpoint else architecture, checkpoint, image_size=224, seed=seed)
        return Backbone(
            name,
            [branch],
            DINO_PREPROCESS,
            random_weights=checkpoint is None,
            weights_source=str(checkpoint or "random"),
        )

    register_backbone(
        name,
        family="dino",
        description=f"{description} (timm {model_name})",
        hub=HubFile(f"timm/{model_name}", TIMM_FILES),
        source=(model_name, ""),
    )(factory)


def _dreamsim_ensemble(name: str, preprocess: PreprocessSpec):
    def compose(parts: list[Backbone]) -> Backbone:
        dino, *clips = (part.branches[0] for part in parts)
        # DreamSim reads DINO's CLS before the final LayerNorm (a hook on the last block).
        dino.token_source = "prenorm"
        return Backbone(
            name,
            [dino, *clips],
            preprocess,
            random_weights=any(part.random_weights for part in parts),
            default_normalization="center+l2",
            weights_source="; ".join(f"{part.name}={part.weights_source}" for part in parts),
        )

    return compose


_register_open_clip(
    "clip-vit-b-32",
    "ViT-B-32-quickgelu",
    "openai",
    "timm/vit_base_patch32_clip_224.openai",
    "OpenAI CLIP ViT-B/32",
    "clip",
)
_register_open_clip(
    "clip-vit-b-16",
    "ViT-B-16-quickgelu",
    "openai",
    "timm/vit_base_patch16_clip_224.openai",
    "OpenAI CLIP ViT-B/16",
    "clip",
)
_register_open_clip(
    "clip-vit-l-14",
    "ViT-L-14-quickgelu",
    "openai",
    "timm/vit_large_patch14_clip_224.openai",
    "OpenAI CLIP ViT-L/14",
    "clip",
)
_register_open_clip(
    "openclip-vit-b-32",
    "ViT-B-32",
    "laion2b_s34b_b79k",
    "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
    "OpenCLIP ViT-B/32",
    "openclip",
)
_register_open_clip(
    "openclip-vit-b-16",
    "ViT-B-16",
    "laion400m_e31",
    "timm/vit_base_patch16_clip_224.laion400m_e31",
    "OpenCLIP ViT-B/16",
    "openclip",
)
_register_open_clip(
    "openclip-vit-l-14",
    "ViT-L-14",
    "laion2b_s32b_b82k",
    "laion/CLIP-ViT-L-14-laion2B-s32B-b82K",
    "OpenCLIP ViT-L/14",
    "openclip",
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
)
_register_timm("dino-vit-b-16", "vit_base_patch16_224.dino", "DINO ViT-B/16")
_register_timm("dinov2-vit-b-14", "vit_base_patch14_dinov2.lvd142m", "DINOv2 ViT-B/14 at 224 px")
register_ensemble(
    "dreamsim-ensemble",
    ("dino-vit-b-16", "clip-vit-b-16", "openclip-vit-b-16"),
    _dreamsim_ensemble("dreamsim-ensemble", DREAMSIM_PREPROCESS),
    description="DreamSim ensemble: DINO B/16 pre-norm CLS + CLIP B/16 + OpenCLIP B/16 embeddings (1792-d)",
)


@register_backbone(
    "tiny-vit-random", family="tiny", description="2-layer DINO-style timm ViT, 64-d, RANDOM weights", random_only=True
)
def tiny_vit(checkpoint: Path | None = None, seed: int = 0) -> Backbone:
    return Backbone(
        "tiny-vit-random", [tiny_timm_branch(seed=seed)], TINY_PREPROCESS, random_weights=True, weights_source="random"
    )


@register_backbone(
    "tiny-clip-random",
    family="tiny",
    description="2-layer open_clip ViT (QuickGELU), 32-d, RANDOM weights",
    random_only=True,
)
def tiny_clip(checkpoint: Path | None = None, seed: int = 0) -> Backbone:
    branch = tiny_openclip_branch(quick_gelu=True, seed=seed)
    return Backbone("tiny-clip-random", [branch], TINY_PREPROCESS, random_weights=True, weights_source="random")


@register_backbone(
    "tiny-openclip-random",
    family="tiny",
    description="2-layer open_clip ViT (GELU), 32-d, RANDOM weights",
    random_only=True,
)
def tiny_openclip(checkpoint: Path | None = None, seed: int = 0) -> Backbone:
    branch = tiny_openclip_branch(quick_gelu=False, seed=seed)
    return Backbone("tiny-openclip-random", [branch], TINY_PREPROCESS, random_weights=True, weights_source="random")


register_ensemble(
    "tiny-ensemble-random",
    ("tiny-vit-random", "tiny-clip-random", "tiny-openclip-random"),
    _dreamsim_ensemble("tiny-ensemble-random", PreprocessSpec(image_size=32, resize="squash", interpolation="bicubic")),
    description="the DreamSim ensemble layout on the three tiny models, 128-d, RANDOM weights",
)
