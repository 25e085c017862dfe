"""Sizing the ablation's default run by its power: triplets per kind, LoRA epochs and seeds.

The run must make the 95% interval of the paired mid-level minus semantic contrast (per
method, on instance recall@1 and mid-level 2AFC; :func:`~percep_rag.study.ablation_contrasts.sized_cells`)
at most :data:`TARGET_HALF_WIDTH` wide on each side, within :data:`BUDGET_MINUTES` wall on 2
idle cores. With ``n`` seeds a contrast whose per-seed standard deviation is ``sd`` has the
half-width ``t(0.975, n - 1) * sd / sqrt(n)`` (:func:`half_width`), so a pilot at a size
(a few seeds, their CPU seconds measured) gives each cell's seeds needed
(:func:`seeds_needed`) and the run's wall time (:func:`wall_minutes`); :func:`choose_size`
takes, among the pilots' sizes, the one whose affordable seeds bring the most cells to the
target (ties: the smallest worst half-width), and says how many minutes would bring all.

The sd of a pilot is an estimate from a few seeds (with 5, the true sd can be half or twice
it): the printed half-widths of the run itself are what counts, this only chooses its size.

>>> round(half_width(0.03, 10), 4)
0.0215
>>> seeds_needed(0.03, 0.02)
12
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from percep_rag.errors import ConfigError
from percep_rag.evaluation.stats import t_quantile
from percep_rag.study.ablation import AblationResult
from percep_rag.study.ablation_contrasts import SIZED_PAIR, SIZED_TASKS, contrast_values

TARGET_HALF_WIDTH = 0.02
BUDGET_MINUTES = 20.0
#: The budget the default run is planned to: :data:`BUDGET_MINUTES` less 10% for the machine's
#: own variance (a 19-seed run planned at 19.1 min went 16 seeds in 17 min on the same CPU kind).
PLANNING_MINUTES = 0.9 * BUDGET_MINUTES
MIN_SEEDS = 5


def half_width(sd: float, seeds: int) -> float:
    """The 95% t half-width of a mean of ``seeds`` values whose standard deviation is ``sd``."""
    if seeds < 2:
        return math.inf
    return t_quantile(0.975, seeds - 1) * sd / math.sqrt(seeds)


def seeds_needed(sd: float, target: float = TARGET_HALF_WIDTH, *, minimum: int = MIN_SEEDS, cap: int = 100_000) -> int:
    """The fewest seeds (at least ``minimum``) whose half-width for ``sd`` is at most ``target``.

    >>> seeds_needed(0.0, 0.02), seeds_needed(0.2, 0.02) > 380
    (5, True)
    """
    if target <= 0 or sd < 0:
        raise ConfigError(f"need target > 0 and sd >= 0, got {target} and {sd}")
    n = max(2, minimum)
    # The half-width falls with n; the normal bound (1.96 sd / target)^2 is a lower bound on the answer.
    n = max(n, int((1.959963984540054 * sd / target) ** 2))
    while half_width(sd, n) > target:
        n += 1
        if n > cap:
            return cap
    return n


@dataclass(frozen=True)
class Pilot:
    """One pilot size: its knobs, each sized cell's per-seed contrasts, its CPU seconds per seed."""

    train_triplets: int
    lora_epochs: int
    seeds: int
    contrasts: dict[str, list[float]]
    cpu_per_seed: float
    base_cpu_seconds: float

    @property
    def name(self) -> str:
        return f"{self.train_triplets} triplets / {self.lora_epochs} LoRA epochs"

    def sd(self, cell: str) -> float:
        return float(np.std(self.contrasts[cell], ddof=1))


def cell_name(task: str, method: str) -> str:
    """The sized cell's label, e.g. ``lora: mid-level - semantic on instance retrieval``."""
    return f"{method}: {SIZED_PAIR[0]} - {SIZED_PAIR[1]} on {task}"


def pilot_from_result(result: AblationResult, base_cpu_seconds: float) -> Pilot:
    """A :class:`Pilot` from an ablation's seeds (each with its ``cpu_seconds``)."""
    study = result.config.study
    cells = {
        cell_name(task, method): contrast_values(result, task, method, *SIZED_PAIR)
        for task in SIZED_TASKS
        for method in result.config.methods
    }
    cpu = [seed.cpu_seconds for seed in result.seeds]
    if len(result.seeds) < 2 or not all(c > 0 for c in cpu):
        raise ConfigError("a pilot needs at least 2 seeds, each with its CPU seconds measured")
    return Pilot(
        study.train_triplets, study.lora.epochs, len(result.seeds), cells, float(np.mean(cpu)), base_cpu_seconds
    )


def load_pilot(folder: str | Path) -> Pilot:
    """The pilot saved by ``benchmarks/triplet_ablation_power.py pilot`` in ``folder``."""
    data = json.loads((Path(folder) / "results.json").read_text(encoding="utf-8"))
    return pilot_from_result(AblationResult.from_dict(data), float(data["base_cpu_seconds"]))


def calibrate_wall_per_cpu(idle_run: AblationResult, pilot: AblationResult) -> float:
    """Idle 2-core wall seconds per 1-thread CPU second: the mean wall seconds of the idle
    run's seeds (the sum of their stages, base training left out) over the pilot's mean CPU
    seconds per seed, both at the same size.

    >>> from percep_rag.study.ablation import AblationConfig, AblationSeed
    >>> idle = AblationResult(AblationConfig.small(), [AblationSeed(0, seconds={"a": 20.0, "base training": 9.0})])
    >>> cpu = AblationResult(AblationConfig.small(), [AblationSeed(0, cpu_seconds=40.0)])
    >>> calibrate_wall_per_cpu(idle, cpu)
    0.5
    """
    if idle_run.config != pilot.config:
        raise ConfigError("the idle run and the pilot must be of the same size and config")
    wall = np.mean([sum(v for k, v in s.seconds.items() if k != "base training") for s in idle_run.seeds])
    return float(wall / np.mean([s.cpu_seconds for s in pilot.seeds]))


def wall_minutes(pilot: Pilot, seeds: int, wall_per_cpu: float) -> float:
    """The default run's wall minutes on 2 idle cores: the base once, then ``seeds`` seeds."""
    return (pilot.base_cpu_seconds + seeds * pilot.cpu_per_seed) * wall_per_cpu / 60.0


def affordable_seeds(pilot: Pilot, budget_minutes: float, wall_per_cpu: float) -> int:
    """The most seeds whose run fits ``budget_minutes`` (0 when not even one fits)."""
    spare = budget_minutes * 60.0 / wall_per_cpu - pilot.base_cpu_seconds
    return max(0, int(spare // pilot.cpu_per_seed))


@dataclass(frozen=True)
class SizeOption:
    """A pilot size judged: the seeds each cell needs, the seeds the budget allows, and so on."""

    pilot: Pilot
    needed: dict[str, int]
    affordable: int
    seeds: int
    half_widths: dict[str, float]
    reached: int
    minutes: float
    minutes_for_all: float


@dataclass(frozen=True)
class SizingChoice:
    """:func:`choose_size`'s answer: every option, the chosen one, and the inputs."""

    options: list[SizeOption]
    chosen: SizeOption
    budget_minutes: float
    target: float
    wall_per_cpu: float


def judge_size(pilot: Pilot, *, budget_minutes: float, target: float, wall_per_cpu: float) -> SizeOption:
    """One pilot's option: seeds = all the budget allows (at least :data:`MIN_SEEDS`; fewer are
    no option), the half-widths they project, how many cells reach ``target``."""
    needed = {cell: seeds_needed(pilot.sd(cell), target) for cell in pilot.contrasts}
    affordable = affordable_seeds(pilot, budget_minutes, wall_per_cpu)
    seeds = max(MIN_SEEDS, affordable)
    widths = {cell: half_width(pilot.sd(cell), seeds) for cell in pilot.contrasts}
    reached = sum(width <= target for width in widths.values()) if affordable >= MIN_SEEDS else 0
    return SizeOption(
        pilot, needed, affordable, seeds, widths, reached, wall_minutes(pilot, seeds, wall_per_cpu),
        wall_minutes(pilot, max(needed.values()), wall_per_cpu),
    )  # fmt: skip


def choose_size(
    pilots: list[Pilot],
    *,
    budget_minutes: float = BUDGET_MINUTES,
    target: float = TARGET_HALF_WIDTH,
    wall_per_cpu: float,
) -> SizingChoice:
    """Among the pilots' sizes, the one whose affordable seeds bring the most sized cells to
    ``target`` within ``budget_minutes``, ties to the smallest worst projected half-width
    (then the cheaper). ``wall_per_cpu`` converts the pilots' 1-thread CPU seconds to wall
    seconds on 2 idle cores (:func:`calibrate_wall_per_cpu`).

    >>> a = Pilot(400, 2, 5, {"x": [0.0, 0.1, -0.1, 0.05, -0.05]}, cpu_per_seed=60.0, base_cpu_seconds=30.0)
    >>> b = Pilot(1200, 2, 5, {"x": [0.0, 0.02, -0.02, 0.01, -0.01]}, cpu_per_seed=120.0, base_cpu_seconds=30.0)
    >>> choice = choose_size([a, b], budget_minutes=20, wall_per_cpu=0.6)
    >>> choice.chosen.pilot.train_triplets, choice.chosen.seeds, choice.chosen.reached
    (1200, 16, 1)
    """
    if not pilots:
        raise ConfigError("choose_size needs at least one pilot")
    if not wall_per_cpu > 0:
        raise ConfigError(f"wall_per_cpu must be > 0, got {wall_per_cpu}")
    options = [judge_size(p, budget_minutes=budget_minutes, target=target, wall_per_cpu=wall_per_cpu) for p in pilots]
    chosen = min(options, key=lambda o: (-o.reached, max(o.half_widths.values()), o.minutes))
    return SizingChoice(options, chosen, budget_minutes, target, wall_per_cpu)


def sizing_report(choice: SizingChoice) -> str:
    """The reasoning as text: per size, each cell's pilot sd, seeds needed, projected half-width."""
    lines = [
        f"target: 95% half-width <= {choice.target} on every sized cell, within {choice.budget_minutes:g} min "
        f"wall on 2 idle cores ({choice.wall_per_cpu:.3f} wall s per 1-thread CPU s of the pilots)",
    ]
    for option in choice.options:
        pilot = option.pilot
        lines.append(
            f"- {pilot.name} ({pilot.seeds} pilot seeds, {pilot.cpu_per_seed:.0f} CPU s a seed): "
            f"{option.affordable} seeds fit the budget; {option.seeds} seeds take {option.minutes:.1f} min and "
            f"reach {option.reached}/{len(option.needed)} cells; all cells need "
            f"{max(option.needed.values())} seeds = {option.minutes_for_all:.1f} min"
        )
        for cell, needed in option.needed.items():
            lines.append(
                f"    {cell}: sd {pilot.sd(cell):.4f}, needs {needed} seeds, "
                f"half-width at {option.seeds} seeds {option.half_widths[cell]:.4f}"
            )
    chosen = choice.chosen
    lines.append(
        f"chosen: {chosen.pilot.name}, {chosen.seeds} seeds ({chosen.minutes:.1f} min; "
        f"{chosen.reached}/{len(chosen.needed)} cells reach the target)"
    )
    if chosen.reached < len(chosen.needed):
        fastest = min(choice.options, key=lambda o: o.minutes_for_all)
        lines.append(
            f"every cell at the target would take {fastest.minutes_for_all:.0f} min ({fastest.pilot.name}, "
            f"{max(fastest.needed.values())} seeds)"
        )
    return "\n".join(lines)
