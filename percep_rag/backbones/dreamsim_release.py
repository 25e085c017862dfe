"""DreamSim's released models (the ``dreamsim`` 0.2.x checkpoints), read from a release folder as it unzips.

A release folder is DreamSim's own ``cache_dir``: every zip of
``github.com/ssundaram21/dreamsim/releases`` unzips into it, so all the types can share one
folder. It holds the base checkpoints in DreamSim's "as DINO" layout (``*_pretrain.pth.tar``
for CLIP and OpenCLIP, ``synclr_vit_b_16.pth``), one peft adapter folder per type
(``ensemble_lora``, ``<type>_single_lora``, ``<type>_patch_lora``) and, once ``dreamsim`` has
run, torch.hub's ``checkpoints/`` with the DINO and DINOv2 backbones. percep-rag reads the
DINO and DINOv2 weights from there or from its own registered ``dino-vit-b-16`` /
``dinov2-vit-b-14`` weights (the same published networks); nothing is downloaded.

Every branch is a timm ViT-B with the same module names as DreamSim's DINO-style ViT
(``model.blocks.N.attn.qkv``), so the adapter's tensors land where DreamSim put them. The
features are the ones ``dreamsim`` extracts: the last block's CLS before the final norm for
DINO, DINOv2 and SynCLR (``cls``), ``ln_post(CLS) @ proj`` for CLIP and OpenCLIP
(``embedding``), and for the patch models every token centred and L2-normalised (``cls_patch``,
pooled ``cls+patchmean``). The adapter itself is applied by
:mod:`percep_rag.alignment.lora.dreamsim`.

>>> load_release("clip_vitb32", "/nonexistent")
Traceback (most recent call last):
...
percep_rag.backbones.dreamsim_types.ReleaseFileError: missing /nonexistent/clip_vitb32_pretrain.pth.tar for ...
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from torch import nn

from percep_rag.backbones.base import Backbone, Branch, TokenFeatures
from percep_rag.backbones.checkpoints import weights_file_problem
from percep_rag.backbones.dreamsim_types import (
    BRANCHES,
    RANDOM_MARKER,
    RELEASE_PREPROCESS,
    RELEASE_TYPES,
    Family,
    Feature,
    ReleaseBranch,
    ReleaseFileError,
    ReleaseType,
    default_release_folder,
    release_type,
)
from percep_rag.backbones.openclip import OPENAI_MEAN, OPENAI_STD
from percep_rag.backbones.timm_vit import IMAGENET_MEAN, IMAGENET_STD, TimmVitBranch
from percep_rag.errors import ConfigError


# ------------------------------------------------------------------------------------------ branches
class ProjectedBranch(TimmVitBranch):
    """A CLIP-family branch: tokens through the final norm, then DreamSim's ``proj`` (CLIP's image embedding)."""

    def __init__(self, model: nn.Module, proj: torch.Tensor, mean, std):
        super().__init__(model, mean=mean, std=std, token_source="norm")
        self.register_buffer("proj", proj.detach().clone())
        self.dim = proj.shape[1]

    def tokens(self, normalized: torch.Tensor) -> TokenFeatures:
        tokens = super().tokens(normalized)
        return TokenFeatures(cls=tokens.cls @ self.proj, patches=tokens.patches @ self.proj)


class PatchNormalizedBranch(TimmVitBranch):
    """DreamSim's patch models: the last block's tokens (before the final norm), each centred and L2-normalised
    (``normalize_embedding_patch``), so ``cls+patchmean`` pooling is DreamSim's ``[CLS, mean(patches)]``."""

    def __init__(self, model: nn.Module, mean, std):
        super().__init__(model, mean=mean, std=std, token_source="prenorm")

    def tokens(self, normalized: torch.Tensor) -> TokenFeatures:
        tokens = super().tokens(normalized)
        return TokenFeatures(cls=_center_l2(tokens.cls), patches=_center_l2(tokens.patches))


def _center_l2(tokens: torch.Tensor) -> torch.Tensor:
    centred = tokens - tokens.mean(dim=-1, keepdim=True)
    return centred / centred.norm(dim=-1, keepdim=True)


class ReleaseBackbone(Backbone):
    """A DreamSim release's base backbone; ``release`` says which type and ``adapter_dir`` where its adapter is."""

    def __init__(self, kind: ReleaseType, folder: Path, branches: list[Branch], *, random_weights: bool, sources):
        super().__init__(
            kind.backbone_name,
            branches,
            RELEASE_PREPROCESS,
            random_weights=random_weights,
            default_normalization="l2" if kind.patch else "center+l2",
            weights_source="; ".join(f"{model_type}={path}" for model_type, path in sources),
        )
        self.release = kind
        self.folder = folder
        self.adapter_dir = folder / kind.adapter


def _patch_embed_with_bias(**kwargs) -> nn.Module:
    from timm.layers import PatchEmbed

    return PatchEmbed(**{**kwargs, "bias": True})


def _vit(family: Family, patch_size: int) -> nn.Module:
    """DreamSim's ViT-B of ``family`` as a timm ViT (same module names), on the meta device: weights come next."""
    from timm.models.vision_transformer import VisionTransformer

    kwargs: dict = dict(
        img_size=224, patch_size=patch_size, embed_dim=768, depth=12, num_heads=12, mlp_ratio=4.0,
        qkv_bias=True, num_classes=0, weight_init="skip", device="meta",
    )  # fmt: skip
    if family in ("clip", "open_clip"):
        # DreamSim's CLIP-as-DINO: ln_pre in place of pos_drop, LayerNorm eps 1e-5, QuickGELU for OpenAI's CLIP,
        # and DINO's patch embedding with its bias (timm leaves it out when pre_norm is on).
        kwargs.update(pre_norm=True, norm_layer=partial(nn.LayerNorm, eps=1e-5), embed_layer=_patch_embed_with_bias)
        kwargs["act_layer"] = "quick_gelu" if family == "clip" else "gelu"
    else:
        kwargs["norm_layer"] = partial(nn.LayerNorm, eps=1e-6)
        if family == "dinov2":
            kwargs["init_values"] = 1.0  # LayerScale; the values are loaded
    return VisionTransformer(**kwargs)


def _load_state(path: Path, origin: str) -> dict:
    """A release file read safely (``torch.load(weights_only=True)`` or safetensors), else :class:`ReleaseFileError`."""
    problem = weights_file_problem(path)
    if problem is not None:
        raise ReleaseFileError(f"{path} cannot be read ({problem}); {origin}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(path)
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # noqa: BLE001 - an unpicklable or truncated file: say which and where it comes from
        first = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
        raise ReleaseFileError(f"{path} cannot be loaded safely ({first}); {origin}") from None


def _as_vit_state(branch: ReleaseBranch, state: object, path: Path, origin: str) -> tuple[dict, torch.Tensor | None]:
    """The file's tensors renamed to the timm ViT's names, and CLIP's ``proj`` (else ``None``)."""

    def bad(why: str) -> ReleaseFileError:
        return ReleaseFileError(f"{path} is not DreamSim's {branch.model_type} checkpoint ({why}); {origin}")

    if branch.family in ("clip", "open_clip"):
        if not isinstance(state, dict) or not isinstance(state.get("state_dict"), dict):
            raise bad("no 'state_dict' in it")
        state = dict(state["state_dict"])
        if "proj" not in state:
            raise bad("no 'proj' in its state_dict")
        proj = state.pop("proj")
        state = {
            ("norm_pre." + key[len("pos_drop.") :] if key.startswith("pos_drop.") else key): v
            for key, v in state.items()
        }
        return state, proj
    if branch.family == "synclr":
        if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
            raise bad("no 'model' in it")
        prefix = "module.visual."
        keys = list(state["model"])
        if not keys or not all(key.startswith(prefix) for key in keys):
            raise bad(f"its keys do not all start with {prefix!r}")
        return {key[len(prefix) :]: value for key, value in state["model"].items()}, None
    if not isinstance(state, dict):
        raise bad("not a state dict")
    for wrapper in ("state_dict", "model"):
        if isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    state = {key: value for key, value in state.items() if key not in ("mask_token", "head.weight", "head.bias")}
    if branch.family == "dinov2" and "pos_embed" in state:
        state["pos_embed"] = dinov2_pos_embed(state["pos_embed"], 224 // branch.patch_size)
    return state, None


def dinov2_pos_embed(pos_embed: torch.Tensor, grid: int, offset: float = 0.1) -> torch.Tensor:
    """DINOv2's position embeddings resampled to ``grid`` x ``grid`` exactly as its torch.hub model does at run time.

    DINOv2's ``interpolate_pos_encoding`` scales by ``(grid + 0.1) / M`` (bicubic, no antialias), not to a
    size; timm's load-time resampling differs from it, so this is done here, once.

    >>> dinov2_pos_embed(torch.zeros(1, 1 + 37 * 37, 8), 16).shape
    torch.Size([1, 257, 8])
    """
    count = pos_embed.shape[1] - 1
    side = int(math.isqrt(count))
    if side * side != count:
        raise ConfigError(f"position embeddings for {count} patches are not a square grid")
    if side == grid:
        return pos_embed
    dtype, dim = pos_embed.dtype, pos_embed.shape[-1]
    table = pos_embed.float()
    scale = float(grid + offset) / side
    patches = nn.functional.interpolate(
        table[:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2),
        mode="bicubic",
        antialias=False,
        scale_factor=(scale, scale),
    )
    patches = patches.permute(0, 2, 3, 1).reshape(1, -1, dim)
    return torch.cat([table[:, :1], patches], dim=1).to(dtype)


def _base_file(branch: ReleaseBranch, kind: ReleaseType, folder: Path) -> tuple[Path, str]:
    """The base checkpoint of ``branch`` and a note of where it comes from; a miss names every place looked."""
    zip_note = f"it comes from {kind.zip_name} ({kind.zip_url}), unzipped into {folder}"
    origin = f"it is fetched by {branch.origin} into {folder}/checkpoints" if branch.origin else zip_note
    for relative in branch.files:
        if (folder / relative).is_file():
            return folder / relative, origin
    if branch.registered is not None:
        from percep_rag.backbones.registry import get_backbone_entry
        from percep_rag.backbones.weights import local_weight_file

        entry = get_backbone_entry(branch.registered)
        found = local_weight_file(branch.registered) or (entry.hub.cached_path() if entry.hub else None)
        if found is not None:
            return found, f"it is percep-rag's {branch.registered!r} weights"
    looked = " or ".join(str(folder / relative) for relative in branch.files)
    also = f" (or the weights of {branch.registered!r}, see `percep-rag models`)" if branch.registered else ""
    raise ReleaseFileError(f"missing {looked}{also} for dreamsim:{kind.name}; {origin}")


def load_release_branch(model_type: str, kind: ReleaseType, folder: Path, feature: Feature) -> tuple[Branch, Path]:
    """One branch of ``kind`` with its base weights from ``folder``, and the file they came from."""
    branch = BRANCHES[model_type]
    path, origin = _base_file(branch, kind, folder)
    state, proj = _as_vit_state(branch, _load_state(path, origin), path, origin)
    model = _vit(branch.family, branch.patch_size)
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as error:
        detail = _first_problem(str(error))
        raise ReleaseFileError(f"{path} does not fit DreamSim's {model_type} ({detail}); {origin}") from None
    model.eval()
    mean, std = (OPENAI_MEAN, OPENAI_STD) if branch.family in ("clip", "open_clip") else (IMAGENET_MEAN, IMAGENET_STD)
    if feature == "embedding":
        if proj is None or proj.ndim != 2 or proj.shape[0] != 768:
            raise ReleaseFileError(f"{path} has no (768, D) 'proj' for the {model_type} embedding; {origin}")
        return ProjectedBranch(model, proj.float(), mean, std), path
    if feature == "cls_patch":
        return PatchNormalizedBranch(model, mean, std), path
    return TimmVitBranch(model, mean=mean, std=std, token_source="prenorm"), path


def _first_problem(message: str) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in lines[1:]:
        return line[:200]
    return lines[0][:200] if lines else "unknown error"


def load_release(name: str, folder: str | Path | None = None) -> ReleaseBackbone:
    """The base backbone of DreamSim's release type ``name`` from ``folder`` (default ``<weights>/dreamsim``).

    The adapter is not applied here; :class:`~percep_rag.embedder.AlignedEmbedder` applies it as
    the aligned space. A missing or mismatched file is a :class:`ReleaseFileError` naming it and its zip.

    >>> load_release("ensemble", "/nonexistent")
    Traceback (most recent call last):
    ...
    percep_rag.backbones.dreamsim_types.ReleaseFileError: missing /nonexistent/checkpoints/dino_vitbase16_pretrain...
    """
    kind = release_type(name)
    folder = Path(folder).expanduser() if folder is not None else default_release_folder()
    adapter_config = folder / kind.adapter / "adapter_config.json"
    branches, sources = [], []
    for model_type, feature in zip(kind.model_types, kind.feature, strict=True):
        branch, path = load_release_branch(model_type, kind, folder, feature)
        branches.append(branch)
        sources.append((model_type, path))
    if not adapter_config.is_file():  # checked here too, so a missing adapter fails before anything is embedded
        raise ReleaseFileError(
            f"missing {adapter_config} (the adapter of dreamsim:{kind.name}); it comes from {kind.zip_name} "
            f"({kind.zip_url}), unzipped into {folder}"
        )
    backbone = ReleaseBackbone(
        kind, folder, branches, random_weights=(folder / RANDOM_MARKER).is_file(), sources=sources
    )
    return backbone.eval()


def release_status(name: str, folder: Path | None = None) -> str:
    """``present``, ``missing`` (nothing of it here) or ``missing <files>`` for ``percep-rag models`` (headers only)."""
    kind = release_type(name)
    folder = folder or default_release_folder()
    missing = []
    for model_type in kind.model_types:
        try:
            path, _ = _base_file(BRANCHES[model_type], kind, folder)
        except ReleaseFileError:
            missing.append(str(folder / BRANCHES[model_type].files[0]))
            continue
        if (problem := weights_file_problem(path)) is not None:
            return f"unreadable: {path} ({problem})"
    if not (folder / kind.adapter / "adapter_config.json").is_file():
        missing.append(str(folder / kind.adapter))
    if not missing:
        return "present"
    return "missing" if len(missing) == len(kind.model_types) + 1 else f"missing {', '.join(missing)}"


# ------------------------------------------------------------------------------------------ registry
@dataclass(frozen=True)
class ReleaseFiles:
    """The registry's view of a release type (:class:`~percep_rag.backbones.registry.OwnFiles`):
    ``weights`` names the release folder."""

    kind: ReleaseType

    @property
    def dim(self) -> int:
        return self.kind.token_dim

    def build(self, weights: str | Path | None, seed: int) -> Backbone:
        if weights == "random":
            raise ConfigError(
                f"{self.kind.backbone_name} reads DreamSim's release files; for random weights write a release "
                "folder with percep_rag.backbones.dreamsim_random.write_random_release and pass it as --weights"
            )
        if weights is not None and Path(weights).expanduser().is_file():
            raise ConfigError(
                f"{self.kind.backbone_name} takes the release folder (where {self.kind.zip_name} unzips), "
                f"not the file {weights}"
            )
        return load_release(self.kind.name, weights)

    def status(self) -> str:
        return release_status(self.kind.name)

    def expected_files(self) -> list[str]:
        folder = default_release_folder()
        files = []
        for model_type in self.kind.model_types:
            branch = BRANCHES[model_type]
            also = f" (or {branch.registered}'s weights)" if branch.registered else ""
            files.append(f"{folder / branch.files[0]}{also}")
        return [*files, f"{folder / self.kind.adapter}/ (from {self.kind.zip_name})"]


def register_releases() -> None:
    """Register ``dreamsim:<type>`` for every release type (done once, on importing :mod:`percep_rag.backbones`)."""
    from percep_rag.backbones.registry import REGISTRY, BackboneEntry, add_backbone

    for kind in RELEASE_TYPES.values():
        if kind.backbone_name in REGISTRY:
            continue
        add_backbone(
            BackboneEntry(
                name=kind.backbone_name,
                family="dreamsim",
                description=f"DreamSim's released {kind.name}: {kind.description}; aligned = its LoRA adapter",
                own_files=ReleaseFiles(kind),
            )
        )
