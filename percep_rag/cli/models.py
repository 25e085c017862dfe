"""``percep-rag models``: the backbones and whether their weights are here."""

from __future__ import annotations

import typer


def models() -> None:
    """List the backbones and whether their weights are on this machine."""
    from percep_rag.backbones import get_backbone_entry, list_backbones, weights_dir, weights_present

    rows = []
    for name in list_backbones():
        entry = get_backbone_entry(name)
        random_only = entry.random_only or (entry.parts and all(get_backbone_entry(p).random_only for p in entry.parts))
        status = "random (test model)" if random_only else ("present" if weights_present(name) else "missing")
        rows.append((name, entry.family, status, entry.description))
    widths = [max(len(row[i]) for row in rows + [("backbone", "family", "weights", "")]) for i in range(3)]
    typer.echo(f"{'backbone':<{widths[0]}}  {'family':<{widths[1]}}  {'weights':<{widths[2]}}  description")
    for name, family, status, description in rows:
        typer.echo(f"{name:<{widths[0]}}  {family:<{widths[1]}}  {status:<{widths[2]}}  {description}")
    typer.echo(f"\nWeights folder: {weights_dir()} (or the Hugging Face cache; nothing is downloaded).")
