"""How the command line ends: library errors become one-line messages and exit codes.

0 success, 1 a percep-rag error (bad input, missing weights, ...), 2 wrong usage.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import typer
from pydantic import ValidationError

from percep_rag.errors import PercepRagError

#: Exit codes.
OK, ERROR, USAGE = 0, 1, 2


def echo_error(message: object) -> None:
    """``error: <message>`` on stderr, in red."""
    typer.secho(f"error: {message}", err=True, fg=typer.colors.RED)


def fail(message: str, code: int = ERROR) -> NoReturn:
    """Print ``error: <message>`` and end the command with ``code``."""
    echo_error(message)
    raise typer.Exit(code)


def run(app: typer.Typer, argv: list[str] | None = None) -> NoReturn:
    """Run ``app`` and exit with its code; a :class:`PercepRagError` (or a setting the typed configs
    refuse) is a one-line message and exit code 1, wrong usage exit code 2."""
    try:
        code = app(args=argv, standalone_mode=False)
    except PercepRagError as error:
        echo_error(error)
        sys.exit(ERROR)
    except ValidationError as error:  # a setting the typed configs refuse, e.g. --pooling bad
        echo_error("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()))
        sys.exit(ERROR)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.TyperException as error:  # usage errors: typer formats them, exit code 2
        error.show()
        sys.exit(getattr(error, "exit_code", USAGE))
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(ERROR)
    sys.exit(code if isinstance(code, int) else OK)
