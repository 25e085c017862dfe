"""An optional grid over LoRA's learning rate and rank, best by validation 2AFC.

Each point is a full :func:`~percep_rag.alignment.lora.fit.fit_lora` run in
``run_dir/grid/lr<lr>-r<rank>/`` (resumable like any run); the best point's adapter is
copied to ``run_dir/adapter`` with the grid recorded in its ``percep_rag.json``.

>>> [point.name for point in LoraSearch(lrs=(1e-4,), ranks=(4, 8)).points()]
['lr0.0001-r4', 'lr0.0001-r8']
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from percep_rag.alignment.lora.adapter import ADAPTER_DIR, METADATA_FILE
from percep_rag.io.files import atomic_write_bytes, atomic_write_text

GRID_DIR = "grid"


@dataclass(frozen=True)
class LoraGridPoint:
    """One learning rate x rank of the grid."""

    lr: float
    r: int

    @property
    def name(self) -> str:
        return f"lr{self.lr:g}-r{self.r}"


class LoraSearch(BaseModel):
    """Learning rates x LoRA ranks to try (6 fits by default: use it when fits are cheap)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lrs: tuple[float, ...] = Field((1e-4, 3e-4, 1e-3), min_length=1)
    ranks: tuple[int, ...] = Field((8, 16), min_length=1)

    def points(self) -> list[LoraGridPoint]:
        """The grid in order (the first of equally good points wins)."""
        return [LoraGridPoint(lr, r) for lr in self.lrs for r in self.ranks]


def fit_lora_grid(
    backbone: Any,
    train: Any,
    val: Any,
    run_dir: str | Path,
    *,
    config: Any,
    search: LoraSearch,
    fit: Callable[..., Any],
    **fit_options: Any,
) -> Any:
    """Run ``fit`` (``fit_lora``) at every grid point; the best by val 2AFC becomes ``run_dir/adapter``."""
    run_dir = Path(run_dir)
    rows: list[dict[str, Any]] = []
    best = None
    for point in search.points():
        point_config = config.model_copy(update={"lr": point.lr, "r": point.r})
        report = fit(backbone, train, val, run_dir / GRID_DIR / point.name, config=point_config, **fit_options)
        rows.append({"lr": point.lr, "r": point.r, "val_2afc": report.best_val_2afc, "best_epoch": report.best_epoch})
        if best is None or report.best_val_2afc > best.best_val_2afc:
            best = report
    assert best is not None  # the grid has at least one point
    source = best.run_dir / ADAPTER_DIR
    for path in sorted(source.iterdir()):
        if path.name != METADATA_FILE:
            atomic_write_bytes(run_dir / ADAPTER_DIR / path.name, path.read_bytes())
    metadata = json.loads((source / METADATA_FILE).read_text())
    metadata["search"] = {"grid": rows, "chosen": {"lr": metadata["config"]["lr"], "r": metadata["config"]["r"]}}
    atomic_write_text(run_dir / ADAPTER_DIR / METADATA_FILE, json.dumps(metadata, indent=1))
    return replace(best, run_dir=run_dir, search=rows)
