"""``percep-rag align fit|eval``: human alignments (gLocal, LoRA) fitted and scored on triplets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from percep_rag.cli.errors import USAGE, fail
from percep_rag.cli.options import EmbedderOptions, ProgressBarsOption, with_options
from percep_rag.cli.output import random_note

TripletsArgument = Annotated[
    Path, typer.Argument(help="NIGHTS data.csv, a ranked .jsonl/.csv table, THINGS .npy, or a BAPPS 2AFC folder.")
]
RootOption = Annotated[Path | None, typer.Option(help="Folder the triplet image paths are relative to.")]
METHODS = ("glocal", "lora")


@with_options(EmbedderOptions, without=("alignment",))
def align_fit(
    triplets: TripletsArgument,
    out: Annotated[Path, typer.Option("--out", "-o", help="gLocal: a .safetensors file; lora: a run folder.")],
    method: Annotated[
        Literal["glocal", "lora"], typer.Option(help="'glocal' (affine map) or 'lora' (HA fine-tuning).")
    ] = "glocal",
    *,
    embedder_options: EmbedderOptions,
    root: RootOption = None,
    epochs: Annotated[
        int | None, typer.Option(min=0, max=100_000, help="Training epochs (method default if unset).")
    ] = None,
    lr: Annotated[float | None, typer.Option(help="Learning rate (method default if unset).")] = None,
    val_fraction: Annotated[float, typer.Option(help="Held-out image share when the file has no val split.")] = 0.2,
    held_out: Annotated[
        list[str] | None,
        typer.Option(
            "--held-out",
            help="A split never fitted on nor used to choose the model (repeatable; default: test).",
        ),
    ] = None,
    alpha: Annotated[
        float | None, typer.Option(min=0, max=1, help="gLocal local-term weight (searched if unset).")
    ] = None,
    lam: Annotated[
        float | None, typer.Option(min=0, help="gLocal identity-regulariser weight (searched if unset).")
    ] = None,
    temperature: Annotated[float | None, typer.Option(min=0, help="gLocal odd-one-out softmax temperature.")] = None,
    rank: Annotated[int | None, typer.Option(min=1, help="LoRA rank (default 16).")] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the fit (same seed, same data: same result on CPU).")
    ] = None,
    search: Annotated[
        bool | None,
        typer.Option(
            "--search/--no-search",
            help="Choose unset hyper-parameters on val over a small grid (gLocal: on by default; LoRA: lr x rank).",
        ),
    ] = None,
    progress: ProgressBarsOption = True,
) -> None:
    """Fit an alignment on human triplet judgments; prints base vs best validation agreement.

    gLocal by default chooses --alpha, --lam and --lr on the validation split over a small
    grid (those you give are kept); --no-search fits the defaults as they are.
    """
    from percep_rag.alignment.workflow import HELD_OUT_SPLITS, fit_split, read_triplets

    if method not in METHODS:
        fail(f"--method must be 'glocal' or 'lora', got {method!r}", USAGE)
    triplet_set = read_triplets(triplets, root=root)
    if held_out:
        missing = [name for name in held_out if not len(triplet_set.by_split(name))]
        if missing:
            fail(f"--held-out {', '.join(map(repr, missing))}: no triplets of {triplets} are in that split", USAGE)
    split = fit_split(triplet_set, val_fraction=val_fraction, held_out=held_out or HELD_OUT_SPLITS)
    train, val = split.train, split.val
    embedder = embedder_options.build()
    random_weights = " (RANDOM backbone weights)" if embedder.backbone.random_weights else ""
    typer.echo(f"{len(train)} train / {len(val)} val triplets; backbone {embedder_options.backbone}{random_weights}")
    typer.echo(split.describe())
    overrides = {key: value for key, value in {"epochs": epochs, "lr": lr, "seed": seed}.items() if value is not None}
    if method == "glocal":
        from percep_rag.alignment.glocal import GlocalFitConfig
        from percep_rag.alignment.workflow import fit_glocal_on_images

        if out.suffix != ".safetensors":
            fail("a gLocal transform is written as .safetensors: give --out <name>.safetensors", USAGE)
        given = {"alpha": alpha, "lam": lam, "temperature": temperature}
        overrides |= {key: value for key, value in given.items() if value is not None}
        config = GlocalFitConfig(device=embedder_options.device, **overrides)
        transform, report = fit_glocal_on_images(
            embedder, train, val, config=config, progress=progress, search=search is not False
        )
        transform.save(out)
        typer.echo(report.summary())
        typer.echo(f"saved {out}; use it with --alignment glocal:{out}")
    else:
        from percep_rag.alignment.lora import LoraFitConfig, LoraSearch, fit_lora, summarize

        overrides |= {"r": rank} if rank is not None else {}
        config = LoraFitConfig(device=embedder_options.device, pooling=embedder_options.pooling, **overrides)
        lora_search = LoraSearch() if search else None
        report = fit_lora(embedder.backbone, train, val, out, config=config, progress=progress, search=lora_search)
        typer.echo(summarize(report))
        typer.echo(f"use it with --alignment lora:{out}")


@with_options(EmbedderOptions)
def align_eval(
    triplets: TripletsArgument,
    embedder_options: EmbedderOptions,
    root: RootOption = None,
    split: Annotated[str | None, typer.Option(help="Only this split (e.g. test, test_imagenet).")] = None,
    progress: ProgressBarsOption = True,
) -> None:
    """Print base vs aligned 2AFC agreement on a triplet set."""
    from percep_rag.alignment.workflow import evaluate_2afc, read_triplets

    triplet_set = read_triplets(triplets, root=root)
    if split:
        triplet_set = triplet_set.by_split(split)
        if not len(triplet_set):
            fail(f"no triplets in split {split!r}")
    embedder = embedder_options.build()
    scores = evaluate_2afc(embedder, triplet_set, progress=progress)
    typer.echo(f"{scores} with {embedder.alignment.kind} alignment{random_note(embedder)}")
