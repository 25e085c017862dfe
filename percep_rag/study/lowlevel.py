"""Low-level triplets (BAPPS-like): one rendered scene, two pixel distortions of it, and a
panel that votes for the less distorted one, written as a BAPPS 2AFC folder.

The judge sees only how far each distortion moved the pixels (:func:`pixel_distance` to the
reference, perceived with log-normal noise per voter): nothing about count, layout or
shape changes between the three images. BAPPS has 2 judgments per training triplet and 5
per validation triplet; :func:`make_bapps_triplets` takes the number of voters.

>>> import tempfile
>>> from percep_rag.datasets.bapps import read_bapps_2afc
>>> from percep_rag.study.worlds import generate_world
>>> folder = make_bapps_triplets(generate_world(3, seed=0), 2, np.random.default_rng(0), tempfile.mkdtemp())
>>> len(read_bapps_2afc(folder))
2
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from percep_rag.study.pixels import PIXEL_DISTORTIONS, distort_pixels, pixel_distance
from percep_rag.study.render import render
from percep_rag.study.scenes import SceneError
from percep_rag.study.worlds import World


def low_level_votes(
    ref_to_p0: float, ref_to_p1: float, rng: np.random.Generator, voters: int, noise: float = 0.3
) -> int:
    """How many of ``voters`` find p1 closer to the reference, given each distortion's
    :func:`pixel_distance` to it; every voter perceives a distance times ``exp(N(0, noise))``.

    >>> low_level_votes(0.30, 0.01, np.random.default_rng(0), 5)
    5
    """
    if voters < 1:
        raise SceneError(f"voters must be >= 1, got {voters}")
    seen_p0 = ref_to_p0 * np.exp(rng.normal(0.0, noise, voters))
    seen_p1 = ref_to_p1 * np.exp(rng.normal(0.0, noise, voters))
    return int((seen_p1 < seen_p0).sum())


def make_bapps_triplets(
    world: World,
    n: int,
    rng: np.random.Generator,
    folder: str | Path,
    *,
    voters: int = 5,
    distortions: Sequence[str] = tuple(PIXEL_DISTORTIONS),
    strength: tuple[float, float] = (0.05, 1.0),
    image_size: int = 64,
) -> Path:
    """Write ``n`` BAPPS-like 2AFC triplets under ``folder`` (``ref/ p0/ p1/ judge/``); returns it.

    References are the world's scenes in a shuffled order (each before any repeats);
    ``p0`` and ``p1`` each get one distortion from ``distortions`` at a strength drawn
    uniformly from ``strength``; ``judge/<stem>.npy`` holds the share of ``voters`` who found
    ``p1`` closer (:func:`low_level_votes`), as BAPPS does.
    """
    if len(world) == 0:
        raise SceneError("the world has no scenes to make triplets from")
    if n < 0:
        raise SceneError(f"n must be >= 0, got {n}")
    low, high = strength
    if not 0.0 <= low <= high <= 1.0:
        raise SceneError(f"strength must be a range within [0, 1], got {strength}")
    folder = Path(folder)
    for part in ("ref", "p0", "p1", "judge"):
        (folder / part).mkdir(parents=True, exist_ok=True)
    order = np.concatenate([rng.permutation(len(world)) for _ in range(-(-n // len(world)))])[:n]
    for t, index in enumerate(order.tolist()):
        stem = f"{t:06d}"
        ref = render(world.scenes[index], image_size)
        variants = [
            distort_pixels(ref, distortions[int(rng.integers(len(distortions)))], float(rng.uniform(low, high)), rng)
            for _ in range(2)
        ]
        right_votes = low_level_votes(pixel_distance(ref, variants[0]), pixel_distance(ref, variants[1]), rng, voters)
        ref.save(folder / "ref" / f"{stem}.png")
        variants[0].save(folder / "p0" / f"{stem}.png")
        variants[1].save(folder / "p1" / f"{stem}.png")
        np.save(folder / "judge" / f"{stem}.npy", np.array([right_votes / voters]))
    return folder
