"""Choosing gLocal's hyper-parameters on the validation split: the grid and the pick.

gLocal chose its local-term weight ``alpha`` and identity-regulariser weight ``lambda`` by
validation; :func:`~percep_rag.alignment.glocal.fit.fit_glocal` does the same over a small
:class:`GlocalSearch` grid (plus the learning rate), fitting each point from the same start
on the same device tensors and keeping the one with the best validation 2AFC.

Only what the caller left unset is searched: a config built with ``lr=1e-2`` keeps that
learning rate and searches ``alpha`` and ``lam`` only.

>>> points = grid_configs(GlocalFitConfig(lr=1e-2), GlocalSearch(), dim=8)
>>> [(p.alpha, p.lam, p.lr) for p in points]
[(0.25, 0.1, 0.01), (0.25, 0.0, 0.01), (0.0, 0.1, 0.01), (0.0, 0.0, 0.01)]
"""

from __future__ import annotations

import itertools
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from percep_rag.alignment.glocal.config import GlocalFitConfig

#: The hyper-parameters a search may choose (GlocalFitConfig field names).
SEARCHED = ("alpha", "lam", "temperature", "lr")


class GlocalSearch(BaseModel):
    """The grid :func:`~percep_rag.alignment.glocal.fit.fit_glocal` searches by default.

    ``alphas`` x ``lams`` x ``temperatures`` x learning rates, where the learning rates are
    ``lr_scales`` times the config's learning rate (its ``lr``, else the automatic
    ``0.1 / p``). The defaults hold the config defaults (``alpha=0.25``, ``lam=0.1``,
    ``temperature=1``, the automatic lr), so the search never does worse on validation than
    the unsearched default, and the settings that win when a nuisance factor dominates the
    base features (no local term, no regulariser, a 10x larger step). A field the config
    sets explicitly is not searched. 8 points by default; each stops early on its own.

    >>> GlocalSearch().size(GlocalFitConfig())
    8
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    alphas: tuple[float, ...] = Field((0.25, 0.0), min_length=1)
    lams: tuple[float, ...] = Field((0.1, 0.0), min_length=1)
    temperatures: tuple[float, ...] = Field((1.0,), min_length=1)
    lr_scales: tuple[float, ...] = Field((1.0, 10.0), min_length=1)

    def values(self, config: GlocalFitConfig, dim: int) -> dict[str, tuple[float, ...]]:
        """The values tried for each searched field (one value: the config's own, when it set it)."""
        chosen = config.model_fields_set
        lr = config.learning_rate(dim)
        grid = {
            "alpha": self.alphas,
            "lam": self.lams,
            "temperature": self.temperatures,
            "lr": tuple(scale * lr for scale in self.lr_scales),
        }
        return {
            name: (getattr(config, name) if name != "lr" else lr,) if name in chosen else grid[name] for name in grid
        }

    def size(self, config: GlocalFitConfig, dim: int = 1) -> int:
        """How many fits the search runs for ``config``."""
        count = 1
        for values in self.values(config, dim).values():
            count *= len(values)
        return count


def grid_configs(config: GlocalFitConfig, search: GlocalSearch, *, dim: int) -> list[GlocalFitConfig]:
    """One config per grid point, in grid order (the first wins ties)."""
    values = search.values(config, dim)
    names = list(values)
    return [
        config.model_copy(update=dict(zip(names, point, strict=True)))
        for point in itertools.product(*(values[name] for name in names))
    ]


def grid_row(point: GlocalFitConfig, **scores: Any) -> dict[str, Any]:
    """The searched values of ``point`` and its scores, as one row of the report and metadata.

    >>> grid_row(GlocalFitConfig(lr=1e-2), val_2afc=0.75)
    {'alpha': 0.25, 'lam': 0.1, 'temperature': 1.0, 'lr': 0.01, 'val_2afc': 0.75}
    """
    return {**{name: getattr(point, name) for name in SEARCHED}, **scores}


def best_row(rows: list[dict[str, Any]]) -> int:
    """The index of the row with the best validation 2AFC (the first of equals; failed rows never).

    >>> best_row([{"val_2afc": 0.6}, {"val_2afc": None}, {"val_2afc": 0.7}, {"val_2afc": 0.7}])
    2
    """
    scored = [(row["val_2afc"], -index) for index, row in enumerate(rows) if row.get("val_2afc") is not None]
    return -max(scored)[1]
