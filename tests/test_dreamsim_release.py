"""DreamSim's released models through percep-rag (issue 34): listed, indexed and searched in both spaces,
and every missing or mismatched file one line naming it and its zip.

The release folder holds RANDOM weights in the release's exact layout
(:func:`~percep_rag.backbones.dreamsim_random.write_random_release`), written once for the module;
``clip_vitb32`` is the smallest type (one ViT-B/32). Parity with ``dreamsim`` itself is
tests/test_dreamsim_parity.py.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from percep_rag import AlignedEmbedder, EmbedderSpec, PerceptualDistance
from percep_rag.alignment.lora import LoraAlignment
from percep_rag.alignment.lora.dreamsim import DreamsimAdapterAlignment
from percep_rag.alignment.lora.peft_format import merged_copy, read_adapter
from percep_rag.backbones import create_backbone
from percep_rag.backbones.dreamsim_random import write_random_release
from percep_rag.errors import AlignmentError
from tests.conftest import make_image
from tests.test_cli import run_cli

KIND = "clip_vitb32"
BASE_FILE = "clip_vitb32_pretrain.pth.tar"
ZIP = "dreamsim_clip_vitb32_checkpoint.zip"


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    return write_random_release(tmp_path_factory.mktemp("release"), [KIND], seed=5)


@pytest.fixture
def photos(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for n in range(5):
        make_image(40 + n, size=(60 + 7 * n, 44)).save(folder / f"{n}.png")
    return folder


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) <= 2, err  # the error, and at most a hint
    return lines[0]


def test_models_lists_every_release_type_and_where_its_files_are_looked_for(capsys):
    code, out, _ = run_cli(capsys, "models", "--json")
    rows = {row["backbone"]: row for row in json.loads(out)["backbones"]}
    assert code == 0
    for kind in ("ensemble", "dino_vitb16", "dinov2_vitb14", "clip_vitb32", "open_clip_vitb32", "synclr_vitb16"):
        assert rows[f"dreamsim:{kind}"]["weights"] == "missing"
    for kind in ("dino_vitb16_patch", "dinov2_vitb14_patch"):
        assert rows[f"dreamsim:{kind}"]["dim"] == 768 and "cls+patchmean" in rows[f"dreamsim:{kind}"]["description"]
    ensemble = rows["dreamsim:ensemble"]
    assert ensemble["dim"] == 1792 and ensemble["family"] == "dreamsim"
    files = " ".join(ensemble["expected_files"])
    assert "dreamsim/checkpoints/dino_vitbase16_pretrain.pth (or dino-vit-b-16's weights)" in files
    assert "clip_vitb16_pretrain.pth.tar" in files and "ensemble_lora/ (from dreamsim_ensemble_checkpoint.zip)" in files


def test_index_then_search_both_spaces_with_a_random_release(capsys, release, photos, tmp_path, monkeypatch):
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "dreamsim").symlink_to(release)  # the default place: $PERCEP_RAG_WEIGHTS/dreamsim
    monkeypatch.setenv("PERCEP_RAG_WEIGHTS", str(weights))
    store = f"edge:{tmp_path / 'store'}"
    code, out, err = run_cli(capsys, "index", str(photos), "-c", "ds", "--store", store, "-b", f"dreamsim:{KIND}")
    assert code == 0, err
    assert "RANDOM" in out and "now holds 5 points" in out
    code, out, err = run_cli(capsys, "search", str(photos / "2.png"), "-c", "ds", "--store", store, "-k", "2", "--json")
    assert code == 0, err
    found = json.loads(out)
    assert found["backbone"] == f"dreamsim:{KIND}" and found["alignment"] == "dreamsim" and found["random_weights"]
    assert set(found["hits"]) == {"base", "aligned"} and all(len(hits) == 2 for hits in found["hits"].values())
    assert all(not hit["payload"]["uri"].endswith("2.png") for hits in found["hits"].values() for hit in hits)


def test_the_aligned_space_is_the_released_adapter_and_base_the_bare_network(release):
    embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone=f"dreamsim:{KIND}", weights=str(release)))
    assert isinstance(embedder.alignment, DreamsimAdapterAlignment) and embedder.dim == embedder.base_dim == 512
    assert embedder.normalization == "center+l2" and embedder.fingerprint.alignment == "dreamsim"
    both = embedder.embed_both([make_image(1), make_image(2)])
    assert not np.allclose(both.base, both.aligned, atol=1e-2)
    np.testing.assert_allclose(np.linalg.norm(both.aligned, axis=1), 1.0, atol=1e-5)
    assert not any("lora" in name for name in embedder.aligned_backbone.state_dict())  # merged for inference
    distance = PerceptualDistance(embedder)
    pair = distance(make_image(1), [make_image(2), make_image(1)])
    assert pair.shape == (2,) and pair[1] == pytest.approx(0.0, abs=1e-5) and pair[0] > 0


def test_a_missing_adapter_is_one_line_naming_it_and_its_zip(capsys, release, photos, tmp_path):
    folder = tmp_path / "no-adapter"
    folder.mkdir()
    (folder / BASE_FILE).symlink_to(release / BASE_FILE)
    code, _, err = run_cli(capsys, "embed", str(photos), "-o", str(tmp_path / "v.npy"), "-b", f"dreamsim:{KIND}",
                           "--weights", str(folder), "--no-progress")  # fmt: skip
    line = _one_error_line(err)
    assert code == 1
    assert f"missing {folder / 'clip_vitb32_single_lora' / 'adapter_config.json'}" in line and ZIP in line


def test_a_missing_adapter_weight_file_names_it(release, tmp_path):
    folder = tmp_path / "no-weights"
    shutil.copytree(release, folder, ignore=shutil.ignore_patterns("*.pth.tar", "*.safetensors"))
    (folder / BASE_FILE).symlink_to(release / BASE_FILE)
    with pytest.raises(AlignmentError, match=f"missing .*adapter_model.safetensors.*{ZIP}"):
        AlignedEmbedder.from_spec(EmbedderSpec(backbone=f"dreamsim:{KIND}", weights=str(folder)))


def test_a_missing_base_file_is_one_line_naming_it_and_its_zip(capsys, photos, tmp_path):
    folder = tmp_path / "empty-release"
    folder.mkdir()
    code, _, err = run_cli(capsys, "index", str(photos), "-c", "x", "--store", ":memory:", "-b", f"dreamsim:{KIND}",
                           "--weights", str(folder))  # fmt: skip
    line = _one_error_line(err)
    assert code == 1 and f"missing {folder / BASE_FILE}" in line and ZIP in line


def test_a_missing_dino_names_the_hub_file_and_percep_rags_own_weights(capsys, photos, tmp_path):
    code, _, err = run_cli(capsys, "embed", str(photos), "-o", str(tmp_path / "v.npy"), "-b", "dreamsim:ensemble",
                           "--weights", str(tmp_path), "--no-progress")  # fmt: skip
    line = _one_error_line(err)
    assert code == 1 and f"missing {tmp_path / 'checkpoints' / 'dino_vitbase16_pretrain.pth'}" in line
    assert "or the weights of 'dino-vit-b-16'" in line
    assert "dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain" in line


@pytest.mark.parametrize(
    "content, problem",
    [
        ({"state_dict": {"proj": torch.zeros(768, 512), "cls_token": torch.zeros(1, 1, 64)}}, "does not fit"),
        ({"model": {"cls_token": torch.zeros(1, 1, 768)}}, "no 'state_dict'"),
        (b"", "the file is empty"),
    ],
)
def test_a_mismatched_base_file_names_it_and_its_zip(release, tmp_path, content, problem):
    folder = tmp_path / "mismatched"
    shutil.copytree(release / "clip_vitb32_single_lora", folder / "clip_vitb32_single_lora")
    if isinstance(content, bytes):
        (folder / BASE_FILE).write_bytes(content)
    else:
        torch.save(content, folder / BASE_FILE)
    with pytest.raises(Exception, match=problem) as raised:
        create_backbone(f"dreamsim:{KIND}", folder)
    assert str(folder / BASE_FILE) in str(raised.value) and ZIP in str(raised.value)


def test_a_pickle_that_needs_code_is_refused(release, tmp_path):
    folder = tmp_path / "unsafe"
    shutil.copytree(release / "clip_vitb32_single_lora", folder / "clip_vitb32_single_lora")
    torch.save({"state_dict": {"proj": Path("not a tensor")}}, folder / BASE_FILE)  # unpickling runs PosixPath
    with pytest.raises(Exception, match="cannot be loaded safely"):
        create_backbone(f"dreamsim:{KIND}", folder)


def test_the_wrong_pooling_says_which_one_the_release_needs(release):
    with pytest.raises(AlignmentError, match="--pooling cls \\(512-d\\)"):
        AlignedEmbedder.from_spec(
            EmbedderSpec(backbone=f"dreamsim:{KIND}", weights=str(release), pooling="cls+patchmean")
        )


def test_a_release_adapter_given_as_lora_points_at_the_release_backbone(release):
    with pytest.raises(AlignmentError, match=f"-b dreamsim:{KIND} --weights {release}"):
        LoraAlignment.load(release / "clip_vitb32_single_lora")


def test_the_dreamsim_alignment_needs_a_release_backbone():
    with pytest.raises(AlignmentError, match="not one"):
        AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random", alignment="dreamsim"))


def test_the_one_reader_merges_percep_rags_own_adapters_as_peft_does(tmp_path):
    """percep-rag's runs go through the same reader: the merge equals peft's own from_pretrained,
    open_clip's fused MultiheadAttention (tiny CLIP/OpenCLIP branches) included."""
    import peft

    backbone = create_backbone("tiny-ensemble-random")
    model = peft.get_peft_model(
        copy.deepcopy(backbone), peft.LoraConfig(r=4, target_modules=backbone.lora_target_modules())
    )
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_" in name:
                parameter.normal_(0, 0.1, generator=torch.Generator().manual_seed(len(name)))
    model.save_pretrained(tmp_path)
    reference = peft.PeftModel.from_pretrained(copy.deepcopy(backbone), str(tmp_path)).merge_and_unload()
    ours = merged_copy(backbone, read_adapter(tmp_path, origin="a test run"))
    assert ours.weights_digest() == reference.weights_digest() != backbone.weights_digest()
