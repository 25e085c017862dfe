"""What several commands print the same way."""

from __future__ import annotations

import io
import re
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import typer


def random_note(embedder: Any) -> str:
    """A warning to append to a line when the backbone has random weights, else ``""``.

    ``embedder`` is an embedder, or whether its weights are random.
    """
    random_weights = embedder if isinstance(embedder, bool) else embedder.backbone.random_weights
    return " [RANDOM backbone weights]" if random_weights else ""


def echo_skipped(failures: Iterable[Any], *, inputs: int | None = None) -> None:
    """One ``skipped <source>: <reason>`` line on stderr per left-out input.

    With ``inputs`` (how many there were), a run where every input failed ends the command
    with exit code 1 after the list: nothing done because nothing could be read is a failure.
    """
    failures = list(failures)
    for failure in failures:
        typer.secho(f"skipped {failure.source}: {failure.reason}", err=True, fg=typer.colors.YELLOW)
    if inputs and len(failures) >= inputs:
        from percep_rag.cli.errors import fail

        fail(f"none of the {inputs} images could be read (each is listed above)")


def figure_title(embedder: Any) -> str:
    """What a figure read alone must say: the backbone, the alignment and RANDOM weights where so."""
    alignment = embedder.alignment.kind
    if alignment != "identity":
        alignment = f"{alignment} ({embedder.alignment.digest[:8]})"
    weights = "RANDOM weights, for tests only" if embedder.backbone.random_weights else "pretrained weights"
    return f"{embedder.backbone.name} | alignment: {alignment} | {weights}"


def check_figure_path(path: Path, option: str) -> None:
    """A usage error (exit code 2) unless ``path``'s extension is a figure format (png, jpg, pdf, svg)."""
    from percep_rag.cli.errors import USAGE, fail
    from percep_rag.errors import ConfigError
    from percep_rag.viz.figures import figure_format

    try:
        figure_format(path)
    except ConfigError as error:
        fail(f"{option}: {error}", USAGE)


class PeriodicLines(io.TextIOBase):
    """A stderr for logs: progress bars (text redrawn after ``\\r``) become a plain line every ``every`` seconds.

    Other text passes through as it is; the last state of a bar is written when it ends.

    >>> sink = io.StringIO()
    >>> lines = PeriodicLines(sink, every=3600)
    >>> for text in ("\\rindexing:  10%", "\\rindexing:  50%", "\\rindexing: 100%\\n", "done\\n"):
    ...     _ = lines.write(text)
    >>> sink.getvalue().splitlines()
    ['indexing:  10%', 'indexing: 100%', 'done']
    """

    def __init__(self, stream: TextIO, *, every: float = 10.0) -> None:
        self.stream, self.every = stream, every
        self._last = -float("inf")
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        for piece in re.split(r"(\r|\n)", text):
            if piece == "\r":
                continue
            if piece == "\n":
                if self._pending.strip():
                    self._emit(self._pending)
                self._pending = ""
            elif piece:
                self._pending = piece.rstrip()
                if time.monotonic() - self._last >= self.every:
                    self._emit(self._pending)
                    self._pending = ""
        return len(text)

    def _emit(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()
        self._last = time.monotonic()

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.stream.fileno()


@contextmanager
def progress_for_stderr(every: float = 10.0) -> Iterator[None]:
    """Progress bars on a terminal; elsewhere (a log, a pipe) a plain line every ``every`` seconds."""
    if sys.stderr is None or sys.stderr.isatty():
        yield
        return
    original = sys.stderr
    sys.stderr = PeriodicLines(original, every=every)  # type: ignore[assignment]
    try:
        yield
    finally:
        sys.stderr = original
