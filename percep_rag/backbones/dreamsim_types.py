"""DreamSim's released models as data: each type's branches, features, adapter folder and zip.

The types are ``dreamsim``'s ``dreamsim_type`` s (``dreamsim/config.py``) and the files are the
ones its ``download_weights`` requires; :mod:`~percep_rag.backbones.dreamsim_release` loads them.

>>> sorted(RELEASE_TYPES)[:3]
['clip_vitb32', 'dino_vitb16', 'dino_vitb16_patch']
>>> RELEASE_TYPES["dino_vitb16_patch"].adapter, RELEASE_TYPES["ensemble"].pooled_dim
('dino_vitb16_patch_lora', 1792)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from percep_rag.backbones.weights import weights_dir
from percep_rag.config import PreprocessSpec
from percep_rag.errors import WeightsNotFoundError

RELEASES_URL = "https://github.com/ssundaram21/dreamsim/releases/download"
#: DreamSim: squash to 224 x 224, bicubic, no crop (its ``preprocess``).
RELEASE_PREPROCESS = PreprocessSpec(image_size=224, resize="squash", interpolation="bicubic")
#: Written by :func:`percep_rag.backbones.dreamsim_random.write_random_release`: the folder's weights are random.
RANDOM_MARKER = "percep_rag_random_release.json"
#: The release folder's place in percep-rag's weights folder when none is given.
DEFAULT_SUBFOLDER = "dreamsim"

Family = Literal["dino", "dinov2", "synclr", "clip", "open_clip"]
Feature = Literal["cls", "embedding", "cls_patch"]


class ReleaseFileError(WeightsNotFoundError):
    """A file of a DreamSim release is missing, unreadable or holds other tensors than the release's."""


@dataclass(frozen=True)
class ReleaseBranch:
    """One of DreamSim's ``model_type`` s: its network and the file(s) its base weights are read from.

    ``files`` are relative to the release folder, in the order they are tried;
    ``registered`` is percep-rag's backbone whose weights are the same network (DINO, DINOv2).
    """

    model_type: str
    family: Family
    patch_size: int
    files: tuple[str, ...]
    #: Where each file comes from when not from the type's zip (torch.hub's URL).
    origin: str = ""
    registered: str | None = None


_HUB = "https://dl.fbaipublicfiles.com"
BRANCHES: dict[str, ReleaseBranch] = {
    branch.model_type: branch
    for branch in (
        ReleaseBranch(
            "dino_vitb16",
            "dino",
            16,
            ("checkpoints/dino_vitbase16_pretrain.pth",),
            f"torch.hub ({_HUB}/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth)",
            "dino-vit-b-16",
        ),
        ReleaseBranch(
            "dinov2_vitb14",
            "dinov2",
            14,
            ("checkpoints/dinov2_vitb14_pretrain.pth",),
            f"torch.hub ({_HUB}/dinov2/dinov2_vitb14/dinov2_vitb14_pretrain.pth)",
            "dinov2-vit-b-14",
        ),
        ReleaseBranch("clip_vitb16", "clip", 16, ("clip_vitb16_pretrain.pth.tar",)),
        ReleaseBranch("clip_vitb32", "clip", 32, ("clip_vitb32_pretrain.pth.tar",)),
        ReleaseBranch("open_clip_vitb16", "open_clip", 16, ("open_clip_vitb16_pretrain.pth.tar",)),
        ReleaseBranch("open_clip_vitb32", "open_clip", 32, ("open_clip_vitb32_pretrain.pth.tar",)),
        ReleaseBranch("synclr_vitb16", "synclr", 16, ("synclr_vit_b_16.pth",)),
    )
}


@dataclass(frozen=True)
class ReleaseType:
    """A ``dreamsim_type`` as data: its branches (in concatenation order), features, adapter folder and zip."""

    name: str
    model_types: tuple[str, ...]
    feature: tuple[Feature, ...]
    adapter: str
    zip_tag: str
    description: str

    @property
    def zip_name(self) -> str:
        return f"dreamsim_{self.name}_checkpoint.zip"

    @property
    def zip_url(self) -> str:
        return f"{RELEASES_URL}/{self.zip_tag}/{self.zip_name}"

    @property
    def patch(self) -> bool:
        return "cls_patch" in self.feature

    @property
    def backbone_name(self) -> str:
        return f"dreamsim:{self.name}"

    @property
    def token_dim(self) -> int:
        return sum(512 if feature == "embedding" else 768 for feature in self.feature)

    @property
    def pooling(self) -> str:
        """The pooling DreamSim's distance uses: the patch models' ``[CLS, mean(patches)]``."""
        return "cls+patchmean" if self.patch else "cls"

    @property
    def pooled_dim(self) -> int:
        return self.token_dim * (2 if self.patch else 1)


def _single(name: str, feature: Feature, tag: str, description: str) -> ReleaseType:
    model_type = name.removesuffix("_patch")
    adapter = f"{model_type}_patch_lora" if feature == "cls_patch" else f"{name}_single_lora"
    return ReleaseType(name, (model_type,), (feature,), adapter, tag, description)


_PATCH_NOTE = "trained on [CLS, mean patch] (dense tasks), 1536-d with --pooling cls+patchmean"
RELEASE_TYPES: dict[str, ReleaseType] = {
    kind.name: kind
    for kind in (
        ReleaseType(
            "ensemble",
            ("dino_vitb16", "clip_vitb16", "open_clip_vitb16"),
            ("cls", "embedding", "embedding"),
            "ensemble_lora",
            "v0.2.0-checkpoints",
            "DINO B/16 + CLIP B/16 + OpenCLIP B/16, 1792-d (DreamSim's default, best NIGHTS 2AFC)",
        ),
        _single("dino_vitb16", "cls", "v0.2.0-checkpoints", "DINO B/16, 768-d"),
        _single("dinov2_vitb14", "cls", "v0.2.1-checkpoints", "DINOv2 B/14, 768-d"),
        _single("clip_vitb32", "embedding", "v0.2.0-checkpoints", "OpenAI CLIP B/32, 512-d"),
        _single("open_clip_vitb32", "embedding", "v0.2.0-checkpoints", "OpenCLIP B/32 (LAION-400M), 512-d"),
        _single("synclr_vitb16", "cls", "v0.2.1-checkpoints", "SynCLR B/16, 768-d"),
        _single("dino_vitb16_patch", "cls_patch", "v0.2.1-checkpoints", f"DINO B/16 {_PATCH_NOTE}"),
        _single("dinov2_vitb14_patch", "cls_patch", "v0.2.1-checkpoints", f"DINOv2 B/14 {_PATCH_NOTE}"),
    )
}


def release_type(name: str) -> ReleaseType:
    """The release type ``name`` (``ensemble``, ``dino_vitb16``...; an unknown one lists the known ones).

    >>> release_type("clip_vitb32").zip_name
    'dreamsim_clip_vitb32_checkpoint.zip'
    """
    from percep_rag.errors import UnknownNameError

    if name not in RELEASE_TYPES:
        raise UnknownNameError("DreamSim release type", name, list(RELEASE_TYPES))
    return RELEASE_TYPES[name]


def default_release_folder() -> Path:
    """Where a release folder is looked for when none is given: ``<weights folder>/dreamsim``."""
    return weights_dir() / DEFAULT_SUBFOLDER
