"""How a distributed run uses Ray: where the cluster is and how the embedding work is spread.

>>> options = RayOptions(actors=2, cpus_per_actor=0.75)
>>> (options.actors, options.gpus_per_actor, options.address)
(2, None, None)
>>> RayOptions(address="ray://head:10001").starts_local_ray
False
"""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field, field_validator


class RayOptions(BaseModel):
    """Resources and fault tolerance of a Ray indexing or embedding run.

    ``address``: ``None`` connects to ``$RAY_ADDRESS`` when it is set and otherwise starts a
    Ray on this machine for the run; ``"local"`` always starts one; ``"auto"`` joins the
    cluster this machine is part of; ``"ray://host:10001"`` is a remote cluster (Ray Client).
    A Ray that is already initialised in this process is used as it is.

    ``actors`` embedding actors run at once (default: one per GPU of the cluster, else 1),
    each with ``gpus_per_actor`` GPUs (default: 1 when the cluster has GPUs, else 0) and
    ``cpus_per_actor`` CPUs (also its torch threads, rounded up). ``batch_size`` images go
    to an actor per call (default: the embedder spec's batch size). Reading and hashing
    files runs in CPU tasks of ``read_cpus`` each, at most ``read_tasks`` at once (default:
    2 per embedding actor; each task's worker process loads torch, so more cost memory and
    gain nothing once the actors are fed); a Qdrant server is written by ``writers`` actors
    and parquet shards by as many tasks, in parallel. An actor that dies is restarted up to
    ``max_restarts`` times and its batch retried up to ``max_task_retries`` times.
    ``num_cpus`` caps a Ray started here (e.g. 2 in CI). ``verbose`` shows Ray's own logs.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str | None = None
    actors: int | None = Field(None, ge=1)
    gpus_per_actor: float | None = Field(None, ge=0)
    cpus_per_actor: float = Field(1.0, gt=0)
    batch_size: int | None = Field(None, ge=1)
    read_cpus: float = Field(0.25, gt=0)
    read_tasks: int | None = Field(None, ge=1)
    writers: int = Field(2, ge=1)
    num_cpus: int | None = Field(None, ge=1)
    max_restarts: int = Field(3, ge=0)
    max_task_retries: int = Field(3, ge=0)
    verbose: bool = False

    @field_validator("address")
    @classmethod
    def _strip(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @property
    def starts_local_ray(self) -> bool:
        """Whether ``ray.init`` will start a new Ray on this machine (rather than join one).

        >>> RayOptions(address="local").starts_local_ray
        True
        """
        if self.address is None:
            return not os.environ.get("RAY_ADDRESS")
        return self.address == "local"
