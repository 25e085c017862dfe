"""percep-rag's vectors of DreamSim's released models equal ``dreamsim``'s own (issue 34, item 4).

One release folder of RANDOM weights at real ViT-B size is written once for the module in the
release's exact layout (:func:`~percep_rag.backbones.dreamsim_random.write_random_release`).
``dreamsim`` 0.2.1 builds its model from that folder with its own ``dreamsim()`` (its
``PerceptualModel`` after ``get_peft_model`` and ``PeftModel.from_pretrained``); percep-rag
reads the same folder as ``dreamsim:<type>``. Both embed the same PIL images through their own
preprocessing in fp32, and their vectors must agree to 1e-5 (max abs difference): aligned
(with the adapter), base (dreamsim's adapter disabled) and the distance ``model(a, b)``.

Where ``dreamsim`` calls ``torch.hub.load`` the test hands it the same architecture locally
(:func:`_hub_load_locally`), loaded strictly from the file torch.hub would have downloaded into
``<folder>/checkpoints/``:

* ``('facebookresearch/dino:main', 'dino_vitb16')``: DINO's ``vit_base(patch_size=16, num_classes=0)``
  from ``dreamsim/feature_extraction/vision_transformer.py`` (DreamSim's copy of DINO's
  ``vision_transformer.py``), as DINO's ``hubconf.py`` builds it;
* ``('facebookresearch/dinov2', 'dinov2_vitb14')``: the same DINO ViT-B at patch 14 and 518 px with
  what DINOv2's ``DinoVisionTransformer`` adds for ViT-B/14 written out here (:class:`_Dinov2Standin`):
  LayerScale after attention and MLP (``ls1``/``ls2.gamma``), the unused ``mask_token``, and position
  embeddings resampled at every forward with a scale of ``(16 + 0.1) / 37`` (bicubic, no antialias),
  as its ``interpolate_pos_encoding`` does for 224-px input.

Nothing is downloaded.
"""

from __future__ import annotations

import contextlib
import gc
from pathlib import Path

import numpy as np
import pytest
import torch

from percep_rag import AlignedEmbedder, EmbedderSpec, PerceptualDistance
from percep_rag.backbones.dreamsim_random import write_random_release
from tests.conftest import make_image

dreamsim = pytest.importorskip("dreamsim", reason="the parity test needs `dreamsim` (in [dev])")

TOLERANCE = 1e-5
TYPES = ("ensemble", "clip_vitb32", "dino_vitb16", "dino_vitb16_patch", "dinov2_vitb14")


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    return write_random_release(tmp_path_factory.mktemp("dreamsim-release"), TYPES, seed=3)


@pytest.fixture(scope="module")
def images():
    # Not square and not 224: DreamSim squashes to 224 x 224 with PIL's bicubic.
    return [make_image(seed, size=(71 + 9 * seed, 53)) for seed in range(3)]


class _LayerScale(torch.nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.gamma = torch.nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


def _dinov2_standin() -> torch.nn.Module:
    """A DINOv2 ViT-B/14 on DINO's ViT-B (see the module docstring for what is added)."""
    import math
    import types

    from dreamsim.feature_extraction.vision_transformer import vit_base

    network = vit_base(patch_size=14, num_classes=0, img_size=[518])
    network.mask_token = torch.nn.Parameter(torch.zeros(1, 768))
    for block in network.blocks:
        block.ls1, block.ls2 = _LayerScale(768), _LayerScale(768)

        def block_forward(self, x):
            x = x + self.ls1(self.attn(self.norm1(x))[0])
            return x + self.ls2(self.mlp(self.norm2(x)))

        block.forward = types.MethodType(block_forward, block)

    def interpolate_pos_encoding(self, x, w, h):
        side = int(math.sqrt(self.pos_embed.shape[1] - 1))
        grid = (w // 14 + 0.1) / side, (h // 14 + 0.1) / side
        table = self.pos_embed.float()
        patches = table[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        patches = torch.nn.functional.interpolate(patches, scale_factor=grid, mode="bicubic")
        return torch.cat([table[:, :1], patches.permute(0, 2, 3, 1).reshape(1, -1, table.shape[-1])], dim=1)

    network.interpolate_pos_encoding = types.MethodType(interpolate_pos_encoding, network)
    network.patch_embed.patch_size = (14, 14)  # DINOv2's PatchEmbed keeps a pair
    return network


def _hub_load_locally(repo: str, model: str, *args, **kwargs):
    """What torch.hub would build for ``dreamsim``, with the file it would have downloaded."""
    from dreamsim.feature_extraction.vision_transformer import vit_base

    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    if (repo, model) == ("facebookresearch/dino:main", "dino_vitb16"):
        network, file = vit_base(patch_size=16, num_classes=0), "dino_vitbase16_pretrain.pth"
    elif (repo, model) == ("facebookresearch/dinov2", "dinov2_vitb14"):
        network, file = _dinov2_standin(), "dinov2_vitb14_pretrain.pth"
    else:
        raise AssertionError(f"unexpected torch.hub.load({repo!r}, {model!r})")
    network.load_state_dict(torch.load(checkpoints / file, weights_only=True), strict=True)
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
    api_distance = PerceptualDistance(ours)(images[0], images[1:])  # DreamSim's model(img_a, img_b), ours
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
        "distance": np.abs(api_distance - distance).max(),
    }
    print(f"dreamsim:{kind} max abs difference to dreamsim 0.2.1: {differences}")
    assert max(differences.values()) <= TOLERANCE, differences
    assert np.abs(both.aligned - both.base).max() > 0.05  # the adapter changes the vectors


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Already found a `peft_config`:UserWarning")
def test_align_eval_on_nights_agrees_with_dreamsims_distance(release, tmp_path, capsys):
    """`percep-rag align eval` (2AFC on a NIGHTS-format data.csv) scores a released model as DreamSim's own
    distance does, base and aligned; the scoring is NIGHTS' (ties 0.5), the distances each library's own."""
    from percep_rag.cli import main

    kind, names = "clip_vitb32", [f"{n}.png" for n in range(6)]
    for n, name in enumerate(names):
        make_image(60 + n, size=(50 + 11 * n, 64)).save(tmp_path / name)
    rows = [(0, 1, 2), (0, 2, 1), (3, 4, 5), (3, 5, 4), (1, 3, 5), (2, 4, 0), (5, 0, 3), (4, 1, 2)]
    votes = [(0.0, 1.0), (1.0, 0.0), (0.0, 1.0), (0.5, 0.5), (1.0, 0.0), (0.0, 1.0), (1.0, 0.0), (0.0, 1.0)]
    lines = ["id,left_vote,right_vote,votes,ref_path,left_path,right_path,split,is_imagenet,prompt"]
    for index, ((ref, left, right), (lv, rv)) in enumerate(zip(rows, votes, strict=True)):
        lines.append(f"{index},{lv},{rv},6,{names[ref]},{names[left]},{names[right]},test,False,p")
    (tmp_path / "data.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(SystemExit) as done:
        main(["align", "eval", str(tmp_path / "data.csv"), "-b", f"dreamsim:{kind}", "--weights", str(release),
              "--precision", "fp32", "--no-progress"])  # fmt: skip
    out = capsys.readouterr().out
    assert (done.value.code or 0) == 0, out
    printed = {space: float(out.split(f"{space} ")[1].split(",")[0].split(" ")[0]) for space in ("base", "aligned")}

    from PIL import Image

    target = torch.tensor([rv for _, rv in votes])
    with torch.inference_mode(), dreamsim_model(release, kind) as (model, preprocess):
        pixels = torch.cat([preprocess(Image.open(tmp_path / name)) for name in names])
        ref, left, right = (pixels[[row[i] for row in rows]] for i in range(3))

        def two_afc() -> float:  # DreamSim's evaluation/score.py: score_nights_dataset
            d0, d1 = model(ref, left), model(ref, right)
            return float(((d0 < d1) * (1 - target) + (d1 < d0) * target + (d0 == d1) * 0.5).mean())

        aligned = two_afc()
        with model.disable_adapter():
            base = two_afc()
    print(f"align eval on NIGHTS-format triplets: percep-rag {printed}, dreamsim base {base} aligned {aligned}")
    assert printed == {"base": pytest.approx(base, abs=1e-4), "aligned": pytest.approx(aligned, abs=1e-4)}
