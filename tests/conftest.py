"""Shared fixtures. Every model here has random weights; nothing is downloaded."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# Tests must never reach for the network, even by accident.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(autouse=True)
def _isolated_weights_dir(tmp_path_factory, monkeypatch):
    """Point percep-rag's weights folder at an empty temp dir so local files never leak in."""
    monkeypatch.setenv("PERCEP_RAG_WEIGHTS", str(tmp_path_factory.mktemp("weights")))


def make_image(seed: int, size: tuple[int, int] = (48, 40)) -> Image.Image:
    """A reproducible random RGB image."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def make_crash_folder(folder: Path, first_seed: int) -> list[Path]:
    """40 distinct 32x32 PNGs, a duplicate of the first and a corrupt JPEG in ``folder`` (made
    here), for the kill-and-resume tests; returns the good files (the duplicate included)."""
    folder.mkdir()
    for n in range(40):
        make_image(first_seed + n, size=(32, 32)).save(folder / f"{n:02d}.png")
    shutil.copy(folder / "00.png", folder / "dup.png")
    (folder / "zz_bad.jpg").write_bytes(b"\xff\xd8\xff nope")
    return sorted(path for path in folder.iterdir() if path.name != "zz_bad.jpg")


def start_script(source: str, *args: str) -> subprocess.Popen:
    """``python -c source args...`` from the repository root, stdout and stderr piped as text."""
    return subprocess.Popen(
        [sys.executable, "-c", source, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )


def kill_after_acks(proc: subprocess.Popen, at_least: int, *, timeout: float = 120, prefix: str = "") -> int:
    """Read ``proc``'s acknowledgement lines (``<prefix><count>``: points it has durably written)
    until they add up to ``at_least``, then ``kill -9`` it mid-run; the count acknowledged.

    Lines without the prefix are ignored; a ``done`` line or EOF (it finished or died first)
    and ``timeout`` seconds end the wait early, so the caller asserts on the count it got."""
    acknowledged = 0
    try:
        deadline = time.monotonic() + timeout
        while acknowledged < at_least and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line or line.startswith("done"):
                break
            if line.startswith(prefix):
                acknowledged += int(line[len(prefix) :])
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return acknowledged


#: The colour classes of :func:`make_colour_task`.
TASK_COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


def make_colour_task(root: Path) -> Path:
    """A VTAB-style task ``root/<split>/<colour>/<n>.png``: 6 train and 4 test noisy solid colours per class."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("test", 4)):
        for name, colour in TASK_COLOURS.items():
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(np.array(colour) + rng.normal(0, 25, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """``root/<label>/<n>.png|jpg``: 3 labels x 4 images, mixed formats and sizes."""
    root = tmp_path / "images"
    for label_index, label in enumerate(["circle", "square", "triangle"]):
        (root / label).mkdir(parents=True)
        for n in range(4):
            image = make_image(10 * label_index + n, size=(40 + 3 * n, 36 + 5 * label_index))
            suffix = "jpg" if n % 2 else "png"
            image.save(root / label / f"{n}.{suffix}")
    return root


@pytest.fixture
def silent_server():
    """``http://127.0.0.1:<port>``: a socket that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()


def settle(folder: Path, *, seconds_ago: float = 3600.0) -> None:
    """Set every file under ``folder`` to a modification time well in the past, as a catalog's
    files are: indexing records the stat of a file only once it is no longer being written
    (``percep_rag.point_records.RACY_NS``), so tests comparing stats across runs settle first."""
    when = time.time_ns() - int(seconds_ago * 1e9)
    for path in folder.rglob("*"):
        if path.is_file():
            os.utime(path, ns=(when, when))


def without_stats(payload: dict) -> dict:
    """``payload`` without the files' stats in its records (they depend on when a file was read)."""
    if "records" not in payload:
        return payload
    return {**payload, "records": [{k: v for k, v in entry.items() if k != "stat"} for entry in payload["records"]]}


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``percep-rag args`` in process: ``(exit code, stdout, stderr)``."""
    from percep_rag.cli import main

    with pytest.raises(SystemExit) as done:
        main(list(args))
    captured = capsys.readouterr()
    return done.value.code or 0, captured.out, captured.err
