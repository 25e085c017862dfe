"""Where embedded batches go: a store (from the driver or from writer actors) or parquet shards.

A Qdrant server or cluster takes writes from many connections, so :class:`StoreWriter`
actors write to it in parallel. Qdrant Edge and qdrant-client's local modes live in one
process that holds a lock: :func:`write_to_store` is then called by the driver, the one
writer. Parquet shards (:func:`write_shard`) are written by tasks in parallel, one file a batch.

Every sink returns a small **summary** batch (no vectors): ``row``, ``written`` and the
failure and timing columns, which the driver turns into the run's report.

>>> import tempfile, pathlib, numpy as np
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> batch = {"row": np.array([0, 1]), "uri": np.array(["a.png", "b.png"], dtype=object),
...          "record": np.array(['{"id": "a", "uri": "a.png"}', '{"id": "b", "uri": "b.png"}'], dtype=object),
...          "content_hash": np.array(["aa", ""], dtype=object),
...          "failure_source": np.array(["", "b.png"], dtype=object),
...          "failure_reason": np.array(["", "not an image"], dtype=object),
...          "base": np.eye(2, dtype=np.float32), "aligned": np.eye(2, dtype=np.float32)}
>>> write_shard(batch, folder=str(folder))["written"].tolist()
[True, False]
>>> sorted(p.name for p in folder.iterdir())
['part-000000000-000000001.parquet']
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from percep_rag.datasets.records import ImageRecord
from percep_rag.indexing import write_points
from percep_rag.io.files import atomic_write
from percep_rag.store import StoreSpec, VectorStore, open_store

Batch = dict[str, np.ndarray]

#: Timing columns the stages add; summaries keep them for per-stage times.
TIMING_COLUMNS = ("read_s", "embed_s", "write_s")
#: The parquet shards' file names; readers take ``part-*.parquet`` and ignore the rest.
SHARD_PATTERN = "part-*.parquet"


def good_rows(batch: Batch) -> list[int]:
    """Positions in ``batch`` of the rows that have vectors (no failure)."""
    return [i for i, reason in enumerate(batch["failure_reason"]) if not reason]


def summary(batch: Batch, written: list[int], seconds: float) -> Batch:
    """The summary of a sink's batch: which rows were written, the failures and the timings."""
    n = len(batch["row"])
    flags = np.zeros(n, dtype=bool)
    flags[written] = True
    out = {key: batch[key] for key in ("row", "point_id", "stat", "failure_source", "failure_reason") if key in batch}
    out["written"] = flags
    for column in TIMING_COLUMNS[:-1]:
        if column in batch:
            out[column] = batch[column]
    out["write_s"] = np.full(n, seconds / max(n, 1))
    return out


def write_to_store(
    store: VectorStore, collection: str, batch: Batch, dataset: str | None, records: list[ImageRecord] | None = None
) -> Batch:
    """Upsert a batch's good rows durably into ``store``; returns the batch's summary.

    ``records`` (the run's record list) saves parsing each row's JSON on the driver; a batch
    with an ``entries`` column gives each point every record it stands for.
    """
    started = time.perf_counter()
    good = good_rows(batch)
    if good:
        if records is not None:
            chosen = [records[int(batch["row"][i])] for i in good]
        else:
            chosen = [ImageRecord.model_validate_json(batch["record"][i]) for i in good]
        write_points(
            store,
            collection,
            chosen,
            [str(batch["content_hash"][i]) for i in good],
            [str(batch["point_id"][i]) for i in good],
            batch["base"][good],
            batch["aligned"][good],
            dataset,
            entries=[json.loads(batch["entries"][i]) for i in good] if "entries" in batch else None,
            pixel_hashes=[str(batch["pixel_hash"][i]) for i in good] if "pixel_hash" in batch else None,
        )
    return summary(batch, good, time.perf_counter() - started)


class StoreWriter:
    """A writer actor with its own connection to a Qdrant server or cluster."""

    def __init__(self, store: StoreSpec, collection: str, dataset: str | None):
        self.store = open_store(store)
        self.collection = collection
        self.dataset = dataset

    def __call__(self, batch: Batch) -> Batch:
        return write_to_store(self.store, self.collection, batch, self.dataset)


def write_shard(batch: Batch, *, folder: str) -> Batch:
    """Write a batch's vectors to ``folder/part-<first row>-<last row>.parquet`` atomically (a task).

    A retried batch rewrites the same file, so a shard is never there twice.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    started = time.perf_counter()
    good = good_rows(batch)
    if good:
        table = pa.table(
            {
                "row": pa.array(batch["row"][good], pa.int64()),
                "id": [ImageRecord.model_validate_json(batch["record"][i]).id for i in good],
                "uri": [str(batch["uri"][i]) for i in good],
                "content_hash": [str(batch["content_hash"][i]) for i in good],
                "base": _fixed_list(batch["base"][good]),
                "aligned": _fixed_list(batch["aligned"][good]),
            }
        )
        name = f"part-{int(batch['row'].min()):09d}-{int(batch['row'].max()):09d}.parquet"
        atomic_write(Path(folder) / name, lambda tmp: pq.write_table(table, tmp))
    return summary(batch, good, time.perf_counter() - started)


def _fixed_list(matrix: np.ndarray):
    import pyarrow as pa

    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1])
