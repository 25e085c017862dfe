"""``percep-rag study ablation``: the paper's triplet-source ablation (Figure 8) in the generated world."""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

import typer

from percep_rag.cli.options import ProgressBarsOption

SizeOption = Annotated[
    Literal["default", "small"],
    typer.Option(help="'default': the CPU ablation (~4 min a seed on 2 idle cores); 'small': a micro world (a minute or two)."),
]
SeedOption = Annotated[
    list[int] | None, typer.Option("--seed", metavar="N", help="A seed (repeat for more; default 0 1 2).")
]
OutOption = Annotated[Path, typer.Option("--out", "-o", help="Folder for table.md, results.json and gains.png.")]


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what :mod:`platform` says."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load() -> str:
    try:
        return " ".join(f"{value:.1f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def study_ablation(
    out: OutOption = Path("ablation"),
    size: SizeOption = "default",
    seed: SeedOption = None,
    keep_work: Annotated[bool, typer.Option(help="Keep the generated files and fits in --out/work.")] = False,
    progress: ProgressBarsOption = False,
) -> None:
    """Fit gLocal and LoRA-HA on each kind of triplet (NIGHTS-, BAPPS-, ImageNet-, THINGS-like)
    with the same budget and print each one's gain over the base per task, with 95% CIs.

    Everything is generated here: the world, the judges and a base ViT trained from a
    random init (no downloaded weights). Writes table.md, results.json and gains.png.
    """
    import torch

    from percep_rag.study.ablation import AblationConfig, AblationResult, run_ablation_seed
    from percep_rag.study.ablation_report import ablation_table, draw_ablation

    seeds = list(seed) if seed else [0, 1, 2]
    if len(set(seeds)) != len(seeds):
        from percep_rag.cli.errors import USAGE, fail

        fail(f"--seed values must be distinct, got {seeds}", USAGE)
    config = AblationConfig.default() if size == "default" else AblationConfig.small()
    out.mkdir(parents=True, exist_ok=True)
    started, load_before = time.perf_counter(), _load()
    done = []
    with tempfile.TemporaryDirectory() as scratch:
        root = out / "work" if keep_work else Path(scratch)
        for number, value in enumerate(seeds, 1):
            seed_started = time.perf_counter()
            done.append(run_ablation_seed(config, value, root / f"seed{value}", progress=progress))
            typer.echo(f"seed {value} ({number}/{len(seeds)}) done in {(time.perf_counter() - seed_started) / 60:.1f} min")
    result = AblationResult(config, done)
    minutes = (time.perf_counter() - started) / 60
    cpu = cpu_name()
    header = (
        f"triplet-source ablation, size {size}, seeds {seeds}, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu}, "
        f"{torch.get_num_threads()} torch threads, {os.cpu_count()} CPUs, {minutes:.1f} min; load average "
        f"{load_before} at the start, {_load()} at the end; base semantic test accuracy per seed "
        f"{[round(s.base_semantic_accuracy, 3) for s in done]} (chance 1/{len(config.study.shapes)}); "
        "generated world, base ViT random init, trained here"
    )
    table = ablation_table(result)
    (out / "table.md").write_text(f"{header}\n\n{table}\n", encoding="utf-8")
    (out / "results.json").write_text(json.dumps({"header": header, **result.to_dict()}, indent=1), encoding="utf-8")
    draw_ablation(result, out / "gains.png", subtitle=f"{cpu}, {minutes:.1f} min")
    typer.echo(header)
    typer.echo(table)
    typer.echo(f"wrote {out / 'table.md'}, {out / 'results.json'}, {out / 'gains.png'}")
