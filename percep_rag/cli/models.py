"""``percep-rag models``: the backbones, their dimension, and whether loadable weights are here."""

from __future__ import annotations

import json
from typing import Annotated

import typer


def models(
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the table as JSON (one object per backbone).")
    ] = False,
) -> None:
    """List the backbones: dimension, whether their weights are here and readable, and the files expected."""
    from percep_rag.backbones import get_backbone_entry, list_backbones, weights_dir
    from percep_rag.backbones.registry import backbone_dim, expected_files, weights_status

    rows = [
        {
            "backbone": name,
            "family": get_backbone_entry(name).family,
            "dim": backbone_dim(name),
            "weights": weights_status(name),
            "expected_files": expected_files(name),
            "description": get_backbone_entry(name).description,
        }
        for name in list_backbones()
    ]
    if json_out:
        typer.echo(json.dumps({"weights_dir": str(weights_dir()), "backbones": rows}, indent=1))
        return
    header = {"backbone": "backbone", "family": "family", "dim": "dim", "weights": "weights"}
    columns = list(header)
    widths = {key: max(len(str(row[key])) for row in [*rows, header]) for key in columns}
    typer.echo("  ".join(f"{header[key]:<{widths[key]}}" for key in columns) + "  files looked for")
    for row in rows:
        files = ", ".join(row["expected_files"]) or "-"
        typer.echo("  ".join(f"{row[key]!s:<{widths[key]}}" for key in columns) + f"  {files}")
    typer.echo(
        f"\nWeights folder: {weights_dir()} ($PERCEP_RAG_WEIGHTS), or the Hugging Face cache (hf: entries, "
        "fetched with `hf download REPO FILE` on a machine with internet); nothing is downloaded."
    )
