"""Metric bar charts: one panel per metric, a bar per method, 95% intervals.

Colours are the Okabe-Ito palette (told apart by colour-blind readers); a metric whose
values all lie in [0, 1] (accuracy, recall, 2AFC) gets a [0, 1] axis, so that bars are
comparable between figures; ``chance`` draws the chance level. The format follows the
extension of the output path (png, jpg, pdf, svg).

Bars may be grouped (e.g. per backbone, as in the paper's Figure 5). Drawn with
matplotlib on its own ``Figure`` with the Agg canvas, so pyplot's global state is never
touched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from percep_rag.errors import ConfigError
from percep_rag.evaluation.stats import Interval, mean_ci95
from percep_rag.io.files import atomic_write
from percep_rag.viz.figures import figure_format

MetricValue = Interval | float | Sequence[float]
#: ``{metric: {method: value}}`` or, for grouped bars, ``{metric: {group: {method: value}}}``.
MetricTable = Mapping[str, Mapping[str, MetricValue | Mapping[str, MetricValue]]]


def _low(interval: Interval) -> float:
    # A single seed has no interval: its bar gets no error bar.
    return interval.low if interval.has_interval else interval.mean


def _high(interval: Interval) -> float:
    return interval.high if interval.has_interval else interval.mean


def _interval(value: MetricValue, where: str) -> Interval:
    if isinstance(value, Interval):
        return value
    if isinstance(value, (int, float, np.floating, np.integer)):
        return Interval.exact(float(value))
    try:
        return mean_ci95(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where}: expected an Interval, a number or per-seed numbers, got {value!r}") from error


#: Okabe-Ito: distinguishable with the common colour-vision deficiencies.
_PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")


def _normalise_table(table: MetricTable) -> tuple[list[str], list[str], list[str], dict]:
    """``(metrics, groups, methods, {(metric, group, method): Interval})``; ``groups`` is
    ``[""]`` for a flat table."""
    if not table:
        raise ConfigError("metric_bars needs at least one metric")
    metrics, groups, methods = list(table), [], []
    values: dict[tuple[str, str, str], Interval] = {}
    nested = None
    for metric, inner in table.items():
        if not inner:
            raise ConfigError(f"metric {metric!r} has no values")
        for key, value in inner.items():
            is_group = isinstance(value, Mapping)
            if nested is None:
                nested = is_group
            elif nested != is_group:
                raise ConfigError("mix of grouped ({group: {method: value}}) and flat ({method: value}) metrics")
            entries = value.items() if is_group else [(key, value)]
            group = key if is_group else ""
            if group not in groups:
                groups.append(group)
            for method, item in entries:
                if method not in methods:
                    methods.append(method)
                values[(metric, group, method)] = _interval(item, f"{metric} / {group or method}")
    return metrics, groups, methods, values


def metric_bars(
    table: MetricTable,
    out_path: str | Path,
    *,
    title: str | None = None,
    lower_is_better: Iterable[str] = (),
    chance: Mapping[str, float] | None = None,
    size: tuple[int, int] | None = None,
    dpi: int = 100,
    annotate: bool = True,
    columns: int = 4,
    baseline: float | None = None,
) -> Path:
    """A bar chart exactly ``size`` pixels, one panel per metric, one bar per method; format by extension.

    Panels wrap after ``columns`` per row; the default ``size`` is 960 x 420 pixels for
    one row and 330 pixels more per further row. Value labels turn vertical when a
    panel has more than four bars.

    ``table`` is ``{metric: {method: value}}`` or ``{metric: {group: {method: value}}}``
    (bars grouped along the x axis, e.g. per backbone, as in the paper's Figure 5); a
    value is per-seed numbers (shown as mean with a 95% t-interval), a number, or an
    :class:`Interval`. Metrics in ``lower_is_better`` get a "(lower is better)" note;
    ``chance`` draws a dashed line per metric. With ``baseline`` the values are changes
    (gains over a base): every panel gets its own axis around them and a line at ``baseline``
    instead of the [0, 1] axis of rates.

    >>> import tempfile, os
    >>> from PIL import Image
    >>> table = {"2AFC": {"base": [0.71, 0.72, 0.70], "LoRA": [0.90, 0.91, 0.92]},
    ...          "count MAE": {"base": [1.9, 2.1], "LoRA": [1.2, 1.3]}}
    >>> out = metric_bars(table, os.path.join(tempfile.mkdtemp(), "m.png"), lower_is_better=["count MAE"],
    ...                   size=(640, 300))
    >>> Image.open(out).size
    (640, 300)
    """
    kind = figure_format(out_path)
    # Imported here: matplotlib takes a second to import and only charts need it.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    metrics, groups, methods, values = _normalise_table(table)
    lower = set(lower_is_better)
    chance = dict(chance or {})

    if columns < 1:
        raise ConfigError(f"columns must be >= 1, got {columns}")
    n_columns = min(columns, len(metrics))
    n_rows = -(-len(metrics) // n_columns)
    size = size or (960, 420 + 330 * (n_rows - 1))
    vertical_labels = len(methods) * len(groups) > 4
    figure = Figure(figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi)
    FigureCanvasAgg(figure)
    grid = figure.subplots(n_rows, n_columns, squeeze=False).ravel()
    for unused in grid[len(metrics) :]:
        unused.set_visible(False)
    axes = grid[: len(metrics)]
    width = 0.8 / len(methods)
    positions = np.arange(len(groups))
    for axis, metric in zip(axes, metrics, strict=True):
        for m, method in enumerate(methods):
            estimates = [values.get((metric, group, method)) for group in groups]
            present = [i for i, e in enumerate(estimates) if e is not None]
            if not present:
                continue
            xs = positions[present] + (m - (len(methods) - 1) / 2) * width
            means = np.array([estimates[i].mean for i in present])
            errors = np.array(
                [
                    [estimates[i].mean - _low(estimates[i]) for i in present],
                    [_high(estimates[i]) - estimates[i].mean for i in present],
                ]
            )
            axis.bar(
                xs,
                means,
                width * 0.92,
                yerr=errors,
                capsize=3,
                color=_PALETTE[m % len(_PALETTE)],
                label=method,
                error_kw={"elinewidth": 1, "ecolor": "#333333"},
            )
            if annotate:
                # Above the error bar, not the bar top, so the two never overlap.
                for x, i in zip(xs, present, strict=True):
                    axis.annotate(
                        _format_value(estimates[i].mean),
                        (x, _high(estimates[i])),
                        xytext=(0, 2),
                        textcoords="offset points",
                        ha="center",
                        va="bottom",
                        fontsize=7,
                        rotation=90 if vertical_labels else 0,
                    )
        if metric in chance:
            axis.axhline(chance[metric], color="#555555", linestyle="--", linewidth=1)
            axis.annotate(
                "chance",
                (1.0, chance[metric]),
                xycoords=("axes fraction", "data"),
                ha="right",
                va="bottom",
                fontsize=7,
                color="#555555",
            )
        axis.set_title(f"{metric}" + ("\n(lower is better)" if metric in lower else ""), fontsize=10)
        axis.set_xticks(positions, groups if groups != [""] else [""] * len(groups), fontsize=8)
        if groups == [""]:
            axis.tick_params(axis="x", length=0)
        axis.tick_params(axis="y", labelsize=8)
        axis.spines[["top", "right"]].set_visible(False)
        axis.margins(y=0.15)
        top = max(_high(e) for key, e in values.items() if key[0] == metric)
        bottom = min(0.0, min(_low(e) for key, e in values.items() if key[0] == metric))
        if baseline is not None:
            low, high = min(bottom, baseline), max(top, baseline)
            pad = 0.12 * (high - low) or 0.01
            axis.set_ylim(low - pad, high + pad)
            axis.axhline(baseline, color="#333333", linewidth=0.8)
        elif bottom >= 0.0 and top <= 1.0 and chance.get(metric, 0.0) <= 1.0:  # a rate: the whole [0, 1] range
            axis.set_ylim(0.0, 1.3 if vertical_labels else 1.15)
            axis.set_yticks([0.0, 0.25, 0.5, 0.75, 1.0])
        else:
            axis.set_ylim(bottom, top * (1.3 if vertical_labels else 1.15) if top > 0 else 1.0)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(len(methods), 6), fontsize=8, frameon=False)
    if title:
        figure.suptitle(title, fontsize=12)
    legend_band = 0.08 * 420 / size[1]
    figure.tight_layout(rect=(0, legend_band, 1, 1 - 0.05 * 420 / size[1] if title else 1))
    # No bbox_inches="tight": the PNG keeps exactly the requested pixel size.
    return atomic_write(out_path, lambda temporary: figure.savefig(temporary, format=kind, dpi=dpi))


def _format_value(value: float) -> str:
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}" if magnitude < 1 else f"{value:.2f}"
