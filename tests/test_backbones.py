"""Backbones: registry, parity with open_clip and timm, shapes, weights lookup."""

from __future__ import annotations

import json

import pytest
import torch

from percep_rag.backbones import create_backbone, get_backbone_entry, list_backbones, weights_present
from percep_rag.backbones.base import state_digest
from percep_rag.backbones.openclip import OPENAI_MEAN, OPENAI_STD, OpenClipBranch, load_openclip_branch
from percep_rag.backbones.timm_vit import TimmVitBranch, load_timm_branch
from percep_rag.backbones.weights import HubFile, resolve_weights
from percep_rag.errors import UnknownBackboneError, WeightsNotFoundError

TINY_CLIP_CFG = {
    "embed_dim": 24,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 48, "layers": 2, "head_width": 24},
    "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
}


def _normalized(pixels: torch.Tensor, mean, std) -> torch.Tensor:
    return (pixels - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def test_registry_lists_the_paper_backbones_and_tiny_models():
    names = list_backbones()
    for expected in [
        "clip-vit-b-32", "clip-vit-b-16", "clip-vit-l-14", "openclip-vit-b-32", "openclip-vit-b-16",
        "openclip-vit-l-14", "dino-vit-b-16", "dinov2-vit-b-14", "dreamsim-ensemble", "tiny-vit-random",
    ]:  # fmt: skip
        assert expected in names
    assert all(
        get_backbone_entry(n).random_only for n in names if n.startswith("tiny-") and n != "tiny-ensemble-random"
    )


def test_unknown_backbone_names_the_known_ones():
    with pytest.raises(UnknownBackboneError, match="tiny-vit-random"):
        create_backbone("vit-huge-9000")


def test_openai_entries_use_quickgelu_and_match_open_clip_pretrained_config():
    import open_clip

    for name in list_backbones():
        entry = get_backbone_entry(name)
        if entry.family not in ("clip", "openclip"):
            continue
        model_name, tag = entry.source
        cfg = open_clip.get_pretrained_cfg(model_name, tag)
        assert cfg, f"{name}: open_clip has no pretrained config {model_name}/{tag}"
        assert entry.hub.repo_id == cfg["hf_hub"].rstrip("/")
        assert ("quickgelu" in model_name) == (entry.family == "clip" or cfg.get("quick_gelu", False))


def test_clip_branch_equals_open_clip_encode_image_after_loading_from_a_local_dir(tmp_path):
    import open_clip

    model = open_clip.model.CLIP(**{k: v for k, v in TINY_CLIP_CFG.items()}).eval()
    torch.manual_seed(3)
    with torch.no_grad():  # random weights everywhere, not open_clip's zero-initialised parts
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.02)
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP_CFG}))
    torch.save(model.state_dict(), tmp_path / "open_clip_pytorch_model.bin")

    branch = load_openclip_branch(f"local-dir:{tmp_path}", None).eval()
    pixels = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        ours = branch(pixels)
        reference = model.encode_image(_normalized(pixels, OPENAI_MEAN, OPENAI_STD))
    torch.testing.assert_close(ours.cls, reference, rtol=0, atol=1e-6)
    assert ours.patches.shape == (3, 16, 24)


def test_timm_branch_equals_forward_features_and_prenorm_equals_last_block(tmp_path):
    import timm

    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, img_size=64).eval()
    branch = TimmVitBranch(vit).eval()
    pixels = torch.rand(2, 3, 64, 64)
    captured = {}
    vit.blocks[-1].register_forward_hook(lambda module, args, output: captured.setdefault("out", output))
    with torch.no_grad():
        reference = vit.forward_features(_normalized(pixels, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)))
        ours = branch(pixels)
        branch.token_source = "prenorm"
        captured.clear()
        prenorm = branch(pixels)
    torch.testing.assert_close(ours.cls, reference[:, 0], rtol=0, atol=0)
    torch.testing.assert_close(ours.patches, reference[:, 1:], rtol=0, atol=0)
    torch.testing.assert_close(prenorm.cls, captured["out"][:, 0], rtol=0, atol=0)
    assert not torch.allclose(prenorm.cls, ours.cls)


def test_timm_branch_loads_a_local_checkpoint_and_resamples_position_embeddings(tmp_path):
    import timm

    source = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0)
    torch.save(source.state_dict(), tmp_path / "vit_tiny.pth")
    loaded = load_timm_branch("vit_tiny_patch16_224", tmp_path / "vit_tiny.pth", image_size=64)
    assert loaded.model.pos_embed.shape[1] == 1 + (64 // 16) ** 2
    torch.testing.assert_close(loaded.model.blocks[0].attn.qkv.weight, source.blocks[0].attn.qkv.weight)


@pytest.mark.parametrize(
    ("name", "dim", "patches"),
    [("tiny-vit-random", 64, 16), ("tiny-clip-random", 32, 16), ("tiny-ensemble-random", 128, 16)],
)
def test_tiny_backbone_shapes(name, dim, patches):
    backbone = create_backbone(name)
    with torch.no_grad():
        out = backbone(torch.rand(2, 3, 32, 32))
    assert out.cls.shape == (2, dim)
    assert out.patches.shape == (2, patches, dim)
    assert backbone.random_weights


def test_dreamsim_ensemble_is_1792_d_with_dino_prenorm_branch():
    backbone = create_backbone("dreamsim-ensemble", "random")
    assert [type(b).__name__ for b in backbone.branches] == ["TimmVitBranch", "OpenClipBranch", "OpenClipBranch"]
    assert backbone.branches[0].token_source == "prenorm"
    assert backbone.dim == 768 + 512 + 512 == 1792
    assert backbone.default_normalization == "center+l2"
    assert backbone.preprocess.resize == "squash" and backbone.preprocess.image_size == 224
    with torch.no_grad():
        out = backbone(torch.rand(1, 3, 224, 224))
    assert out.cls.shape == (1, 1792) and out.patches.shape == (1, 196, 1792)


def test_same_seed_same_weights_other_seed_other_weights():
    assert state_digest(create_backbone("tiny-vit-random", seed=1)) == state_digest(
        create_backbone("tiny-vit-random", seed=1)
    )
    assert state_digest(create_backbone("tiny-vit-random", seed=1)) != state_digest(
        create_backbone("tiny-vit-random", seed=2)
    )


def test_random_init_leaves_the_global_rng_alone():
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    create_backbone("tiny-clip-random")
    assert torch.equal(torch.rand(1), expected)


def test_missing_weights_error_says_where_to_put_the_file(monkeypatch, tmp_path):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(WeightsNotFoundError) as error:
        create_backbone("dino-vit-b-16")
    message = str(error.value)
    assert "dino-vit-b-16.safetensors" in message
    assert "timm/vit_base_patch16_224.dino" in message and "model.safetensors" in message
    assert "never downloads" in message
    assert not weights_present("dino-vit-b-16")
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        create_backbone("clip-vit-b-16", weights=str(tmp_path / "nope.pt"))


def test_weights_found_in_weights_dir_and_in_offline_hf_cache(monkeypatch, tmp_path):
    weights = tmp_path / "weights"
    weights.mkdir()
    monkeypatch.setenv("PERCEP_RAG_WEIGHTS", str(weights))
    (weights / "openclip-vit-b-16.pt").write_bytes(b"x")
    assert resolve_weights("openclip-vit-b-16", None, None) == weights / "openclip-vit-b-16.pt"

    cache = tmp_path / "hf"
    snapshot = cache / "models--timm--vit_base_patch16_224.dino" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").write_bytes(b"x")
    (cache / "models--timm--vit_base_patch16_224.dino" / "refs").mkdir()
    (cache / "models--timm--vit_base_patch16_224.dino" / "refs" / "main").write_text("abc123")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    hub = HubFile("timm/vit_base_patch16_224.dino", ("model.safetensors", "pytorch_model.bin"))
    assert resolve_weights("dino-vit-b-16", None, hub) == snapshot / "model.safetensors"
    assert weights_present("dino-vit-b-16")


def test_open_clip_branch_rejects_non_vit_towers():
    from percep_rag.errors import ConfigError

    with pytest.raises(ConfigError, match="VisionTransformer"):
        OpenClipBranch(torch.nn.Linear(2, 2))
