"""Query embeddings off the event loop: one worker thread owns the embedder and runs its forward passes.

Requests hand their query images to an :class:`EmbeddingQueue` and wait on a future. With
batching on, the worker takes every query waiting when it becomes free (up to ``max_batch``)
into ONE forward pass: no timer, so a lone query is never delayed, and under load the queries
that arrived during one pass share the next. With batching off it embeds one query per pass.
Either way the embedder is used from one thread only, and the event loop never computes.

The worker runs between :meth:`EmbeddingQueue.start` and :meth:`EmbeddingQueue.close` (the
app's lifespan; started there, not when the app is built, so a process forked after building
the app, as ``gunicorn --preload`` does, starts its own). Work submitted while it is not
running is refused with :class:`EmbeddingUnavailableError`, and a request waits for its
vectors ``timeout`` seconds at most: no request waits forever.

:class:`QueuedEmbedder` puts the queue behind the embedder interface the
:class:`~percep_rag.retrieval.Retriever` calls (``embed_both``), so searches keep the
retriever's own rules (filters, excluding the query itself) unchanged.

>>> from percep_rag import AlignedEmbedder, EmbedderSpec
>>> from PIL import Image
>>> embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random"))
>>> with EmbeddingQueue(embedder, max_batch=8) as queue:  # started on entry, closed on exit
...     queued = QueuedEmbedder(embedder, queue)
...     queued.embed_both([Image.new("RGB", (32, 32), "red")]).aligned.shape
(1, 64)
>>> queue.submit(Image.new("RGB", (32, 32), "red"))
Traceback (most recent call last):
...
percep_rag.serve.batching.EmbeddingUnavailableError: the embedding worker 'embedder' is not running (...)
"""

from __future__ import annotations

import contextlib
import queue as queues
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

import numpy as np

from percep_rag.embedder import AlignedEmbedder, Embeddings, ImageInput
from percep_rag.errors import ImageDecodeError, PercepRagError
from percep_rag.io.decode import decode_image

_STOP = object()
#: Seconds a query waits for its vectors by default.
DEFAULT_EMBED_TIMEOUT_S = 120.0


class EmbeddingUnavailableError(PercepRagError, RuntimeError):
    """The query could not be embedded: the worker is not running, or did not answer in time."""


class EmbeddingQueue:
    """A worker thread that embeds queued images, ``max_batch`` at most per forward pass.

    Call :meth:`start` (or enter it as a context manager) before submitting; :meth:`close`
    stops it, and :meth:`start` may run it again. ``timeout`` is how long
    :class:`QueuedEmbedder` waits for one query's vectors.
    """

    def __init__(
        self,
        embedder: AlignedEmbedder,
        *,
        max_batch: int = 16,
        name: str = "embedder",
        timeout: float = DEFAULT_EMBED_TIMEOUT_S,
    ):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if not timeout > 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        self.embedder = embedder
        self.max_batch = max_batch
        self.name = name
        self.timeout = timeout
        #: Forward passes run and images embedded, for tests and the benchmark.
        self.passes = 0
        self.embedded = 0
        #: Queries in the forward pass running now (0 between passes).
        self.in_pass = 0
        self._queue: queues.Queue[Any] = queues.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # submit vs start/close: nothing is queued behind the stop

    @property
    def running(self) -> bool:
        """Whether the worker takes work now."""
        return self._thread is not None

    def start(self) -> None:
        """Start the worker thread (again, after :meth:`close`); idempotent."""
        with self._lock:
            if self._thread is None:
                self._queue = queues.Queue()
                self._thread = threading.Thread(target=self._work, args=(self._queue,), name=f"percep-rag-{self.name}")
                self._thread.daemon = True
                self._thread.start()

    def submit(self, image: ImageInput) -> Future[tuple[np.ndarray, np.ndarray]]:
        """A future of ``(base, aligned)`` for one image; a bad image sets its :class:`ImageDecodeError`.

        Raises :class:`EmbeddingUnavailableError` when the worker is not running.
        """
        future: Future[tuple[np.ndarray, np.ndarray]] = Future()
        with self._lock:
            if self._thread is None:
                raise EmbeddingUnavailableError(
                    f"the embedding worker {self.name!r} is not running "
                    "(the service has not started or is shutting down)"
                )
            self._queue.put((image, future))
        return future

    @property
    def waiting(self) -> int:
        """Queries waiting for the next forward pass."""
        return self._queue.qsize()

    def close(self) -> None:
        """Refuse new work, finish the queued work and stop the worker; idempotent."""
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is None:
                return
            self._queue.put(_STOP)  # behind every job already queued
        thread.join()

    def __enter__(self) -> EmbeddingQueue:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _work(self, jobs_in: queues.Queue[Any]) -> None:
        while True:
            first = jobs_in.get()
            if first is _STOP:
                return
            jobs = [first]
            stop = False
            while len(jobs) < self.max_batch:
                try:
                    job = jobs_in.get_nowait()
                except queues.Empty:
                    break
                if job is _STOP:
                    stop = True
                    break
                jobs.append(job)
            self.in_pass = len(jobs)
            try:
                self._run(jobs)
            except BaseException as error:  # noqa: BLE001 - the worker lives on; each waiting request hears why
                for _, future in jobs:
                    if not future.done():
                        future.set_exception(error)
            finally:
                self.in_pass = 0
            if stop:
                return

    def _run(self, jobs: list[tuple[ImageInput, Future]]) -> None:
        images, futures = [], []
        for image, future in jobs:
            if future.cancelled() or not future.set_running_or_notify_cancel():
                continue  # its request stopped waiting
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
            rows[position] = self._result(future)
            if memo is not None:
                memo[id(images[position])] = rows[position]
        if not rows:
            return self._embedder.embed_both([])
        return Embeddings(base=np.stack([r[0] for r in rows]), aligned=np.stack([r[1] for r in rows]))

    def _result(self, future: Future[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        """The future's vectors, waited on for the queue's ``timeout`` at most."""
        try:
            return future.result(timeout=self._queue.timeout)
        except FutureTimeout:
            future.cancel()  # not embedded yet: the worker skips it
            raise EmbeddingUnavailableError(
                f"the query was not embedded within {self._queue.timeout:g} s (the embedding worker is busy or stuck)"
            ) from None
