"""Decoding ahead of the consumer: a small job's batches are decoded on threads while the model runs."""

from __future__ import annotations

import io
import threading

import pytest
from PIL import Image

from percep_rag.config import PreprocessSpec
from percep_rag.io import loader
from percep_rag.io.loader import iter_pixel_batches


def jpeg(colour: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_the_next_batch_decodes_while_the_consumer_works_on_this_one(monkeypatch):
    sources = [jpeg("red")] * 4 + [jpeg("blue")] * 4 + [b"not an image"]
    next_batch_started = threading.Event()
    threads = set()
    original = loader.ImageSourceDataset.__getitem__

    def recording(self, index):
        threads.add(threading.current_thread().name)
        if index >= 4:
            next_batch_started.set()
        return original(self, index)

    monkeypatch.setattr(loader.ImageSourceDataset, "__getitem__", recording)
    batches = iter_pixel_batches(sources, PreprocessSpec(image_size=32), batch_size=4, num_workers=0)
    first = next(batches)
    # The consumer holds batch 0 (its forward would run now): batch 1 is already being decoded.
    assert next_batch_started.wait(timeout=10)
    rest = list(batches)
    assert first.indices == [0, 1, 2, 3] and rest[0].indices == [4, 5, 6, 7]
    assert [f.index for f in rest[1].failures] == [8] and rest[1].indices == []
    assert threading.current_thread().name not in threads  # decoded off the consumer's thread


def test_a_consumer_that_stops_early_leaves_no_decoding_behind():
    sources = [jpeg("green")] * 40
    batches = iter_pixel_batches(sources, PreprocessSpec(image_size=32), batch_size=4, num_workers=0)
    assert next(batches).pixels.shape == (4, 3, 32, 32)
    batches.close()  # the pool shuts down; the queued items are cancelled
    assert not [t for t in threading.enumerate() if t.name.startswith("percep-rag-decode")]


def test_a_large_job_beside_a_cpu_model_decodes_on_threads_not_worker_processes(monkeypatch):
    from percep_rag import AlignedEmbedder, EmbedderSpec

    assert loader.default_num_workers(10_000, 64) >= 1  # beside an accelerator: worker processes
    assert loader.default_num_workers(10_000, 64, model_on_cpu=True) == 0

    def no_worker_processes(*args, **kwargs):
        raise AssertionError("a CPU model's job started DataLoader worker processes")

    monkeypatch.setattr(loader, "DataLoader", no_worker_processes)
    decoded_on = set()
    original = loader.ImageSourceDataset.__getitem__

    def recording(self, index):
        decoded_on.add(threading.current_thread().name)
        return original(self, index)

    monkeypatch.setattr(loader.ImageSourceDataset, "__getitem__", recording)
    embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random", device="cpu", batch_size=4))
    sources = [jpeg(colour) for colour in ("red", "blue", "green")] * 5  # more than two batches
    result = embedder.embed_many(sources)
    assert result.aligned.shape[0] == len(sources)
    assert decoded_on and all(name.startswith("percep-rag-decode") for name in decoded_on)
    # Told where the model is not, a large job still decodes in worker processes.
    with pytest.raises(AssertionError, match="worker processes"):
        next(iter_pixel_batches(sources, PreprocessSpec(image_size=32), batch_size=4))
