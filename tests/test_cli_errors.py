"""Every mistake through the real ``percep-rag`` entry point is one line (+ a hint), the documented exit code,
and never a traceback; weights help, store time-outs and store hygiene (issue 13, items 1, 2, 6 and 9)."""

from __future__ import annotations

import http.server
import json
import os
import struct
import subprocess
import sys
import threading
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from percep_rag.cli import main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """``percep-rag ARGV`` in this process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as done:
        main(list(argv))
    captured = capsys.readouterr()
    return done.value.code, captured.out, captured.err


def assert_one_line(err: str, *expected: str) -> str:
    """stderr is ``error: ...`` plus at most a ``hint: ...`` line, and holds every ``expected`` text."""
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    assert 1 <= len(lines) <= 2, err
    assert lines[0].startswith("error: "), err
    assert len(lines) == 1 or lines[1].startswith("hint: "), err
    for text in expected:
        assert text in err, err
    return lines[0]


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "imgs" / "cat"
    folder.mkdir(parents=True)
    for i in range(2):
        Image.new("RGB", (16, 16), (40 * i, 80, 120)).save(folder / f"{i}.png")
    return tmp_path / "imgs"


# ----------------------------------------------------------------------------- item 1: usage errors


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [
        ("--device", "gpu", "'gpu'"),
        ("--pooling", "mean", "'mean'"),
        ("--alignment", "glocal", "glocal:<path>"),
        ("--batch-size", "18446744073709551615", "--batch-size"),
    ],
)
def test_bad_option_values_are_usage_errors(capsys, images, tmp_path, option, value, named):
    argv = ["embed", str(images), "-o", str(tmp_path / "v.npy"), "-b", "tiny-vit-random", option, value]
    code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert_one_line(err, option, named)
    assert not (tmp_path / "v.npy").exists()


def test_an_unknown_alignment_method_is_a_usage_error(capsys, tmp_path):
    code, _, err = run_cli(capsys, "align", "fit", str(tmp_path / "t.csv"), "-o", "x.safetensors", "--method", "pca")
    assert code == 2
    assert_one_line(err, "--method", "'pca'")


def test_a_huge_top_k_is_a_usage_error(capsys, tmp_path):
    code, _, err = run_cli(
        capsys, "search", str(tmp_path / "q.png"), "-c", "x", "--store", ":memory:", "-k", "18446744073709551615"
    )
    assert code == 2
    assert_one_line(err, "-k")


def test_a_store_under_a_regular_file_is_one_line(capsys, images, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    store = f"edge:{tmp_path / 'file' / 'store'}"
    code, _, err = run_cli(capsys, "index", str(images), "-c", "x", "-b", "tiny-vit-random", "--store", store)
    assert code == 1
    assert_one_line(err, "is a file, not a folder")


def test_an_unexpected_exception_is_an_internal_error_line(capsys, monkeypatch):
    import percep_rag.backbones as backbones

    def broken() -> list[str]:
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(backbones, "list_backbones", broken)
    code, _, err = run_cli(capsys, "models")
    assert code == 1
    assert assert_one_line(err, "PERCEP_RAG_DEBUG=1") == "error: internal error: ZeroDivisionError: boom"
    monkeypatch.setenv("PERCEP_RAG_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(["models"])


def test_the_fewshot_script_answers_bad_arguments_in_one_line(tmp_path):
    script = ROOT / "integrations" / "fewshot_prompting.py"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "integrations")])}
    for bad in (["--shots", "0"], ["--device", "gpu"], ["--bogus"]):
        done = subprocess.run(
            [sys.executable, str(script), str(tmp_path), "q.png", "--backbone", "tiny-vit-random", *bad],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert done.returncode == 2, done.stderr
        assert_one_line(done.stderr)


def test_pil_decompression_bomb_warning_becomes_our_message():
    from percep_rag.errors import ImageDecodeError
    from percep_rag.io.decode import decode_image_bytes

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", 10_000, 10_000, 8, 2, 0, 0, 0))  # 100 Mpx, header only
    png = b"\x89PNG\r\n\x1a\n" + header + chunk(b"IEND", b"")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ImageDecodeError, match="more than max_pixels"):
            decode_image_bytes(png, source_name="big.png")


def test_random_open_clip_towers_log_no_pretrained_weights_warning(caplog):
    from percep_rag.backbones import create_backbone

    with caplog.at_level("WARNING"):
        create_backbone("tiny-clip-random")
    assert "No pretrained weights loaded" not in caplog.text


def test_read_only_numpy_images_embed_without_a_warning():
    from percep_rag.embedder import _to_tensor

    array = np.zeros((4, 4, 3), np.uint8)
    array.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _to_tensor(array).shape == (3, 4, 4)


# ----------------------------------------------------------------------------- item 2: weights help


def test_models_json_reads_headers_and_names_files(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PERCEP_RAG_WEIGHTS", str(tmp_path))
    (tmp_path / "dino-vit-b-16.safetensors").write_bytes(b"")
    code, out, _ = run_cli(capsys, "models", "--json")
    assert code == 0
    rows = {row["backbone"]: row for row in json.loads(out)["backbones"]}
    assert rows["tiny-vit-random"]["dim"] == 64
    assert rows["dino-vit-b-16"]["weights"] == "unreadable: the file is empty"
    assert f"{tmp_path / 'dino-vit-b-16'}.safetensors" in rows["dino-vit-b-16"]["expected_files"]
    assert rows["dreamsim-ensemble"]["dim"] == 1792


def test_an_empty_weights_file_is_one_line(capsys, images, tmp_path):
    empty = tmp_path / "w.safetensors"
    empty.write_bytes(b"")
    argv = ["embed", str(images), "-o", str(tmp_path / "v.npy"), "-b", "dino-vit-b-16", "--weights", str(empty)]
    code, _, err = run_cli(capsys, *argv)
    assert code == 1
    assert_one_line(err, "the file is empty")


def test_a_checkpoint_of_another_network_says_which_it_looks_like(capsys, images, tmp_path):
    from safetensors.torch import save_file

    from percep_rag.backbones import create_backbone

    tower = create_backbone("tiny-clip-random").branches[0].visual
    checkpoint = tmp_path / "tiny-clip.safetensors"
    save_file({f"visual.{k}": v.contiguous() for k, v in tower.state_dict().items()}, str(checkpoint))
    argv = ["embed", str(images), "-o", str(tmp_path / "v.npy"), "-b", "dino-vit-b-16", "--weights", str(checkpoint)]
    code, _, err = run_cli(capsys, *argv)
    assert code == 1
    line = assert_one_line(err, "does not fit backbone 'dino-vit-b-16'", "it looks like 'tiny-clip-random'")
    assert "tensors 'dino-vit-b-16' expects are in it" in line


def test_missing_ensemble_weights_name_every_part_and_working_advice(capsys, images, tmp_path, monkeypatch):
    from percep_rag.backbones.weights import HubFile

    monkeypatch.setenv("PERCEP_RAG_WEIGHTS", str(tmp_path / "none"))
    monkeypatch.setattr(HubFile, "cached_path", lambda self: None)
    argv = ["embed", str(images), "-o", str(tmp_path / "v.npy"), "-b", "dreamsim-ensemble"]
    code, _, err = run_cli(capsys, *argv)
    assert code == 1
    assert_one_line(err, "ensemble 'dreamsim-ensemble'", "'dino-vit-b-16'", "'clip-vit-b-16'", "'openclip-vit-b-16'")
    assert "hf download timm/vit_base_patch16_224.dino" in err
    assert "huggingface-cli" not in err and "--weights " not in err.replace("--weights random", "")


# ----------------------------------------------------------------------------- item 6: time-outs


def test_a_store_that_never_answers_fails_within_the_timeout(capsys, silent_server):
    import percep_rag.cli.collections  # noqa: F401 - imports are not the time-out's business
    import percep_rag.store.client  # noqa: F401

    started = time.monotonic()
    code, _, err = run_cli(capsys, "collections", "--store", silent_server, "--timeout", "1")
    elapsed = time.monotonic() - started
    assert code == 1
    assert_one_line(err, silent_server, "unavailable")
    assert elapsed < 1 + 4, elapsed  # one time-out and some slack, not 4 attempts x 10 s


class _NotQdrant(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(404)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<html><body>Not Found</body></html>")

    def log_message(self, *args: object) -> None:
        pass


def test_a_url_that_is_not_a_qdrant_server_says_so(capsys):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotQdrant)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        code, _, err = run_cli(capsys, "collections", "--store", url, "--timeout", "2")
    finally:
        server.shutdown()
        server.server_close()
    assert code == 1
    assert_one_line(err, "does not answer as a Qdrant server", "404")


# ----------------------------------------------------------------------------- item 9: store hygiene


def test_folders_of_a_killed_creator_are_cleaned_when_the_store_opens(capsys, tmp_path):
    store = tmp_path / "store"
    abandoned = store / ".creating-pets-999999999-0a1b2c3d"
    abandoned.mkdir(parents=True)
    live = store / f".creating-pets-{os.getpid()}-0a1b2c3d"  # a creator still running keeps its folder
    live.mkdir()
    code, _, _ = run_cli(capsys, "collections", "--store", f"edge:{store}")
    assert code == 0
    assert not abandoned.exists() and live.exists()


def test_a_concurrent_creator_is_named_and_not_an_error_for_ensure(tmp_path, monkeypatch):
    from percep_rag import EmbedderSpec
    from percep_rag.embedder import AlignedEmbedder
    from percep_rag.store.edge import EdgeStore
    from percep_rag.store.errors import CollectionExistsError

    fingerprint = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random")).fingerprint
    with EdgeStore(tmp_path / "store") as first:
        first.create_collection("pets", fingerprint)
    with EdgeStore(tmp_path / "store") as second:
        # The other process creates the collection between this store's check and its rename.
        answers = iter([False])
        monkeypatch.setattr(second, "_exists", lambda name: next(answers, True))
        with pytest.raises(CollectionExistsError, match="by another process at the same time"):
            second.create_collection("pets", fingerprint)
        answers = iter([False, False])
        assert second.ensure_collection("pets", fingerprint).fingerprint == fingerprint


def test_a_broken_symlink_named_like_an_image_is_reported(capsys, images, tmp_path):
    (images / "cat" / "gone.png").symlink_to(tmp_path / "missing.png")
    code, _, err = run_cli(
        capsys, "embed", str(images), "-o", str(tmp_path / "v.npy"), "-b", "tiny-vit-random", "--no-progress"
    )
    assert code == 0
    assert "gone.png" in err


def test_an_empty_parquet_keeps_typed_columns(tmp_path):
    import pyarrow.parquet as pq

    from percep_rag.io.vectors import write_vectors

    empty = np.zeros((0, 4), np.float32)
    write_vectors(tmp_path / "v.parquet", ids=[], uris=[], base=empty, aligned=empty, meta={})
    schema = pq.read_schema(tmp_path / "v.parquet")
    assert str(schema.field("id").type) == "string"
    assert str(schema.field("uri").type) == "string"
    assert "float" in str(schema.field("aligned").type)


def test_a_collection_without_its_metadata_is_called_damaged(tmp_path, monkeypatch):
    from percep_rag import EmbedderSpec
    from percep_rag.embedder import AlignedEmbedder
    from percep_rag.errors import FingerprintMismatchError
    from percep_rag.store.edge import EdgeStore

    fingerprint = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random")).fingerprint
    with EdgeStore(tmp_path / "store") as store:
        store.create_collection("pets", fingerprint)
        store._infos.clear()
        monkeypatch.setattr(store, "_read_meta", lambda name: None)  # its metadata point is gone
        with pytest.raises(FingerprintMismatchError, match="damaged or was not created by percep-rag; delete it"):
            store.collection_info("pets")


@pytest.mark.parametrize(
    ("command", "value", "allowed"),
    [("search", "bogus", "'aligned', 'base', 'both'"), ("classify", "both", "'aligned', 'base'")],
)
def test_using_takes_only_the_vector_spaces_the_command_searches(capsys, images, command, value, allowed):
    argv = [command, str(next(images.rglob("*.png"))), "-c", "c", "--using", value]
    code, _, err = run_cli(capsys, *argv, *(["--vlm", "tiny-flamingo-random"] if command == "classify" else []))
    assert code == 2
    assert_one_line(err, "--using", f"'{value}'", allowed)


def test_eval_fewshot_store_answers_within_the_timeout(capsys, tmp_path, silent_server):
    for split in ("train", "test"):
        for label, colour in (("red", (220, 30, 30)), ("blue", (30, 40, 220))):
            (tmp_path / split / label).mkdir(parents=True)
            Image.new("RGB", (16, 16), colour).save(tmp_path / split / label / "0.png")
    argv = ["eval", "fewshot", str(tmp_path), "-b", "tiny-vit-random", "--methods", "knn-aligned", "--no-progress"]
    argv += ["--shots", "1"]  # the pool holds 2 images: 3 shots would be refused before the store is asked
    started = time.monotonic()
    code, _, err = run_cli(capsys, *argv, "--store", silent_server, "--timeout", "1")
    assert code == 1
    assert_one_line(err, silent_server, "unavailable")
    assert time.monotonic() - started < 1 + 8  # one time-out, model set-up and slack; not 4 x 10 s


def test_a_compile_fallback_is_one_warning_line_and_the_command_succeeds(capsys, images, tmp_path, monkeypatch):
    import torch
    from torch._dynamo.exc import TorchDynamoException

    from percep_rag.embedder import AlignedEmbedder

    def compile_without_a_compiler(module, **kwargs):
        def run(*args):
            raise TorchDynamoException("InductorError: CppCompileError: g++ not found")

        return run

    monkeypatch.setattr(torch, "compile", compile_without_a_compiler)
    monkeypatch.setattr(AlignedEmbedder, "cpu_compile_min_images", 1)
    out = tmp_path / "v.npy"
    code, _, err = run_cli(capsys, "embed", str(images), "-b", "tiny-vit-random", "-o", str(out), "--no-progress")
    assert code == 0
    assert err.strip().splitlines() == [
        "warning: torch.compile failed (InductorError: CppCompileError: g++ not found); running eagerly (slower). "
        "On CPU it needs a C++ compiler (g++); pass compile='never' to skip it."
    ]
    assert np.load(out).shape == (2, 64)
