"""The percep-rag CLI end to end: models, embed (npy and parquet), errors and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from percep_rag.io.vectors import read_vectors

from .conftest import run_cli


def test_models_lists_backbones_and_weight_status(capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0
    assert "tiny-vit-random" in out and "random (test model)" in out
    assert "dreamsim-ensemble" in out and "missing" in out


def test_embed_folder_to_npy_with_a_bad_file_reported(capsys, image_folder, tmp_path):
    (image_folder / "circle" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    out = tmp_path / "vectors.npy"
    code, stdout, stderr = run_cli(
        capsys, "embed", str(image_folder), "--out", str(out), "--backbone", "tiny-vit-random", "--no-progress"
    )
    assert code == 0
    assert "embedded 12 of 13 images" in stdout and "RANDOM weights" in stdout
    assert "corrupt.jpg" in stderr
    stored = read_vectors(out)
    assert len(stored.ids) == 12 and stored.aligned.shape == (12, 64)
    assert stored.ids[0] == "circle/0.png"
    assert stored.meta["failures"][0]["id"] == "circle/corrupt.jpg"
    assert stored.meta["fingerprint"]["backbone"] == "tiny-vit-random"
    np.testing.assert_allclose(np.linalg.norm(stored.aligned, axis=1), 1.0, atol=1e-5)


def test_embed_manifest_to_parquet(capsys, image_folder, tmp_path):
    manifest = tmp_path / "manifest.jsonl"
    rows = [
        {"id": f"img{n}", "path": str(image_folder / "square" / f"{n}.{'jpg' if n % 2 else 'png'}")} for n in range(4)
    ]
    manifest.write_text("\n".join(json.dumps(row) for row in rows))
    out = tmp_path / "vectors.parquet"
    code, _, _ = run_cli(
        capsys,
        "embed",
        str(manifest),
        "-o",
        str(out),
        "-b",
        "tiny-clip-random",
        "--pooling",
        "cls+patchmean",
        "--no-progress",
    )
    assert code == 0
    stored = read_vectors(out)
    assert stored.ids == ["img0", "img1", "img2", "img3"]
    assert stored.base.shape == stored.aligned.shape == (4, 64)


def test_missing_weights_is_exit_1_with_a_message(capsys, image_folder, tmp_path):
    code, _, err = run_cli(capsys, "embed", str(image_folder), "-o", str(tmp_path / "v.npy"), "-b", "dino-vit-b-16")
    assert code == 1
    assert "error:" in err and "dino-vit-b-16" in err and "never downloads" in err


def test_bad_output_suffix_and_unknown_backbone_fail_before_work(capsys, image_folder, tmp_path):
    code, _, err = run_cli(capsys, "embed", str(image_folder), "-o", str(tmp_path / "v.csv"))
    assert code == 1 and ".npy or .parquet" in err
    code, _, err = run_cli(capsys, "embed", str(image_folder), "-o", str(tmp_path / "v.npy"), "-b", "nope")
    assert code == 1 and "unknown backbone 'nope'" in err


def test_usage_error_exit_code(capsys):
    code, _, _ = run_cli(capsys, "embed")
    assert code == 2


def test_console_entry_point_runs_in_a_subprocess(image_folder, tmp_path):
    out = tmp_path / "v.npy"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    completed = subprocess.run(
        [sys.executable, "-m", "percep_rag", "embed", str(image_folder), "-o", str(out), "-b", "tiny-vit-random"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    assert out.exists() and (tmp_path / "v.ids.txt").read_text().count("\n") == 12


def _ranked_triplet_file(tmp_path, tints: int = 40):
    """Images whose "human" similarity is their colour, and ranked triplets over them."""
    from PIL import Image

    rng = np.random.default_rng(1)
    colours = rng.uniform(0, 1, (tints, 3))
    for i in range(tints):
        noise = rng.integers(0, 256, (32, 32, 3))
        Image.fromarray((0.3 * colours[i] * 255 + 0.7 * noise).astype(np.uint8)).save(tmp_path / f"{i}.png")
    rows = []
    for n in range(240):
        a, b, c = rng.choice(tints, 3, replace=False)
        closer = np.linalg.norm(colours[a] - colours[b]) < np.linalg.norm(colours[a] - colours[c])
        positive, negative = (b, c) if closer else (c, b)
        split = "train" if n < 180 else "val"
        rows.append(
            {"anchor": f"{a}.png", "positive": f"{positive}.png", "negative": f"{negative}.png", "split": split}
        )
    path = tmp_path / "triplets.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows))
    return path


def test_align_fit_glocal_then_eval_with_it(capsys, tmp_path):
    triplets = _ranked_triplet_file(tmp_path)
    out = tmp_path / "glocal.safetensors"
    code, stdout, err = run_cli(
        capsys, "align", "fit", str(triplets), "--method", "glocal", "-o", str(out), "-b", "tiny-vit-random",
        "--epochs", "20", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert out.exists() and "180 train / 60 val" in stdout and "RANDOM" in stdout
    code, stdout, err = run_cli(
        capsys, "align", "eval", str(triplets), "-b", "tiny-vit-random", "--alignment", f"glocal:{out}",
        "--split", "val", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert "2AFC agreement on 60 triplets" in stdout and "glocal alignment" in stdout


def test_align_fit_lora_and_bad_triplet_file(capsys, tmp_path):
    triplets = _ranked_triplet_file(tmp_path)
    run = tmp_path / "run"
    code, stdout, err = run_cli(
        capsys, "align", "fit", str(triplets), "--method", "lora", "-o", str(run), "-b", "tiny-vit-random",
        "--epochs", "1", "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert (run / "adapter" / "adapter_config.json").exists() and "epoch 1:" in stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"anchor": "0.png", "positive": "1.png", "negative": "2.png"}\n{"anchor": "0.png"}\n')
    code, _, err = run_cli(capsys, "align", "eval", str(bad), "-b", "tiny-vit-random")
    assert code == 1 and "line 2" in err
