"""Worlds: many scenes, each with a split, drawn deterministically from a seed.

>>> len(generate_world(4, seed=0))
4
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from percep_rag.study.render import render
from percep_rag.study.sampling import sample_scene
from percep_rag.study.scenes import MAX_OBJECTS, SHAPES, LabelKind, SceneError, SceneSpec


@dataclass(frozen=True)
class World:
    """A set of scenes with a split (``train``/``val``/``test``) per scene.

    >>> world = generate_world(20, seed=1)
    >>> sorted(set(world.split)) <= ["test", "train", "val"], len(world.subset("train")) <= 20
    (True, True)
    """

    scenes: tuple[SceneSpec, ...]
    split: tuple[str, ...]
    seed: int

    def __post_init__(self) -> None:
        if len(self.scenes) != len(self.split):
            raise SceneError(f"{len(self.scenes)} scenes but {len(self.split)} split labels")

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int) -> SceneSpec:
        return self.scenes[index]

    def indices(self, *splits: str) -> np.ndarray:
        """Positions of the scenes in any of ``splits``."""
        wanted = set(splits)
        return np.asarray([i for i, name in enumerate(self.split) if name in wanted], dtype=np.int64)

    def subset(self, *splits: str) -> World:
        """The scenes of ``splits``, in order."""
        index = self.indices(*splits)
        return World(tuple(self.scenes[i] for i in index), tuple(self.split[i] for i in index), self.seed)

    def labels(self, kind: LabelKind = "category") -> np.ndarray:
        """Each scene's label of ``kind`` (see :meth:`SceneSpec.label`).

        >>> generate_world(3, seed=0).labels("count").dtype.kind
        'i'
        """
        values = [scene.label(kind) for scene in self.scenes]
        return np.asarray(values, dtype=np.int64 if kind == "count" else object)

    def render(self, size: int = 64, jitter_seed: int | None = None) -> list[Image.Image]:
        """Every scene rendered (with ``jitter_seed`` for "same instances, new pixels")."""
        return [render(scene, size, jitter_seed) for scene in self.scenes]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (see :meth:`from_dict`)."""
        return {"seed": self.seed, "split": list(self.split), "scenes": [s.to_dict() for s in self.scenes]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> World:
        """Inverse of :meth:`to_dict`."""
        scenes = tuple(SceneSpec.from_dict(s) for s in data["scenes"])
        return cls(scenes, tuple(data["split"]), int(data["seed"]))


def generate_world(
    n_scenes: int,
    seed: int,
    *,
    min_objects: int = 1,
    max_objects: int = MAX_OBJECTS,
    shapes: Sequence[str] = SHAPES,
    split_fractions: Mapping[str, float] | None = None,
    first_instance_id: int = 0,
) -> World:
    """``n_scenes`` scenes drawn from ``seed``, categories balanced by cycling ``shapes``.

    Scene ``i`` depends only on ``(seed, i)``, so a bigger world extends a smaller one
    with the same seed. Instance ids are ``first_instance_id + i`` (give worlds that are
    used together disjoint ranges). ``split_fractions`` (default train 0.8, val 0.1,
    test 0.1) assigns splits by a seeded shuffle.

    >>> generate_world(10, seed=5).scenes[:3] == generate_world(3, seed=5).scenes
    True
    >>> generate_world(12, seed=0, shapes=("circle", "star")).labels().tolist().count("star")
    6
    """
    if n_scenes < 0:
        raise SceneError(f"n_scenes must be >= 0, got {n_scenes}")
    shapes = tuple(shapes)
    scenes = []
    for i in range(n_scenes):
        rng = np.random.default_rng([seed, i])
        scenes.append(
            sample_scene(
                rng,
                instance_id=first_instance_id + i,
                min_objects=min_objects,
                max_objects=max_objects,
                shapes=shapes,
                category=shapes[i % len(shapes)],
            )
        )
    return World(tuple(scenes), _assign_splits(n_scenes, seed, split_fractions), seed)


def _assign_splits(n: int, seed: int, fractions: Mapping[str, float] | None) -> tuple[str, ...]:
    fractions = dict(fractions or {"train": 0.8, "val": 0.1, "test": 0.1})
    if not fractions or any(f < 0 for f in fractions.values()) or not math.isclose(sum(fractions.values()), 1.0):
        raise SceneError(f"split_fractions must be non-negative and sum to 1, got {fractions}")
    bounds = np.cumsum(list(fractions.values()))
    # Splits by position in a seeded permutation: every split gets its share of categories,
    # since categories cycle with the index and the permutation mixes them.
    order = np.random.default_rng([seed, 2**31 - 1]).permutation(n)
    names = list(fractions)
    split = [""] * n
    for rank, index in enumerate(order):
        split[index] = names[min(int(np.searchsorted(bounds, (rank + 0.5) / max(n, 1))), len(names) - 1)]
    return tuple(split)
