"""``percep-rag embed``: images to vectors plus ids, in a file."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from percep_rag.cli.engine import EngineOptions
from percep_rag.cli.errors import fail
from percep_rag.cli.options import EmbedderOptions, ProgressOption, WorkersOption, with_options
from percep_rag.cli.output import echo_skipped


@with_options(EngineOptions, without=("writers",))
@with_options(EmbedderOptions)
def embed(
    source: Annotated[Path, typer.Argument(help="A folder of images or a manifest (.csv / .jsonl).")],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Output .npy (with sidecars) or .parquet; with --engine ray a shard folder."),
    ],
    num_workers: WorkersOption = None,
    progress: ProgressOption = True,
    *,
    embedder_options: EmbedderOptions,
    engine_options: EngineOptions,
) -> None:
    """Embed a folder or manifest of images into vectors plus ids; bad files are reported, not fatal.

    A run where no image could be read at all exits with code 1 (and writes nothing).

    With --engine ray, --out is a folder of parquet shards (see docs/scale-out.md).
    """
    from percep_rag.datasets.records import load_records
    from percep_rag.embedder import AlignedEmbedder
    from percep_rag.io.vectors import check_output_path, write_vectors

    spec = embedder_options.spec(num_workers=num_workers)
    if engine_options.on_ray:
        _embed_on_ray(source, out, spec, engine_options, progress)
        return
    check_output_path(out)
    records = load_records(source)
    if not records:
        fail(f"no images found in {source}")
    embedder = AlignedEmbedder.from_spec(spec)
    started = time.perf_counter()
    result = embedder.embed_many([record.uri for record in records], progress="embedding" if progress else False)
    elapsed = time.perf_counter() - started
    if not len(result.indices):
        echo_skipped(result.failures, inputs=len(records))  # every image failed: exit 1, no empty file written
    kept = [records[i] for i in result.indices]
    meta = {
        "fingerprint": embedder.fingerprint.model_dump(),
        "spec": json.loads(spec.model_dump_json()),
        "failures": [{"id": records[f.index].id, "source": f.source, "reason": f.reason} for f in result.failures],
    }
    write_vectors(
        out,
        ids=[r.id for r in kept],
        uris=[r.uri for r in kept],
        base=result.base,
        aligned=result.aligned,
        meta=meta,
        labels=[r.label for r in kept],
        splits=[r.split for r in kept],
    )
    note = " (RANDOM weights: vectors are meaningless outside tests)" if embedder.backbone.random_weights else ""
    typer.echo(
        f"embedded {len(kept)} of {len(records)} images in {elapsed:.1f}s "
        f"({len(kept) / max(elapsed, 1e-9):.1f} img/s) -> {out} [{embedder.dim}-d]{note}"
    )
    echo_skipped(result.failures)


def _embed_on_ray(source: Path, out: Path, spec, engine_options: EngineOptions, progress: bool) -> None:
    from percep_rag.datasets.records import load_records
    from percep_rag.distributed import embed_with_ray
    from percep_rag.distributed.embed import check_shard_folder

    check_shard_folder(out)  # before Ray starts
    records = load_records(source)
    if not records:
        fail(f"no images found in {source}")
    report = embed_with_ray(records, spec=spec, out=out, options=engine_options.ray_options(), progress=progress)
    note = " (RANDOM weights: vectors are meaningless outside tests)" if report.fingerprint.random_weights else ""
    typer.echo(
        f"embedded {report.embedded} of {report.records} images in {report.seconds:.1f}s "
        f"({report.images_per_second:.1f} img/s, {report.actors} Ray actors) -> {out}/ "
        f"(parquet shards) [{report.fingerprint.dim}-d]{note}"
    )
    echo_skipped(report.failures, inputs=report.records)
