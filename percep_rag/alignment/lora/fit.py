"""Human-aligned (HA) fine-tuning, DreamSim style: LoRA on the backbone's attention
projections, trained with a hinge loss on 2AFC triplets (NIGHTS format).

The distance is ``1 - cos(f(x), f(y))`` with ``f`` the pooled feature (``cls`` for the
image-level objective, ``cls+patchmean`` for the patch-level one), on the raw features as
in DreamSim's training. Only the adapter is saved; inference merges it into a copy of the
backbone (:mod:`percep_rag.alignment.lora.adapter`).

A run directory holds::

    adapter/            the best adapter by validation 2AFC (peft format) + percep_rag.json
    checkpoint.pt       the last epoch's adapter, optimizer and history (to resume);
                        tensors and numbers only, read with torch.load(weights_only=True)

>>> LoraFitConfig().resolved(multi_branch=False).lora_alpha
32.0
"""

from __future__ import annotations

import copy
import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from percep_rag.alignment.lora.adapter import ADAPTER_DIR, METADATA_FILE
from percep_rag.alignment.lora.search import LoraSearch
from percep_rag.alignment.metrics import cosine_distance, two_afc_agreement
from percep_rag.backbones.base import Backbone
from percep_rag.config import Pooling, Precision
from percep_rag.datasets.triplet_set import TripletSet
from percep_rag.devices import DeviceName, resolve_device
from percep_rag.errors import AlignmentError, ConfigError
from percep_rag.io.files import atomic_write, atomic_write_bytes, atomic_write_text
from percep_rag.io.images import ImageSource, decode_image
from percep_rag.io.loader import preprocess_image
from percep_rag.pooling import pool, pooled_dim
from percep_rag.precision import autocast, resolve_precision

CHECKPOINT_FILE = "checkpoint.pt"


class LoraFitConfig(BaseModel):
    """Hyper-parameters of HA fine-tuning; defaults follow DreamSim's released configs.

    ``lora_alpha``/``lora_dropout``/``batch_size`` left at ``None`` take DreamSim's value for
    the backbone: 8 / 0.3 / 16 for ensembles (``train_ensemble_model_lora.yaml``), 32 / 0.2 /
    32 for single models (``train_single_model_lora.yaml``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    pooling: Pooling = "cls"
    r: int = Field(16, gt=0)
    lora_alpha: float | None = Field(None, gt=0)
    lora_dropout: float | None = Field(None, ge=0, lt=1)
    lr: float = Field(3e-4, gt=0)
    betas: tuple[float, float] = (0.5, 0.999)
    weight_decay: float = Field(0.0, ge=0)
    margin: float = Field(0.05, ge=0)
    batch_size: int | None = Field(None, gt=0)
    epochs: int = Field(8, ge=0)
    patience: int | None = Field(None, gt=0, description="stop after this many epochs without a better val 2AFC")
    seed: int = 1234
    device: DeviceName = "auto"
    num_workers: int = Field(0, ge=0)
    amp: bool = True
    #: bf16 autocast (fp32 master weights): ``auto`` on CUDA and AMX/AVX-512 BF16 CPUs; ``amp=False`` means fp32.
    precision: Precision = "auto"

    def resolved(self, *, multi_branch: bool) -> LoraFitConfig:
        """This config with the backbone-dependent defaults filled in."""
        return self.model_copy(
            update={
                "lora_alpha": self.lora_alpha if self.lora_alpha is not None else (8.0 if multi_branch else 32.0),
                "lora_dropout": self.lora_dropout if self.lora_dropout is not None else (0.3 if multi_branch else 0.2),
                "batch_size": self.batch_size or (16 if multi_branch else 32),
            }
        )


@dataclass
class LoraFitReport:
    """What a fit did: per-epoch history, the base and best validation 2AFC, where it saved."""

    run_dir: Path
    base_val_2afc: float
    best_val_2afc: float
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)
    #: With ``fit_lora(search=...)``: one row per grid point (lr, r, best val 2AFC, best epoch).
    search: list[dict[str, Any]] = field(default_factory=list)


def hinge_loss(d_left: torch.Tensor, d_right: torch.Tensor, target: torch.Tensor, margin: float) -> torch.Tensor:
    """DreamSim's hinge loss: ``mean(max(0, margin - (d_left - d_right) * y))``, ``y = 2*round(t) - 1``.

    ``target`` is the share of votes for RIGHT (1: right is the more similar image).

    >>> hinge_loss(torch.tensor([0.5]), torch.tensor([0.1]), torch.tensor([1.0]), 0.05).item()
    0.0
    """
    sign = 2 * torch.round(target) - 1
    return torch.clamp(margin - (d_left - d_right) * sign, min=0).mean()


class TripletImages(Dataset):
    """Item ``i``: the anchor/left/right images of triplet ``i`` as uint8 tensors, and its target."""

    def __init__(self, triplets: TripletSet, backbone: Backbone, resolve: Callable[[Any], ImageSource]):
        if triplets.is_indexed:
            raise ConfigError("LoRA fine-tuning needs triplets of images (paths), not feature indices")
        self.triplets = triplets
        self.preprocess = backbone.preprocess
        self.resolve = resolve

    def __len__(self) -> int:
        return len(self.triplets)

    def _load(self, ref: Any) -> torch.Tensor:
        return preprocess_image(decode_image(self.resolve(ref)), self.preprocess)

    def __getitem__(self, index: int):
        t = self.triplets
        images = [self._load(ref[index]) for ref in (t.anchor, t.left, t.right)]
        return (*images, torch.tensor(t.target[index], dtype=torch.float32))


def path_resolver(root: str | Path | None) -> Callable[[Any], ImageSource]:
    """Map a triplet reference to a file: absolute as is, relative under ``root``."""
    base = Path(root) if root is not None else None

    def resolve(ref: Any) -> ImageSource:
        path = Path(str(ref))
        return str(path if path.is_absolute() or base is None else base / path)

    return resolve


class _Trainer:
    """The training loop; one instance per fit."""

    def __init__(self, backbone: Backbone, config: LoraFitConfig, run_dir: Path):
        import peft

        self.config = config.resolved(multi_branch=len(backbone.branches) > 1)
        self.device = resolve_device(self.config.device)
        self.base_backbone = backbone
        self.run_dir = run_dir
        targets = backbone.lora_target_modules()
        if not targets:
            raise ConfigError(f"backbone {backbone.name!r} has no attention projections LoRA can adapt")
        self.peft_config = peft.LoraConfig(
            r=self.config.r,
            lora_alpha=self.config.lora_alpha,
            lora_dropout=self.config.lora_dropout,
            target_modules=targets,
            bias="none",
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            self.model = peft.get_peft_model(copy.deepcopy(backbone).float(), self.peft_config).to(self.device)
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(
            trainable, lr=self.config.lr, betas=self.config.betas, weight_decay=self.config.weight_decay
        )
        precision = self.config.precision if self.config.amp or self.config.precision != "auto" else "fp32"
        self.compute_dtype = resolve_precision(precision, self.device)

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        pixels = pixels.to(self.device, non_blocking=True).float().div_(255)
        with autocast(self.device, self.compute_dtype):
            return pool(self.model(pixels), self.config.pooling).float()

    def loader(self, dataset: Dataset, shuffle: bool, epoch: int) -> DataLoader:
        generator = torch.Generator().manual_seed(self.config.seed + epoch)
        return DataLoader(
            dataset,
            batch_size=self.config.batch_size,
            shuffle=shuffle,
            generator=generator,
            num_workers=self.config.num_workers,
            pin_memory=self.device.type == "cuda",
        )

    def train_epoch(self, dataset: Dataset, epoch: int, progress: bool) -> float:
        # Dropout draws from the global RNG: seeded per epoch (so a resumed run draws the same)
        # inside a fork, which leaves the caller's RNG as it was. Init and data order have their own.
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.config.seed * 1_000_003 + epoch)
            return self._train_epoch(dataset, epoch, progress)

    def _train_epoch(self, dataset: Dataset, epoch: int, progress: bool) -> float:
        self.model.train()
        total, count = 0.0, 0
        batches = tqdm(self.loader(dataset, True, epoch), desc=f"epoch {epoch}", disable=not progress, leave=False)
        for anchor, left, right, target in batches:
            n = len(target)
            features = self.features(torch.cat([anchor, left, right]))
            fa, fl, fr = features[:n], features[n : 2 * n], features[2 * n :]
            target = target.to(self.device)
            loss = hinge_loss(cosine_distance(fa, fl), cosine_distance(fa, fr), target, self.config.margin)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            total += loss.item() * n
            count += n
        return total / max(count, 1)

    @torch.no_grad()
    def validate(self, dataset: TripletImages) -> float:
        self.model.eval()
        d_left, d_right = [], []
        for anchor, left, right, _ in self.loader(dataset, False, 0):
            n = len(anchor)
            features = self.features(torch.cat([anchor, left, right]))
            d_left.append(cosine_distance(features[:n], features[n : 2 * n]).cpu())
            d_right.append(cosine_distance(features[:n], features[2 * n :]).cpu())
        return two_afc_agreement(torch.cat(d_left).numpy(), torch.cat(d_right).numpy(), dataset.triplets.target)

    def save_adapter(self, epoch: int, val_2afc: float, base_val_2afc: float) -> None:
        target = self.run_dir / ADAPTER_DIR
        # peft writes its files in place with mode 0600: stage them, then move each into place
        # with the one atomic write (umask permissions, never half a file).
        with tempfile.TemporaryDirectory(prefix=f".{ADAPTER_DIR}.", dir=self.run_dir) as staging:
            self.model.save_pretrained(staging)
            for staged in sorted(Path(staging).iterdir()):
                atomic_write_bytes(target / staged.name, staged.read_bytes())
        metadata = {
            "method": "lora",
            "backbone": self.base_backbone.name,
            "base_weights_digest": self.base_backbone.weights_digest(),
            "random_base_weights": self.base_backbone.random_weights,
            "pooling": self.config.pooling,
            "pooled_dim": pooled_dim(self.base_backbone.dim, self.config.pooling),
            "epoch": epoch,
            "val_2afc": val_2afc,
            "base_val_2afc": base_val_2afc,
            "config": json.loads(self.config.model_dump_json()),
        }
        atomic_write_text(target / METADATA_FILE, json.dumps(metadata, indent=1))

    def save_checkpoint(self, epoch: int, state: dict[str, Any], data_digest: str) -> None:
        import peft

        payload = {
            "epoch": epoch,
            "adapter": peft.get_peft_model_state_dict(self.model),
            "optimizer": self.optimizer.state_dict(),
            "config": json.loads(self.config.model_dump_json()),
            "base_weights_digest": self.base_backbone.weights_digest(),
            "data_digest": data_digest,
            **state,
        }
        # Atomic: a crash never leaves half a checkpoint. Tensors, numbers, strings and
        # containers only, so it loads with weights_only=True (no pickled objects).
        atomic_write(self.run_dir / CHECKPOINT_FILE, lambda temporary: torch.save(payload, temporary))

    def load_checkpoint(self, data_digest: str) -> dict[str, Any] | None:
        import peft

        path = self.run_dir / CHECKPOINT_FILE
        if not path.exists():
            return None
        payload = torch.load(path, map_location=self.device, weights_only=True)
        if _training_identity(payload["config"]) != _training_identity(json.loads(self.config.model_dump_json())):
            raise AlignmentError(
                f"{path} was written with another configuration (model, data or optimiser settings differ); "
                "use a new run directory or resume=False"
            )
        # Resuming onto other base weights or other triplets would silently mix two runs.
        if payload.get("base_weights_digest") != self.base_backbone.weights_digest():
            raise AlignmentError(
                f"{path} was trained on other weights of {self.base_backbone.name!r} "
                f"(digest {payload.get('base_weights_digest')}, these are {self.base_backbone.weights_digest()}); "
                "use a new run directory or resume=False"
            )
        if payload.get("data_digest") != data_digest:
            raise AlignmentError(
                f"{path} was trained on other train/val triplets; use a new run directory or resume=False"
            )
        peft.set_peft_model_state_dict(self.model, payload["adapter"])
        self.optimizer.load_state_dict(payload["optimizer"])
        return payload


def _triplets_digest(*sets: TripletSet) -> str:
    hasher = hashlib.sha256()
    for triplets in sets:
        for column in (triplets.anchor, triplets.left, triplets.right):
            hasher.update("\x1f".join(map(str, column.tolist())).encode())
        hasher.update(np.asarray(triplets.target, dtype=np.float64).tobytes())
    return hasher.hexdigest()[:16]


def _training_identity(config: dict[str, Any]) -> dict[str, Any]:
    # A run may be resumed with more epochs, other patience or workers, on another device.
    return {k: v for k, v in config.items() if k not in ("epochs", "patience", "num_workers", "device")}


def fit_lora(
    backbone: Backbone,
    train: TripletSet,
    val: TripletSet,
    run_dir: str | Path,
    *,
    config: LoraFitConfig | None = None,
    resolve: Callable[[Any], ImageSource] | None = None,
    resume: bool = True,
    progress: bool = True,
    search: LoraSearch | None = None,
) -> LoraFitReport:
    """Fine-tune LoRA adapters on ``train`` triplets, keeping the best by ``val`` 2AFC.

    ``resolve`` maps a triplet reference to an image (default: the reference is a path).
    With ``resume`` a run directory holding a checkpoint continues where it stopped.
    The seed covers the adapter's initialisation, the data order and dropout: the same
    call on the same data gives the same adapter and metrics on the CPU.
    ``search`` (off by default: it costs one fit per point) fits every learning rate x rank
    of a :class:`~percep_rag.alignment.lora.search.LoraSearch` in ``run_dir/grid/`` and
    keeps the best by validation 2AFC as ``run_dir/adapter`` (rows in ``report.search``).
    See ``tests/test_lora.py`` for a complete run on generated images.
    """
    if search is not None:
        from percep_rag.alignment.lora.search import fit_lora_grid

        return fit_lora_grid(
            backbone, train, val, run_dir, config=config or LoraFitConfig(), resolve=resolve, resume=resume,
            progress=progress, search=search, fit=fit_lora,
        )  # fmt: skip
    config = config or LoraFitConfig()
    if len(train) == 0 or len(val) == 0:
        raise ConfigError("LoRA fine-tuning needs non-empty train and val triplet sets")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    resolve = resolve or path_resolver(None)
    trainer = _Trainer(backbone, config, run_dir)
    train_data = TripletImages(train, backbone, resolve)
    val_data = TripletImages(val, backbone, resolve)

    data_digest = _triplets_digest(train, val)
    state = trainer.load_checkpoint(data_digest) if resume else None
    if state is None:
        base = trainer.validate(val_data)  # adapters start at zero: this is the base model
        trainer.save_adapter(0, base, base)
        state = {"epoch": 0, "history": [], "base_val_2afc": base, "best_val_2afc": base, "best_epoch": 0}
        trainer.save_checkpoint(0, state, data_digest)
    stale = 0
    for epoch in range(state["epoch"] + 1, trainer.config.epochs + 1):
        loss = trainer.train_epoch(train_data, epoch, progress)
        score = trainer.validate(val_data)
        state["history"].append({"epoch": epoch, "train_loss": loss, "val_2afc": score})
        if score > state["best_val_2afc"]:
            state.update(best_val_2afc=score, best_epoch=epoch)
            trainer.save_adapter(epoch, score, state["base_val_2afc"])
            stale = 0
        else:
            stale += 1
        state["epoch"] = epoch
        trainer.save_checkpoint(epoch, state, data_digest)
        if trainer.config.patience is not None and stale >= trainer.config.patience:
            break
    return LoraFitReport(
        run_dir=run_dir,
        base_val_2afc=state["base_val_2afc"],
        best_val_2afc=state["best_val_2afc"],
        best_epoch=state["best_epoch"],
        history=state["history"],
    )


def summarize(report: LoraFitReport) -> str:
    """One line per epoch, for logs and the CLI."""
    lines = [f"base val 2AFC {report.base_val_2afc:.4f}"]
    lines += [f"epoch {h['epoch']}: loss {h['train_loss']:.4f}  val 2AFC {h['val_2afc']:.4f}" for h in report.history]
    best = f"best: epoch {report.best_epoch}, val 2AFC {report.best_val_2afc:.4f}"
    lines += [f"grid: lr {row['lr']:g}, rank {row['r']}: best val 2AFC {row['val_2afc']:.4f}" for row in report.search]
    lines.append(f"{best} -> {report.run_dir / ADAPTER_DIR}")
    return "\n".join(lines)
