"""The work each Ray stage does on one batch: read + hash (CPU tasks) and embed (actors).

Batches are Ray Data ``numpy`` batches: a dict of equal-length arrays. Every stage keeps
the ``row`` column (the record's position in the run's record list), so results can be
matched to records whatever order they come back in. A row that failed carries its
``failure_source`` and ``failure_reason`` on to the end instead of stopping the job.

Both functions also run without Ray, which is how they are shown here:

>>> import tempfile, pathlib
>>> from PIL import Image
>>> from percep_rag import EmbedderSpec
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> Image.new("RGB", (32, 32), "red").save(folder / "r.png")
>>> batch = rows_batch([ImageRecord(id="r", uri=str(folder / "r.png")), ImageRecord(id="x", uri="/no/x.png")], [0, 1])
>>> read = read_images(batch, collection="demo")
>>> list(read["failure_reason"])
['', 'file not found']
>>> spec = EmbedderSpec(backbone="tiny-vit-random", device="cpu")
>>> actor = EmbedActor(spec, fingerprint_of(spec), threads=1)
>>> embedded = actor(read)
>>> embedded["aligned"].shape, "data" in embedded
((2, 64), False)
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence

import numpy as np

from percep_rag.config import EmbedderSpec, Fingerprint
from percep_rag.datasets.records import ImageRecord
from percep_rag.embedder import AlignedEmbedder
from percep_rag.errors import FingerprintMismatchError, ImageDecodeError
from percep_rag.indexing import read_record_stat
from percep_rag.io.images import read_image_bytes
from percep_rag.io.sources import stat_source
from percep_rag.point_records import file_stat
from percep_rag.store import content_hash

Batch = dict[str, np.ndarray]


def rows_batch(
    records: Sequence[ImageRecord], positions: Sequence[int], entries: Mapping[int, str] | None = None
) -> Batch:
    """The input columns of a run: ``row``, ``uri`` and the record itself as JSON, and with
    ``entries`` (row -> JSON list), the ``entries`` column: every record the row's point stands for.

    >>> rows_batch([ImageRecord(id="a", uri="a.png")], [0])["record"][0]
    '{"id":"a","uri":"a.png","label":null,"prompt":null,"split":null,"extra":{}}'
    """
    batch = {
        "row": np.asarray(positions, dtype=np.int64),
        "uri": _strings(records[i].uri for i in positions),
        "record": _strings(records[i].model_dump_json() for i in positions),
    }
    if entries is not None:
        batch["entries"] = _strings(entries.get(i, "") for i in positions)
    return batch


def read_images(batch: Batch, *, collection: str | None = None, keep_bytes: bool = True) -> Batch:
    """Read each row's file and hash it (a CPU task).

    Adds ``content_hash``, ``point_id`` and ``stat`` (when indexing into ``collection``: the
    stat to record as JSON, ``""`` for none), ``data`` (the bytes, unless ``keep_bytes`` is
    false, as when only hashes are needed), the failure columns and ``read_s`` (this batch's
    seconds, spread over its rows).
    """
    started = time.perf_counter()
    n = len(batch["row"])
    data: list[bytes] = [b""] * n
    digests, pids, sources, reasons, stats = [""] * n, [""] * n, [""] * n, [""] * n, [""] * n
    for i, (uri, text) in enumerate(zip(batch["uri"], batch["record"], strict=True)):
        try:
            if collection is None:
                data[i] = read_image_bytes(str(uri))
                digests[i] = content_hash(data[i])
            else:
                data[i], digests[i], pids[i], stat = read_record_stat(ImageRecord.model_validate_json(text), collection)
                stats[i] = "" if stat is None else json.dumps(stat)
        except ImageDecodeError as error:
            sources[i], reasons[i] = error.source, error.reason
    out = {
        **batch,
        "content_hash": _strings(digests),
        "point_id": _strings(pids),
        "stat": _strings(stats),
        "failure_source": _strings(sources),
        "failure_reason": _strings(reasons),
        "read_s": np.full(n, (time.perf_counter() - started) / max(n, 1)),
    }
    if keep_bytes:
        out["data"] = _objects(data)
    return out


def stat_files(batch: Batch) -> Batch:
    """Each row's ``stat``: its file's stat now as JSON (``""``: none), nothing read (a CPU task
    of sync's stat pass).

    >>> stat_files({"row": np.array([0]), "uri": np.array(["/no/such.png"], dtype=object)})["stat"].tolist()
    ['']
    """
    stats = []
    for uri in batch["uri"]:
        found = stat_source(str(uri))
        stats.append("" if found is None else json.dumps(file_stat(found)))
    return {"row": batch["row"], "stat": _strings(stats)}


def fingerprint_of(spec: EmbedderSpec) -> Fingerprint:
    """The fingerprint of the embedder ``spec`` builds, computed on CPU (it does not depend on the device).

    >>> fingerprint_of(EmbedderSpec(backbone="tiny-vit-random")).dim
    64
    """
    return AlignedEmbedder.from_spec(spec.model_copy(update={"device": "cpu", "compile": "never"})).fingerprint


class EmbedActor:
    """One :class:`~percep_rag.embedder.AlignedEmbedder` per actor; embeds the bytes of a batch.

    The actor uses a GPU when Ray gave it one, the CPU otherwise. It refuses to start when
    its embedder's fingerprint differs from ``fingerprint`` (another weights file on this
    node, say), so a run never mixes vectors of two embedders. Decoding failures become
    failure rows; the ``data`` column is dropped from the output and a ``pixel_hash`` column
    (each decoded image's, ``""`` for a failure) added. ``job_images`` (the images
    this actor is expected to embed over the run) lets ``compile="auto"`` compile a CPU
    actor's forward once for a long run, as a local job would (``AlignedEmbedder.prepare_for_job``).
    """

    def __init__(self, spec: EmbedderSpec, fingerprint: Fingerprint, threads: int, job_images: int = 0):
        import torch

        torch.set_num_threads(threads)
        device = "cuda" if _has_gpu() else "cpu"
        # Batches are one forward each: decoding runs here, without DataLoader workers.
        self.embedder = AlignedEmbedder.from_spec(spec.model_copy(update={"device": device, "num_workers": 0}))
        differences = fingerprint.differences(self.embedder.fingerprint)
        if differences:
            raise FingerprintMismatchError(
                f"an embedding actor built a different embedder than the run's: {'; '.join(differences)}"
            )
        self.embedder.prepare_for_job(job_images)

    def __call__(self, batch: Batch) -> Batch:
        started = time.perf_counter()
        n = len(batch["row"])
        sources, reasons = list(batch["failure_source"]), list(batch["failure_reason"])
        good = [i for i in range(n) if not reasons[i]]
        result = self.embedder.embed_many([batch["data"][i] for i in good], pixel_hashes=True)
        base = np.zeros((n, self.embedder.base_dim), np.float32)
        aligned = np.zeros((n, self.embedder.dim), np.float32)
        rows = [good[i] for i in result.indices]
        base[rows], aligned[rows] = result.base, result.aligned
        pixel_hashes = [""] * n  # computed where the image is decoded, here
        for row, digest in zip(rows, result.pixel_hashes, strict=True):
            pixel_hashes[row] = digest
        for failure in result.failures:
            sources[good[failure.index]] = str(batch["uri"][good[failure.index]])
            reasons[good[failure.index]] = failure.reason
        out = {key: value for key, value in batch.items() if key != "data"}
        out.update(
            base=base,
            aligned=aligned,
            pixel_hash=_strings(pixel_hashes),
            failure_source=_strings(sources),
            failure_reason=_strings(reasons),
            embed_s=np.full(n, (time.perf_counter() - started) / max(n, 1)),
        )
        return out


def _has_gpu() -> bool:
    try:
        import ray

        return ray.is_initialized() and bool(ray.get_gpu_ids())
    except ImportError:  # the stage also runs without Ray (tests, doctests)
        return False


def _strings(values) -> np.ndarray:
    return np.array(list(values), dtype=object)


def _objects(values: list[bytes]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array
