"""The perceptual-world study pipeline runs end to end (a micro setting; the findings come
from ``benchmarks/perceptual_world.py``, see benchmarks/RESULTS.md)."""

from __future__ import annotations

import pytest

from percep_rag.alignment.glocal import GlocalFitConfig
from percep_rag.alignment.lora import LoraFitConfig
from percep_rag.datasets.synthetic_backbone import SemanticBackboneConfig
from percep_rag.evaluation.study import METHODS, StudyConfig, run_study


@pytest.fixture(scope="module")
def micro_study(tmp_path_factory):
    config = StudyConfig(
        scenes=120,
        train_triplets=80,
        val_triplets=40,
        test_triplets=60,
        backbone=SemanticBackboneConfig.tiny(embed_dim=16, depth=1, num_heads=2, epochs=1, device="cpu"),
        glocal=GlocalFitConfig(epochs=3, min_epochs=0, device="cpu"),
        lora=LoraFitConfig(epochs=1, device="cpu"),
        knn=3,
        device="cpu",
    )
    return run_study(config, seeds=(0,), workdir=tmp_path_factory.mktemp("study"))


def test_every_method_has_every_metric_in_range(micro_study):
    metrics = micro_study.metric_names
    assert metrics == [
        "2AFC", "count MAE", "count RMSE", "recall@1", "recall@3", "recall@5", "few-shot count acc", "semantic kNN acc",
    ]  # fmt: skip
    for metric in metrics:
        for method in METHODS:
            value = micro_study.values(metric, method)[0]
            assert value >= 0 and (metric.startswith("count") or value <= 1), (metric, method, value)
    for method in METHODS:
        recall = [micro_study.values(f"recall@{k}", method)[0] for k in (1, 3, 5)]
        assert recall == sorted(recall)  # recall@k can only grow with k
        assert micro_study.values("count RMSE", method)[0] >= micro_study.values("count MAE", method)[0]
    assert "| 2AFC |" in micro_study.table()
