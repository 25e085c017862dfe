"""The ``percep-rag`` command line. Library errors become one-line messages and exit codes:
0 success, 1 a percep-rag error (bad input, missing weights, ...), 2 wrong usage."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from percep_rag.errors import PercepRagError

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Human-aligned image vectors, stored and retrieved.")

BackboneOption = Annotated[str, typer.Option("--backbone", "-b", help="Backbone name (see `percep-rag models`).")]
WeightsOption = Annotated[
    str | None, typer.Option(help="Checkpoint file, 'random', or empty for the default weights found locally.")
]
PoolingOption = Annotated[str, typer.Option(help="'cls' or 'cls+patchmean'.")]
AlignmentOption = Annotated[str, typer.Option(help="'identity', 'glocal:<file>' or 'lora:<dir>'.")]
DeviceOption = Annotated[str, typer.Option(help="'auto', 'cpu', 'cuda', 'cuda:1', ...")]
BatchOption = Annotated[int, typer.Option(min=1, help="Images per forward pass.")]
WorkersOption = Annotated[int | None, typer.Option(min=0, help="Decoding workers (default: by input size).")]
EngineOption = Annotated[str, typer.Option(help="'local' (this process) or 'ray' (Ray Data; docs/scale-out.md).")]
RayAddressOption = Annotated[
    str | None,
    typer.Option(help="--engine ray: 'auto', 'ray://host:10001' or 'local' (default: $RAY_ADDRESS, else a local Ray)."),
]
ActorsOption = Annotated[int | None, typer.Option(min=1, help="--engine ray: embedding actors (default: 1 per GPU).")]
GpusPerActorOption = Annotated[float | None, typer.Option(min=0, help="--engine ray: GPUs per embedding actor.")]
CpusPerActorOption = Annotated[float, typer.Option(min=0.01, help="--engine ray: CPUs (torch threads) per actor.")]
WritersOption = Annotated[int, typer.Option(min=1, help="--engine ray: parallel writers to a Qdrant server.")]
ShardsOption = Annotated[int | None, typer.Option(min=1, help="New collection on a Qdrant cluster: shards.")]
ReplicasOption = Annotated[int | None, typer.Option(min=1, help="New collection on a Qdrant cluster: shard copies.")]
WriteConsistencyOption = Annotated[
    int | None, typer.Option(min=1, help="New collection on a Qdrant cluster: replicas that confirm each write.")
]


def _fail(message: str, code: int = 1) -> None:
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


@app.command()
def models() -> None:
    """List the backbones and whether their weights are on this machine."""
    from percep_rag.backbones import get_backbone_entry, list_backbones, weights_dir, weights_present

    rows = []
    for name in list_backbones():
        entry = get_backbone_entry(name)
        random_only = entry.random_only or (entry.parts and all(get_backbone_entry(p).random_only for p in entry.parts))
        status = "random (test model)" if random_only else ("present" if weights_present(name) else "missing")
        rows.append((name, entry.family, status, entry.description))
    widths = [max(len(row[i]) for row in rows + [("backbone", "family", "weights", "")]) for i in range(3)]
    typer.echo(f"{'backbone':<{widths[0]}}  {'family':<{widths[1]}}  {'weights':<{widths[2]}}  description")
    for name, family, status, description in rows:
        typer.echo(f"{name:<{widths[0]}}  {family:<{widths[1]}}  {status:<{widths[2]}}  {description}")
    typer.echo(f"\nWeights folder: {weights_dir()} (or the Hugging Face cache; nothing is downloaded).")


@app.command()
def embed(
    source: Annotated[Path, typer.Argument(help="A folder of images or a manifest (.csv / .jsonl).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .npy (with sidecars) or .parquet.")],
    backbone: BackboneOption = "dreamsim-ensemble",
    weights: WeightsOption = None,
    pooling: PoolingOption = "cls",
    alignment: AlignmentOption = "identity",
    device: DeviceOption = "auto",
    batch_size: BatchOption = 64,
    num_workers: WorkersOption = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    engine: EngineOption = "local",
    ray_address: RayAddressOption = None,
    actors: ActorsOption = None,
    gpus_per_actor: GpusPerActorOption = None,
    cpus_per_actor: CpusPerActorOption = 1.0,
) -> None:
    """Embed a folder or manifest of images into vectors plus ids; bad files are reported, not fatal.

    With --engine ray, --out is a folder of parquet shards (see docs/scale-out.md)."""
    from percep_rag.datasets.records import load_records
    from percep_rag.embedder import AlignedEmbedder
    from percep_rag.io.vectors import check_output_path, write_vectors

    spec = _embedder_spec(backbone, weights, pooling, alignment, device, batch_size, num_workers)
    if _engine(engine) == "ray":
        _embed_on_ray(source, out, spec, _ray_options(ray_address, actors, gpus_per_actor, cpus_per_actor), progress)
        return
    check_output_path(out)
    records = load_records(source)
    if not records:
        _fail(f"no images found in {source}")
    embedder = AlignedEmbedder.from_spec(spec)
    started = time.perf_counter()
    result = embedder.embed_many([record.uri for record in records], progress="embedding" if progress else False)
    elapsed = time.perf_counter() - started
    kept = [records[i] for i in result.indices]
    meta = {
        "fingerprint": embedder.fingerprint.model_dump(),
        "spec": json.loads(spec.model_dump_json()),
        "failures": [{"id": records[f.index].id, "source": f.source, "reason": f.reason} for f in result.failures],
    }
    write_vectors(
        out, ids=[r.id for r in kept], uris=[r.uri for r in kept], base=result.base, aligned=result.aligned, meta=meta
    )
    note = " (RANDOM weights: vectors are meaningless outside tests)" if embedder.backbone.random_weights else ""
    typer.echo(
        f"embedded {len(kept)} of {len(records)} images in {elapsed:.1f}s "
        f"({len(kept) / max(elapsed, 1e-9):.1f} img/s) -> {out} [{embedder.dim}-d]{note}"
    )
    for failure in result.failures:
        typer.secho(f"skipped {failure.source}: {failure.reason}", err=True, fg=typer.colors.YELLOW)


# ============================================================================ --engine ray
# Options and helpers of the distributed engine (percep_rag.distributed, docs/scale-out.md).


def _embed_on_ray(source: Path, out: Path, spec, options, progress: bool) -> None:
    from percep_rag.datasets.records import load_records
    from percep_rag.distributed import embed_with_ray
    from percep_rag.distributed.embed import check_shard_folder

    check_shard_folder(out)  # before Ray starts
    records = load_records(source)
    if not records:
        _fail(f"no images found in {source}")
    report = embed_with_ray(records, spec=spec, out=out, options=options, progress=progress)
    note = " (RANDOM weights: vectors are meaningless outside tests)" if report.fingerprint.random_weights else ""
    typer.echo(
        f"embedded {report.embedded} of {report.records} images in {report.seconds:.1f}s "
        f"({report.images_per_second:.1f} img/s, {report.actors} Ray actors) -> {out}/ "
        f"(parquet shards) [{report.fingerprint.dim}-d]{note}"
    )
    for failure in report.failures:
        typer.secho(f"skipped {failure.source}: {failure.reason}", err=True, fg=typer.colors.YELLOW)


def _engine(engine: str) -> str:
    if engine not in ("local", "ray"):
        _fail(f"--engine must be 'local' or 'ray', got {engine!r}", 2)
    return engine


def _ray_options(address, actors, gpus_per_actor, cpus_per_actor, writers=2):
    from percep_rag.distributed import RayOptions

    return RayOptions(
        address=address, actors=actors, gpus_per_actor=gpus_per_actor, cpus_per_actor=cpus_per_actor, writers=writers
    )


def _collection_options(shard_number, replication_factor, write_consistency_factor):
    """Options of a collection created on a Qdrant server or cluster (``None``: the defaults)."""
    given = {
        "shard_number": shard_number,
        "replication_factor": replication_factor,
        "write_consistency_factor": write_consistency_factor,
    }
    if all(value is None for value in given.values()):
        return None
    from percep_rag.store import CollectionOptions

    return CollectionOptions(**given)


align_app = typer.Typer(no_args_is_help=True, help="Fit and evaluate human alignments (gLocal, LoRA).")
app.add_typer(align_app, name="align")

TripletsArgument = Annotated[Path, typer.Argument(help="NIGHTS data.csv, a ranked .jsonl/.csv table, or THINGS .npy.")]
RootOption = Annotated[Path | None, typer.Option(help="Folder the triplet image paths are relative to.")]


def _embedder_spec(backbone, weights, pooling, alignment, device, batch_size, num_workers=None):
    from percep_rag.config import EmbedderSpec

    return EmbedderSpec(
        backbone=backbone,
        weights=weights or None,
        pooling=pooling,
        alignment=alignment,
        device=device,
        batch_size=batch_size,
        num_workers=num_workers,
    )


def _embedder(backbone, weights, pooling, alignment, device, batch_size):
    from percep_rag.embedder import AlignedEmbedder

    return AlignedEmbedder.from_spec(_embedder_spec(backbone, weights, pooling, alignment, device, batch_size))


@align_app.command("fit")
def align_fit(
    triplets: TripletsArgument,
    out: Annotated[Path, typer.Option("--out", "-o", help="gLocal: a .safetensors file; lora: a run folder.")],
    method: Annotated[str, typer.Option(help="'glocal' (affine map) or 'lora' (HA fine-tuning).")] = "glocal",
    backbone: BackboneOption = "dreamsim-ensemble",
    weights: WeightsOption = None,
    pooling: PoolingOption = "cls",
    root: RootOption = None,
    epochs: Annotated[int | None, typer.Option(min=0, help="Training epochs (method default if unset).")] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate (method default if unset).")] = None,
    val_fraction: Annotated[float, typer.Option(help="Held-out image share when the file has no val split.")] = 0.2,
    device: DeviceOption = "auto",
    batch_size: BatchOption = 64,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Fit an alignment on human triplet judgments; prints base vs best validation agreement."""
    from percep_rag.alignment.workflow import read_triplets, train_val_split

    if method not in ("glocal", "lora"):
        _fail(f"--method must be 'glocal' or 'lora', got {method!r}", 2)
    train, val = train_val_split(read_triplets(triplets, root=root), val_fraction=val_fraction)
    embedder = _embedder(backbone, weights, pooling, "identity", device, batch_size)
    random_note = " (RANDOM backbone weights)" if embedder.backbone.random_weights else ""
    typer.echo(f"{len(train)} train / {len(val)} val triplets; backbone {backbone}{random_note}")
    overrides = {key: value for key, value in {"epochs": epochs, "lr": lr}.items() if value is not None}
    if method == "glocal":
        from percep_rag.alignment.glocal import GlocalFitConfig
        from percep_rag.alignment.workflow import fit_glocal_on_images

        if out.suffix != ".safetensors":
            _fail("a gLocal transform is written as .safetensors: give --out <name>.safetensors", 2)
        config = GlocalFitConfig(device=device, **overrides)
        transform, report = fit_glocal_on_images(embedder, train, val, config=config, progress=progress)
        transform.save(out)
        typer.echo(report.summary())
        typer.echo(f"saved {out}; use it with --alignment glocal:{out}")
    else:
        from percep_rag.alignment.lora import LoraFitConfig, fit_lora, summarize

        config = LoraFitConfig(device=device, pooling=pooling, **overrides)
        report = fit_lora(embedder.backbone, train, val, out, config=config, progress=progress)
        typer.echo(summarize(report))
        typer.echo(f"use it with --alignment lora:{out}")


@align_app.command("eval")
def align_eval(
    triplets: TripletsArgument,
    backbone: BackboneOption = "dreamsim-ensemble",
    weights: WeightsOption = None,
    pooling: PoolingOption = "cls",
    alignment: AlignmentOption = "identity",
    root: RootOption = None,
    split: Annotated[str | None, typer.Option(help="Only this split (e.g. test, test_imagenet).")] = None,
    device: DeviceOption = "auto",
    batch_size: BatchOption = 64,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Print base vs aligned 2AFC agreement on a triplet set."""
    from percep_rag.alignment.workflow import evaluate_2afc, read_triplets

    triplet_set = read_triplets(triplets, root=root)
    if split:
        triplet_set = triplet_set.by_split(split)
        if not len(triplet_set):
            _fail(f"no triplets in split {split!r}")
    embedder = _embedder(backbone, weights, pooling, alignment, device, batch_size)
    scores = evaluate_2afc(embedder, triplet_set, progress=progress)
    note = " [RANDOM backbone weights]" if embedder.backbone.random_weights else ""
    typer.echo(f"{scores} with {embedder.alignment.kind} alignment{note}")


# ============================================================================ index, search, eval
# Indexing into a store, searching it and the instance-retrieval evaluations. Helpers are
# private to this block; the work itself lives in indexing, retrieval and evaluation.

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        help="edge:<dir>, a directory, :memory:, local:<dir> or http(s)://host:6333 "
        "(default: $PERCEP_RAG_STORE, else ~/.cache/percep_rag/store as Qdrant Edge).",
    ),
]
CollectionOption = Annotated[str, typer.Option("--collection", "-c", help="Collection name.")]
FilterOption = Annotated[
    list[str] | None, typer.Option("--filter", help="key=value or key=v1,v2 (any of); repeatable, all must hold.")
]
DF2_PREFIX = "deepfashion2:"


def _store_spec(text: str | None):
    import os

    from percep_rag.store import StoreSpec

    if text:
        return StoreSpec.parse(text)
    env = os.environ.get("PERCEP_RAG_STORE")
    if env:
        return StoreSpec.parse(env)
    return StoreSpec(kind="edge", path=Path("~/.cache/percep_rag/store").expanduser())


def _load_source(source: str, split: str):
    """Records, default dataset name and extra payload indexes for a SOURCE argument."""
    if source.startswith(DF2_PREFIX):
        from percep_rag.datasets.deepfashion2 import DATASET_NAME, PAYLOAD_INDEXES, read_deepfashion2

        root = Path(source.removeprefix(DF2_PREFIX)).resolve()
        return read_deepfashion2(root, split), DATASET_NAME, PAYLOAD_INDEXES
    from percep_rag.datasets.records import load_records

    if not Path(source).exists():
        _fail(f"{source} does not exist (give a folder, a .csv/.jsonl manifest or deepfashion2:<root>)")
    # Stored uris outlive this working directory, so they are made absolute.
    return load_records(Path(source).resolve()), None, {}


def _parse_filters(texts: list[str], value_type) -> dict[str, object]:
    """``key=value`` / ``key=v1,v2`` (any of) into the store's filter dict; ``value_type(key)``
    says whether the stored field holds ``int``, ``bool`` or ``str``."""
    from percep_rag.errors import ConfigError

    parsed: dict[str, object] = {}
    for text in texts:
        key, sep, raw = text.partition("=")
        key = key.strip()
        values = [value.strip() for value in raw.split(",") if value.strip()]
        if not sep or not key or not values:
            raise ConfigError(f"--filter {text!r}: write key=value, or key=v1,v2 for any of several values")
        if key in parsed:
            raise ConfigError(f"--filter {key} given twice; write {key}=v1,v2 for any of several values")
        kind = value_type(key)
        try:
            if kind is int:
                converted: list[object] = [int(value) for value in values]
            elif kind is bool:
                converted = [{"true": True, "false": False}[value.lower()] for value in values]
            else:
                converted = list(values)
        except (ValueError, KeyError):
            raise ConfigError(f"--filter {text!r}: field {key!r} holds {kind.__name__} values") from None
        parsed[key] = converted[0] if len(converted) == 1 else converted
    return parsed


def _payload_type(store, collection: str):
    """How to read ``--filter`` values for a field: by its payload index, else by a stored value."""
    kinds = {"integer": int, "bool": bool, "keyword": str}
    indexes = store.collection_info(collection).payload_indexes
    points, _ = store.scroll(collection, limit=64)

    def value_type(key: str):
        if key in indexes:
            return kinds.get(indexes[key], str)
        for point in points:
            value = point.payload.get(key)
            sample = value[0] if isinstance(value, list) and value else value
            if isinstance(sample, bool):
                return bool
            if isinstance(sample, int):
                return int
            if sample is not None:
                return str
        return str

    return value_type


def _hits_table(hits) -> str:
    rows = [("rank", "score", "label", "uri")]
    for rank, hit in enumerate(hits, start=1):
        rows.append((str(rank), f"{hit.score:.4f}", str(hit.payload.get("label", "")), str(hit.payload.get("uri", ""))))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join("  ".join([*(row[i].ljust(widths[i]) for i in range(3)), row[3]]) for row in rows)


def _random_note(embedder) -> str:
    return " [RANDOM backbone weights]" if embedder.backbone.random_weights else ""


def _parse_ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        ks = ()
    if not ks or min(ks) < 1:
        _fail(f"--ks must be positive integers separated by commas, got {text!r}", 2)
    return ks


@app.command()
def index(
    source: Annotated[str, typer.Argument(help="A folder, a .csv/.jsonl manifest, or deepfashion2:<root>.")],
    collection: CollectionOption,
    store: StoreOption = None,
    dataset: Annotated[str | None, typer.Option(help="Value of the 'dataset' payload field.")] = None,
    split: Annotated[str, typer.Option(help="DeepFashion2 split (deepfashion2: sources only).")] = "validation",
    backbone: BackboneOption = "dreamsim-ensemble",
    weights: WeightsOption = None,
    pooling: PoolingOption = "cls",
    alignment: AlignmentOption = "identity",
    device: DeviceOption = "auto",
    batch_size: BatchOption = 64,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    engine: EngineOption = "local",
    ray_address: RayAddressOption = None,
    actors: ActorsOption = None,
    gpus_per_actor: GpusPerActorOption = None,
    cpus_per_actor: CpusPerActorOption = 1.0,
    writers: WritersOption = 2,
    shard_number: ShardsOption = None,
    replication_factor: ReplicasOption = None,
    write_consistency_factor: WriteConsistencyOption = None,
) -> None:
    """Embed images (base + aligned) into a collection; re-running adds only new images.

    Unreadable files are listed on stderr and skipped; the exit code stays 0.
    """
    from percep_rag.indexing import index_records
    from percep_rag.store import open_store

    records, default_dataset, indexes = _load_source(source, split)
    if not records:
        _fail(f"no images found in {source}")
    spec = _store_spec(store)
    options = _collection_options(shard_number, replication_factor, write_consistency_factor)
    if _engine(engine) == "ray":
        from percep_rag.distributed import index_with_ray

        report = index_with_ray(
            records,
            spec=_embedder_spec(backbone, weights, pooling, alignment, device, batch_size),
            store=spec,
            collection=collection,
            dataset=dataset or default_dataset,
            payload_indexes=indexes,
            options=_ray_options(ray_address, actors, gpus_per_actor, cpus_per_actor, writers),
            progress=progress,
            collection_options=options,
        )
        random_weights = report.fingerprint is not None and report.fingerprint.random_weights
        with open_store(spec) as opened:
            total = opened.count(collection)
    else:
        embedder = _embedder(backbone, weights, pooling, alignment, device, batch_size)
        with open_store(spec) as opened:
            report = index_records(
                records,
                embedder=embedder,
                store=opened,
                collection=collection,
                dataset=dataset or default_dataset,
                payload_indexes=indexes,
                progress=progress,
                collection_options=options,
            )
            total = opened.count(collection)
        random_weights = embedder.backbone.random_weights
    typer.echo(f"{report}{' [RANDOM backbone weights]' if random_weights else ''}")
    typer.echo(f"collection {collection!r} in {spec} now holds {total} points")
    for failure in report.failures:
        typer.secho(f"skipped {failure.source}: {failure.reason}", err=True, fg=typer.colors.YELLOW)


@app.command()
def search(
    query_image: Annotated[Path, typer.Argument(help="The query image file.")],
    collection: CollectionOption,
    store: StoreOption = None,
    k: Annotated[int, typer.Option("-k", "--top-k", min=1, help="Neighbours per vector space.")] = 5,
    using: Annotated[str, typer.Option(help="'aligned', 'base' or 'both'.")] = "both",
    filter: FilterOption = None,
    grid: Annotated[Path | None, typer.Option(help="Also draw query | base top-k | aligned top-k to this PNG.")] = None,
    backbone: BackboneOption = "dreamsim-ensemble",
    weights: WeightsOption = None,
    pooling: PoolingOption = "cls",
    alignment: AlignmentOption = "identity",
    device: DeviceOption = "auto",
    batch_size: BatchOption = 64,
) -> None:
    """The nearest stored images to QUERY_IMAGE, as a table per vector space (the query itself is never returned)."""
    from percep_rag.retrieval import Retriever
    from percep_rag.store import open_store

    if using not in ("aligned", "base", "both"):
        _fail(f"--using must be 'aligned', 'base' or 'both', got {using!r}", 2)
    spaces = ["base", "aligned"] if using == "both" or grid is not None else [using]
    shown = ["base", "aligned"] if using == "both" else [using]
    embedder = _embedder(backbone, weights, pooling, alignment, device, batch_size)
    spec = _store_spec(store)
    with open_store(spec) as opened:
        flt = _parse_filters(filter or [], _payload_type(opened, collection))
        retriever = Retriever(opened, collection, embedder)
        hits = {space: retriever.search(str(query_image), k=k, using=space, filter=flt or None) for space in spaces}
    for space in shown:
        typer.echo(f"{space} top-{k} for {query_image}{_random_note(embedder)}")
        typer.echo(_hits_table(hits[space]) if hits[space] else "(no matches)")
        typer.echo("")
    if grid is not None:
        _draw_neighbour_grid([query_image], [hits], grid)


@app.command()
def show(
    query_images: Annotated[list[Path], typer.Argument(help="One or more query image files (a row each).")],
    collection: CollectionOption,
    out: Annotated[Path, typer.Option("--out", "-o", help="The PNG to write.")] = Path("neighbours.png"),
    store: StoreOption = None,
    k: Annotated[int, typer.Option("-k", "--top-k", min=1, max=12, help="Neighbours per vector space.")] = 3,
    filter: FilterOption = None,
    backbone: BackboneOption = "dreamsim-ensemble",
    weights: WeightsOption = None,
    pooling: PoolingOption = "cls",
    alignment: AlignmentOption = "identity",
    device: DeviceOption = "auto",
    batch_size: BatchOption = 64,
) -> None:
    """Draw query | base top-k | aligned top-k, a row per query image, to a PNG (the paper's Figures 4 and 7)."""
    from percep_rag.retrieval import Retriever
    from percep_rag.store import open_store

    missing = [str(path) for path in query_images if not path.is_file()]
    if missing:
        _fail(f"query images not found: {', '.join(missing)}", 2)
    embedder = _embedder(backbone, weights, pooling, alignment, device, batch_size)
    with open_store(_store_spec(store)) as opened:
        flt = _parse_filters(filter or [], _payload_type(opened, collection))
        retriever = Retriever(opened, collection, embedder)
        rows = [
            {space: retriever.search(str(query), k=k, using=space, filter=flt or None) for space in ("base", "aligned")}
            for query in query_images
        ]
    _draw_neighbour_grid(query_images, rows, out, title=f"{embedder.backbone.name}{_random_note(embedder)}")


def _draw_neighbour_grid(queries: list[Path], rows: list[dict[str, list]], out: Path, title: str | None = None) -> None:
    from percep_rag.viz import retrieval_grid

    # The grid needs rows of equal length; spaces and queries can differ when few points match.
    depth = min(len(hits) for row in rows for hits in row.values())
    if depth == 0:
        typer.secho("a query has no neighbours to draw: grid not written", err=True, fg=typer.colors.YELLOW)
        return

    def uris(found) -> list[str]:
        return [str(hit.payload.get("uri", "")) for hit in found[:depth]]

    def captions(found) -> list[str]:
        return [f"{hit.payload.get('label', '')}\ncos {hit.score:.3f}" for hit in found[:depth]]

    retrieval_grid(
        [str(query) for query in queries],
        [uris(row["base"]) for row in rows],
        [uris(row["aligned"]) for row in rows],
        out,
        query_captions=[query.name for query in queries],
        base_captions=[captions(row["base"]) for row in rows],
        aligned_captions=[captions(row["aligned"]) for row in rows],
        title=title,
    )
    typer.echo(f"grid written to {out}")


eval_app = typer.Typer(no_args_is_help=True, help="The paper's evaluation protocols (instance retrieval).")
app.add_typer(eval_app, name="eval")

KsOption = Annotated[str, typer.Option("--ks", help="Comma-separated k values for recall@k.")]
JsonOption = Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON here.")]


def _finish_report(report, json_path: Path | None) -> None:
    typer.echo(report.table())
    for failure in report.failures:
        typer.secho(f"skipped {failure.source}: {failure.reason}", err=True, fg=typer.colors.YELLOW)
    if json_path is not None:
        json_path.write_text(json.dumps(report.to_dict(), indent=1))
        typer.echo(f"report written to {json_path}")
    if report.n_queries == 0:
        _fail("no query has a matching gallery image: check the role and instance fields")


@eval_app.command("retrieval")
def eval_retrieval(
    manifest: Annotated[Path, typer.Argument(help="A .csv or .jsonl manifest with image, instance and role columns.")],
    instance_field: Annotated[str, typer.Option(help="Column of instance ids (an id, a list, 'a;b').")] = "instance_id",
    role_field: Annotated[
        str | None, typer.Option(help="Column of roles: query/gallery/both (default: 'role', else DF2's 'source').")
    ] = None,
    ks: KsOption = "1,3,5",
    json_out: JsonOption = None,
    backbone: BackboneOption = "dreamsim-ensemble",
    weights: WeightsOption = None,
    pooling: PoolingOption = "cls",
    alignment: AlignmentOption = "identity",
    device: DeviceOption = "auto",
    batch_size: BatchOption = 64,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """recall@k of query images against a gallery, base vs aligned vectors (exact cosine)."""
    from percep_rag.datasets.records import read_manifest
    from percep_rag.evaluation import evaluate_records, retrieval_task

    wanted = _parse_ks(ks)
    task = retrieval_task(read_manifest(manifest), instance_field=instance_field, role_field=role_field)
    if not task.queries or not task.gallery:
        _fail(f"{manifest}: {len(task.queries)} queries and {len(task.gallery)} gallery images; need both")
    embedder = _embedder(backbone, weights, pooling, alignment, device, batch_size)
    description = f"{manifest.name}: {backbone}, {embedder.alignment.kind} alignment{_random_note(embedder)}"
    report = evaluate_records(task, embedder, ks=wanted, progress=progress, description=description)
    _finish_report(report, json_out)


@eval_app.command("deepfashion2")
def eval_deepfashion2(
    root: Annotated[Path, typer.Argument(help="DeepFashion2 root (holding <split>/image and <split>/annos).")],
    split: Annotated[str, typer.Option(help="Split to evaluate.")] = "validation",
    max_pairs: Annotated[int | None, typer.Option(min=1, help="Only the first N pair ids (quick runs).")] = None,
    collection: Annotated[
        str | None, typer.Option(help="Index into this collection (resumable) and rank through the store.")
    ] = None,
    store: StoreOption = None,
    ks: KsOption = "1,3,5",
    json_out: JsonOption = None,
    backbone: BackboneOption = "dreamsim-ensemble",
    weights: WeightsOption = None,
    pooling: PoolingOption = "cls",
    alignment: AlignmentOption = "identity",
    device: DeviceOption = "auto",
    batch_size: BatchOption = 64,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Consumer-to-shop recall@k on DeepFashion2: customer images query the shop images."""
    from percep_rag.datasets.deepfashion2 import DATASET_NAME, PAYLOAD_INDEXES, read_deepfashion2
    from percep_rag.evaluation import evaluate_collection, evaluate_records, retrieval_task

    wanted = _parse_ks(ks)
    records = read_deepfashion2(root, split, max_pairs=max_pairs)
    if not records:
        _fail(f"no annotated images in {root / split}")
    embedder = _embedder(backbone, weights, pooling, alignment, device, batch_size)
    description = f"DeepFashion2 {split}: {backbone}, {embedder.alignment.kind} alignment{_random_note(embedder)}"
    if collection is None:
        task = retrieval_task(records, instance_field="instances", role_field="source")
        report = evaluate_records(task, embedder, ks=wanted, progress=progress, description=description)
    else:
        from percep_rag.evaluation import EvalFailure
        from percep_rag.indexing import index_records
        from percep_rag.store import open_store

        with open_store(_store_spec(store)) as opened:
            indexed = index_records(
                records,
                embedder=embedder,
                store=opened,
                collection=collection,
                dataset=DATASET_NAME,
                payload_indexes=PAYLOAD_INDEXES,
                progress=progress,
            )
            typer.echo(str(indexed))
            # Other splits may share the collection: evaluate this split only.
            report = evaluate_collection(
                opened,
                collection,
                query_filter={"source": "user", "split": split},
                gallery_filter={"source": "shop", "split": split},
                ks=wanted,
                description=description,
            )
        report.failures = [EvalFailure(f.record_id, f.source, f.reason) for f in indexed.failures]
    _finish_report(report, json_out)


# --------------------------------------------------------------------------- few-shot VLM

VlmOption = Annotated[
    str,
    typer.Option(
        help="'tiny-flamingo-random' (test model) or a released OpenFlamingo, e.g. OpenFlamingo-4B-vitl-rpj3b."
    ),
]
VlmCheckpointOption = Annotated[str | None, typer.Option(help="The release's checkpoint.pt.")]
VlmLangOption = Annotated[str | None, typer.Option(help="Local folder of the language model and its tokenizer.")]
VlmVisionOption = Annotated[str | None, typer.Option(help="CLIP ViT-L/14 weights file for the vision encoder.")]


def _vlm(vlm, checkpoint, lang, vision_weights, device):
    from percep_rag.embedder import resolve_device
    from percep_rag.fewshot.evaluate import load_vlm

    return load_vlm(
        vlm, checkpoint=checkpoint, lang=lang, vision_weights=vision_weights, device=str(resolve_device(device))
    )


@app.command()
def classify(
    query: Annotated[list[Path], typer.Argument(help="Query image(s).")],
    collection: CollectionOption,
    classes: Annotated[
        str | None, typer.Option(help="Comma-separated class names (default: the pool's labels).")
    ] = None,
    store: StoreOption = None,
    shots: Annotated[int, typer.Option(min=1, help="Retrieved examples per query.")] = 3,
    using: Annotated[str, typer.Option(help="'aligned' or 'base' vectors for retrieval.")] = "aligned",
    vlm: VlmOption = "tiny-flamingo-random",
    vlm_checkpoint: VlmCheckpointOption = None,
    vlm_lang: VlmLangOption = None,
    vlm_vision_weights: VlmVisionOption = None,
    backbone: BackboneOption = "dreamsim-ensemble",
    weights: WeightsOption = None,
    pooling: PoolingOption = "cls",
    alignment: AlignmentOption = "identity",
    device: DeviceOption = "auto",
) -> None:
    """Classify query images with a VLM prompted by retrieved examples (most similar last)."""
    from percep_rag.retrieval import ExampleRetriever
    from percep_rag.store import open_store

    embedder = _embedder(backbone, weights, pooling, alignment, device, 64)
    classifier = _vlm(vlm, vlm_checkpoint, vlm_lang, vlm_vision_weights, device)
    with open_store(_store_spec(store)) as opened:
        retriever = ExampleRetriever(opened, collection, embedder)
        if classes:
            names = [name.strip() for name in classes.split(",") if name.strip()]
        else:
            names = sorted({p.payload["label"] for p in opened.iterate(collection) if p.payload.get("label")})
        if not names:
            _fail(f"no class names: pass --classes or index labelled images into {collection!r}")
        found = retriever.examples_batch([str(q) for q in query], k=shots, using=using)
    for image, examples in zip(query, found, strict=True):
        pairs = [(example.uri, example.label or example.text) for example in examples]
        prediction = classifier.predict(pairs, str(image), names)
        typer.echo(f"{image}: {prediction}   (examples: {', '.join(label for _, label in pairs)})")
    if embedder.backbone.random_weights or getattr(classifier, "random_weights", False):
        typer.echo("note: random weights were used; predictions are meaningless outside tests")


@eval_app.command("fewshot")
def eval_fewshot(
    task: Annotated[Path, typer.Argument(help="root/<split>/<class>/<image> folder, or a manifest with label+split.")],
    shots: Annotated[int, typer.Option(min=1)] = 3,
    seeds: Annotated[int, typer.Option(min=1, help="Number of seeds (0..n-1).")] = 5,
    queries: Annotated[int | None, typer.Option(min=1, help="Queries per seed (default: all).")] = None,
    methods: Annotated[
        str, typer.Option(help="Comma-separated subset of aligned,base,random,knn-aligned,knn-base.")
    ] = ("aligned,base,random,knn-aligned,knn-base"),
    store: Annotated[str, typer.Option(help="Store for the example pool (default: in memory).")] = ":memory:",
    collection: Annotated[str, typer.Option(help="Collection of the example pool.")] = "fewshot-pool",
    vlm: VlmOption = "tiny-flamingo-random",
    vlm_checkpoint: VlmCheckpointOption = None,
    vlm_lang: VlmLangOption = None,
    vlm_vision_weights: VlmVisionOption = None,
    backbone: BackboneOption = "dreamsim-ensemble",
    weights: WeightsOption = None,
    pooling: PoolingOption = "cls",
    alignment: AlignmentOption = "identity",
    device: DeviceOption = "auto",
    batch_size: BatchOption = 64,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the per-seed accuracies here.")] = None,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
) -> None:
    """Retrieval-augmented few-shot accuracy (mean ± 95% CI over seeds) for each method."""
    from percep_rag.datasets.vtab import read_task
    from percep_rag.fewshot.evaluate import VLM_METHODS, evaluate_fewshot
    from percep_rag.store import StoreSpec, open_store

    chosen = [m.strip() for m in methods.split(",") if m.strip()]
    classification = read_task(task)
    embedder = _embedder(backbone, weights, pooling, alignment, device, batch_size)
    classifier = _vlm(vlm, vlm_checkpoint, vlm_lang, vlm_vision_weights, device) if VLM_METHODS & set(chosen) else None
    with open_store(StoreSpec.parse(store)) as opened:
        report = evaluate_fewshot(
            classification, embedder=embedder, store=opened, collection=collection, classifier=classifier,
            shots=shots, seeds=range(seeds), queries=queries, methods=chosen, progress=progress,
        )  # fmt: skip
    if getattr(classifier, "random_weights", False):
        report.random_weights = True
    typer.echo(report.table())
    if json_out is not None:
        json_out.write_text(json.dumps({"task": report.task, "shots": shots, "accuracy": report.accuracy}, indent=1))


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, turning library errors into a message and exit code 1."""
    try:
        code = app(args=argv, standalone_mode=False)
    except PercepRagError as error:
        typer.secho(f"error: {error}", err=True, fg=typer.colors.RED)
        sys.exit(1)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.TyperException as error:  # usage errors: typer formats them, exit code 2
        error.show()
        sys.exit(getattr(error, "exit_code", 2))
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
