"""The backbones percep-rag knows, as data: each entry names its network and its preprocessing.

Names say what they are: ``clip-*`` are OpenAI CLIP weights (open_clip ``-quickgelu``
configs), ``openclip-*`` LAION-trained OpenCLIP, ``dino*`` timm ViTs, and every
``tiny-*-random`` model has random weights and exists only for tests and demos. Hub repos
and mean/std of the pretrained networks are read from open_clip's and timm's own pretrained
configs when a backbone is built, so importing percep-rag imports neither library.
"""

from __future__ import annotations

from percep_rag.backbones.base import NetworkCfg
from percep_rag.backbones.openclip import OPEN_CLIP_FILES as OPEN_CLIP_FILES
from percep_rag.backbones.openclip import OPENAI_MEAN, OPENAI_STD, TINY_CLIP, TINY_OPENCLIP
from percep_rag.backbones.registry import BackboneEntry, add_backbone
from percep_rag.backbones.timm_vit import IMAGENET_MEAN, IMAGENET_STD, TINY_VIT_ARGS
from percep_rag.backbones.timm_vit import TIMM_FILES as TIMM_FILES
from percep_rag.config import PreprocessSpec

# open_clip's own transform: shorter side to 224, centre crop, bicubic.
CLIP_PREPROCESS = PreprocessSpec(image_size=224, resize="crop", interpolation="bicubic")
# DINO's evaluation transform (also thingsvision's for gLocal): 256 -> centre crop 224.
DINO_PREPROCESS = PreprocessSpec(image_size=224, resize="crop", resize_size=256, interpolation="bicubic")
# DreamSim: squash to 224x224, no crop.
DREAMSIM_PREPROCESS = PreprocessSpec(image_size=224, resize="squash", interpolation="bicubic")
TINY_PREPROCESS = PreprocessSpec(image_size=32, resize="crop", interpolation="bicubic")
TINY_ENSEMBLE_PREPROCESS = PreprocessSpec(image_size=32, resize="squash", interpolation="bicubic")


def _open_clip(name: str, model: str, tag: str, description: str, family: str) -> BackboneEntry:
    return BackboneEntry(
        name=name,
        family=family,
        description=f"{description} (open_clip {model} / {tag})",
        preprocess=CLIP_PREPROCESS,
        network=NetworkCfg("open_clip", model, tag),
    )


def _timm(name: str, model: str, description: str) -> BackboneEntry:
    return BackboneEntry(
        name=name,
        family="dino",
        description=f"{description} (timm {model})",
        preprocess=DINO_PREPROCESS,
        network=NetworkCfg("timm", model),
    )


CATALOG: tuple[BackboneEntry, ...] = (
    _open_clip("clip-vit-b-32", "ViT-B-32-quickgelu", "openai", "OpenAI CLIP ViT-B/32", "clip"),
    _open_clip("clip-vit-b-16", "ViT-B-16-quickgelu", "openai", "OpenAI CLIP ViT-B/16", "clip"),
    _open_clip("clip-vit-l-14", "ViT-L-14-quickgelu", "openai", "OpenAI CLIP ViT-L/14", "clip"),
    _open_clip("openclip-vit-b-32", "ViT-B-32", "laion2b_s34b_b79k", "OpenCLIP ViT-B/32", "openclip"),
    _open_clip("openclip-vit-b-16", "ViT-B-16", "laion400m_e31", "OpenCLIP ViT-B/16", "openclip"),
    _open_clip("openclip-vit-l-14", "ViT-L-14", "laion2b_s32b_b82k", "OpenCLIP ViT-L/14", "openclip"),
    _timm("dino-vit-b-16", "vit_base_patch16_224.dino", "DINO ViT-B/16"),
    _timm("dinov2-vit-b-14", "vit_base_patch14_dinov2.lvd142m", "DINOv2 ViT-B/14 at 224 px"),
    BackboneEntry(
        name="dreamsim-ensemble",
        family="ensemble",
        description="DreamSim ensemble: DINO B/16 pre-norm CLS + CLIP B/16 + OpenCLIP B/16 embeddings (1792-d)",
        preprocess=DREAMSIM_PREPROCESS,
        parts=("dino-vit-b-16", "clip-vit-b-16", "openclip-vit-b-16"),
        token_source="prenorm",
        default_normalization="center+l2",
    ),
    BackboneEntry(
        name="tiny-vit-random",
        family="tiny",
        description="2-layer DINO-style timm ViT, 64-d, RANDOM weights",
        preprocess=TINY_PREPROCESS,
        network=NetworkCfg(
            "timm", "vit_base_patch16_224", mean=IMAGENET_MEAN, std=IMAGENET_STD, model_args=TINY_VIT_ARGS
        ),
        random_only=True,
    ),
    BackboneEntry(
        name="tiny-clip-random",
        family="tiny",
        description="2-layer open_clip ViT (QuickGELU), 32-d, RANDOM weights",
        preprocess=TINY_PREPROCESS,
        network=NetworkCfg("open_clip", TINY_CLIP, mean=OPENAI_MEAN, std=OPENAI_STD),
        random_only=True,
    ),
    BackboneEntry(
        name="tiny-openclip-random",
        family="tiny",
        description="2-layer open_clip ViT (GELU), 32-d, RANDOM weights",
        preprocess=TINY_PREPROCESS,
        network=NetworkCfg("open_clip", TINY_OPENCLIP, mean=OPENAI_MEAN, std=OPENAI_STD),
        random_only=True,
    ),
    BackboneEntry(
        name="tiny-ensemble-random",
        family="ensemble",
        description="the DreamSim ensemble layout on the three tiny models, 128-d, RANDOM weights",
        preprocess=TINY_ENSEMBLE_PREPROCESS,
        parts=("tiny-vit-random", "tiny-clip-random", "tiny-openclip-random"),
        token_source="prenorm",
        default_normalization="center+l2",
    ),
)

for _entry in CATALOG:
    add_backbone(_entry)
