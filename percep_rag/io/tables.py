"""The one line-numbered reader of CSV/TSV and JSON Lines files.

Files are read as ``utf-8-sig`` so that a byte-order mark (Excel writes one) is not part of
the first column's name. Every row comes with the physical line it starts on, so errors can
point at ``file:line``. Readers yield problems as strings instead of raising, so callers can
choose to raise or to skip.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "m.csv"
>>> _ = path.write_bytes("\\ufeffimage,label\\na.jpg,cat\\n".encode("utf-8"))
>>> list(read_table(path))
[(2, {'image': 'a.jpg', 'label': 'cat'})]
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from percep_rag.errors import ConfigError

ENCODING = "utf-8-sig"
JSONL_SUFFIXES = (".jsonl", ".ndjson")


class TableFormatError(ConfigError):
    """A table file cannot be parsed at all; ``path`` and ``line`` say where."""

    def __init__(self, path: str | Path, line: int, reason: str):
        self.path = str(path)
        self.line = line
        self.reason = reason
        super().__init__(f"{path}:{line}: {reason}")


def csv_records(path: str | Path, *, delimiter: str = ",") -> Iterator[tuple[int, list[str]]]:
    """``(first physical line, fields)`` of every non-blank record, the header included."""
    path = Path(path)
    with path.open(newline="", encoding=ENCODING) as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        previous_end = 0
        try:
            for fields in reader:
                start, previous_end = previous_end + 1, reader.line_num
                if fields and any(value.strip() for value in fields):
                    # A quoted field may span lines: report where the record starts.
                    yield start, fields
        except csv.Error as error:
            raise TableFormatError(path, previous_end + 1, f"unparsable CSV: {error}") from error


def csv_rows(path: str | Path, *, delimiter: str = ",") -> Iterator[tuple[int, dict[str, str] | str]]:
    """``(line, {column: value})`` per data row; empty cells are left out; a ragged row is a problem string."""
    records = csv_records(path, delimiter=delimiter)
    header = next(records, None)
    if header is None:
        return
    names = [name.strip() for name in header[1]]
    for line, fields in records:
        if len(fields) != len(names):
            yield line, f"expected {len(names)} fields, got {len(fields)}"
            continue
        yield line, {name: value.strip() for name, value in zip(names, fields, strict=True) if value.strip() != ""}


def jsonl_rows(path: str | Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """``(line, object)`` per non-blank line; a line that is not a JSON object is a problem string."""
    with Path(path).open(encoding=ENCODING) as handle:
        for line, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as error:
                yield line, f"not valid JSON: {error.msg} (column {error.colno})"
                continue
            yield line, record if isinstance(record, dict) else f"expected a JSON object, got {type(record).__name__}"


def read_table(path: str | Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """Rows of a ``.jsonl``/``.ndjson``, ``.tsv`` or (any other suffix) ``.csv`` file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return jsonl_rows(path)
    return csv_rows(path, delimiter="\t" if suffix == ".tsv" else ",")
