"""Which judgments help which task: the paper's triplet-source ablation (its Figure 8) in
the generated world.

One world and one semantic base ViT, trained here from a random init as in
:func:`~percep_rag.study.run.run_study_seed` (by default once, shared by every seed, as the
paper fine-tunes one pretrained backbone; ``shared_base=False``: one per seed); then, per
seed, for each kind of triplet in
:data:`~percep_rag.study.kinds.TRIPLET_KINDS` (mid-level NIGHTS-like, low-level
BAPPS-like, class-based ImageNet-like, semantic THINGS-like odd-one-out), the same number
of train and val triplets is written in the format the kind mimics, read back by
:func:`~percep_rag.datasets.triplets.read_triplets` (what ``percep-rag align fit`` reads)
and fitted with gLocal (:func:`~percep_rag.alignment.workflow.fit_glocal_on_images`) and
LoRA-HA (:func:`~percep_rag.alignment.lora.fit_lora`) with the same recipe and epochs for
every kind, each keeping its best epoch on its own kind's val triplets. Every space is
scored by :func:`~percep_rag.study.run.downstream_metrics` on held-out test scenes
(counting, instance retrieval, semantic kNN, retrieval-augmented few-shot counting: the
majority label of the 3 retrieved train scenes, no VLM) and by 2AFC on held-out
mid-level test triplets. :class:`AblationResult` gives gains over the base, per seed, with
95% t-intervals over seeds (over what the seeds vary: triplets, fits, test triplets);
:mod:`~percep_rag.study.ablation_report` draws and tabulates them.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from percep_rag.alignment.lora import LoraAlignment, fit_lora
from percep_rag.alignment.workflow import evaluate_2afc, fit_glocal_on_images
from percep_rag.datasets.triplets import read_nights_csv
from percep_rag.embedder import AlignedEmbedder
from percep_rag.errors import ConfigError
from percep_rag.evaluation.stats import Interval, mean_ci95
from percep_rag.study.backbone import (
    SemanticBackbone,
    SemanticBackboneConfig,
    load_semantic_model,
    train_semantic_backbone,
)
from percep_rag.study.kinds import TRIPLET_KINDS, TripletFiles
from percep_rag.study.nights import make_nights_triplets
from percep_rag.study.run import StageClock, StudyConfig, downstream_metrics, render_scenes

ABLATION_METHODS = ("glocal", "lora")
#: Eager forwards: every arm is a new embedder, so ``compile="auto"`` would compile these tiny
#: ViTs a dozen times a seed (each compile costing more CPU than the whole job it speeds up).
_EMBEDDER = {"compile": "never"}
#: Task -> (metric of :func:`downstream_metrics`, lower is better).
TASKS: dict[str, tuple[str, bool]] = {
    "counting": ("count MAE", True),
    "instance retrieval": ("recall@1", False),
    "semantic kNN": ("semantic kNN acc", False),
    "few-shot": ("few-shot count acc", False),
}
#: Agreement with the mid-level judge on held-out NIGHTS-like test triplets: reported, not a task.
TWO_AFC = "2AFC (mid-level test)"
#: The default run's size, chosen by :func:`percep_rag.study.ablation_power.choose_size` from
#: the pilots in benchmarks/results/triplet_ablation_power (``python
#: benchmarks/triplet_ablation_power.py size ...`` prints the reasoning; tests/test_ablation.py
#: checks these are what it chooses): train triplets per kind (val: a quarter as many), LoRA
#: epochs, and seeds.
DEFAULT_TRAIN_TRIPLETS = 400
DEFAULT_LORA_EPOCHS = 2
DEFAULT_SEEDS = 17


class AblationConfig(BaseModel):
    """The world, base and recipes (a :class:`StudyConfig`) and the ablation's arms.

    Every kind gets ``study.train_triplets`` train and ``study.val_triplets`` val triplets
    and the same gLocal / LoRA recipe (``study.glocal``, ``study.lora``); ``study.test_triplets``
    mid-level test triplets score 2AFC. :meth:`default` is the one-command CPU run,
    :meth:`small` the test suite's.

    >>> AblationConfig.default().kinds
    ('mid-level', 'low-level', 'class', 'semantic')
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    study: StudyConfig = Field(default_factory=lambda: AblationConfig.default_study())
    kinds: tuple[str, ...] = tuple(TRIPLET_KINDS.names())
    methods: tuple[Literal["glocal", "lora"], ...] = ABLATION_METHODS
    #: The patch-level objective (``[CLS, mean(patch)]``): the better space in the study.
    pooling: Literal["cls", "cls+patchmean"] = "cls+patchmean"
    #: One world and one base for every seed, trained once from ``base_seed`` (the paper's
    #: protocol: a fixed backbone, seeds vary the triplets, the fits and the test draws);
    #: ``False`` draws a world and trains a base per seed (the study's protocol, 3x the cost).
    shared_base: bool = True
    base_seed: int = 0

    @field_validator("kinds")
    @classmethod
    def _known_kinds(cls, kinds: tuple[str, ...]) -> tuple[str, ...]:
        for kind in kinds:
            TRIPLET_KINDS.get(kind)
        if not kinds or len(set(kinds)) != len(kinds):
            raise ConfigError(f"kinds must be distinct and at least one, got {kinds}")
        return kinds

    @staticmethod
    def default_study() -> StudyConfig:
        """The study's small CPU world and base (3 shapes, 2,000 scenes, 16 epochs) with
        :data:`DEFAULT_TRAIN_TRIPLETS` train triplets per kind, a quarter as many val triplets
        and :data:`DEFAULT_LORA_EPOCHS` LoRA epochs (sized by their power: benchmarks/RESULTS.md)."""
        small = StudyConfig.small()
        return small.model_copy(
            update={
                "train_triplets": DEFAULT_TRAIN_TRIPLETS,
                "val_triplets": DEFAULT_TRAIN_TRIPLETS // 4,
                "lora": small.lora.model_copy(update={"epochs": DEFAULT_LORA_EPOCHS}),
            }
        )

    @classmethod
    def default(cls) -> AblationConfig:
        """The ablation ``percep-rag study ablation`` runs by default (with :data:`DEFAULT_SEEDS` seeds)."""
        return cls()

    @classmethod
    def at_size(cls, train_triplets: int, lora_epochs: int, *, val_fraction: float = 0.25) -> AblationConfig:
        """The default world, base and recipes with ``train_triplets`` train triplets per kind,
        ``val_fraction`` as many val triplets (the default's 400 : 100) and ``lora_epochs``
        LoRA epochs: the two knobs the default run is sized by (:mod:`~percep_rag.study.ablation_power`).

        >>> AblationConfig.at_size(800, 3).study.val_triplets
        200
        """
        if train_triplets < 1 or lora_epochs < 1 or not 0 < val_fraction <= 1:
            raise ConfigError(
                f"need train_triplets >= 1, lora_epochs >= 1 and 0 < val_fraction <= 1, "
                f"got {train_triplets}, {lora_epochs}, {val_fraction}"
            )
        study = cls.default_study()
        study = study.model_copy(
            update={
                "train_triplets": train_triplets,
                "val_triplets": max(1, round(train_triplets * val_fraction)),
                "lora": study.lora.model_copy(update={"epochs": lora_epochs}),
            }
        )
        return cls(study=study)

    @classmethod
    def small(cls) -> AblationConfig:
        """A micro world for the test suite (seconds per seed; tests the protocol, not a finding)."""
        from percep_rag.alignment.glocal import GlocalFitConfig
        from percep_rag.alignment.lora import LoraFitConfig

        study = StudyConfig(
            scenes=120,
            shapes=("circle", "triangle", "cross"),
            split_fractions={"train": 0.6, "val": 0.2, "test": 0.2},
            train_triplets=32,
            val_triplets=16,
            test_triplets=16,
            image_size=32,
            backbone=SemanticBackboneConfig.tiny(
                embed_dim=16, depth=1, num_heads=2, epochs=1, image_size=32, device="cpu"
            ),
            glocal=GlocalFitConfig(epochs=3, min_epochs=0, device="cpu"),
            lora=LoraFitConfig(epochs=1, device="cpu"),
            knn=3,
            device="cpu",
        )
        return cls(study=study)

    @property
    def arms(self) -> list[str]:
        """``base`` and every ``<method>/<kind>``."""
        return ["base", *(f"{method}/{kind}" for method in self.methods for kind in self.kinds)]


@dataclass
class AblationSeed:
    """One seed: ``metrics[metric][arm]``, what each fit chose (``fits[arm]``), stage times."""

    seed: int
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    fits: dict[str, dict[str, float]] = field(default_factory=dict)
    triplets: dict[str, dict[str, int]] = field(default_factory=dict)
    base_semantic_accuracy: float = 0.0
    seconds: dict[str, float] = field(default_factory=dict)
    #: CPU seconds of this process (all threads) for the seed's own stages (base training not
    #: included): what a loaded machine inflates least, and what the default run is sized by.
    cpu_seconds: float = 0.0


@dataclass
class AblationResult:
    """Every seed of an ablation; gains over the base with 95% t-intervals over seeds.

    >>> seeds = [AblationSeed(s, {"recall@1": {"base": 0.2, "lora/class": 0.2 + d}}) for s, d in [(0, 0.1), (1, 0.3)]]
    >>> round(AblationResult(AblationConfig.small(), seeds).gain("instance retrieval", "lora/class").mean, 3)
    0.2
    """

    config: AblationConfig
    seeds: list[AblationSeed]

    def values(self, metric: str, arm: str) -> list[float]:
        return [seed.metrics[metric][arm] for seed in self.seeds]

    def gains(self, task: str, arm: str) -> list[float]:
        """Per seed, ``arm`` minus the base on ``task`` (a task of :data:`TASKS` or :data:`TWO_AFC`),
        signed so that positive is better (counting: the drop in MAE)."""
        metric, lower = TASKS.get(task, (task, False))
        sign = -1.0 if lower else 1.0
        return [sign * (s.metrics[metric][arm] - s.metrics[metric]["base"]) for s in self.seeds]

    def gain(self, task: str, arm: str) -> Interval:
        """Mean paired gain over seeds and its 95% t-interval over seeds (see :attr:`varies`)."""
        return mean_ci95(self.gains(task, arm), over=f"{len(self.seeds)} seeds ({self.varies})")

    @property
    def varies(self) -> str:
        """What a seed changes, so what the intervals over seeds are over."""
        if self.config.shared_base:
            return "one world and base; each seed new triplets, fits, test triplets and re-renders"
        return "each seed a new world, base ViT, triplets and fits"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the config and every seed."""
        return {"config": json.loads(self.config.model_dump_json()), "seeds": [asdict(s) for s in self.seeds]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AblationResult:
        """Inverse of :meth:`to_dict`."""
        return cls(AblationConfig.model_validate(data["config"]), [AblationSeed(**s) for s in data["seeds"]])


def _arm_embedders(
    config: AblationConfig, backbone, files: dict[str, TripletFiles], workdir: Path, clock: StageClock, progress: bool
) -> tuple[dict[str, AlignedEmbedder], dict[str, dict[str, float]], dict[str, dict[str, int]]]:
    study = config.study
    base = AlignedEmbedder(backbone, pooling=config.pooling, device=study.device, **_EMBEDDER)
    embedders, fits, counts = {"base": base}, {}, {}
    for kind, written in files.items():
        train, val = written.read()
        counts[kind] = {"train": len(train), "val": len(val)}
        if "glocal" in config.methods:
            with clock(f"gLocal {kind}"):
                transform, report = fit_glocal_on_images(base, train, val, config=study.glocal)
            embedders[f"glocal/{kind}"] = AlignedEmbedder(
                backbone, pooling=config.pooling, alignment=transform, device=study.device, **_EMBEDDER
            )
            fits[f"glocal/{kind}"] = {
                "val_2afc_base": float(report.val_2afc_before or 0.0),
                "val_2afc_best": float(report.val_2afc_after or 0.0),
                "best_epoch": report.best_epoch,
            }
        if "lora" in config.methods:
            with clock(f"LoRA {kind}"):
                run = fit_lora(
                    backbone, train, val, workdir / "fits" / f"lora_{kind}",
                    config=study.lora.model_copy(update={"pooling": config.pooling}), progress=progress,
                )  # fmt: skip
            embedders[f"lora/{kind}"] = AlignedEmbedder(
                backbone,
                pooling=config.pooling,
                alignment=LoraAlignment.load(run.run_dir),
                device=study.device,
                **_EMBEDDER,
            )
            fits[f"lora/{kind}"] = {
                "val_2afc_base": run.base_val_2afc,
                "val_2afc_best": run.best_val_2afc,
                "best_epoch": run.best_epoch,
            }
    return embedders, fits, counts


def ablation_base(config: AblationConfig, seed: int, folder: Path | None = None) -> SemanticBackbone:
    """The base of ``seed``'s world (``config.base_seed``'s with ``shared_base``), trained from a
    random init; with ``folder`` saved there, and loaded from there when it already holds one."""
    world_seed = config.base_seed if config.shared_base else seed
    if folder is not None and (folder / "config.json").is_file():
        return load_semantic_model(folder)
    model = train_semantic_backbone(
        config.study.world(world_seed), config.study.backbone.model_copy(update={"seed": world_seed})
    )
    if folder is not None:
        model.save(folder)
    return model


def run_ablation_seed(
    config: AblationConfig,
    seed: int,
    workdir: Path,
    *,
    base: SemanticBackbone | None = None,
    progress: bool = False,
) -> AblationSeed:
    """Every kind x method and every task for one seed; files under ``workdir``.

    ``base`` is :func:`ablation_base` (trained here when not given). The seed draws the
    triplets, the test triplets and re-rendering, and seeds the gLocal and LoRA fits.
    """
    study, clock = config.study, StageClock()
    world = study.world(config.base_seed if config.shared_base else seed)
    if base is None:
        with clock("base training"):
            base = ablation_base(config, seed)
    cpu_started = time.process_time()
    model = base
    study = study.model_copy(
        update={
            "glocal": study.glocal.model_copy(update={"seed": study.glocal.seed + seed}),
            "lora": study.lora.model_copy(update={"seed": study.lora.seed + seed}),
        }
    )
    config = config.model_copy(update={"study": study})
    train_world, val_world, test_world = (world.subset(split) for split in ("train", "val", "test"))
    with clock("triplets and scenes"):
        files = {
            kind: TRIPLET_KINDS.get(kind).make(
                train_world,
                val_world,
                study.train_triplets,
                study.val_triplets,
                seed * 1000 + 10 * number,
                workdir / "triplets" / kind,
                study.image_size,
            )  # fmt: skip
            for number, kind in enumerate(config.kinds)
        }
        test_made = make_nights_triplets(
            test_world, study.test_triplets, np.random.default_rng(seed + 2), image_size=study.image_size
        )
        test = read_nights_csv(test_made.write_nights(workdir / "test_triplets"), min_votes=6)
        train_paths = render_scenes(train_world, workdir / "scenes_train", study.image_size)
        test_paths = render_scenes(test_world, workdir / "scenes_test", study.image_size)
        jittered = render_scenes(test_world, workdir / "scenes_test_jitter", study.image_size, jitter_seed=seed + 100)
    embedders, fits, counts = _arm_embedders(config, model.backbone, files, workdir, clock, progress)
    result = AblationSeed(seed, fits=fits, triplets=counts)
    result.base_semantic_accuracy = float(model.report.get("test_accuracy", float("nan")))
    with clock("evaluation"):
        for arm, embedder in embedders.items():
            metrics, _ = downstream_metrics(
                embedder.embed, train_paths, test_paths, jittered, train_world, test_world,
                knn=study.knn, shots=study.shots,
            )  # fmt: skip
            metrics[TWO_AFC] = evaluate_2afc(embedder, test).aligned
            for metric, value in metrics.items():
                result.metrics.setdefault(metric, {})[arm] = value
    result.seconds = clock.seconds
    result.cpu_seconds = round(time.process_time() - cpu_started, 2)
    return result


def run_ablation(
    config: AblationConfig | None = None,
    seeds: Sequence[int] = (0, 1, 2),
    *,
    workdir: str | Path | None = None,
    progress: bool = False,
) -> AblationResult:
    """:func:`run_ablation_seed` for every seed (each in ``workdir/seed<n>``; a temporary folder by default)."""
    config = config or AblationConfig.default()
    if not seeds:
        raise ConfigError("the ablation needs at least one seed")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(workdir) if workdir is not None else Path(scratch)
        return AblationResult(
            config, [run_ablation_seed(config, s, root / f"seed{s}", progress=progress) for s in seeds]
        )
