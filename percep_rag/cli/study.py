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

from percep_rag.cli.errors import USAGE, fail
from percep_rag.cli.options import ProgressBarsOption
from percep_rag.io.files import atomic_write_text

SizeOption = Annotated[
    Literal["default", "small"],
    typer.Option(
        help="'default': the CPU ablation (times in benchmarks/RESULTS.md); 'small': a micro world (a minute or two)."
    ),
]
SeedOption = Annotated[
    list[int] | None,
    typer.Option("--seed", metavar="N", help="A seed (repeat for more; default: the size's seeds, 0 1 2 for small)."),
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
    resume: Annotated[
        bool, typer.Option(help="Keep the seeds an earlier run of this size saved in --out/results.json.")
    ] = False,
    progress: ProgressBarsOption = False,
) -> None:
    """Fit gLocal and LoRA-HA on each kind of triplet (NIGHTS-, BAPPS-, ImageNet-, THINGS-like)
    with the same budget and print each one's gain over the base per task, with 95% t-intervals
    over seeds (the seeds vary the triplets and the fits).

    Everything is generated here: the world, the judges and a base ViT trained from a
    random init (no downloaded weights). Writes table.md, results.json and gains.png
    after every seed; --resume continues an interrupted run.
    """
    from percep_rag.study.ablation import (
        DEFAULT_SEEDS,
        AblationConfig,
        AblationResult,
        AblationSeed,
        ablation_base,
        run_ablation_seed,
    )

    seeds = list(seed) if seed else list(range(DEFAULT_SEEDS if size == "default" else 3))
    if len(set(seeds)) != len(seeds):
        fail(f"--seed values must be distinct, got {seeds}", USAGE)
    config = AblationConfig.default() if size == "default" else AblationConfig.small()
    out.mkdir(parents=True, exist_ok=True)
    done: list[AblationSeed] = []
    if resume and (out / "results.json").is_file():
        saved = AblationResult.from_dict(json.loads((out / "results.json").read_text(encoding="utf-8")))
        if saved.config != config:
            fail(f"{out / 'results.json'} holds an ablation of another size or config: give another --out")
        done = [s for s in saved.seeds if s.seed in seeds]
        typer.echo(f"resuming: seeds {[s.seed for s in done]} are in {out / 'results.json'}")
    clock = _Clock()
    with tempfile.TemporaryDirectory() as scratch:
        root = out / "work" if keep_work else Path(scratch)
        base = None
        for value in [s for s in seeds if s not in {d.seed for d in done}]:
            seed_started = time.perf_counter()
            trained = base is None or not config.shared_base
            if trained:
                base = ablation_base(config, value, root / "base" if config.shared_base else None)
            base_seconds = round(time.perf_counter() - seed_started, 2)
            done.append(run_ablation_seed(config, value, root / f"seed{value}", base=base, progress=progress))
            if trained:  # trained (or loaded) here, before the seed's own stages
                done[-1].seconds = {"base training": base_seconds, **done[-1].seconds}
            done.sort(key=lambda s: seeds.index(s.seed))
            # Written after every seed, so an interrupted run keeps what it finished (see --resume).
            _write(out, AblationResult(config, done), size, clock, final=len(done) == len(seeds))
            minutes = (time.perf_counter() - seed_started) / 60
            typer.echo(f"seed {value} done in {minutes:.1f} min ({len(done)}/{len(seeds)} seeds)")
    if not clock.wrote:
        _write(out, AblationResult(config, done), size, clock, final=True)
    typer.echo(clock.header)
    typer.echo(clock.table)
    typer.echo(f"wrote {out / 'table.md'}, {out / 'results.json'}, {out / 'gains.png'}")


class _Clock:
    """Wall and CPU time since the start, the load average then, and the last header written."""

    def __init__(self) -> None:
        self.started, self.cpu_started, self.load = time.perf_counter(), time.process_time(), _load()
        self.header = self.table = ""
        self.wrote = False


def _write(out: Path, result, size: str, clock: _Clock, *, final: bool) -> None:
    import torch

    from percep_rag.study.ablation_report import ablation_report, draw_ablation

    minutes = (time.perf_counter() - clock.started) / 60
    cpu_minutes = (time.process_time() - clock.cpu_started) / 60
    cpu = cpu_name()
    seeds = [s.seed for s in result.seeds]
    clock.header = (
        f"triplet-source ablation, size {size}, seeds {seeds}{'' if final else ' (so far)'}, "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {cpu}, {torch.get_num_threads()} torch threads, "
        f"{os.cpu_count()} CPUs; {minutes:.1f} min wall, {cpu_minutes:.1f} min CPU (all threads) this run; "
        f"load average {clock.load} at the start, {_load()} now; base semantic test accuracy per seed "
        f"{[round(s.base_semantic_accuracy, 3) for s in result.seeds]} (chance 1/{len(result.config.study.shapes)}); "
        "generated world, base ViT random init, trained here"
    )
    clock.table = ablation_report(result)
    atomic_write_text(out / "table.md", f"{clock.header}\n\n{clock.table}\n")
    atomic_write_text(out / "results.json", json.dumps({"header": clock.header, **result.to_dict()}, indent=1))
    draw_ablation(result, out / "gains.png", subtitle=f"{cpu}, {minutes:.1f} min wall")
    clock.wrote = True
