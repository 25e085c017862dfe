"""Turning image sources into batches of square uint8 tensors, decoded ahead of the model.

Decoding and resizing happen in DataLoader worker processes for large jobs on an accelerator
and in a few background threads otherwise (PIL releases the GIL while it decodes and resizes),
so the model is never starved, a small job does not pay for starting processes, and a model on
the CPU shares its cores with the decoding at the least cost; a bad image becomes a reported
failure and never stops the batch.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, Dataset

from percep_rag.config import PreprocessSpec
from percep_rag.errors import ImageDecodeError
from percep_rag.io.decode import ImageFailure, decode_image, decode_image_bytes
from percep_rag.io.device_decode import jpeg_fits_device_decode
from percep_rag.io.pixel_hash import image_pixel_hash
from percep_rag.io.sources import ImageSource, describe_source, is_jpeg, read_image_bytes
from percep_rag.io.transforms import preprocess_image

__all__ = [
    "ImageSourceDataset",
    "PixelBatch",
    "collate_pixels",
    "default_num_workers",
    "decode_threads",
    "iter_pixel_batches",
    "preprocess_image",
]


@dataclass
class PixelBatch:
    """One batch: ``pixels`` uint8 ``(n, 3, S, S)`` for the inputs at ``indices``; the
    still-encoded JPEGs (``jpeg_bytes`` at ``jpeg_indices``) when GPU decoding is on; with
    pixel hashes asked for, ``pixel_hashes`` maps each good input index to its pixel hash."""

    pixels: torch.Tensor
    indices: list[int]
    failures: list[ImageFailure] = field(default_factory=list)
    jpeg_bytes: list[bytes] = field(default_factory=list)
    jpeg_indices: list[int] = field(default_factory=list)
    pixel_hashes: dict[int, str] = field(default_factory=dict)


class ImageSourceDataset(Dataset):
    """Item ``i`` is ``(i, tensor | None, failure | None, jpeg bytes | None, pixel hash | None)``.

    With ``keep_jpeg_bytes`` a JPEG file is read but not decoded, so the GPU can decode it.
    With ``pixel_hashes`` each decoded image's pixel hash (:mod:`percep_rag.io.pixel_hash`) is
    computed here, on the full-size image; a JPEG left to the GPU is then decoded on the CPU
    for its hash as well (the GPU's decoder rounds differently, so its pixels would not match
    a query's).
    """

    def __init__(
        self,
        sources: Sequence[ImageSource],
        spec: PreprocessSpec,
        *,
        keep_jpeg_bytes: bool = False,
        pixel_hashes: bool = False,
    ):
        self.sources = sources
        self.spec = spec
        self.keep_jpeg_bytes = keep_jpeg_bytes
        self.pixel_hashes = pixel_hashes

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, index: int):
        source = self.sources[index]
        try:
            if self.keep_jpeg_bytes and isinstance(source, (str, os.PathLike, bytes)):
                data = source if isinstance(source, bytes) else read_image_bytes(source)
                if is_jpeg(data) and jpeg_fits_device_decode(data):
                    digest = self._hash(decode_image_bytes(data, source_name=describe_source(source)))
                    return index, None, None, data, digest
                image = decode_image_bytes(data, source_name=describe_source(source))
            else:
                image = decode_image(source)
            return index, preprocess_image(image, self.spec), None, None, self._hash(image)
        except ImageDecodeError as error:
            return index, None, ImageFailure(source=error.source, reason=error.reason, index=index), None, None

    def _hash(self, image) -> str | None:
        return image_pixel_hash(image) if self.pixel_hashes else None


def collate_pixels(items) -> PixelBatch:
    """Stack the decoded items of a batch and keep failures and raw JPEGs aside."""
    tensors, indices, failures, jpeg_bytes, jpeg_indices = [], [], [], [], []
    hashes: dict[int, str] = {}
    for index, tensor, failure, data, digest in items:
        if digest is not None:
            hashes[index] = digest
        if failure is not None:
            failures.append(failure)
        elif data is not None:
            jpeg_bytes.append(data)
            jpeg_indices.append(index)
        else:
            tensors.append(tensor)
            indices.append(index)
    pixels = torch.stack(tensors) if tensors else torch.empty(0, 3, 0, 0, dtype=torch.uint8)
    return PixelBatch(pixels, indices, failures, jpeg_bytes, jpeg_indices, hashes)


def default_num_workers(n_items: int, batch_size: int, *, model_on_cpu: bool = False) -> int:
    """Worker processes pay off only when there is more than a couple of batches to decode, and
    only beside a model on an accelerator. A model on the CPU takes every core for its forward:
    decoding shares them either way, and in threads of the same process it costs the forward less
    (2-core Xeon, compiled bf16 ViT-B/16, JPEG end to end 0.90 of tensors against 0.86 beside one
    worker process; benchmarks/RESULTS.md, issue 40).

    >>> default_num_workers(10_000, 64, model_on_cpu=True), default_num_workers(10, 64)
    (0, 0)
    """
    if model_on_cpu or n_items <= 2 * batch_size:
        return 0
    return max(1, min(8, (os.cpu_count() or 2) - 1))


def decode_threads() -> int:
    """Background decoding threads of a job without worker processes: two, one on a single core.

    >>> 1 <= decode_threads() <= 2
    True
    """
    return max(1, min(2, os.cpu_count() or 1))


def iter_pixel_batches(
    sources: Sequence[ImageSource],
    spec: PreprocessSpec,
    *,
    batch_size: int,
    num_workers: int | None = None,
    keep_jpeg_bytes: bool = False,
    pin_memory: bool = False,
    prefetch_batches: int = 2,
    pixel_hashes: bool = False,
    model_on_cpu: bool = False,
) -> Iterator[PixelBatch]:
    """Yield :class:`PixelBatch` es over ``sources`` in order.

    With ``num_workers`` > 0 (default: :func:`default_num_workers`, which keeps it 0 for a model
    on the CPU, ``model_on_cpu``) DataLoader worker processes decode; with 0,
    :func:`decode_threads` threads decode up to ``prefetch_batches`` batches ahead of the
    consumer, so the consumer's forward overlaps the decoding of the next batch.

    >>> from PIL import Image
    >>> from percep_rag.config import PreprocessSpec
    >>> batches = list(iter_pixel_batches([Image.new("RGB", (40, 30))], PreprocessSpec(image_size=32), batch_size=4))
    >>> batches[0].pixels.shape
    torch.Size([1, 3, 32, 32])
    """
    workers = num_workers
    if workers is None:
        workers = default_num_workers(len(sources), batch_size, model_on_cpu=model_on_cpu)
    dataset = ImageSourceDataset(sources, spec, keep_jpeg_bytes=keep_jpeg_bytes, pixel_hashes=pixel_hashes)
    if workers == 0:
        yield from _threaded_batches(dataset, batch_size, pin_memory=pin_memory, ahead=max(1, prefetch_batches))
        return
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        num_workers=workers,
        collate_fn=collate_pixels,
        pin_memory=pin_memory,
        prefetch_factor=4,
        persistent_workers=False,
    )
    yield from loader


def _threaded_batches(
    dataset: ImageSourceDataset, batch_size: int, *, pin_memory: bool, ahead: int
) -> Iterator[PixelBatch]:
    """The batches of ``dataset`` in order, each item decoded on a thread pool ``ahead`` batches early."""
    starts = iter(range(0, len(dataset), batch_size))
    with ThreadPoolExecutor(max_workers=decode_threads(), thread_name_prefix="percep-rag-decode") as pool:

        def submit(start: int) -> list[Future]:
            return [pool.submit(dataset.__getitem__, i) for i in range(start, min(start + batch_size, len(dataset)))]

        pending: deque[list[Future]] = deque(submit(start) for _, start in zip(range(ahead), starts, strict=False))
        try:
            while pending:
                items = [future.result() for future in pending.popleft()]
                following = next(starts, None)
                if following is not None:
                    pending.append(submit(following))
                batch = collate_pixels(items)
                if pin_memory and torch.cuda.is_available():
                    batch.pixels = batch.pixels.pin_memory()
                yield batch
        finally:  # a consumer that stops early leaves no decoding behind
            for futures in pending:
                for future in futures:
                    future.cancel()
