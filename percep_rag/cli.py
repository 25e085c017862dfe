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
) -> None:
    """Embed a folder or manifest of images into vectors plus ids; bad files are reported, not fatal."""
    from percep_rag.config import EmbedderSpec
    from percep_rag.datasets.records import load_records
    from percep_rag.embedder import AlignedEmbedder
    from percep_rag.io.vectors import check_output_path, write_vectors

    check_output_path(out)
    records = load_records(source)
    if not records:
        _fail(f"no images found in {source}")
    spec = EmbedderSpec(
        backbone=backbone,
        weights=weights or None,
        pooling=pooling,
        alignment=alignment,
        device=device,
        batch_size=batch_size,
        num_workers=num_workers,
    )
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


align_app = typer.Typer(no_args_is_help=True, help="Fit and evaluate human alignments (gLocal, LoRA).")
app.add_typer(align_app, name="align")

TripletsArgument = Annotated[Path, typer.Argument(help="NIGHTS data.csv, a ranked .jsonl/.csv table, or THINGS .npy.")]
RootOption = Annotated[Path | None, typer.Option(help="Folder the triplet image paths are relative to.")]


def _embedder(backbone, weights, pooling, alignment, device, batch_size):
    from percep_rag.config import EmbedderSpec
    from percep_rag.embedder import AlignedEmbedder

    spec = EmbedderSpec(
        backbone=backbone,
        weights=weights or None,
        pooling=pooling,
        alignment=alignment,
        device=device,
        batch_size=batch_size,
    )
    return AlignedEmbedder.from_spec(spec)


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
