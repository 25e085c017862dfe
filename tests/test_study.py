"""The perceptual-world study in its small CPU setting: alignment must beat the base.

One seed of :meth:`StudyConfig.small` (a few minutes on 2 cores): a semantic ViT trained
here, gLocal and LoRA-HA fitted on its NIGHTS-style triplets, everything scored on
held-out scenes and triplets the alignments never saw. The full run and its discussion
are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import json

import pytest
import torch

from percep_rag.datasets.synthetic_backbone import load_semantic_model
from percep_rag.evaluation.study import METHODS, StudyConfig, run_study

pytestmark = pytest.mark.slow

ALIGNED_OVER_BASE = {"glocal": "base", "lora-image": "base", "glocal-patch": "base-patch", "lora-patch": "base-patch"}


@pytest.fixture(scope="module")
def small_study(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("study")
    return run_study(StudyConfig.small(), seeds=(0,), workdir=workdir), workdir


def value(study, metric: str, method: str) -> float:
    return study.values(metric, method)[0]


def test_every_method_has_every_metric_in_range(small_study):
    study, _ = small_study
    assert study.metric_names == [
        "2AFC", "count MAE", "count RMSE", "recall@1", "recall@3", "recall@5", "few-shot count acc", "semantic kNN acc",
    ]  # fmt: skip
    for metric in study.metric_names:
        for method in METHODS:
            number = value(study, metric, method)
            assert number >= 0 and (metric.startswith("count") or number <= 1), (metric, method, number)
    for method in METHODS:
        recall = [value(study, f"recall@{k}", method) for k in (1, 3, 5)]
        assert recall == sorted(recall)  # recall@k can only grow with k
        assert value(study, "count RMSE", method) >= value(study, "count MAE", method)
    assert "| 2AFC |" in study.table() and "glocal-patch" in study.table()
    assert set(study.seeds[0].seconds) == {"base training", "rendering", "gLocal fits", "LoRA fits", "evaluation"}


def gains(study, metric: str) -> dict[str, float]:
    """Aligned minus its own base, per aligned method."""
    return {m: value(study, metric, m) - value(study, metric, base) for m, base in ALIGNED_OVER_BASE.items()}


def best(study, metric: str, methods, lower: bool = False) -> float:
    numbers = [value(study, metric, method) for method in methods]
    return min(numbers) if lower else max(numbers)


def test_alignment_beats_the_base_on_held_out_2afc(small_study):
    study, _ = small_study
    gain = gains(study, "2AFC")
    report = f"held-out 2AFC gains over the base: {gain}\n{study.table()}"
    # Per method the gains vary with the run (1 vs 2 threads moved gLocal-patch from +0.025
    # to +0.005); every method keeps its best epoch on val (epoch 0 is the base), so none
    # loses much. Together, and at best, alignment agrees with the judge clearly better.
    assert all(change > -0.01 for change in gain.values()), report
    assert sum(gain.values()) / len(gain) > 0.01, report
    assert gain["lora-patch"] > 0.02, report
    assert best(study, "2AFC", ALIGNED_OVER_BASE) > best(study, "2AFC", ("base", "base-patch")) + 0.02, report


def test_alignment_beats_the_base_on_counting_and_instance_retrieval(small_study):
    study, _ = small_study
    changes = gains(study, "count MAE")
    report = f"count MAE changes: {changes}\n{study.table()}"
    # A fit may keep its start (epoch 0, the identity: a change of exactly 0, as gLocal-patch
    # did on 1 thread before its hyper-parameters were chosen on val). Per method the one-seed
    # change depends on the CPU's float rounding: gLocal (cls) moved the count MAE by -0.0 on the
    # AMD EPYCs and by +0.041 (2% of 2.23) on an AMX Xeon, fp32 both. So none makes counting
    # clearly worse, and together they make it better, on every CPU and 1 or 2 threads.
    assert all(change < 0.05 for change in changes.values()), report
    assert sum(changes.values()) < 0, report
    aligned_mae = best(study, "count MAE", ALIGNED_OVER_BASE, lower=True)
    assert aligned_mae < best(study, "count MAE", ("base", "base-patch"), lower=True) - 0.05, report
    assert best(study, "recall@1", ALIGNED_OVER_BASE) > best(study, "recall@1", ("base", "base-patch")) + 0.1, report


def test_the_base_is_saved_and_reloads_bit_identically(small_study):
    study, workdir = small_study
    model = load_semantic_model(workdir / "seed0" / "base")
    config = json.loads((workdir / "seed0" / "base" / "config.json").read_text())
    assert config["config"]["epochs"] == study.config.backbone.epochs
    assert model.report["test_accuracy"] == pytest.approx(study.seeds[0].base_semantic_accuracy)


def test_the_benchmark_script_draws_both_figures(tmp_path):
    """benchmarks/perceptual_world.py's figures, on a micro study (seconds, not a finding)."""
    import importlib.util
    from pathlib import Path

    from PIL import Image

    from percep_rag.alignment.glocal import GlocalFitConfig
    from percep_rag.alignment.lora import LoraFitConfig
    from percep_rag.datasets.synthetic_backbone import SemanticBackboneConfig
    from percep_rag.viz import GridLayout

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "perceptual_world.py"
    spec = importlib.util.spec_from_file_location("perceptual_world", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = StudyConfig(
        scenes=120,
        train_triplets=60,
        val_triplets=30,
        test_triplets=30,
        backbone=SemanticBackboneConfig.tiny(embed_dim=16, depth=1, num_heads=2, epochs=1, device="cpu"),
        glocal=GlocalFitConfig(epochs=2, min_epochs=0, device="cpu"),
        lora=LoraFitConfig(epochs=1, device="cpu"),
        device="cpu",
    )
    result = run_study(config, seeds=(3,), workdir=tmp_path / "work")
    assert module.best_aligned(result, "count MAE") in {"glocal", "lora-image", "glocal-patch", "lora-patch"}
    module.draw_neighbours(result, tmp_path / "work", tmp_path, rows=4)
    for name in ("neighbours_count.png", "neighbours_instance.png"):
        assert Image.open(tmp_path / name).size == GridLayout(title=True).size(4, 3)


def test_the_gpu_preset_builds_and_trains_on_cpu():
    """No GPU here: at least the GPU preset's bigger ViT (8x8 patches, 192-d, 6 blocks) and
    its recipes are valid and run an epoch (on a 60-scene world, on the CPU)."""
    from percep_rag.datasets.synthetic_backbone import train_semantic_backbone

    config = StudyConfig()
    assert config.backbone.device == "cuda" and config.backbone.patch_size == 8
    world = config.model_copy(update={"scenes": 60}).world(0)
    model = train_semantic_backbone(world, config.backbone.model_copy(update={"device": "cpu", "epochs": 1}))
    assert model.backbone.dim == 192 and model.backbone(torch.rand(2, 3, 64, 64)).patches.shape == (2, 64, 192)
