"""What several commands print the same way."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import typer


def random_note(embedder: Any) -> str:
    """A warning to append to a line when the backbone has random weights, else ``""``."""
    return " [RANDOM backbone weights]" if embedder.backbone.random_weights else ""


def echo_skipped(failures: Iterable[Any]) -> None:
    """One ``skipped <source>: <reason>`` line on stderr per left-out input."""
    for failure in failures:
        typer.secho(f"skipped {failure.source}: {failure.reason}", err=True, fg=typer.colors.YELLOW)
