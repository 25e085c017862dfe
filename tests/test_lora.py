"""HA (DreamSim-style) LoRA fine-tuning on a generated perceptual task.

The "human" judges images by a hidden colour tint that is only 20% of each pixel, the rest
being noise, so a random-weight backbone agrees with them only partly. Fine-tuning must
raise agreement on held-out images (a different set of images than training).
"""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
import torch

from percep_rag import AlignedEmbedder, AlignmentError, EmbedderSpec, create_backbone
from percep_rag.alignment.lora import LoraAlignment, LoraFitConfig, fit_lora, hinge_loss, path_resolver
from percep_rag.alignment.metrics import two_afc_from_embeddings
from percep_rag.alignment.triplets import TripletSet

N_IMAGES = 150


@pytest.fixture(scope="module")
def tint_world(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("tint_world")
    rng = np.random.default_rng(0)
    tints = rng.uniform(0, 1, (N_IMAGES, 3))
    for i in range(N_IMAGES):
        noise = rng.integers(0, 256, (32, 32, 3))
        Image.fromarray((0.2 * tints[i] * 255 + 0.8 * noise).astype(np.uint8)).save(root / f"{i}.png")

    def triplets(count: int, ids: np.ndarray) -> TripletSet:
        a, lft, r = (rng.choice(ids, 3 * count) for _ in range(3))
        d_left = np.linalg.norm(tints[a] - tints[lft], axis=1)
        d_right = np.linalg.norm(tints[a] - tints[r], axis=1)
        keep = (np.abs(d_left - d_right) > 0.15) & (a != lft) & (a != r) & (lft != r)
        a, lft, r = a[keep][:count], lft[keep][:count], r[keep][:count]
        target = (d_right[keep][:count] < d_left[keep][:count]).astype(float)
        return TripletSet([f"{x}.png" for x in a], [f"{x}.png" for x in lft], [f"{x}.png" for x in r], target)

    # Disjoint images for train / val / test: the test measures generalisation, not memory.
    return root, triplets(600, np.arange(0, 90)), triplets(150, np.arange(90, 120)), triplets(300, np.arange(120, 150))


def held_out_2afc(embedder: AlignedEmbedder, root, test: TripletSet) -> float:
    vectors = [embedder.embed([str(root / ref) for ref in refs]) for refs in (test.anchor, test.left, test.right)]
    return two_afc_from_embeddings(*vectors, test.target)


@pytest.fixture(scope="module")
def trained(tint_world, tmp_path_factory):
    root, train, val, _ = tint_world
    run = tmp_path_factory.mktemp("lora_run")
    config = LoraFitConfig(epochs=6, lr=1e-3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: more threads only add contention
    try:
        backbone = create_backbone("tiny-vit-random")
        report = fit_lora(backbone, train, val, run, config=config, resolve=path_resolver(root))
    finally:
        torch.set_num_threads(threads)
    return run, report, config


def test_hinge_loss_signs():
    d_left, d_right = torch.tensor([0.5, 0.1]), torch.tensor([0.1, 0.5])
    # target 1 (right more similar) is satisfied by the first triplet and violated by the second
    losses = [hinge_loss(d_left[i : i + 1], d_right[i : i + 1], torch.tensor([1.0]), 0.05).item() for i in range(2)]
    assert losses == pytest.approx([0.0, 0.45])
    assert hinge_loss(d_left, d_right, torch.tensor([0.0, 0.0]), 0.05).item() == pytest.approx(0.45 / 2)


def test_lora_raises_held_out_agreement_clearly_above_base(tint_world, trained):
    root, _, _, test = tint_world
    run, report, _ = trained
    backbone = create_backbone("tiny-vit-random")
    base = held_out_2afc(AlignedEmbedder(backbone), root, test)
    aligned = held_out_2afc(AlignedEmbedder(backbone, alignment=LoraAlignment.load(run)), root, test)
    assert report.best_epoch > 0 and report.best_val_2afc > report.base_val_2afc
    assert aligned >= base + 0.05, (base, aligned)


def test_adapter_metadata_and_merge_is_deterministic(trained):
    run, report, _ = trained
    metadata = json.loads((run / "adapter" / "percep_rag.json").read_text())
    assert metadata["backbone"] == "tiny-vit-random" and metadata["random_base_weights"] is True
    assert metadata["epoch"] == report.best_epoch and metadata["config"]["r"] == 16
    assert metadata["config"]["lora_alpha"] == 32.0 and metadata["config"]["lora_dropout"] == 0.2
    assert not any(p.name.endswith(".pt") for p in (run / "adapter").iterdir())  # the adapter alone
    backbone = create_backbone("tiny-vit-random")
    first = LoraAlignment.load(run).adapt_backbone(backbone)
    second = LoraAlignment.load(run / "adapter").adapt_backbone(backbone)
    assert first.weights_digest() == second.weights_digest() != backbone.weights_digest()
    assert not any("lora" in name for name in first.state_dict())  # merged, plain backbone


def test_run_files_get_umask_permissions_and_the_checkpoint_needs_no_pickle(trained):
    run, report, _ = trained
    mask = os.umask(0)
    os.umask(mask)
    for path in (run / "adapter" / "percep_rag.json", run / "adapter" / "adapter_model.safetensors"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, path
    assert stat.S_IMODE((run / "checkpoint.pt").stat().st_mode) == 0o666 & ~mask
    checkpoint = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert checkpoint["epoch"] == len(report.history) and checkpoint["history"] == report.history


def test_embedder_spec_with_lora_alignment(trained):
    run, _, _ = trained
    embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random", alignment=f"lora:{run}"))
    both = embedder.embed_both(torch.rand(2, 3, 32, 32))
    assert not np.allclose(both.base, both.aligned)
    assert embedder.fingerprint.alignment == "lora" and len(embedder.fingerprint.alignment_digest) == 16


def test_adapter_refuses_another_backbone_or_pooling(trained):
    run, _, _ = trained
    with pytest.raises(AlignmentError, match="trained on 'tiny-vit-random'"):
        AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-clip-random", alignment=f"lora:{run}"))
    with pytest.raises(AlignmentError, match="pooling"):
        AlignedEmbedder.from_spec(
            EmbedderSpec(backbone="tiny-vit-random", pooling="cls+patchmean", alignment=f"lora:{run}")
        )
    with pytest.raises(AlignmentError, match="other weights"):
        AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random", seed=7, alignment=f"lora:{run}"))


def test_not_an_adapter_is_a_clear_error(tmp_path):
    with pytest.raises(AlignmentError, match="not a percep-rag LoRA adapter"):
        LoraAlignment.load(tmp_path)


def test_resume_continues_where_it_stopped(tint_world, tmp_path):
    root, train, val, _ = tint_world
    small_train, small_val = train.subset(np.arange(64)), val.subset(np.arange(32))
    backbone = create_backbone("tiny-ensemble-random")
    config = LoraFitConfig(epochs=1, pooling="cls+patchmean", lr=1e-3)
    first = fit_lora(backbone, small_train, small_val, tmp_path, config=config, resolve=path_resolver(root))
    assert [h["epoch"] for h in first.history] == [1]
    resumed = fit_lora(
        backbone,
        small_train,
        small_val,
        tmp_path,
        config=config.model_copy(update={"epochs": 2}),
        resolve=path_resolver(root),
    )
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    assert resumed.history[0] == first.history[0]
    metadata = json.loads((tmp_path / "adapter" / "percep_rag.json").read_text())
    assert metadata["config"]["lora_alpha"] == 8.0 and metadata["pooled_dim"] == 256  # ensemble defaults
    with pytest.raises(AlignmentError, match="another configuration"):
        fit_lora(backbone, small_train, small_val, tmp_path, config=config.model_copy(update={"lr": 1.0}),
                 resolve=path_resolver(root))  # fmt: skip
    with pytest.raises(AlignmentError, match="other train/val triplets"):
        fit_lora(backbone, train.subset(np.arange(1, 65)), small_val, tmp_path, config=config,
                 resolve=path_resolver(root))  # fmt: skip
    other_weights = create_backbone("tiny-ensemble-random", seed=1)
    with pytest.raises(AlignmentError, match="other weights"):
        fit_lora(other_weights, small_train, small_val, tmp_path, config=config, resolve=path_resolver(root))
