"""The ablation's table and its Figure-8-style picture (gain over the base per task, per
triplet kind, one panel per alignment method).

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


def draw_ablation(result: AblationResult, out_path: str | Path, *, subtitle: str = "") -> Path:
    """Gain over the base per task (x) and triplet kind (bars), a panel per method, with 95%
    intervals over seeds, in the Okabe-Ito colours; ``subtitle`` (e.g. the CPU) goes under the title."""
    table = {
        f"{METHOD_NAMES[method]}: gain over the base": {
            TASK_LABELS[task]: {
                _kind_label(kind): result.gains(task, f"{method}/{kind}") for kind in result.config.kinds
            }
            for task in TASKS
        }
        for method in result.config.methods
    }
    title = (
        "Which triplets help which task (generated world; base ViT random init, trained here)\n"
        f"{len(result.seeds)} seeds; 95% t-intervals over seeds (the seeds vary the triplets and fits)"
        + (f"\n{subtitle}" if subtitle else "")
    )
    panels = len(table)
    return metric_bars(
        table, out_path, title=title, annotate=False, columns=panels, baseline=0.0, size=(560 * panels, 460)
    )
