"""Markdown tables, the one format every report and benchmark prints."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub markdown table; cells are ``str()``-ed, a row must have one cell per column.

    >>> print(markdown_table(["method", "accuracy"], [["base", 0.5], ["aligned", "0.75 ± 0.02"]]))
    | method | accuracy |
    |---|---|
    | base | 0.5 |
    | aligned | 0.75 ± 0.02 |
    """
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [str(cell) for cell in row]
        if len(cells) != len(columns):
            raise ValueError(f"a row has {len(cells)} cells for {len(columns)} columns: {cells}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
