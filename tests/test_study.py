"""The perceptual-world study in its small CPU setting: alignment must beat the base.

One seed of :meth:`StudyConfig.small` (a few minutes on 2 cores): a semantic ViT trained
here, gLocal and LoRA-HA fitted on its NIGHTS-style triplets, everything scored on
held-out scenes and triplets the alignments never saw. The full run and its discussion
are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import json

import pytest

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


@pytest.mark.parametrize("aligned", sorted(ALIGNED_OVER_BASE))
def test_alignment_beats_the_base_on_held_out_2afc(small_study, aligned):
    study, _ = small_study
    base = ALIGNED_OVER_BASE[aligned]
    gain = value(study, "2AFC", aligned) - value(study, "2AFC", base)
    assert gain > 0.01, f"{aligned} vs {base}: 2AFC gain {gain:+.4f}\n{study.table()}"


def test_alignment_beats_the_base_on_counting(small_study):
    study, _ = small_study
    base_mae = min(value(study, "count MAE", "base"), value(study, "count MAE", "base-patch"))
    for aligned in ("glocal", "glocal-patch"):
        assert value(study, "count MAE", aligned) < value(study, "count MAE", ALIGNED_OVER_BASE[aligned])
    # The best aligned space counts better than the best base space, not just its own base.
    best_aligned = min(value(study, "count MAE", method) for method in ALIGNED_OVER_BASE)
    assert best_aligned < base_mae - 0.1, study.table()


def test_the_base_is_saved_and_reloads_bit_identically(small_study):
    study, workdir = small_study
    model = load_semantic_model(workdir / "seed0" / "base")
    config = json.loads((workdir / "seed0" / "base" / "config.json").read_text())
    assert config["config"]["epochs"] == study.config.backbone.epochs
    assert model.report["test_accuracy"] == pytest.approx(study.seeds[0].base_semantic_accuracy)
