"""The ``percep-rag`` command line: the command tree, and :func:`main`, its entry point.

Each command lives in the module of its group and only parses options, calls the library
and prints; :mod:`~percep_rag.cli.errors` turns library errors into messages and exit codes.
"""

from __future__ import annotations

from typing import Annotated

import typer

from percep_rag.cli import errors
from percep_rag.cli.align import align_eval, align_fit
from percep_rag.cli.collections import collections, info
from percep_rag.cli.delete import delete
from percep_rag.cli.duplicates import duplicates
from percep_rag.cli.embed import embed
from percep_rag.cli.evaluate import eval_deepfashion2, eval_retrieval
from percep_rag.cli.fewshot import classify, eval_fewshot
from percep_rag.cli.index import index, search, show
from percep_rag.cli.models import models
from percep_rag.cli.options import with_store_timeout
from percep_rag.cli.output import progress_for_stderr
from percep_rag.cli.serve import serve
from percep_rag.cli.study import study_ablation

__all__ = ["app", "main"]

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Human-aligned image vectors, stored and retrieved.",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(asked: bool) -> None:
    if asked:
        from percep_rag._version import __version__

        typer.echo(f"percep-rag {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Human-aligned image vectors, stored and retrieved."""


app.command("models")(models)
app.command("embed")(embed)
app.command("index")(index)
app.command("search")(search)
app.command("show")(show)
app.command("classify")(classify)
app.command("collections")(collections)
app.command("info")(info)
app.command("delete")(delete)
app.command("duplicates")(duplicates)
app.command("serve")(serve)

align_app = typer.Typer(no_args_is_help=True, help="Fit and evaluate human alignments (gLocal, LoRA).")
align_app.command("fit")(align_fit)
align_app.command("eval")(align_eval)
app.add_typer(align_app, name="align")

eval_app = typer.Typer(no_args_is_help=True, help="The paper's evaluation protocols (instance retrieval).")
eval_app.command("retrieval")(eval_retrieval)
eval_app.command("deepfashion2")(eval_deepfashion2)
eval_app.command("fewshot")(eval_fewshot)
app.add_typer(eval_app, name="eval")

study_app = typer.Typer(no_args_is_help=True, help="Studies in the generated perceptual world.")
study_app.command("ablation")(study_ablation)
app.add_typer(study_app, name="study")

# Every command that opens a store also takes --timeout, which bounds a remote store's answers.
for _typer in (app, align_app, eval_app):
    for _command in _typer.registered_commands:
        _command.callback = with_store_timeout(_command.callback)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; every error is one line and an exit code (see :mod:`~percep_rag.cli.errors`)."""
    with progress_for_stderr():
        errors.run(app, argv)
