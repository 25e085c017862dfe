"""Pictures of results: retrieval grids and metric bar charts, written as PNG.

* :func:`retrieval_grid` - one row per query: the query, then its top-k neighbours under
  the base embedding, then under the aligned one, with a caption under every tile and
  optional green/red frames for right/wrong neighbours (the paper's Figures 4 and 7).
  Drawn with PIL only.
* :func:`metric_bars` - one panel per metric, a bar per method (optionally grouped, e.g.
  per backbone) with 95% confidence intervals from per-seed values. Needs matplotlib
  (``pip install matplotlib``); it draws on its own ``Figure`` with the Agg canvas, so
  pyplot's global state is never touched.
* :func:`mean_ci` - mean and Student-t 95% interval of a few seeds.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from percep_rag.errors import ConfigError
from percep_rag.evaluation.stats import mean_ci95
from percep_rag.io.images import ImageSource, decode_image

# Two-sided 95% Student-t quantiles by degrees of freedom (larger df: use the next lower entry).
# fmt: off
# fmt: on
_RIGHT = (46, 160, 67)
_WRONG = (214, 39, 40)
_INK = (20, 20, 20)
_MUTED = (90, 90, 90)
_PAPER = (255, 255, 255)
_RULE = (200, 200, 200)


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Estimate:
    """A value and its confidence interval ``[low, high]`` (equal to the mean when unknown)."""

    mean: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def mean_ci(values: Sequence[float] | np.ndarray) -> Estimate:
    """Mean and two-sided 95% Student-t interval (the paper's "95% CI over 5 seeds").

    One value gives a zero-width interval.

    >>> e = mean_ci([0.40, 0.42, 0.44, 0.41, 0.43])
    >>> round(e.mean, 3), round(e.half_width, 4)
    (0.42, 0.0196)
    """
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0 or not np.isfinite(array).all():
        raise ConfigError(f"need at least one finite value for a confidence interval, got {array.tolist()}")
    interval = mean_ci95(array.tolist())
    return Estimate(interval.mean, interval.mean - interval.half_width, interval.mean + interval.half_width)


MetricValue = Estimate | float | Sequence[float]
#: ``{metric: {method: value}}`` or, for grouped bars, ``{metric: {group: {method: value}}}``.
MetricTable = Mapping[str, Mapping[str, MetricValue | Mapping[str, MetricValue]]]


def _estimate(value: MetricValue, where: str) -> Estimate:
    if isinstance(value, Estimate):
        return value
    if isinstance(value, (int, float, np.floating, np.integer)):
        return Estimate(float(value), float(value), float(value))
    try:
        return mean_ci(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{where}: expected an Estimate, a number or per-seed numbers, got {value!r}") from error


# --------------------------------------------------------------------------- retrieval grid


@dataclass(frozen=True)
class GridLayout:
    """Pixel geometry of :func:`retrieval_grid`; ``size(n_queries, k)`` is the PNG's size.

    >>> GridLayout(tile=64).size(n_queries=2, k=3)
    (532, 239)
    """

    tile: int = 128
    pad: int = 6
    group_gap: int = 18
    caption_lines: int = 2
    font_size: int = 12
    title: bool = False

    @property
    def line_height(self) -> int:
        return self.font_size + 3

    @property
    def header_height(self) -> int:
        return self.line_height + 2 * self.pad + (self.font_size + 10 if self.title else 0)

    @property
    def row_height(self) -> int:
        return self.tile + self.caption_lines * self.line_height + 2 * self.pad

    def size(self, n_queries: int, k: int) -> tuple[int, int]:
        width = self.pad + (1 + 2 * k) * (self.tile + self.pad) + 2 * self.group_gap
        return width, self.header_height + n_queries * self.row_height


def _column_x(layout: GridLayout, column: int, k: int) -> int:
    """Left edge of tile column ``column`` (0 = query, 1..k base, k+1..2k aligned)."""
    gaps = (column >= 1) + (column >= k + 1)
    return layout.pad + column * (layout.tile + layout.pad) + gaps * layout.group_gap


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _fit(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> str:
    """``text`` cut with an ellipsis so that it fits in ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _tile(source: ImageSource, size: int) -> Image.Image:
    image = decode_image(source)
    width, height = image.size
    scale = size / max(width, height)
    # Whole-number upscaling keeps small synthetic renders crisp; anything else is resampled.
    exact = scale >= 1 and scale == int(scale) and width == height
    resample = Image.Resampling.NEAREST if exact else Image.Resampling.BICUBIC
    resized = image.resize((max(1, round(width * scale)), max(1, round(height * scale))), resample)
    tile = Image.new("RGB", (size, size), _PAPER)
    tile.paste(resized, ((size - resized.width) // 2, (size - resized.height) // 2))
    return tile


def _check_rows(name: str, rows: Sequence[Sequence] | None, n: int, k: int) -> None:
    if rows is None:
        return
    if len(rows) != n or any(len(row) != k for row in rows):
        shape = [len(row) for row in rows]
        raise ConfigError(f"{name} must have {n} rows of {k}, got rows of lengths {shape}")


def retrieval_grid(
    query_images: Sequence[ImageSource],
    base_neighbours: Sequence[Sequence[ImageSource]],
    aligned_neighbours: Sequence[Sequence[ImageSource]],
    out_path: str | Path,
    *,
    query_captions: Sequence[str] | None = None,
    base_captions: Sequence[Sequence[str]] | None = None,
    aligned_captions: Sequence[Sequence[str]] | None = None,
    base_correct: Sequence[Sequence[bool | None]] | None = None,
    aligned_correct: Sequence[Sequence[bool | None]] | None = None,
    headers: tuple[str, str, str] = ("query", "base top-k", "aligned top-k"),
    title: str | None = None,
    layout: GridLayout | None = None,
) -> Path:
    """Write a grid: per row the query, its base top-k and its aligned top-k; returns the path.

    Images are paths, bytes or PIL images (decoded safely, fitted into square tiles).
    Captions (one string per tile; ``"\\n"`` starts a second line; long lines are cut
    with an ellipsis) go under the tiles, e.g. the label and cosine similarity.
    ``*_correct`` draws a green (True) or red (False) frame, or none (None). The PNG's
    size is ``GridLayout(...).size(len(query_images), k)``.

    >>> import tempfile, os
    >>> red, blue = Image.new("RGB", (64, 64), "red"), Image.new("RGB", (64, 64), "blue")
    >>> out = retrieval_grid([red], [[red, blue]], [[blue, red]], os.path.join(tempfile.mkdtemp(), "g.png"),
    ...                      base_captions=[["count 4\\ncos 0.91", "count 10"]], base_correct=[[True, False]])
    >>> Image.open(out).size == GridLayout().size(1, 2)
    True
    """
    n = len(query_images)
    if n == 0:
        raise ConfigError("retrieval_grid needs at least one query")
    k = len(base_neighbours[0]) if len(base_neighbours) else 0
    if k == 0:
        raise ConfigError("retrieval_grid needs at least one neighbour per query")
    for name, rows in (
        ("base_neighbours", base_neighbours),
        ("aligned_neighbours", aligned_neighbours),
        ("base_captions", base_captions),
        ("aligned_captions", aligned_captions),
        ("base_correct", base_correct),
        ("aligned_correct", aligned_correct),
    ):
        _check_rows(name, rows, n, k)
    if query_captions is not None and len(query_captions) != n:
        raise ConfigError(f"query_captions has {len(query_captions)} entries for {n} queries")

    layout = layout or GridLayout(title=title is not None)
    if title is not None and not layout.title:
        layout = GridLayout(**{**layout.__dict__, "title": True})
    canvas = Image.new("RGB", layout.size(n, k), _PAPER)
    draw = ImageDraw.Draw(canvas)
    font, title_font = _font(layout.font_size), _font(layout.font_size + 4)

    top = layout.pad
    if title is not None:
        draw.text(
            (layout.pad, top), _fit(draw, title, title_font, canvas.width - 2 * layout.pad), fill=_INK, font=title_font
        )
        top += layout.font_size + 10
    spans = [(0, 1), (1, k + 1), (k + 1, 2 * k + 1)]
    for header, (first, stop) in zip(headers, spans, strict=True):
        left = _column_x(layout, first, k)
        width = _column_x(layout, stop - 1, k) + layout.tile - left
        text = _fit(draw, header, font, width)
        draw.text((left + (width - draw.textlength(text, font=font)) / 2, top), text, fill=_INK, font=font)
    # Rules between the query, base and aligned groups.
    for boundary in (1, k + 1):
        x = _column_x(layout, boundary, k) - layout.group_gap // 2 - layout.pad // 2
        draw.line((x, layout.header_height - layout.pad, x, canvas.height - layout.pad), fill=_RULE, width=1)

    for row in range(n):
        y = layout.header_height + row * layout.row_height
        cells: list[tuple[ImageSource, str | None, bool | None]] = [
            (query_images[row], query_captions[row] if query_captions else None, None)
        ]
        for neighbours, captions, correct in (
            (base_neighbours, base_captions, base_correct),
            (aligned_neighbours, aligned_captions, aligned_correct),
        ):
            for j in range(k):
                cells.append(
                    (neighbours[row][j], captions[row][j] if captions else None, correct[row][j] if correct else None)
                )
        for column, (source, caption, correct) in enumerate(cells):
            x = _column_x(layout, column, k)
            canvas.paste(_tile(source, layout.tile), (x, y))
            if correct is not None:
                colour = _RIGHT if correct else _WRONG
                draw.rectangle((x, y, x + layout.tile - 1, y + layout.tile - 1), outline=colour, width=3)
            if caption:
                lines = caption.split("\n")[: layout.caption_lines]
                for line_index, line in enumerate(lines):
                    text = _fit(draw, line, font, layout.tile)
                    ty = y + layout.tile + 2 + line_index * layout.line_height
                    draw.text((x, ty), text, fill=_INK if line_index == 0 else _MUTED, font=font)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out_path, format="PNG")
    return out_path


# --------------------------------------------------------------------------- bar charts

_PALETTE = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")


def _normalise_table(table: MetricTable) -> tuple[list[str], list[str], list[str], dict]:
    """``(metrics, groups, methods, {(metric, group, method): Estimate})``; ``groups`` is
    ``[""]`` for a flat table."""
    if not table:
        raise ConfigError("metric_bars needs at least one metric")
    metrics, groups, methods = list(table), [], []
    values: dict[tuple[str, str, str], Estimate] = {}
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
                values[(metric, group, method)] = _estimate(item, f"{metric} / {group or method}")
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
) -> Path:
    """Bar chart PNG, exactly ``size`` pixels: one panel per metric, one bar per method.

    Panels wrap after ``columns`` per row; the default ``size`` is 960 x 420 pixels for
    one row and 330 pixels more per further row. Value labels turn vertical when a
    panel has more than four bars.

    ``table`` is ``{metric: {method: value}}`` or ``{metric: {group: {method: value}}}``
    (bars grouped along the x axis, e.g. per backbone, as in the paper's Figure 5); a
    value is per-seed numbers (shown as mean with a 95% t-interval), a number, or an
    :class:`Estimate`. Metrics in ``lower_is_better`` get a "(lower is better)" note;
    ``chance`` draws a dashed line per metric.

    >>> import tempfile, os
    >>> table = {"2AFC": {"base": [0.71, 0.72, 0.70], "LoRA": [0.90, 0.91, 0.92]},
    ...          "count MAE": {"base": [1.9, 2.1], "LoRA": [1.2, 1.3]}}
    >>> out = metric_bars(table, os.path.join(tempfile.mkdtemp(), "m.png"), lower_is_better=["count MAE"],
    ...                   size=(640, 300))  # doctest: +SKIP
    >>> Image.open(out).size  # doctest: +SKIP
    (640, 300)
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as error:
        raise ConfigError("metric_bars needs matplotlib: pip install matplotlib") from error
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
                    [estimates[i].mean - estimates[i].low for i in present],
                    [estimates[i].high - estimates[i].mean for i in present],
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
                        (x, estimates[i].high),
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
        top = max(e.high for key, e in values.items() if key[0] == metric)
        bottom = min(0.0, min(e.low for key, e in values.items() if key[0] == metric))
        axis.set_ylim(bottom, top * (1.3 if vertical_labels else 1.15) if top > 0 else 1.0)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(len(methods), 6), fontsize=8, frameon=False)
    if title:
        figure.suptitle(title, fontsize=12)
    legend_band = 0.08 * 420 / size[1]
    figure.tight_layout(rect=(0, legend_band, 1, 1 - 0.05 * 420 / size[1] if title else 1))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    # No bbox_inches="tight": the PNG keeps exactly the requested pixel size.
    figure.savefig(out_path, format="png", dpi=dpi)
    return out_path


def _format_value(value: float) -> str:
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}" if magnitude < 1 else f"{value:.2f}"
