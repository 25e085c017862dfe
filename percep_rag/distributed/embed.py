"""Embedding on Ray into sharded parquet: vectors without a store, for very large sets.

The output is a **folder** (``vectors.parquet/`` by convention, like Spark and Ray datasets)
of ``part-<first row>-<last row>.parquet`` shards, written by tasks in parallel,
one a batch, plus ``_percep_rag.json`` (fingerprint, embedder spec, failures, counts)
written last: a folder without it is an unfinished run. Each shard has the columns ``row``
(position in the input), ``id``, ``uri``, ``content_hash``, ``base`` and ``aligned``
(fixed-size float32 lists). Any parquet reader takes the folder (``pyarrow.dataset``,
``pandas.read_parquet``, ``ray.data.read_parquet``); :func:`read_vector_shards` returns
it in input order as a :class:`~percep_rag.io.vectors.VectorFile`.

Example (starts Ray, so not run here)::

    report = embed_with_ray(load_records("photos/"), spec=EmbedderSpec(backbone="clip-vit-b-32"),
                            out="vectors.parquet", options=RayOptions(actors=4))

>>> import tempfile
>>> check_shard_folder(tempfile.mkdtemp()).is_dir()
True
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from percep_rag.config import EmbedderSpec, Fingerprint
from percep_rag.datasets.records import ImageRecord
from percep_rag.distributed.options import RayOptions
from percep_rag.distributed.pipeline import Sink, cluster_fingerprint, embedding_pipeline, records_dataset
from percep_rag.distributed.runtime import plan_resources, ray_session
from percep_rag.distributed.sinks import SHARD_PATTERN, TIMING_COLUMNS, write_shard
from percep_rag.errors import ConfigError
from percep_rag.failures import Failure
from percep_rag.io.files import atomic_write_text
from percep_rag.io.vectors import VectorFile

#: The run's metadata, written after every shard.
META_NAME = "_percep_rag.json"


@dataclass
class EmbedReport:
    """What an :func:`embed_with_ray` run wrote (``embedded`` vectors) and left out (``failures``)."""

    out: Path
    records: int = 0
    embedded: int = 0
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)
    actors: int = 0
    fingerprint: Fingerprint | None = None

    @property
    def images_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds > 0 else 0.0


def check_shard_folder(out: str | Path) -> Path:
    """The output folder, created if needed; a folder that already holds shards is refused."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} exists and is not a folder: Ray writes a folder of parquet shards")
    if out.is_dir() and (any(out.glob(SHARD_PATTERN)) or (out / META_NAME).exists()):
        raise ConfigError(f"{out} already holds parquet shards; remove it or choose another --out")
    if not out.parent.is_dir():
        raise ConfigError(f"output folder {out.parent} does not exist")
    out.mkdir(exist_ok=True)
    return out


def embed_with_ray(
    records: Sequence[ImageRecord],
    *,
    spec: EmbedderSpec,
    out: str | Path,
    options: RayOptions | None = None,
    progress: bool = True,
) -> EmbedReport:
    """Embed ``records`` on Ray into parquet shards under ``out`` (see the module docstring)."""
    started = time.perf_counter()
    records = records if isinstance(records, list) else list(records)
    folder = check_shard_folder(out)
    options = options or RayOptions()
    report = EmbedReport(out=folder, records=len(records))
    with ray_session(options, progress=progress) as resources:
        plan = plan_resources(options, resources, spec_batch_size=spec.batch_size).for_rows(len(records))
        report.actors = plan.actors
        fingerprint = report.fingerprint = cluster_fingerprint(spec, plan)
        sink = Sink(write_shard, {"folder": str(folder)})
        pipeline = embedding_pipeline(
            records_dataset(records, range(len(records)), plan), spec, fingerprint, plan, sink=sink
        )
        for batch in pipeline.iter_batches(batch_size=None, batch_format="numpy"):
            report.embedded += int(np.sum(batch["written"]))
            for row, source, reason in zip(batch["row"], batch["failure_source"], batch["failure_reason"], strict=True):
                if reason:
                    report.failures.append(
                        Failure(source=str(source), reason=str(reason), index=int(row), record_id=records[int(row)].id)
                    )
            for column in TIMING_COLUMNS:
                stage = column.removesuffix("_s")
                report.stage_seconds[stage] = report.stage_seconds.get(stage, 0.0) + float(np.sum(batch[column]))
    report.failures.sort(key=lambda failure: failure.index or 0)
    report.seconds = time.perf_counter() - started
    meta = {
        "fingerprint": fingerprint.model_dump(),
        "spec": json.loads(spec.model_dump_json()),
        "records": report.records,
        "embedded": report.embedded,
        "failures": [{"id": f.record_id, "source": f.source, "reason": f.reason} for f in report.failures],
    }
    atomic_write_text(folder / META_NAME, json.dumps(meta, indent=1))
    return report


def read_vector_shards(folder: str | Path) -> VectorFile:
    """The vectors of an :func:`embed_with_ray` folder, in input order.

    Raises :class:`~percep_rag.errors.ConfigError` for a folder whose run did not finish.
    """
    import pyarrow.parquet as pq

    folder = Path(folder)
    if not (folder / META_NAME).is_file():
        raise ConfigError(f"{folder} has no {META_NAME}: not a finished `embed --engine ray` output")
    meta = json.loads((folder / META_NAME).read_text())
    shards = sorted(folder.glob(SHARD_PATTERN))
    if not shards:
        return VectorFile([], [], np.zeros((0, 0), np.float32), np.zeros((0, 0), np.float32), meta)
    table = pq.ParquetDataset([str(shard) for shard in shards]).read().sort_by("row")

    def matrix(column: str) -> np.ndarray:
        values = table.column(column).combine_chunks()
        return values.flatten().to_numpy().reshape(len(table), values.type.list_size)

    ids, uris = table.column("id").to_pylist(), table.column("uri").to_pylist()
    return VectorFile(ids, uris, matrix("base"), matrix("aligned"), meta)
