"""The catalog the service tests search: photos/<split>/<label>/<n>.png in two Edge stores, tiny random models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"cat": (200, 40, 40), "dog": (40, 40, 200), "fish": (40, 180, 60)}


def draw(path: Path, colour: tuple[int, int, int], seed: int, size: int = 40) -> Path:
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour) + rng.normal(0, 30, (size, size, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)
    return path


def make_photos(root: Path, per_class: int = 3) -> Path:
    """photos/<split>/<label>/<n>.png: two splits x three labels x ``per_class`` images."""
    seed = 0
    for split in ("train", "test"):
        for label, colour in COLOURS.items():
            for n in range(per_class):
                seed += 1
                draw(root / "photos" / split / label / f"{n}.png", colour, seed)
    return root / "photos"


def index_folder(folder: Path, store_text: str, collection: str, embedder) -> None:
    from percep_rag.datasets.sources import load_source
    from percep_rag.indexing import index_records
    from percep_rag.store import open_store

    with open_store(store_text) as store:
        index_records(
            load_source(folder).records, embedder=embedder, store=store, collection=collection, progress=False
        )


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_served(store_root: Path, process, log: Path | None = None, seconds: float = 120):
    """The owner of ``store_root`` once the service ``process`` listens and answers (fails if it exits)."""
    import time

    import pytest

    from percep_rag.store.owner import find_owner

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            told = log.read_text() if log is not None else process.stderr.read()
            pytest.fail(f"the service exited with {process.returncode}:\n{told}", pytrace=False)
        owner = find_owner(store_root, timeout=1.0)
        if owner is not None and owner.answering and owner.pid == process.pid:
            return owner
        time.sleep(0.2)
    pytest.fail(f"the service did not listen in {seconds:.0f} s", pytrace=False)
