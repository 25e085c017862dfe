"""The one Ray Data pipeline of indexing and embedding: records -> read + hash -> embed -> sink.

::

    from_items(rows)                        the records, as (row, uri, record JSON)
      .map_batches(read_images)             CPU tasks: file bytes, content hash, point id
      .map_batches(EmbedActor, actor pool)  one AlignedEmbedder per actor, GPU when it has one
      .map_batches(<sink>)                  optional: writer actors (server store) or tasks (shards)

``index`` runs the first stage alone first (:func:`hashing_pipeline`) so that the driver can
skip duplicates and points already stored before anything is embedded; ``embed`` runs it
all. Without a sink the driver consumes the embedded batches itself (the single writer of
an Edge or local store).

>>> import inspect
>>> list(inspect.signature(embedding_pipeline).parameters)
['rows', 'spec', 'fingerprint', 'plan', 'collection', 'sink']
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from percep_rag.config import EmbedderSpec, Fingerprint
from percep_rag.datasets.records import ImageRecord
from percep_rag.distributed.runtime import ResourcePlan
from percep_rag.distributed.stages import EmbedActor, fingerprint_of, read_images, rows_batch

if TYPE_CHECKING:
    import ray.data

#: CPUs reserved per writer actor: writing is I/O, and the embedding actors need the cores.
WRITER_CPUS = 0.1


@dataclass(frozen=True)
class Sink:
    """The write stage after the embedding: a callable class run as a pool of ``plan.writers``
    actors (each keeps its connection), or a function run as tasks of ``plan.read_cpus``."""

    fn: type | Callable[..., Any]
    kwargs: Mapping[str, Any] = field(default_factory=dict)


def records_dataset(
    records: Sequence[ImageRecord],
    positions: Sequence[int],
    plan: ResourcePlan,
    entries: Mapping[int, str] | None = None,
) -> ray.data.Dataset:
    """The records at ``positions`` as a Ray Dataset, in blocks of one batch each (with
    ``entries``: each row's point's records, see :func:`~percep_rag.distributed.stages.rows_batch`).

    A block is what one task or actor call gets: blocks of one batch spread a run over all
    the actors and make a retried batch small.
    """
    import ray.data

    blocks = max(1, math.ceil(len(positions) / plan.batch_size))
    batch = rows_batch(records, positions, entries)
    items = [{key: column[i] for key, column in batch.items()} for i in range(len(positions))]
    return ray.data.from_items(items, override_num_blocks=blocks)


def cluster_fingerprint(spec: EmbedderSpec, plan: ResourcePlan) -> Fingerprint:
    """The fingerprint of ``spec``'s embedder, computed by a worker as the actors will build it:
    the driver needs neither the model nor its weights, and a spec workers cannot load fails here."""
    import ray

    return ray.get(ray.remote(num_cpus=plan.read_cpus)(fingerprint_of).remote(spec))


def hashing_pipeline(rows: ray.data.Dataset, collection: str, plan: ResourcePlan) -> ray.data.Dataset:
    """The read + hash stage alone, without the bytes: what ``index`` checks before embedding."""
    return _read_stage(rows, plan, collection=collection, keep_bytes=False)


def embedding_pipeline(
    rows: ray.data.Dataset,
    spec: EmbedderSpec,
    fingerprint: Fingerprint,
    plan: ResourcePlan,
    collection: str | None = None,
    sink: Sink | None = None,
) -> ray.data.Dataset:
    """Read + hash, embed, and (with a ``sink``) write: the whole run as one lazy dataset."""
    read = _read_stage(rows, plan, collection=collection, keep_bytes=True)
    per_actor = math.ceil(rows.count() / max(1, plan.actors))  # from_items: the count is metadata, nothing runs
    embedded = _actor_stage(
        read,
        EmbedActor,
        {"spec": spec, "fingerprint": fingerprint, "threads": plan.torch_threads, "job_images": per_actor},
        plan,
        actors=plan.actors,
        num_cpus=plan.cpus_per_actor,
        num_gpus=plan.gpus_per_actor,
    )
    if sink is None:
        return embedded
    from ray.data import TaskPoolStrategy

    if isinstance(sink.fn, type):
        return _actor_stage(embedded, sink.fn, dict(sink.kwargs), plan, actors=plan.writers, num_cpus=WRITER_CPUS)
    return embedded.map_batches(
        sink.fn,
        fn_kwargs=dict(sink.kwargs),
        batch_size=None,
        batch_format="numpy",
        num_cpus=plan.read_cpus,
        compute=TaskPoolStrategy(size=plan.writers),
    )


def _read_stage(rows: ray.data.Dataset, plan: ResourcePlan, *, collection: str | None, keep_bytes: bool):
    from ray.data import TaskPoolStrategy

    return rows.map_batches(
        read_images,
        fn_kwargs={"collection": collection, "keep_bytes": keep_bytes},
        batch_size=plan.batch_size,
        batch_format="numpy",
        num_cpus=plan.read_cpus,
        compute=TaskPoolStrategy(size=plan.read_tasks),
    )


def _actor_stage(
    data: ray.data.Dataset,
    cls: type,
    kwargs: dict[str, Any],
    plan: ResourcePlan,
    *,
    actors: int,
    num_cpus: float,
    num_gpus: float = 0.0,
) -> ray.data.Dataset:
    from ray.data import ActorPoolStrategy

    with warnings.catch_warnings():
        # Ray Data 2.60 has no named parameter for actor restarts yet (the extra keyword
        # arguments are deprecated for Ray 2.64, hence the pin below it in pyproject.toml).
        warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
        return data.map_batches(
            cls,
            fn_constructor_kwargs=kwargs,
            compute=ActorPoolStrategy(size=actors),
            batch_size=plan.batch_size,
            batch_format="numpy",
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            # A dead actor is restarted by Ray and the batch it held is retried on a live one.
            max_restarts=plan.max_restarts,
            max_task_retries=plan.max_task_retries,
        )
