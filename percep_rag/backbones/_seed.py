"""Deterministic random initialisation without touching the global RNG."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

T = TypeVar("T")


def build_seeded(build: Callable[[], T], seed: int) -> T:
    """Run ``build`` under a private RNG state seeded with ``seed``.

    >>> a = build_seeded(lambda: torch.randn(3), 0)
    >>> torch.equal(a, build_seeded(lambda: torch.randn(3), 0))
    True
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()
