"""``--engine local|ray`` and the Ray and cluster options of ``index`` and ``embed`` (docs/scale-out.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal

import typer

if TYPE_CHECKING:
    from percep_rag.distributed import RayOptions
    from percep_rag.store import CollectionOptions

#: Where the embedding runs: in this process, or on Ray Data (one machine or a cluster).
Engine = Literal["local", "ray"]

EngineOption = Annotated[Engine, typer.Option(help="'local' (this process) or 'ray' (Ray Data; docs/scale-out.md).")]
RayAddressOption = Annotated[
    str | None,
    typer.Option(help="--engine ray: 'auto', 'ray://host:10001' or 'local' (default: $RAY_ADDRESS, else a local Ray)."),
]
ActorsOption = Annotated[
    int | None, typer.Option(min=1, max=100_000, help="--engine ray: embedding actors (default: 1 per GPU).")
]
GpusPerActorOption = Annotated[
    float | None, typer.Option(min=0, max=64, help="--engine ray: GPUs per embedding actor.")
]
CpusPerActorOption = Annotated[
    float, typer.Option(min=0.01, max=1024, help="--engine ray: CPUs (torch threads) per actor.")
]
WritersOption = Annotated[int, typer.Option(min=1, max=1024, help="--engine ray: parallel writers to a Qdrant server.")]
ShardsOption = Annotated[
    int | None, typer.Option(min=1, max=65_536, help="New collection on a Qdrant cluster: shards.")
]
ReplicasOption = Annotated[
    int | None, typer.Option(min=1, max=1024, help="New collection on a Qdrant cluster: shard copies.")
]
MemoryOption = Annotated[
    Literal["low", "balanced"] | None,
    typer.Option(
        help="New collection's memory layout: 'low' (float originals on disk, ~2.0 KB of RAM a point at 1M) or "
        "'balanced' (all in RAM, lower tail latency, ~8.0 KB a point); docs/scale-out.md. Default: low."
    ),
]
WriteConsistencyOption = Annotated[
    int | None, typer.Option(min=1, max=1024, help="New collection on a Qdrant cluster: replicas that confirm a write.")
]


@dataclass(frozen=True)
class EngineOptions:
    """``--engine`` and, for ``ray``, where and with what resources the embedding actors run."""

    engine: EngineOption = "local"
    ray_address: RayAddressOption = None
    actors: ActorsOption = None
    gpus_per_actor: GpusPerActorOption = None
    cpus_per_actor: CpusPerActorOption = 1.0
    writers: WritersOption = 2

    @property
    def on_ray(self) -> bool:
        return self.engine == "ray"

    def ray_options(self) -> RayOptions:
        """These options as :class:`~percep_rag.distributed.RayOptions`."""
        from percep_rag.distributed import RayOptions

        return RayOptions(
            address=self.ray_address,
            actors=self.actors,
            gpus_per_actor=self.gpus_per_actor,
            cpus_per_actor=self.cpus_per_actor,
            writers=self.writers,
        )


@dataclass(frozen=True)
class ClusterOptions:
    """How a new collection is laid out: its memory layout, and on a Qdrant cluster its shards
    (``None``: the defaults)."""

    memory: MemoryOption = None
    shard_number: ShardsOption = None
    replication_factor: ReplicasOption = None
    write_consistency_factor: WriteConsistencyOption = None

    def collection_options(self) -> CollectionOptions | None:
        """The :class:`~percep_rag.store.CollectionOptions`, or ``None`` when nothing was given."""
        given = {
            "shard_number": self.shard_number,
            "replication_factor": self.replication_factor,
            "write_consistency_factor": self.write_consistency_factor,
        }
        if self.memory is None and all(value is None for value in given.values()):
            return None
        from percep_rag.store.layouts import memory_layout

        return memory_layout(self.memory or "low", **{k: v for k, v in given.items() if v is not None})
