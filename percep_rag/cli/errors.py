"""How the command line ends: every mistake is one line on stderr (plus at most a hint line) and an exit code.

0 success, 1 a runtime error (bad input, missing weights, a store that does not answer, ...),
2 wrong usage (an option the parser or the typed configs refuse). Nothing ends in a traceback:
an unexpected exception is one ``internal error: ...`` line, and ``PERCEP_RAG_DEBUG=1`` shows
its traceback. A warning is one ``warning: ...`` line too (no file name, no source line).

>>> print(describe_validation_error(_validation_error()))
--pooling: Input should be 'cls' or 'cls+patchmean'
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import typer
from pydantic import ValidationError

from percep_rag.errors import PercepRagError

#: Exit codes.
OK, ERROR, USAGE = 0, 1, 2
#: Set to 1 to see the traceback of an internal error.
DEBUG_VARIABLE = "PERCEP_RAG_DEBUG"


def echo_error(message: object, hint: str | None = None) -> None:
    """``error: <message>`` (its first line) on stderr, in red, then a hint line: ``hint``, else the message's last."""
    first, *rest = str(message).strip().splitlines() or [""]
    typer.secho(f"error: {first}", err=True, fg=typer.colors.RED)
    hint = hint or (rest[-1].strip() if rest else None)  # a longer message's last line says what to do
    if hint:
        typer.echo(f"hint: {hint}", err=True)


def fail(message: str, code: int = ERROR) -> NoReturn:
    """Print ``error: <message>`` and end the command with ``code``."""
    echo_error(message)
    raise typer.Exit(code)


def describe_validation_error(error: ValidationError) -> str:
    """A pydantic error as one line naming the fields (as the options a user typed)."""
    parts = []
    for item in error.errors():
        field = "--" + "-".join(str(part) for part in item["loc"][:1]).replace("_", "-") if item["loc"] else "value"
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{field}: {message}")
    return "; ".join(parts)


def _validation_error() -> ValidationError:
    from percep_rag.config import EmbedderSpec

    try:
        EmbedderSpec(backbone="tiny-vit-random", pooling="mean")
    except ValidationError as error:
        return error
    raise AssertionError("unreachable")


def _usage_hint(error: Exception) -> str | None:
    context = getattr(error, "ctx", None)
    return f"see '{context.command_path} --help'" if context is not None else None


def _os_error_message(error: OSError) -> str:
    where = f": {error.filename}" if error.filename else ""
    return f"{error.strerror or type(error).__name__}{where}"


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Show each warning raised inside as ``warning: <message>`` on stderr (restored on exit).

    >>> import contextlib, io
    >>> with contextlib.redirect_stderr(io.StringIO()) as err, one_line_warnings():
    ...     warnings.warn("slow path", RuntimeWarning)
    >>> err.getvalue()
    'warning: slow path\\n'
    """

    def show(message: Warning | str, *args: Any, **kwargs: Any) -> None:
        typer.echo(f"warning: {str(message).strip()}", err=True)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def run(app: Callable[..., Any] | typer.Typer, argv: list[str] | None = None) -> NoReturn:
    """Run ``app`` and exit with its code, every error as one line (see the module docstring)."""
    try:
        with one_line_warnings():
            code = app(args=argv, prog_name="percep-rag", standalone_mode=False)
    except typer.Exit as done:
        sys.exit(done.exit_code)
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(ERROR)
    except BaseException as error:  # noqa: BLE001 - the one place that turns every error into a line
        code = report(error)
        if code is None:
            raise
        sys.exit(code)
    sys.exit(code if isinstance(code, int) else OK)


def report(error: BaseException) -> int | None:
    """Print ``error`` as one line (+ hint) and return its exit code; ``None`` for what must propagate."""
    if isinstance(error, (SystemExit, GeneratorExit)):
        return None
    if isinstance(error, KeyboardInterrupt):
        typer.echo("interrupted", err=True)
        return 130
    if isinstance(error, typer.TyperException) and hasattr(error, "format_message"):  # click usage errors
        echo_error(error.format_message(), _usage_hint(error))
        return getattr(error, "exit_code", USAGE) or USAGE
    if isinstance(error, ValidationError):  # a setting the typed configs refuse, e.g. --pooling bad
        echo_error(describe_validation_error(error))
        return USAGE
    if isinstance(error, PercepRagError):
        echo_error(error)
        return ERROR
    if isinstance(error, OverflowError):
        echo_error(f"a number is too large: {error}")
        return USAGE
    if isinstance(error, MemoryError):
        echo_error("out of memory: try a smaller --batch-size")
        return ERROR
    if isinstance(error, OSError):
        echo_error(_os_error_message(error))
        return ERROR
    if os.environ.get(DEBUG_VARIABLE, "") not in ("", "0"):
        return None
    echo_error(
        f"internal error: {type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}",
        f"rerun with {DEBUG_VARIABLE}=1 to see the traceback, and report it",
    )
    return ERROR


def run_script(main: Callable[[], Any]) -> NoReturn:
    """Run a script's ``main()`` (argparse usage errors exit 2 on their own) with the same one-line errors."""
    try:
        with one_line_warnings():
            main()
    except BaseException as error:  # noqa: BLE001
        code = report(error)
        if code is None:
            raise
        sys.exit(code)
    sys.exit(OK)
