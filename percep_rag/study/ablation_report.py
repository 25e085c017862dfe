"""The ablation's tables and its Figure-8-style picture: the gain over the base per task and
triplet kind (a panel per alignment method), the paired contrasts between kinds (a table and
a panel per method), the half-widths the run is sized on, and a verdict per paper claim.

>>> from percep_rag.study.ablation import AblationConfig, AblationResult, AblationSeed
>>> metrics = {m: {"base": 0.5, "lora/class": 0.6} for m in ("count MAE", "recall@1", "semantic kNN acc",
...            "few-shot count acc", "2AFC (mid-level test)")}
>>> config = AblationConfig.small().model_copy(update={"kinds": ("class",), "methods": ("lora",)})
>>> result = AblationResult(config, [AblationSeed(0, metrics), AblationSeed(1, metrics)])
>>> ablation_table(result).splitlines()[4].split(" | ")[:4]
['| LoRA-HA', 'class (ImageNet classes)', '-0.1000 ± 0.0000', '+0.1000 ± 0.0000']
"""

from __future__ import annotations

from pathlib import Path

from percep_rag.evaluation.stats import Interval, mean_ci95
from percep_rag.evaluation.tables import markdown_table
from percep_rag.study.ablation import TASKS, TWO_AFC, AblationResult
from percep_rag.study.ablation_contrasts import (
    SIZED_PAIR,
    claim_verdicts,
    contrast,
    contrast_pairs,
    contrast_values,
    sized_cells,
)
from percep_rag.study.ablation_power import TARGET_HALF_WIDTH
from percep_rag.study.kinds import TRIPLET_KINDS
from percep_rag.study.run import seed_interval_note, table_cell
from percep_rag.viz.bars import metric_bars

METHOD_NAMES = {"glocal": "gLocal", "lora": "LoRA-HA"}
#: The x-axis labels: what a positive bar means.
TASK_LABELS = {
    "counting": "counting\n(MAE drop)",
    "instance retrieval": "instance\nrecall@1",
    "semantic kNN": "semantic\nkNN acc",
    "few-shot": "few-shot\ncount acc",
}


def _signed(interval: Interval) -> str:
    if not interval.has_interval:  # one seed: the note above the table says there is no interval
        return f"{interval.mean:+.4f}"
    return f"{interval.mean:+.4f} ± {interval.half_width:.4f}"


def _kind_label(kind: str) -> str:
    return f"{kind} ({TRIPLET_KINDS.get(kind).mimics})"


def ablation_table(result: AblationResult) -> str:
    """Markdown: one row per method x kind, one column per task (and mid-level 2AFC): the
    paired gain over the base (positive is better; counting: the drop in MAE), mean ± 95%
    t-interval over seeds; then the base's own values. A line above says what the seeds
    vary: the intervals are over that (the triplets and fits), not over test items."""
    tasks = [*TASKS, TWO_AFC]
    rows = []
    for method in result.config.methods:
        for kind in result.config.kinds:
            arm = f"{method}/{kind}"
            rows.append([METHOD_NAMES[method], _kind_label(kind), *(_signed(result.gain(t, arm)) for t in tasks)])
    metrics = [TASKS[t][0] if t in TASKS else t for t in tasks]
    rows.append(["base", "(no alignment)", *(table_cell(mean_ci95(result.values(m, "base"))) for m in metrics)])
    columns = ["method", "triplets", *(f"{t} ({TASKS[t][0]})" if t in TASKS else t for t in tasks)]
    return f"{seed_interval_note(len(result.seeds), result.varies)}\n\n{markdown_table(columns, rows)}"


def contrast_table(result: AblationResult) -> str:
    """Markdown: one row per method x pair of kinds (:func:`~percep_rag.study.ablation_contrasts.contrast_pairs`),
    one column per task and 2AFC: the paired contrast ``kind - other`` of their gains (positive:
    the first kind helps more; counting: it lowers MAE more), mean ± 95% t-interval over seeds.

    >>> from percep_rag.study.ablation import AblationConfig, AblationSeed
    >>> config = AblationConfig.small().model_copy(update={"kinds": ("mid-level", "semantic"), "methods": ("lora",)})
    >>> metric = {"base": 0.5, "lora/mid-level": 0.7, "lora/semantic": 0.6}
    >>> seeds = [AblationSeed(s, {m: dict(metric) for m in _METRICS}) for s in (0, 1)]
    >>> contrast_table(AblationResult(config, seeds)).splitlines()[4].split(" | ")[1:4]
    ['mid-level - semantic', '-0.1000 ± 0.0000', '+0.1000 ± 0.0000']
    """
    tasks = [*TASKS, TWO_AFC]
    rows = [
        [METHOD_NAMES[method], f"{kind} - {other}", *(_signed(contrast(result, t, method, kind, other)) for t in tasks)]
        for method in result.config.methods
        for kind, other in contrast_pairs(result.config.kinds)
    ]
    columns = ["method", "contrast (paired by seed)", *(f"{t} ({TASKS[t][0]})" if t in TASKS else t for t in tasks)]
    return f"{seed_interval_note(len(result.seeds), result.varies)}\n\n{markdown_table(columns, rows)}"


def sized_half_widths(result: AblationResult, target: float = TARGET_HALF_WIDTH) -> str:
    """One line: the half-width reached on each cell the run is sized on, against ``target``.

    >>> from percep_rag.study.ablation import AblationConfig, AblationSeed
    >>> config = AblationConfig.small().model_copy(update={"kinds": ("mid-level", "semantic"), "methods": ("lora",)})
    >>> seeds = [AblationSeed(s, {m: {"base": 0.5, "lora/mid-level": 0.6 + s / 100, "lora/semantic": 0.5}
    ...                           for m in _METRICS}) for s in range(5)]
    >>> print(sized_half_widths(AblationResult(config, seeds)))  # doctest: +NORMALIZE_WHITESPACE
    half-widths reached (95%, 5 seeds; target <= 0.02): LoRA-HA mid-level - semantic on instance retrieval
    ±0.0196 (reached), on 2AFC (mid-level test) ±0.0196 (reached)
    """
    parts = []
    for method in result.config.methods:
        cells = [(task, width) for (task, m), width in sized_cells(result).items() if m == method]
        shown = [
            f"on {task} " + ("no interval" if not i.has_interval else
                             f"±{i.half_width:.4f} ({'reached' if i.half_width <= target else 'not reached'})")
            for task, i in cells
        ]  # fmt: skip
        parts.append(f"{METHOD_NAMES[method]} {SIZED_PAIR[0]} - {SIZED_PAIR[1]} " + ", ".join(shown))
    return f"half-widths reached (95%, {len(result.seeds)} seeds; target <= {target:g}): " + "; ".join(parts)


def verdict_lines(result: AblationResult) -> list[str]:
    """One line per paper claim and method: holds / contradicted / unresolved and the number deciding it."""
    return [f"- {v.line(METHOD_NAMES[v.method])}" for v in claim_verdicts(result)]


def ablation_report(result: AblationResult) -> str:
    """What ``percep-rag study ablation`` prints and writes to table.md: the gains table, the
    contrast table, the sized half-widths and the verdicts."""
    return "\n\n".join(
        [
            "Gain over the base:",
            ablation_table(result),
            "Contrasts between kinds (first kind's gain minus the second's):",
            contrast_table(result),
            sized_half_widths(result),
            "Verdict per paper claim at this size (a claim holds or is contradicted only where every "
            "deciding interval excludes the other side):\n" + "\n".join(verdict_lines(result)),
        ]
    )


_METRICS = [*(metric for metric, _ in TASKS.values()), TWO_AFC]


def draw_ablation(result: AblationResult, out_path: str | Path, *, subtitle: str = "") -> Path:
    """Gain over the base per task (x) and triplet kind (bars), a panel per method, then the
    paired contrasts between kinds (bars) per task, a panel per method; 95% intervals over
    seeds, in the Okabe-Ito colours; ``subtitle`` (e.g. the CPU) goes under the title."""
    table = {
        f"{METHOD_NAMES[method]}: gain over the base": {
            TASK_LABELS[task]: {
                _kind_label(kind): result.gains(task, f"{method}/{kind}") for kind in result.config.kinds
            }
            for task in TASKS
        }
        for method in result.config.methods
    }
    pairs = contrast_pairs(result.config.kinds)
    if pairs:
        labels = {**TASK_LABELS, TWO_AFC: "2AFC\n(mid-level)"}
        for method in result.config.methods:
            table[f"{METHOD_NAMES[method]}: contrast between kinds (paired by seed)"] = {
                labels[task]: {f"{a} - {b}": contrast_values(result, task, method, a, b) for a, b in pairs}
                for task in [*TASKS, TWO_AFC]
            }
    title = (
        "Which triplets help which task (generated world; base ViT random init, trained here)\n"
        f"{len(result.seeds)} seeds; 95% t-intervals over seeds (the seeds vary the triplets and fits)"
        + (f"\n{subtitle}" if subtitle else "")
    )
    columns = len(result.config.methods)
    rows = -(-len(table) // columns)
    return metric_bars(
        table, out_path, title=title, annotate=False, columns=columns, baseline=0.0, size=(560 * columns, 460 * rows)
    )
