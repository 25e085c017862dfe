"""A base backbone that knows semantics but not perception, for the synthetic world.

A small timm ViT is trained with cross-entropy on the scenes' semantic category (their
majority shape, see :mod:`percep_rag.study.scenes`) and nothing else, then used as
an ordinary percep-rag :class:`~percep_rag.backbones.Backbone` (one
:class:`~percep_rag.backbones.timm_vit.TimmVitBranch`, CLS after the final norm, 64 px
squashed input). Whatever it knows about count, layout or colour it picked up on the
way; that is the gap perceptual alignment is supposed to fill.

Saved as ``model.safetensors`` (backbone and classifier head) plus ``config.json``; a
reloaded backbone is bit-identical (a real run trains on thousands of scenes):

>>> import tempfile
>>> from percep_rag.study.worlds import generate_world
>>> config = SemanticBackboneConfig.tiny(embed_dim=16, depth=1, num_heads=2, epochs=1, image_size=32)
>>> result = train_semantic_backbone(generate_world(30, seed=0), config)
>>> folder = result.save(tempfile.mkdtemp())
>>> load_semantic_backbone(folder).weights_digest() == result.backbone.weights_digest()
True
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from percep_rag.backbones._seed import build_seeded
from percep_rag.backbones.base import Backbone
from percep_rag.backbones.timm_vit import IMAGENET_MEAN, IMAGENET_STD, TimmVitBranch
from percep_rag.config import PreprocessSpec
from percep_rag.devices import resolve_device
from percep_rag.errors import ConfigError, WeightsNotFoundError
from percep_rag.io.files import atomic_write, atomic_write_text
from percep_rag.study.render import render
from percep_rag.study.scenes import SHAPES
from percep_rag.study.worlds import World

BACKBONE_NAME = "synthetic-semantic-vit"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT_VERSION = 1


class ConvStemPatchEmbed(nn.Module):
    """Patch embedding by a stack of stride-2 3x3 convolutions instead of one big
    patch-sized one ("early convolutions help transformers see better", Xiao et al. 2021):
    a small ViT trained from scratch on a few thousand images learns shapes far faster.
    Drop-in for timm's ``PatchEmbed`` (``embed_layer=``); ``patch_size`` must be a power of 2.

    Training uses BatchNorm after each convolution (without it, training sat on a plateau
    for hundreds of steps); :meth:`fold_batch_norm` then merges it into the convolutions,
    so the finished backbone has no running statistics that a later LoRA run in train
    mode could change. Built with ``batch_norm=False`` the norm slots are ``Identity``, and
    the state dict keys are the same either way.

    >>> stem = ConvStemPatchEmbed(img_size=32, patch_size=8, embed_dim=16, batch_norm=True)
    >>> x = torch.rand(2, 3, 32, 32)
    >>> reference = stem.eval()(x)
    >>> torch.allclose(stem.fold_batch_norm()(x), reference, atol=1e-5), stem(x).shape
    (True, torch.Size([2, 16, 16]))
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] = 64,
        patch_size: int | tuple[int, int] = 8,
        in_chans: int = 3,
        embed_dim: int = 64,
        bias: bool = True,
        *,
        batch_norm: bool = False,
        **_timm_kwargs: Any,
    ):
        super().__init__()
        from timm.layers import to_2tuple

        self.img_size = to_2tuple(img_size)
        self.patch_size = to_2tuple(patch_size)
        stride = self.patch_size[0]
        downsamples = int(round(math.log2(stride)))
        if 2**downsamples != stride or downsamples < 1 or self.patch_size[0] != self.patch_size[1]:
            raise ConfigError(f"the conv stem needs a square power-of-2 patch size, got {patch_size}")
        self.grid_size = (self.img_size[0] // stride, self.img_size[1] // stride)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        # timm reads these two when it builds and resamples position embeddings.
        self.flatten = True
        self.dynamic_img_pad = False
        layers: list[nn.Module] = []
        width, channels = in_chans, max(16, embed_dim // 2 ** (downsamples - 1))
        for _ in range(downsamples):
            norm = nn.BatchNorm2d(channels) if batch_norm else nn.Identity()
            layers += [nn.Conv2d(width, channels, 3, stride=2, padding=1), norm, nn.GELU()]
            width, channels = channels, min(embed_dim, channels * 2)
        layers.append(nn.Conv2d(width, embed_dim, 1, bias=bias))
        self.proj = nn.Sequential(*layers)

    def feat_ratio(self, as_scalar: bool = True) -> int | tuple[int, int]:
        return self.patch_size[0] if as_scalar else self.patch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)

    @torch.no_grad()
    def fold_batch_norm(self) -> ConvStemPatchEmbed:
        """Merge every BatchNorm (its running statistics) into the convolution before it,
        replacing it with ``Identity``; returns ``self``."""
        layers = list(self.proj)
        for index, layer in enumerate(layers):
            if not isinstance(layer, nn.BatchNorm2d):
                continue
            conv = layers[index - 1]
            scale = layer.weight / torch.sqrt(layer.running_var + layer.eps)
            conv.weight.mul_(scale.view(-1, 1, 1, 1))
            conv.bias.copy_((conv.bias - layer.running_mean) * scale + layer.bias)
            self.proj[index] = nn.Identity()
        return self


class SemanticBackboneConfig(BaseModel):
    """Architecture and training recipe of the semantic ViT.

    The defaults are the small CPU setting (:meth:`tiny`); :meth:`gpu` is a bigger one.

    >>> SemanticBackboneConfig.tiny().embed_dim, SemanticBackboneConfig.gpu().depth
    (64, 6)
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    image_size: int = Field(64, ge=16)
    patch_size: int = Field(16, ge=2)
    #: ``"conv"``: :class:`ConvStemPatchEmbed`; ``"patch"``: timm's linear patch embedding.
    stem: Literal["conv", "patch"] = "conv"
    embed_dim: int = Field(64, ge=8)
    depth: int = Field(3, ge=1)
    num_heads: int = Field(4, ge=1)
    mlp_ratio: float = Field(2.0, gt=0)
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1)
    lr: float = Field(2e-3, gt=0)
    weight_decay: float = Field(0.05, ge=0)
    warmup_fraction: float = Field(0.05, ge=0, lt=1)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    #: Gradient-norm clip (``None``: off); a 24-epoch run at lr 2e-3 diverged without it.
    grad_clip: float | None = Field(1.0, gt=0)
    #: Weight of a second loss: the same head on the max-pooled patch tokens. It gives the
    #: stem a direct "is there a star anywhere" signal, as a CNN's global max-pool does;
    #: without it the CLS-only ViT sat near chance for most of a CPU-sized budget.
    patch_loss_weight: float = Field(1.0, ge=0)
    #: Render the training scenes afresh (new jitter) every this many epochs; rendering
    #: costs about as much as a training pass of the tiny model.
    rerender_every: int = Field(2, ge=1)
    #: Scenes used for training (``None``: all of the world's ``train`` split).
    max_train_scenes: int | None = Field(None, ge=1)
    seed: int = 0
    device: str = "cpu"

    @classmethod
    def tiny(cls, **overrides: Any) -> SemanticBackboneConfig:
        """The CPU setting: patch 16 (a 4x4 grid), dim 64, depth 3, 10 epochs of batch 32.

        About 45 s on one CPU core for 2,400 training scenes.
        """
        return cls(**overrides)

    @classmethod
    def gpu(cls, **overrides: Any) -> SemanticBackboneConfig:
        """A bigger setting for a GPU: patch 8 (an 8x8 grid), dim 192, depth 6, 30 epochs.

        Rendering stays on the CPU, so scenes are re-rendered every 5 epochs only.
        """
        values: dict[str, Any] = dict(
            patch_size=8,
            embed_dim=192,
            depth=6,
            num_heads=6,
            mlp_ratio=4.0,
            epochs=30,
            batch_size=128,
            lr=1e-3,
            rerender_every=5,
            device="cuda",
        )
        return cls(**{**values, **overrides})


@dataclass
class SemanticBackbone:
    """A trained semantic ViT: the percep-rag ``backbone``, its ``head`` and the facts.

    ``classes`` are the category names in logit order; ``report`` has the training time,
    loss per epoch and accuracies (``train_accuracy``, ``val_accuracy``,
    ``test_accuracy`` on un-jittered renders of the world's held-out scenes, ``chance``).
    """

    backbone: Backbone
    head: nn.Linear
    classes: list[str]
    config: SemanticBackboneConfig
    report: dict[str, Any]

    @torch.no_grad()
    def predict(self, pixels: torch.Tensor) -> list[str]:
        """Category names for ``(B, 3, S, S)`` pixels (uint8, or float in [0, 1])."""
        return [self.classes[i] for i in self.logits(pixels).argmax(dim=1).tolist()]

    @torch.no_grad()
    def logits(self, pixels: torch.Tensor) -> torch.Tensor:
        """Class logits for ``(B, 3, S, S)`` pixels (uint8, or float in [0, 1])."""
        self.backbone.eval()
        device = self.backbone.device
        pixels = pixels.to(device)
        pixels = pixels.float() / 255.0 if pixels.dtype == torch.uint8 else pixels.float()
        return self.head(self.backbone(pixels).cls)

    def accuracy(self, world: World, split: str = "test", jitter_seed: int | None = None) -> float:
        """Top-1 category accuracy on the scenes of ``split`` (renders at the model's size)."""
        index = world.indices(split)
        if not len(index):
            raise ConfigError(f"the world has no {split!r} scenes")
        scenes = [world.scenes[i] for i in index]
        return _accuracy(self, scenes, self.config.image_size, jitter_seed, self.config.batch_size)

    def save(self, directory: str | Path) -> Path:
        """Write ``model.safetensors`` and ``config.json`` into ``directory``; returns it."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {f"backbone.{k}": v for k, v in self.backbone.state_dict().items()}
        tensors.update({f"head.{k}": v for k, v in self.head.state_dict().items()})
        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        atomic_write(directory / WEIGHTS_FILE, lambda temporary: save_file(tensors, str(temporary)))
        meta = {
            "format_version": FORMAT_VERSION,
            "name": self.backbone.name,
            "classes": self.classes,
            "config": self.config.model_dump(),
            "weights_digest": self.backbone.weights_digest(),
            "pixel_mean": list(IMAGENET_MEAN),
            "pixel_std": list(IMAGENET_STD),
            "report": self.report,
        }
        atomic_write_text(directory / CONFIG_FILE, json.dumps(meta, indent=2) + "\n")
        return directory


def _build(
    config: SemanticBackboneConfig, n_classes: int, name: str, source: str, *, training: bool = False
) -> tuple[Backbone, nn.Linear]:
    from timm.layers import PatchEmbed
    from timm.models.vision_transformer import VisionTransformer

    if config.image_size % config.patch_size:
        raise ConfigError(f"image_size {config.image_size} is not a multiple of patch_size {config.patch_size}")
    if config.embed_dim % config.num_heads:
        raise ConfigError(f"embed_dim {config.embed_dim} is not a multiple of num_heads {config.num_heads}")

    def build() -> tuple[nn.Module, nn.Linear]:
        vit = VisionTransformer(
            img_size=config.image_size,
            patch_size=config.patch_size,
            embed_dim=config.embed_dim,
            depth=config.depth,
            num_heads=config.num_heads,
            mlp_ratio=config.mlp_ratio,
            qkv_bias=True,
            num_classes=0,
            embed_layer=partial(ConvStemPatchEmbed, batch_norm=training) if config.stem == "conv" else PatchEmbed,
        )
        return vit, nn.Linear(config.embed_dim, n_classes)

    vit, head = build_seeded(build, config.seed)
    preprocess = PreprocessSpec(image_size=config.image_size, resize="squash", interpolation="bicubic")
    branch = TimmVitBranch(vit, mean=IMAGENET_MEAN, std=IMAGENET_STD, token_source="norm")
    backbone = Backbone(name, [branch], preprocess, random_weights=False, weights_source=source)
    return backbone, head


def _render_batch(scenes: Sequence, size: int, jitter_seed: int | None) -> torch.Tensor:
    arrays = np.stack([np.asarray(render(scene, size, jitter_seed)) for scene in scenes])
    return torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous()


@torch.no_grad()
def _accuracy(model: SemanticBackbone, scenes: Sequence, size: int, jitter_seed: int | None, batch: int) -> float:
    index = {name: i for i, name in enumerate(model.classes)}
    unknown = sorted({scene.category for scene in scenes} - set(index))
    if unknown:
        raise ConfigError(f"categories {unknown} are not among the model's classes {model.classes}")
    correct = 0
    for start in range(0, len(scenes), batch):
        chunk = scenes[start : start + batch]
        predicted = model.logits(_render_batch(chunk, size, jitter_seed)).argmax(dim=1)
        truth = torch.tensor([index[scene.category] for scene in chunk], device=predicted.device)
        correct += int((predicted == truth).sum())
    return correct / len(scenes)


def _lr_at(step: int, total: int, config: SemanticBackboneConfig) -> float:
    warmup = max(1, int(config.warmup_fraction * total))
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def train_semantic_backbone(
    world: World,
    config: SemanticBackboneConfig | None = None,
    *,
    classes: Sequence[str] | None = None,
    name: str = BACKBONE_NAME,
    progress: Callable[[str], None] | None = None,
) -> SemanticBackbone:
    """Train the ViT on the category of ``world``'s ``train`` scenes; evaluate on ``val``/``test``.

    Every epoch renders the training scenes with a new ``jitter_seed`` (fresh small
    noise: the only augmentation, so the model learns instances, not pixels). Torch's
    global RNG is not touched: initialisation and shuffling have their own seeded
    generators, and the ViT has no dropout, so equal inputs give equal weights.
    ``progress`` gets one line per epoch.

    >>> from percep_rag.study.worlds import generate_world
    >>> config = SemanticBackboneConfig.tiny(embed_dim=16, depth=1, num_heads=2, epochs=1, image_size=32)
    >>> result = train_semantic_backbone(generate_world(40, seed=0), config)
    >>> result.backbone(torch.rand(2, 3, 32, 32)).cls.shape, 0.0 <= result.report["test_accuracy"] <= 1.0
    (torch.Size([2, 16]), True)
    """
    config = config or SemanticBackboneConfig.tiny()
    if classes is None:
        present = {world.scenes[i].category for i in world.indices("train")}
        classes = [shape for shape in SHAPES if shape in present]
    classes = list(classes)
    train_index = world.indices("train")
    if config.max_train_scenes is not None:
        train_index = train_index[: config.max_train_scenes]
    if not len(train_index):
        raise ConfigError("the world has no 'train' scenes to train on")
    scenes = [world.scenes[i] for i in train_index]
    unknown = sorted({scene.category for scene in scenes} - set(classes))
    if unknown:
        raise ConfigError(f"categories {unknown} are not in classes {classes}")
    device = resolve_device(config.device)
    backbone, head = _build(config, len(classes), name, source="trained-in-memory", training=True)
    backbone.to(device).train()
    head.to(device).train()
    labels = torch.tensor([classes.index(scene.category) for scene in scenes])
    parameters = list(backbone.parameters()) + list(head.parameters())
    decay = [p for p in parameters if p.ndim >= 2]
    no_decay = [p for p in parameters if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
    )
    loss_fn = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    shuffle = torch.Generator().manual_seed(config.seed)
    steps_per_epoch = math.ceil(len(scenes) / config.batch_size)
    total = steps_per_epoch * config.epochs
    history: list[dict[str, float]] = []
    started = time.perf_counter()
    render_seconds = 0.0
    step = 0
    for epoch in range(config.epochs):
        if epoch % config.rerender_every == 0:
            tick = time.perf_counter()
            pixels = _render_batch(scenes, config.image_size, jitter_seed=epoch + 1)
            render_seconds += time.perf_counter() - tick
        order = torch.randperm(len(scenes), generator=shuffle)
        loss_sum, correct = 0.0, 0
        for start in range(0, len(scenes), config.batch_size):
            batch = order[start : start + config.batch_size]
            x = pixels[batch].to(device).float().div_(255.0)
            # Mirror images keep their category: a free second view of each scene.
            flip = torch.rand(len(batch), generator=shuffle) < 0.5
            x = torch.where(flip.to(device).view(-1, 1, 1, 1), x.flip(3), x)
            y = labels[batch].to(device)
            for group in optimizer.param_groups:
                group["lr"] = _lr_at(step, total, config)
            tokens = backbone(x)
            logits = head(tokens.cls)
            loss = loss_fn(logits, y)
            if config.patch_loss_weight:
                loss = loss + config.patch_loss_weight * loss_fn(head(tokens.patches.amax(dim=1)), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                nn.utils.clip_grad_norm_(parameters, config.grad_clip)
            optimizer.step()
            step += 1
            loss_sum += float(loss.detach()) * len(batch)
            correct += int((logits.argmax(dim=1) == y).sum())
        history.append({"epoch": epoch + 1, "loss": loss_sum / len(scenes), "train_accuracy": correct / len(scenes)})
        if progress is not None:
            progress(
                f"epoch {epoch + 1}/{config.epochs}: loss {history[-1]['loss']:.3f}, "
                f"train acc {history[-1]['train_accuracy']:.3f}"
            )
    train_seconds = time.perf_counter() - started
    backbone.eval()
    head.eval()
    for module in backbone.modules():
        if isinstance(module, ConvStemPatchEmbed):
            module.fold_batch_norm()
    result = SemanticBackbone(backbone, head, classes, config, report={})
    report: dict[str, Any] = {
        "train_seconds": round(train_seconds, 2),
        "render_seconds": round(render_seconds, 2),
        "train_scenes": len(scenes),
        "world_seed": world.seed,
        "history": history,
        "chance": 1.0 / len(classes),
        "train_accuracy": _accuracy(result, scenes, config.image_size, None, config.batch_size),
        "threads": torch.get_num_threads(),
    }
    for split in ("val", "test"):
        if len(world.indices(split)):
            report[f"{split}_accuracy"] = result.accuracy(world, split)
    result.report = report
    return result


def load_semantic_model(directory: str | Path, *, device: str | torch.device = "cpu") -> SemanticBackbone:
    """Load what :meth:`SemanticBackbone.save` wrote, head included."""
    from safetensors.torch import load_file

    device = resolve_device(device)
    directory = Path(directory)
    weights, meta_path = directory / WEIGHTS_FILE, directory / CONFIG_FILE
    if not weights.is_file() or not meta_path.is_file():
        raise WeightsNotFoundError(f"{directory} has no semantic backbone: expected {WEIGHTS_FILE} and {CONFIG_FILE}")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if meta.get("format_version") != FORMAT_VERSION:
        raise ConfigError(f"{meta_path}: format_version {meta.get('format_version')!r}, expected {FORMAT_VERSION}")
    config = SemanticBackboneConfig(**{**meta["config"], "device": str(device)})
    backbone, head = _build(config, len(meta["classes"]), meta["name"], source=str(directory.resolve()))
    tensors = load_file(str(weights))
    backbone.load_state_dict({k[len("backbone.") :]: v for k, v in tensors.items() if k.startswith("backbone.")})
    head.load_state_dict({k[len("head.") :]: v for k, v in tensors.items() if k.startswith("head.")})
    if backbone.weights_digest() != meta["weights_digest"]:
        raise ConfigError(f"{weights}: weights digest differs from the one in {CONFIG_FILE} (corrupt or edited file)")
    backbone.to(device).eval()
    head.to(device).eval()
    return SemanticBackbone(backbone, head, list(meta["classes"]), config, dict(meta.get("report", {})))


def load_semantic_backbone(directory: str | Path, *, device: str | torch.device = "cpu") -> Backbone:
    """The saved semantic ViT as a percep-rag :class:`~percep_rag.backbones.Backbone` (eval mode).

    Use it like any backbone, e.g. ``AlignedEmbedder(load_semantic_backbone(dir), pooling="cls")``.
    """
    return load_semantic_model(directory, device=device).backbone
