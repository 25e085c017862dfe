"""The hidden "human" judge: a panel of simulated people comparing scenes by count,
layout, colour and background, never by shape.

>>> from percep_rag.study.worlds import generate_world
>>> sum(HumanJudge(n_voters=5).votes(*generate_world(3, seed=0).scenes, np.random.default_rng(0)))
5
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from percep_rag.study.scenes import OBJECT_COLOURS, SceneError, SceneSpec


def _occupancy(scene: SceneSpec, grid: int) -> np.ndarray:
    """Object area splatted bilinearly onto a ``grid`` x ``grid`` map (sums to 1), so a
    small move makes a small change."""
    occupancy = np.zeros((grid, grid))
    for obj in scene.objects:
        gx, gy = obj.x * grid - 0.5, obj.y * grid - 0.5
        x0, y0 = math.floor(gx), math.floor(gy)
        fx, fy = gx - x0, gy - y0
        for dx, wx in ((0, 1 - fx), (1, fx)):
            for dy, wy in ((0, 1 - fy), (1, fy)):
                cx, cy = min(max(x0 + dx, 0), grid - 1), min(max(y0 + dy, 0), grid - 1)
                occupancy[cy, cx] += obj.size**2 * wx * wy
    return occupancy / occupancy.sum()


_COLOUR_NAMES = tuple(OBJECT_COLOURS)
_COLOUR_RGB = np.asarray([OBJECT_COLOURS[name] for name in _COLOUR_NAMES], dtype=float)
_MAX_RGB_DISTANCE = 255.0 * math.sqrt(3.0)


def _colour_histogram(scene: SceneSpec) -> np.ndarray:
    histogram = np.zeros(len(_COLOUR_NAMES))
    for obj in scene.objects:
        histogram[_COLOUR_NAMES.index(obj.colour)] += obj.size**2
    return histogram / histogram.sum()


def _colour_distance(a: SceneSpec, b: SceneSpec) -> float:
    """Half total variation between the colour-name histograms, half the distance between
    the mean object colours: red -> orange is a smaller change than red -> blue."""
    hist_a, hist_b = _colour_histogram(a), _colour_histogram(b)
    names = 0.5 * float(np.abs(hist_a - hist_b).sum())
    mean_gap = float(np.linalg.norm(hist_a @ _COLOUR_RGB - hist_b @ _COLOUR_RGB)) / _MAX_RGB_DISTANCE
    return 0.5 * names + 0.5 * mean_gap


@dataclass(frozen=True)
class HumanJudge:
    """A panel of simulated people comparing scenes by mid-level perception.

    The hidden distance between scenes ``a`` and ``b`` is a weighted mean of four terms,
    each in [0, 1], computed from the scene descriptions (not the pixels):

    * ``count``: ``|ln n_a - ln n_b| / ln 10`` (Weber-like: 1 vs 2 is a bigger change than 8 vs 9);
    * ``layout``: total-variation distance between the objects' area on a 4x4 grid;
    * ``colour``: half the total-variation distance between the objects' area per colour
      name, half the RGB distance between their area-weighted mean colours (/ 255 sqrt 3);
    * ``background``: 0.5 for a different background colour plus 0.5 for another texture.

    Shapes, and so the semantic category, are ignored. Each voter sees the weights
    scaled by ``exp(N(0, weight_jitter))`` (people attend to different things) and each
    distance plus ``N(0, noise)``, and votes for the image it finds closer to the reference.

    >>> from percep_rag.study.sampling import sample_scene
    >>> judge = HumanJudge()
    >>> ref = sample_scene(np.random.default_rng(0), count=3)
    >>> judge.distance(ref, ref)
    0.0
    """

    count_weight: float = 1.0
    layout_weight: float = 1.0
    colour_weight: float = 1.0
    background_weight: float = 0.4
    noise: float = 0.05
    weight_jitter: float = 0.3
    n_voters: int = 6
    grid: int = 4

    def __post_init__(self) -> None:
        weights = self.weights()
        if (weights < 0).any() or weights.sum() <= 0:
            raise SceneError(f"judge weights must be >= 0 and not all 0, got {weights.tolist()}")
        if self.noise < 0 or self.weight_jitter < 0:
            raise SceneError("noise and weight_jitter must be >= 0")
        if self.n_voters < 1:
            raise SceneError(f"n_voters must be >= 1, got {self.n_voters}")

    def weights(self) -> np.ndarray:
        """``[count, layout, colour, background]`` weights."""
        return np.array([self.count_weight, self.layout_weight, self.colour_weight, self.background_weight])

    def terms(self, a: SceneSpec, b: SceneSpec) -> np.ndarray:
        """The four per-attribute distances ``[count, layout, colour, background]``, each in [0, 1].

        >>> from percep_rag.study.worlds import generate_world
        >>> HumanJudge().terms(*generate_world(2, seed=0).scenes).shape
        (4,)
        """
        count = abs(math.log(a.count) - math.log(b.count)) / math.log(10)
        layout = 0.5 * float(np.abs(_occupancy(a, self.grid) - _occupancy(b, self.grid)).sum())
        colour = _colour_distance(a, b)
        background = 0.5 * (a.background != b.background) + 0.5 * (a.texture != b.texture)
        return np.array([min(count, 1.0), layout, colour, background])

    def distance(self, a: SceneSpec, b: SceneSpec) -> float:
        """The noise-free hidden distance, in [0, 1]."""
        weights = self.weights()
        return float(self.terms(a, b) @ weights / weights.sum())

    def votes(
        self,
        ref: SceneSpec,
        left: SceneSpec,
        right: SceneSpec,
        rng: np.random.Generator,
        n_voters: int | None = None,
    ) -> tuple[int, int]:
        """``(left_votes, right_votes)``: how many voters find each image closer to ``ref``.

        A voter who perceives both distances as exactly equal picks at random.

        >>> from percep_rag.study.worlds import generate_world
        >>> world = generate_world(3, seed=0)
        >>> sum(HumanJudge(n_voters=8).votes(*world.scenes, np.random.default_rng(0)))
        8
        """
        n = self.n_voters if n_voters is None else n_voters
        if n < 1:
            raise SceneError(f"n_voters must be >= 1, got {n}")
        weights = self.weights() * np.exp(rng.normal(0.0, self.weight_jitter, (n, 4)))
        weights /= weights.sum(axis=1, keepdims=True)
        d_left = weights @ self.terms(ref, left) + rng.normal(0.0, self.noise, n)
        d_right = weights @ self.terms(ref, right) + rng.normal(0.0, self.noise, n)
        coin = rng.random(n) < 0.5
        right_votes = int(((d_right < d_left) | ((d_right == d_left) & coin)).sum())
        return n - right_votes, right_votes

    def prefers_right(self, ref: SceneSpec, left: SceneSpec, right: SceneSpec) -> bool:
        """The noise-free choice: is ``right`` closer to ``ref`` than ``left``?"""
        return self.distance(ref, right) < self.distance(ref, left)
