"""percep-rag's vectors of DreamSim's released models equal ``dreamsim``'s own (issue 34, item 4).

One release folder of RANDOM weights at real ViT-B size is written once for the module in the
release's exact layout (:func:`~percep_rag.backbones.dreamsim_random.write_random_release`).
``dreamsim`` 0.2.1 builds its model from that folder with its own ``dreamsim()`` (its
``PerceptualModel`` after ``get_peft_model`` and ``PeftModel.from_pretrained``); percep-rag
reads the same folder as ``dreamsim:<type>``. Both embed the same PIL images through their own
preprocessing in fp32, and their vectors must agree to 1e-5 (max abs difference): aligned
(with the adapter), base (dreamsim's adapter disabled) and the distance ``model(a, b)``.

Where ``dreamsim`` calls ``torch.hub.load('facebookresearch/dino:main', 'dino_vitb16')`` the
test hands it the same architecture locally: DINO's ``vit_base(patch_size=16, num_classes=0)``
from ``dreamsim/feature_extraction/vision_transformer.py`` (DreamSim's copy of DINO's
``vision_transformer.py``), loaded strictly from ``<folder>/checkpoints/dino_vitbase16_pretrain.pth``
as DINO's ``hubconf.py`` loads the file it downloads there. Nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import gc
from pathlib import Path

import numpy as np
import pytest
import torch

from percep_rag import AlignedEmbedder, EmbedderSpec
from percep_rag.backbones.dreamsim_random import write_random_release
from tests.conftest import make_image

dreamsim = pytest.importorskip("dreamsim", reason="the parity test needs `dreamsim` (in [dev])")

TOLERANCE = 1e-5
TYPES = ("ensemble", "clip_vitb32", "dino_vitb16", "dino_vitb16_patch")


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    return write_random_release(tmp_path_factory.mktemp("dreamsim-release"), TYPES, seed=3)


@pytest.fixture(scope="module")
def images():
    # Not square and not 224: DreamSim squashes to 224 x 224 with PIL's bicubic.
    return [make_image(seed, size=(71 + 9 * seed, 53)) for seed in range(3)]


def _hub_load_locally(repo: str, model: str, *args, **kwargs):
    """What DINO's hubconf does for ``dino_vitb16``, with the file torch.hub would have downloaded."""
    from dreamsim.feature_extraction.vision_transformer import vit_base

    if (repo, model) != ("facebookresearch/dino:main", "dino_vitb16"):
        raise AssertionError(f"unexpected torch.hub.load({repo!r}, {model!r})")
    network = vit_base(patch_size=16, num_classes=0)
    state = torch.load(Path(torch.hub.get_dir()) / "checkpoints" / "dino_vitbase16_pretrain.pth", weights_only=True)
    network.load_state_dict(state, strict=True)
    return network


@contextlib.contextmanager
def dreamsim_model(folder: Path, kind: str):
    """``dreamsim``'s own model of ``kind`` from ``folder`` (torch.hub served locally, its hub dir restored)."""
    hub_dir, hub_load = torch.hub.get_dir(), torch.hub.load
    torch.hub.load = _hub_load_locally
    try:
        patch = kind.endswith("_patch")
        model, preprocess = dreamsim.dreamsim(
            pretrained=True,
            device="cpu",
            cache_dir=str(folder),
            normalize_embeds=True,
            dreamsim_type=kind.removesuffix("_patch"),
            use_patch_model=patch,
        )
    finally:
        torch.hub.load = hub_load
        torch.hub.set_dir(hub_dir)
    try:
        yield model, preprocess
    finally:
        del model
        gc.collect()


def _dreamsim_vectors(model, pixels: torch.Tensor, patch: bool) -> np.ndarray:
    """``model.embed``; the patch models' pooled as their distance pools them: ``[CLS, mean(patches)]``, unit length."""
    embedded = model.embed(pixels)
    if patch:
        embedded = torch.cat([embedded[:, 0], embedded[:, 1:].mean(dim=1)], dim=-1)
        embedded = torch.nn.functional.normalize(embedded, dim=-1)
    return embedded.numpy()


@pytest.mark.slow
# dreamsim's own code: it wraps its model with peft twice, and builds DINO's head with the old weight_norm.
@pytest.mark.filterwarnings("ignore:Already found a `peft_config`:UserWarning")
@pytest.mark.filterwarnings("ignore:`torch.nn.utils.weight_norm` is deprecated:FutureWarning")
@pytest.mark.parametrize("kind", TYPES)
def test_vectors_and_distance_equal_dreamsims_own(release, images, kind):
    patch = kind.endswith("_patch")
    spec = EmbedderSpec(
        backbone=f"dreamsim:{kind}",
        weights=str(release),
        pooling="cls+patchmean" if patch else "cls",
        precision="fp32",
        compile="never",
    )
    ours = AlignedEmbedder.from_spec(spec)
    assert ours.alignment.kind == "dreamsim" and ours.fingerprint.random_weights
    both = ours.embed_both(images)
    del ours
    gc.collect()
    with torch.inference_mode(), dreamsim_model(release, kind) as (model, preprocess):
        loaded_b = [p for name, p in model.named_parameters() if "lora_B" in name]
        assert loaded_b and all(p.abs().sum() > 0 for p in loaded_b)  # dreamsim really loaded the adapter
        pixels = torch.cat([preprocess(image) for image in images])
        aligned = _dreamsim_vectors(model, pixels, patch)
        with model.disable_adapter():
            base = _dreamsim_vectors(model, pixels, patch)
        distance = model(pixels[:1].expand(len(images) - 1, -1, -1, -1), pixels[1:]).numpy()
    assert both.aligned.shape == aligned.shape and both.base.shape == base.shape
    differences = {
        "aligned": np.abs(both.aligned - aligned).max(),
        "base": np.abs(both.base - base).max(),
        "distance": np.abs((1.0 - both.aligned[1:] @ both.aligned[0]) - distance).max(),
    }
    print(f"dreamsim:{kind} max abs difference to dreamsim 0.2.1: {differences}")
    assert max(differences.values()) <= TOLERANCE, differences
    assert np.abs(both.aligned - both.base).max() > 0.05  # the adapter changes the vectors
