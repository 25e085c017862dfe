"""Query embeddings off the event loop: one worker thread owns the embedder and runs its forward passes.

Requests hand their query images to an :class:`EmbeddingQueue` and wait on a future. With
batching on, the worker takes every query waiting when it becomes free (up to ``max_batch``)
into ONE forward pass: no timer, so a lone query is never delayed, and under load the queries
that arrived during one pass share the next. With batching off it embeds one query per pass.
Either way the embedder is used from one thread only, and the event loop never computes.

:class:`QueuedEmbedder` puts the queue behind the embedder interface the
:class:`~percep_rag.retrieval.Retriever` calls (``embed_both``), so searches keep the
retriever's own rules (filters, excluding the query itself) unchanged.

>>> from percep_rag import AlignedEmbedder, EmbedderSpec
>>> from PIL import Image
>>> embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random"))
>>> with EmbeddingQueue(embedder, max_batch=8) as queue:
...     queued = QueuedEmbedder(embedder, queue)
...     queued.embed_both([Image.new("RGB", (32, 32), "red")]).aligned.shape
(1, 64)
"""

from __future__ import annotations

import contextlib
import queue as queues
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np

from percep_rag.embedder import AlignedEmbedder, Embeddings, ImageInput
from percep_rag.errors import ImageDecodeError
from percep_rag.io.decode import decode_image

_STOP = object()


class EmbeddingQueue:
    """A worker thread that embeds queued images, ``max_batch`` at most per forward pass."""

    def __init__(self, embedder: AlignedEmbedder, *, max_batch: int = 16, name: str = "embedder"):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        self.embedder = embedder
        self.max_batch = max_batch
        #: Forward passes run and images embedded, for tests and the benchmark.
        self.passes = 0
        self.embedded = 0
        #: Queries in the forward pass running now (0 between passes).
        self.in_pass = 0
        self._queue: queues.Queue[Any] = queues.Queue()
        self._thread = threading.Thread(target=self._work, name=f"percep-rag-{name}", daemon=True)
        self._thread.start()

    def submit(self, image: ImageInput) -> Future[tuple[np.ndarray, np.ndarray]]:
        """A future of ``(base, aligned)`` for one image; a bad image sets its :class:`ImageDecodeError`."""
        future: Future[tuple[np.ndarray, np.ndarray]] = Future()
        self._queue.put((image, future))
        return future

    @property
    def waiting(self) -> int:
        """Queries waiting for the next forward pass."""
        return self._queue.qsize()

    def close(self) -> None:
        """Finish the queued work and stop the worker; idempotent."""
        if self._thread.is_alive():
            self._queue.put(_STOP)
            self._thread.join()

    def __enter__(self) -> EmbeddingQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            jobs = [first]
            stop = False
            while len(jobs) < self.max_batch:
                try:
                    job = self._queue.get_nowait()
                except queues.Empty:
                    break
                if job is _STOP:
                    stop = True
                    break
                jobs.append(job)
            self.in_pass = len(jobs)
            try:
                self._run(jobs)
            finally:
                self.in_pass = 0
            if stop:
                return

    def _run(self, jobs: list[tuple[ImageInput, Future]]) -> None:
        images, futures = [], []
        for image, future in jobs:
            if not future.set_running_or_notify_cancel():
                continue
            try:  # decoded one by one, so that one bad image fails only its own request
                images.append(decode_image(image) if isinstance(image, (bytes, bytearray, str)) else image)
                futures.append(future)
            except ImageDecodeError as error:
                future.set_exception(error)
        if not images:
            return
        try:
            both = self.embedder.embed_both(images)
        except BaseException as error:  # noqa: BLE001 - handed to every waiting request, never lost in the thread
            for future in futures:
                future.set_exception(error)
            return
        self.passes += 1
        self.embedded += len(images)
        for row, future in enumerate(futures):
            future.set_result((both.base[row], both.aligned[row]))


class QueuedEmbedder:
    """An embedder whose ``embed_both`` goes through an :class:`EmbeddingQueue`; all else is the wrapped one's.

    Inside :meth:`remember`, an image embedded once is not embedded again (a search of both
    vector spaces embeds its query once).
    """

    def __init__(self, embedder: AlignedEmbedder, queue: EmbeddingQueue):
        self._embedder = embedder
        self._queue = queue
        self._memo = threading.local()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._embedder, name)

    @contextlib.contextmanager
    def remember(self) -> Iterator[None]:
        """Reuse the vectors of images embedded inside this block (this thread only)."""
        self._memo.rows = {}
        try:
            yield
        finally:
            self._memo.rows = None

    def embed_both(self, images: Sequence[ImageInput] | ImageInput) -> Embeddings:
        """Base and aligned vectors of ``images``, computed by the queue's worker."""
        if not isinstance(images, (list, tuple)):
            images = [images]
        memo: dict[int, tuple[np.ndarray, np.ndarray]] | None = getattr(self._memo, "rows", None)
        rows = []
        pending = {}
        for position, image in enumerate(images):
            if memo is not None and id(image) in memo:
                rows.append(memo[id(image)])
            else:
                rows.append(None)
                pending[position] = self._queue.submit(image)
        for position, future in pending.items():
            rows[position] = future.result()
            if memo is not None:
                memo[id(images[position])] = rows[position]
        if not rows:
            return self._embedder.embed_both([])
        return Embeddings(base=np.stack([r[0] for r in rows]), aligned=np.stack([r[1] for r in rows]))
