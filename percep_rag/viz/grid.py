"""A retrieval grid as PNG: per row the query, its base top-k and its aligned top-k.

A caption under every tile and optional right/wrong marks on neighbours (the paper's
Figures 4 and 7). The marks are told apart by shape, not only colour: a blue disc with a
tick and a solid frame for right, a vermillion square with a cross and a dashed frame for
wrong (Okabe-Ito colours, safe for colour-blind readers). Drawn with PIL only; the
format follows the file's extension (:func:`~percep_rag.viz.figures.figure_format`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from percep_rag.errors import ConfigError
from percep_rag.io.images import ImageSource, decode_image
from percep_rag.viz.figures import figure_format, save_picture

_RIGHT = (0, 114, 178)  # Okabe-Ito blue
_WRONG = (213, 94, 0)  # Okabe-Ito vermillion
_INK = (20, 20, 20)
_MUTED = (90, 90, 90)
_PAPER = (255, 255, 255)
_RULE = (200, 200, 200)


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
    ``*_correct`` marks a tile right (True: blue disc with a tick, solid frame) or wrong
    (False: vermillion square with a cross, dashed frame), or not at all (None). The
    picture's size is ``GridLayout(...).size(len(query_images), k)``; the extension of
    ``out_path`` picks the format (png, jpg, pdf, svg).

    >>> import tempfile, os
    >>> red, blue = Image.new("RGB", (64, 64), "red"), Image.new("RGB", (64, 64), "blue")
    >>> out = retrieval_grid([red], [[red, blue]], [[blue, red]], os.path.join(tempfile.mkdtemp(), "g.png"),
    ...                      base_captions=[["count 4\\ncos 0.91", "count 10"]], base_correct=[[True, False]])
    >>> Image.open(out).size == GridLayout().size(1, 2)
    True
    """
    figure_format(out_path)
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
                _mark(draw, x, y, layout.tile, right=bool(correct))
            if caption:
                lines = caption.split("\n")[: layout.caption_lines]
                for line_index, line in enumerate(lines):
                    text = _fit(draw, line, font, layout.tile)
                    ty = y + layout.tile + 2 + line_index * layout.line_height
                    draw.text((x, ty), text, fill=_INK if line_index == 0 else _MUTED, font=font)
    return save_picture(canvas, out_path)


def _mark(draw: ImageDraw.ImageDraw, x: int, y: int, tile: int, *, right: bool) -> None:
    """A right/wrong mark told apart by shape and frame style, not only by colour."""
    colour = _RIGHT if right else _WRONG
    edge = tile - 1
    if right:
        draw.rectangle((x, y, x + edge, y + edge), outline=colour, width=3)
    else:  # dashed frame
        dash = max(4, tile // 16)
        for start in range(0, tile, 2 * dash):
            stop = min(start + dash, edge)
            for line in (
                (x + start, y, x + stop, y),
                (x + start, y + edge, x + stop, y + edge),
                (x, y + start, x, y + stop),
                (x + edge, y + start, x + edge, y + stop),
            ):
                draw.line(line, fill=colour, width=3)
    size = max(12, tile // 6)
    left, top = x + edge - size - 3, y + 3
    box = (left, top, left + size, top + size)
    inset = size // 4
    if right:
        draw.ellipse(box, fill=colour)
        draw.line(
            (left + inset, top + size // 2, left + size // 2 - 1, top + size - inset, left + size - inset, top + inset),
            fill=_PAPER,
            width=2,
        )
    else:
        draw.rectangle(box, fill=colour)
        draw.line((left + inset, top + inset, left + size - inset, top + size - inset), fill=_PAPER, width=2)
        draw.line((left + inset, top + size - inset, left + size - inset, top + inset), fill=_PAPER, width=2)


def image_rows(
    rows: Sequence[Sequence[ImageSource]],
    out_path: str | Path,
    *,
    captions: Sequence[Sequence[str]] | None = None,
    row_titles: Sequence[str] | None = None,
    title: str | None = None,
    layout: GridLayout | None = None,
) -> Path:
    """Write rows of images of any lengths (e.g. groups of duplicates), a caption under each tile
    and a title line over each row; returns the path (format from the extension).

    >>> import tempfile, os
    >>> red, blue = Image.new("RGB", (8, 8), "red"), Image.new("RGB", (8, 8), "blue")
    >>> out = image_rows([[red, red], [blue, blue, blue]], os.path.join(tempfile.mkdtemp(), "g.png"),
    ...                  row_titles=["group 1", "group 2"], layout=GridLayout(tile=32))
    >>> Image.open(out).size
    (120, 184)
    """
    figure_format(out_path)
    if not rows or any(not row for row in rows):
        raise ConfigError("image_rows needs at least one row, and no empty row")
    layout = layout or GridLayout(title=title is not None)
    font, title_font = _font(layout.font_size), _font(layout.font_size + 4)
    longest = max(len(row) for row in rows)
    heading = layout.line_height if row_titles else 0
    row_height = layout.row_height + heading
    top = layout.pad + (layout.font_size + 10 if title is not None else 0)
    width = layout.pad + longest * (layout.tile + layout.pad)
    canvas = Image.new("RGB", (width, top + len(rows) * row_height), _PAPER)
    draw = ImageDraw.Draw(canvas)
    if title is not None:
        draw.text(
            (layout.pad, layout.pad), _fit(draw, title, title_font, width - 2 * layout.pad), fill=_INK, font=title_font
        )
    for r, row in enumerate(rows):
        y = top + r * row_height
        if row_titles:
            draw.text((layout.pad, y), _fit(draw, row_titles[r], font, width - 2 * layout.pad), fill=_INK, font=font)
        for c, source in enumerate(row):
            x = layout.pad + c * (layout.tile + layout.pad)
            canvas.paste(_tile(source, layout.tile), (x, y + heading))
            caption = captions[r][c] if captions else ""
            for line_index, line in enumerate(caption.split("\n")[: layout.caption_lines] if caption else []):
                ty = y + heading + layout.tile + 2 + line_index * layout.line_height
                draw.text(
                    (x, ty), _fit(draw, line, font, layout.tile), fill=_INK if line_index == 0 else _MUTED, font=font
                )
    return save_picture(canvas, out_path)
