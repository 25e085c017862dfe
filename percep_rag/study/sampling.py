"""Drawing random scenes: a category, a count, a palette that shows on the background,
and positions from a layout (scatter, cluster, row, column, diagonal, ring, grid) with
no overlap.

>>> sample_scene(np.random.default_rng(0), count=4).count
4
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from percep_rag.study.scenes import (
    BACKGROUND_COLOURS,
    LAYOUTS,
    MAX_OBJECTS,
    OBJECT_COLOURS,
    SHAPES,
    TEXTURES,
    SceneError,
    SceneObject,
    SceneSpec,
)

# Lines and rings get crowded: above these counts objects would shrink below a few pixels.
LAYOUT_MAX_COUNT = {"row": 6, "column": 6, "diagonal": 6, "ring": 10, "grid": 10, "scatter": 10, "cluster": 8}
# Radius (fraction of the image width) before per-object variation; big scenes use less.
_RADIUS_RANGE = (0.09, 0.15)
_MIN_RADIUS = 0.045
# Object colours that sit closer than this (RGB distance) to the background are not used.
_MIN_CONTRAST = 110.0
# Rotation range of objects, in degrees either way.
_MAX_ROTATION = 20.0
# Candidate positions tried at once when placing an object without overlap.
_CANDIDATES = 64


def random_rotation(rng: np.random.Generator) -> float:
    """An object's rotation in degrees, within ±20.

    >>> abs(random_rotation(np.random.default_rng(0))) <= 20
    True
    """
    # Objects stand roughly upright, as most things in photos do; full 360-degree
    # freedom made shape recognition much slower to learn for a small model.
    return float(rng.uniform(-_MAX_ROTATION, _MAX_ROTATION))


def contrasting_colours(background: str) -> list[str]:
    """The object colours that stand out from ``background`` (RGB distance >= 110).

    >>> "black" in contrasting_colours("navy"), "black" in contrasting_colours("cream")
    (False, True)
    """
    bg = np.asarray(BACKGROUND_COLOURS[background], dtype=float)
    return [
        name for name, rgb in OBJECT_COLOURS.items() if np.linalg.norm(np.asarray(rgb, float) - bg) >= _MIN_CONTRAST
    ]


def _layout_positions(layout: str, n: int, rng: np.random.Generator) -> np.ndarray | None:
    """Centres for the structured layouts (``None`` for scatter/cluster, placed by rejection)."""
    if layout in ("scatter", "cluster"):
        return None
    if layout in ("row", "column", "diagonal"):
        span = rng.uniform(0.65, 0.85) if n > 1 else 0.0
        along = 0.5 + (np.linspace(-span / 2, span / 2, n) if n > 1 else np.zeros(1)) + rng.uniform(-0.05, 0.05)
        across = np.full(n, rng.uniform(0.25, 0.75))
        if layout == "row":
            return np.stack([along, across], axis=1)
        if layout == "column":
            return np.stack([across, along], axis=1)
        flip = rng.random() < 0.5
        return np.stack([along, 1.0 - along if flip else along], axis=1)
    if layout == "ring":
        if n == 1:
            return np.array([[0.5, 0.5]]) + rng.uniform(-0.1, 0.1, (1, 2))
        radius = rng.uniform(0.24, 0.32)
        angles = rng.uniform(0, 2 * np.pi) + np.arange(n) * 2 * np.pi / n
        centre = 0.5 + rng.uniform(-0.04, 0.04, 2)
        return centre + radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if layout == "grid":
        columns = math.ceil(math.sqrt(n))
        rows = math.ceil(n / columns)
        step = 0.7 / max(columns - 1, rows - 1, 1)
        cells = [(c, r) for r in range(rows) for c in range(columns)][:n]
        origin = 0.5 - step * np.array([(columns - 1) / 2, (rows - 1) / 2]) + rng.uniform(-0.04, 0.04, 2)
        return origin + step * np.asarray(cells, dtype=float)
    raise SceneError(f"unknown layout {layout!r}")


def _min_distance(points: np.ndarray) -> float:
    if len(points) < 2:
        return 1.0
    gaps = np.linalg.norm(points[:, None] - points[None], axis=-1)
    return float(gaps[np.triu_indices(len(points), 1)].min())


def place_free(
    radii: Sequence[float],
    rng: np.random.Generator,
    *,
    centre: np.ndarray | None = None,
    spread: float = 0.0,
    taken: Sequence[tuple[float, float, float]] = (),
) -> list[tuple[float, float]] | None:
    """Positions for circles of ``radii`` that overlap neither each other nor ``taken``
    (``(x, y, r)``); uniform, or Gaussian around ``centre``. ``None`` if it gets stuck.

    >>> len(place_free([0.1, 0.1], np.random.default_rng(0), taken=[(0.5, 0.5, 0.1)]))
    2
    """
    placed = np.asarray(list(taken), dtype=float).reshape(-1, 3)
    out: list[tuple[float, float]] = []
    for radius in radii:
        low, high = radius + 0.02, 1.0 - radius - 0.02
        if low > high:
            return None
        for _batch in range(6):
            # Candidates in batches: one vectorised overlap test instead of a Python loop each.
            if centre is None:
                candidates = rng.uniform(low, high, (_CANDIDATES, 2))
            else:
                candidates = np.clip(rng.normal(centre, spread, (_CANDIDATES, 2)), low, high)
            gaps = ((candidates[:, None, :] - placed[None, :, :2]) ** 2).sum(-1)
            free = (gaps >= (1.15 * (radius + placed[None, :, 2])) ** 2).all(axis=1)
            hits = np.flatnonzero(free)
            if hits.size:
                x, y = candidates[hits[0]]
                placed = np.vstack([placed, (x, y, radius)])
                out.append((float(x), float(y)))
                break
        else:
            return None
    return out


def sample_positions(layout: str, n: int, base_radius: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """``(centres, base radius)``: the radius shrinks until the layout fits without overlap.

    >>> centres, radius = sample_positions("row", 4, 0.1, np.random.default_rng(0))
    >>> centres.shape, radius <= 0.1
    ((4, 2), True)
    """
    structured = _layout_positions(layout, n, rng)
    if structured is not None:
        radius = base_radius
        for _ in range(3):
            # Pull the layout inside the frame, then shrink the objects to fit the spacing
            # (with a gap even at the largest per-object size factor, 1.2).
            half_extent = max(float(np.abs(structured - 0.5).max()), 1e-9)
            structured = 0.5 + (structured - 0.5) * min(1.0, (0.48 - 1.2 * radius) / half_extent)
            radius = max(_MIN_RADIUS, min(base_radius, 0.42 * _min_distance(structured) / 1.2))
        return structured, radius
    radius = base_radius
    while True:
        centre = rng.uniform(0.3, 0.7, 2) if layout == "cluster" else None
        spread = 0.06 + 0.035 * math.sqrt(n) if layout == "cluster" else 0.0
        found = place_free([radius * 1.2] * n, rng, centre=centre, spread=spread)
        if found is not None:
            return np.asarray(found), radius
        if radius <= _MIN_RADIUS:
            # Guaranteed to fit at the minimum radius on a jittered grid.
            return _layout_positions("grid", n, rng), _MIN_RADIUS
        radius = max(_MIN_RADIUS, radius * 0.85)


def sample_scene(
    rng: np.random.Generator,
    *,
    instance_id: int = 0,
    min_objects: int = 1,
    max_objects: int = MAX_OBJECTS,
    shapes: Sequence[str] = SHAPES,
    category: str | None = None,
    count: int | None = None,
    layout: str | None = None,
    background: str | None = None,
    texture: str | None = None,
) -> SceneSpec:
    """A random scene. Fixed choices (``category``, ``count``, ...) are kept; the rest is drawn.

    About three objects in four (all of them in scenes of 1-3) get the category's shape;
    the others get other shapes from ``shapes``. Objects share a palette of 1-3 colours that contrast with the
    background, and are placed by a layout (scatter, cluster, row, column, diagonal,
    ring, grid) without overlapping.

    >>> scene = sample_scene(np.random.default_rng(0), category="star", count=5)
    >>> scene.category, scene.count, scene.has_majority
    ('star', 5, True)
    """
    shapes = tuple(shapes)
    if not shapes or any(shape not in SHAPES for shape in shapes):
        raise SceneError(f"shapes must be a non-empty subset of {SHAPES}, got {shapes}")
    if not 1 <= min_objects <= max_objects <= MAX_OBJECTS:
        raise SceneError(f"need 1 <= min_objects <= max_objects <= {MAX_OBJECTS}, got {min_objects}, {max_objects}")
    category = category or shapes[int(rng.integers(len(shapes)))]
    if category not in shapes:
        raise SceneError(f"category {category!r} is not one of the shapes {shapes}")
    count = int(rng.integers(min_objects, max_objects + 1)) if count is None else count
    if not 1 <= count <= MAX_OBJECTS:
        raise SceneError(f"count must be in 1..{MAX_OBJECTS}, got {count}")
    fitting = [name for name in LAYOUTS if LAYOUT_MAX_COUNT[name] >= count]
    layout = layout or fitting[int(rng.integers(len(fitting)))]
    background = background or list(BACKGROUND_COLOURS)[int(rng.integers(len(BACKGROUND_COLOURS)))]
    texture = texture or TEXTURES[int(rng.integers(len(TEXTURES)))]

    others = [shape for shape in shapes if shape != category]
    # About one object in four is an odd one out: the category is what the scene is "of",
    # as an ImageNet label is, not a vote among equals.
    n_major = count - count // 4 if others else count
    object_shapes = [category] * n_major + [others[int(rng.integers(len(others)))] for _ in range(count - n_major)]
    rng.shuffle(object_shapes)
    usable = contrasting_colours(background)
    palette = list(rng.choice(usable, size=min(len(usable), int(rng.integers(1, 4))), replace=False))
    colours = [palette[int(rng.integers(len(palette)))] for _ in range(count)]

    # Fewer, bigger objects in sparse scenes; many objects get smaller.
    base_radius = rng.uniform(*_RADIUS_RANGE) * (3.0 / max(count, 3)) ** 0.35
    centres, radius = sample_positions(layout, count, base_radius, rng)
    factors = rng.uniform(0.85, 1.15, count)
    objects = tuple(
        SceneObject(shape, colour, float(x), float(y), float(radius * f), random_rotation(rng))
        for shape, colour, (x, y), f in zip(object_shapes, colours, centres, factors, strict=True)
    )
    return SceneSpec(objects, background, texture, instance_id=instance_id, layout=layout)
