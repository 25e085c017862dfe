"""A controlled perceptual world: shape scenes, a hidden "human" judge, NIGHTS-style triplets.

The real question (Sundaram et al. 2024, "When does perceptual alignment benefit vision
representations?") needs a backbone that knows *semantics* and humans who judge by
*mid-level perception*. Here both are explicit and separable:

* a scene (:class:`SceneSpec`) has 1-10 objects (shape, colour, size, position, rotation)
  on a textured background; its **semantic category** is the shape most of its objects
  have (a strict majority, by construction), and it has an object **count**, a spatial
  **layout** and an **instance id**;
* :func:`render` draws it with PIL; re-rendering with a ``jitter_seed`` moves, scales,
  rotates and recolours every object slightly: the same instance, different pixels;
* :class:`HumanJudge` compares scenes by count, spatial layout, colour distribution and
  background - never by shape - and votes like a noisy panel of people;
* :func:`make_nights_triplets` makes NIGHTS-like triplets (a reference and two
  distortions of it, all of the same category) with vote counts, which
  :meth:`SyntheticTriplets.write_nights` writes as a folder that
  :func:`~percep_rag.alignment.triplets.read_nights_csv` reads.

Everything is a deterministic function of its seed::

    >>> world = generate_world(4, seed=0)
    >>> world == generate_world(4, seed=0), len(world), world.scenes[0].category in SHAPES
    (True, 4, True)
    >>> render(world.scenes[0], size=64).size
    (64, 64)
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw

from percep_rag.alignment.triplets import NIGHTS_COLUMNS, TripletSet
from percep_rag.errors import PercepRagError

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "hexagon", "cross")
OBJECT_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 40, 40),
    "orange": (245, 140, 25),
    "yellow": (240, 215, 40),
    "green": (45, 165, 65),
    "cyan": (40, 195, 205),
    "blue": (45, 85, 215),
    "purple": (135, 60, 195),
    "pink": (240, 125, 185),
    "white": (245, 245, 245),
    "black": (25, 25, 25),
}
BACKGROUND_COLOURS: dict[str, tuple[int, int, int]] = {
    "grey": (128, 128, 128),
    "sand": (200, 184, 150),
    "slate": (70, 80, 96),
    "sage": (150, 172, 140),
    "navy": (32, 42, 82),
    "cream": (232, 226, 210),
}
TEXTURES: tuple[str, ...] = ("flat", "stripes", "checker", "gradient")
LAYOUTS: tuple[str, ...] = ("scatter", "cluster", "row", "column", "diagonal", "ring", "grid")
EDITS: tuple[str, ...] = ("count", "layout", "colour", "shape", "background")
LabelKind = Literal["category", "count", "layout", "background", "texture", "main_colour"]
LABEL_KINDS: tuple[str, ...] = ("category", "count", "layout", "background", "texture", "main_colour")
MAX_OBJECTS = 10

# Lines and rings get crowded: above these counts objects would shrink below a few pixels.
_LAYOUT_MAX_COUNT = {"row": 6, "column": 6, "diagonal": 6, "ring": 10, "grid": 10, "scatter": 10, "cluster": 8}
# Radius (fraction of the image width) before per-object variation; big scenes use less.
_RADIUS_RANGE = (0.09, 0.15)
_MIN_RADIUS = 0.045
# Object colours that sit closer than this (RGB distance) to the background are not used.
_MIN_CONTRAST = 110.0
# Rotation range of objects, in degrees either way.
_MAX_ROTATION = 20.0
# Candidate positions tried at once when placing an object without overlap.
_CANDIDATES = 64
# Render jitter: "the same instance" - small enough that the judge would not notice.
_JITTER_POSITION = 0.012
_JITTER_SIZE = 0.05
_JITTER_ROTATION = 6.0
_JITTER_COLOUR = 9.0
_JITTER_BACKGROUND = 5.0


class SceneError(PercepRagError, ValueError):
    """A scene description is invalid (unknown shape or colour, out-of-range value, ...)."""


# --------------------------------------------------------------------------- scene specs


@dataclass(frozen=True)
class SceneObject:
    """One object: a named shape and colour, centre ``(x, y)`` and radius ``size`` as
    fractions of the image width, and a rotation in degrees.

    >>> SceneObject("star", "red", 0.5, 0.5, 0.1).shape
    'star'
    """

    shape: str
    colour: str
    x: float
    y: float
    size: float
    rotation: float = 0.0

    def __post_init__(self) -> None:
        if self.shape not in _POLYGONS and self.shape != "circle":
            raise SceneError(f"unknown shape {self.shape!r}; known: {', '.join(SHAPES)}")
        if self.colour not in OBJECT_COLOURS:
            raise SceneError(f"unknown colour {self.colour!r}; known: {', '.join(OBJECT_COLOURS)}")
        if not (0.0 <= self.x <= 1.0 and 0.0 <= self.y <= 1.0):
            raise SceneError(f"object centre ({self.x}, {self.y}) is outside the unit square")
        if not 0.0 < self.size <= 0.5:
            raise SceneError(f"object size (radius) must be in (0, 0.5], got {self.size}")


@dataclass(frozen=True)
class SceneSpec:
    """A scene: objects on a background, plus the ids that make it an instance.

    ``category`` (the semantic label) is the most frequent shape, ties going to the shape
    listed first in :data:`SHAPES`; :func:`sample_scene` always makes it a strict majority.

    >>> scene = SceneSpec((SceneObject("star", "red", 0.3, 0.3, 0.1),
    ...                    SceneObject("star", "blue", 0.7, 0.7, 0.1),
    ...                    SceneObject("circle", "red", 0.3, 0.7, 0.1)), "grey", "flat", instance_id=7)
    >>> scene.category, scene.count, scene.colour_counts()
    ('star', 3, {'red': 2, 'blue': 1})
    """

    objects: tuple[SceneObject, ...]
    background: str
    texture: str = "flat"
    instance_id: int = 0
    layout: str = "scatter"

    def __post_init__(self) -> None:
        object.__setattr__(self, "objects", tuple(self.objects))
        if not 1 <= len(self.objects) <= MAX_OBJECTS:
            raise SceneError(f"a scene has 1 to {MAX_OBJECTS} objects, got {len(self.objects)}")
        if self.background not in BACKGROUND_COLOURS:
            raise SceneError(f"unknown background {self.background!r}; known: {', '.join(BACKGROUND_COLOURS)}")
        if self.texture not in TEXTURES:
            raise SceneError(f"unknown texture {self.texture!r}; known: {', '.join(TEXTURES)}")
        if self.layout not in LAYOUTS:
            raise SceneError(f"unknown layout {self.layout!r}; known: {', '.join(LAYOUTS)}")

    @property
    def count(self) -> int:
        """Number of objects."""
        return len(self.objects)

    def shape_counts(self) -> dict[str, int]:
        """Objects per shape, most frequent first."""
        return dict(Counter(o.shape for o in self.objects).most_common())

    def colour_counts(self) -> dict[str, int]:
        """Objects per colour, most frequent first."""
        return dict(Counter(o.colour for o in self.objects).most_common())

    @property
    def category(self) -> str:
        """The semantic label: the most frequent shape (ties: earliest in :data:`SHAPES`)."""
        counts = Counter(o.shape for o in self.objects)
        return max(counts, key=lambda shape: (counts[shape], -_shape_rank(shape)))

    @property
    def has_majority(self) -> bool:
        """True when more than half of the objects have the category's shape."""
        return 2 * self.shape_counts()[self.category] > self.count

    def label(self, kind: LabelKind) -> str | int:
        """One of :data:`LABEL_KINDS`: ``category``, ``count``, ``layout``, ``background``,
        ``texture`` or ``main_colour`` (the colour covering the most object area)."""
        if kind == "category":
            return self.category
        if kind == "count":
            return self.count
        if kind in ("layout", "background", "texture"):
            return getattr(self, kind)
        if kind == "main_colour":
            area: Counter[str] = Counter()
            for o in self.objects:
                area[o.colour] += o.size**2
            return max(area, key=lambda colour: (area[colour], -list(OBJECT_COLOURS).index(colour)))
        raise SceneError(f"unknown label kind {kind!r}; known: {', '.join(LABEL_KINDS)}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (see :meth:`from_dict`)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SceneSpec:
        """Inverse of :meth:`to_dict`.

        >>> scene = generate_world(1, seed=3).scenes[0]
        >>> SceneSpec.from_dict(scene.to_dict()) == scene
        True
        """
        objects = tuple(SceneObject(**o) for o in data["objects"])
        return cls(objects, **{k: v for k, v in data.items() if k != "objects"})


def _shape_rank(shape: str) -> int:
    return SHAPES.index(shape) if shape in SHAPES else len(SHAPES)


# --------------------------------------------------------------------------- rendering


def _regular(n: int, start_degrees: float, radius: float = 1.0) -> np.ndarray:
    angles = np.deg2rad(start_degrees + np.arange(n) * 360.0 / n)
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    outer = _regular(points, -90.0, 1.0)
    inner_points = _regular(points, -90.0 + 180.0 / points, inner)
    return np.stack([outer, inner_points], axis=1).reshape(-1, 2)


def _cross(arm: float = 0.36) -> np.ndarray:
    a = arm
    return np.array(
        [(a, 1), (a, a), (1, a), (1, -a), (a, -a), (a, -1), (-a, -1), (-a, -a), (-1, -a), (-1, a), (-a, a), (-a, 1)],
        dtype=float,
    )


# Unit outlines, scaled so that every shape covers a similar area at the same ``size``
# (otherwise "big blob" would give the category away without any shape recognition).
_POLYGONS: dict[str, np.ndarray] = {
    "square": _regular(4, 45.0, 1.12),
    "triangle": _regular(3, -90.0, 1.38),
    "star": _star() * 1.42,
    "hexagon": _regular(6, 0.0, 1.05),
    "cross": _cross() * 1.18,
}
_CIRCLE_SCALE = 0.95


def render(scene: SceneSpec, size: int = 64, jitter_seed: int | None = None, *, supersample: int = 2) -> Image.Image:
    """Draw ``scene`` as a ``size`` x ``size`` RGB image.

    ``jitter_seed=None`` draws it exactly; any integer draws *the same instance* with
    slight, reproducible noise in every object's position, size, rotation and colour
    and in the background (the noise depends on ``(instance_id, jitter_seed)``).
    Shapes are drawn at ``supersample`` times the size and box-filtered down, for
    anti-aliased edges.

    >>> scene = generate_world(1, seed=0).scenes[0]
    >>> a, b = render(scene), render(scene, jitter_seed=1)
    >>> a.size, a.tobytes() == render(scene).tobytes(), a.tobytes() == b.tobytes()
    ((64, 64), True, False)
    """
    if size < 8:
        raise SceneError(f"render size must be at least 8 pixels, got {size}")
    if supersample < 1:
        raise SceneError(f"supersample must be >= 1, got {supersample}")
    rng = None if jitter_seed is None else np.random.default_rng([scene.instance_id & 0x7FFFFFFF, jitter_seed, 7])
    canvas = size * supersample
    image = _background(scene, canvas, rng)
    draw = ImageDraw.Draw(image)
    for obj in scene.objects:
        x, y, radius, rotation, colour = obj.x, obj.y, obj.size, obj.rotation, OBJECT_COLOURS[obj.colour]
        if rng is not None:
            x += rng.normal(0.0, _JITTER_POSITION)
            y += rng.normal(0.0, _JITTER_POSITION)
            radius *= 1.0 + rng.normal(0.0, _JITTER_SIZE)
            rotation += rng.normal(0.0, _JITTER_ROTATION)
            colour = _jitter_colour(colour, rng, _JITTER_COLOUR)
        _draw_object(draw, obj.shape, x * canvas, y * canvas, radius * canvas, rotation, colour)
    return image.reduce(supersample) if supersample > 1 else image


def _jitter_colour(colour: tuple[int, int, int], rng: np.random.Generator, sd: float) -> tuple[int, int, int]:
    noisy = np.clip(np.asarray(colour, dtype=float) + rng.normal(0.0, sd, 3), 0, 255)
    return tuple(int(round(v)) for v in noisy)  # type: ignore[return-value]


def _draw_object(
    draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, radius: float, rotation: float, colour: tuple
) -> None:
    if shape == "circle":
        r = radius * _CIRCLE_SCALE
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
        return
    theta = math.radians(rotation)
    rotate = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    points = _POLYGONS[shape] @ rotate.T * radius + (cx, cy)
    draw.polygon([tuple(p) for p in points.tolist()], fill=colour)


def _background(scene: SceneSpec, canvas: int, rng: np.random.Generator | None) -> Image.Image:
    base = BACKGROUND_COLOURS[scene.background]
    # The second texture colour moves away from the background's lightness, so it shows on
    # dark and light alike; decided before jitter, which must never flip it.
    target = 40 if sum(base) > 380 else 200
    if rng is not None:
        base = _jitter_colour(base, rng, _JITTER_BACKGROUND)
    second = tuple(int(round(0.72 * c + 0.28 * target)) for c in base)
    image = Image.new("RGB", (canvas, canvas), base)
    if scene.texture == "flat":
        return image
    phase = 0 if rng is None else int(rng.integers(0, 2))
    if scene.texture == "gradient":
        ramp = np.linspace(0.0, 1.0, canvas)[:, None, None]
        pixels = (1 - ramp) * np.asarray(base, float) + ramp * np.asarray(second, float)
        return Image.fromarray(np.broadcast_to(pixels, (canvas, canvas, 3)).round().astype(np.uint8))
    draw = ImageDraw.Draw(image)
    period = max(4, canvas // 8)
    if scene.texture == "stripes":
        for top in range(-period + phase, canvas, period):
            draw.rectangle((0, top, canvas, top + period // 2 - 1), fill=second)
    else:  # checker
        for row, top in enumerate(range(0, canvas, period)):
            for column, left in enumerate(range(0, canvas, period)):
                if (row + column) % 2:
                    draw.rectangle((left, top, left + period - 1, top + period - 1), fill=second)
    return image


# --------------------------------------------------------------------------- sampling


def _random_rotation(rng: np.random.Generator) -> float:
    # Objects stand roughly upright, as most things in photos do; full 360-degree
    # freedom made shape recognition much slower to learn for a small model.
    return float(rng.uniform(-_MAX_ROTATION, _MAX_ROTATION))


def _contrasting_colours(background: str) -> list[str]:
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


def _place_free(
    radii: Sequence[float],
    rng: np.random.Generator,
    *,
    centre: np.ndarray | None = None,
    spread: float = 0.0,
    taken: Sequence[tuple[float, float, float]] = (),
) -> list[tuple[float, float]] | None:
    """Positions for circles of ``radii`` that overlap neither each other nor ``taken``
    (``(x, y, r)``); uniform, or Gaussian around ``centre``. ``None`` if it gets stuck."""
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


def _sample_positions(layout: str, n: int, base_radius: float, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """``(centres, base radius)``: the radius shrinks until the layout fits without overlap."""
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
        found = _place_free([radius * 1.2] * n, rng, centre=centre, spread=spread)
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
    fitting = [name for name in LAYOUTS if _LAYOUT_MAX_COUNT[name] >= count]
    layout = layout or fitting[int(rng.integers(len(fitting)))]
    background = background or list(BACKGROUND_COLOURS)[int(rng.integers(len(BACKGROUND_COLOURS)))]
    texture = texture or TEXTURES[int(rng.integers(len(TEXTURES)))]

    others = [shape for shape in shapes if shape != category]
    # About one object in four is an odd one out: the category is what the scene is "of",
    # as an ImageNet label is, not a vote among equals.
    n_major = count - count // 4 if others else count
    object_shapes = [category] * n_major + [others[int(rng.integers(len(others)))] for _ in range(count - n_major)]
    rng.shuffle(object_shapes)
    usable = _contrasting_colours(background)
    palette = list(rng.choice(usable, size=min(len(usable), int(rng.integers(1, 4))), replace=False))
    colours = [palette[int(rng.integers(len(palette)))] for _ in range(count)]

    # Fewer, bigger objects in sparse scenes; many objects get smaller.
    base_radius = rng.uniform(*_RADIUS_RANGE) * (3.0 / max(count, 3)) ** 0.35
    centres, radius = _sample_positions(layout, count, base_radius, rng)
    factors = rng.uniform(0.85, 1.15, count)
    objects = tuple(
        SceneObject(shape, colour, float(x), float(y), float(radius * f), _random_rotation(rng))
        for shape, colour, (x, y), f in zip(object_shapes, colours, centres, factors, strict=True)
    )
    return SceneSpec(objects, background, texture, instance_id=instance_id, layout=layout)


# --------------------------------------------------------------------------- worlds


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


# --------------------------------------------------------------------------- the judge


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


# --------------------------------------------------------------------------- distortions


def distort(
    scene: SceneSpec,
    rng: np.random.Generator,
    *,
    n_edits: int = 1,
    edits: Sequence[str] = EDITS,
    instance_id: int | None = None,
    keep_category: bool = True,
) -> SceneSpec:
    """A variation of ``scene`` made by ``n_edits`` random edits from ``edits``:

    ``count`` (add or remove 1-3 objects), ``layout`` (move some objects, or re-lay out
    all of them), ``colour`` (recolour some objects), ``shape`` (swap minority shapes,
    invisible to the judge) and ``background`` (colour or texture). With
    ``keep_category`` the majority shape survives every edit, as NIGHTS' variations all
    come from one prompt.

    >>> ref = sample_scene(np.random.default_rng(0), category="hexagon", count=4)
    >>> variant = distort(ref, np.random.default_rng(1), n_edits=2)
    >>> variant.category, variant != ref
    ('hexagon', True)
    """
    unknown = [edit for edit in edits if edit not in EDITS]
    if unknown or not edits:
        raise SceneError(f"edits must be a non-empty subset of {EDITS}, got {list(edits)}")
    if n_edits < 1:
        raise SceneError(f"n_edits must be >= 1, got {n_edits}")
    category = scene.category
    for _attempt in range(50):
        out = scene
        for _ in range(n_edits):
            out = _EDIT_FUNCTIONS[edits[int(rng.integers(len(edits)))]](out, rng)
        if out != scene and (not keep_category or (out.category == category and out.has_majority)):
            return replace(out, instance_id=scene.instance_id if instance_id is None else instance_id)
    raise SceneError(f"could not distort scene {scene.instance_id} with edits {list(edits)} keeping its category")


def _edit_count(scene: SceneSpec, rng: np.random.Generator) -> SceneSpec:
    objects = list(scene.objects)
    change = int(rng.integers(1, 4))
    if len(objects) == 1 or (len(objects) < MAX_OBJECTS and rng.random() < 0.5):
        change = min(change, MAX_OBJECTS - len(objects))
        radius = float(np.mean([o.size for o in objects]))
        taken = [(o.x, o.y, o.size) for o in objects]
        spots = _place_free([radius * 1.15] * change, rng, taken=taken) or []
        colours = list(scene.colour_counts())
        for x, y in spots:
            # New objects look like the scene's: its majority shape, its palette.
            shape = scene.category if rng.random() < 0.75 else SHAPES[int(rng.integers(len(SHAPES)))]
            colour = colours[int(rng.integers(len(colours)))]
            objects.append(
                SceneObject(shape, colour, x, y, radius * float(rng.uniform(0.85, 1.15)), _random_rotation(rng))
            )
    else:
        change = min(change, len(objects) - 1)
        for index in sorted(rng.choice(len(objects), size=change, replace=False).tolist(), reverse=True):
            objects.pop(index)
    return replace(scene, objects=tuple(objects))


def _edit_layout(scene: SceneSpec, rng: np.random.Generator) -> SceneSpec:
    objects = list(scene.objects)
    if rng.random() < 0.5:
        # Re-lay out everything, with a (possibly) different arrangement.
        fitting = [name for name in LAYOUTS if _LAYOUT_MAX_COUNT[name] >= len(objects)]
        layout = fitting[int(rng.integers(len(fitting)))]
        radius = float(np.mean([o.size for o in objects]))
        centres, fitted = _sample_positions(layout, len(objects), radius, rng)
        scale = fitted / radius
        order = rng.permutation(len(objects))
        moved = [
            replace(objects[i], x=float(x), y=float(y), size=objects[i].size * scale)
            for i, (x, y) in zip(order, centres, strict=True)
        ]
        return replace(scene, objects=tuple(moved), layout=layout)
    # Move a few objects to free spots.
    n_move = int(rng.integers(1, len(objects) + 1))
    chosen = set(rng.choice(len(objects), size=n_move, replace=False).tolist())
    keep = [(o.x, o.y, o.size) for i, o in enumerate(objects) if i not in chosen]
    spots = _place_free([objects[i].size for i in sorted(chosen)], rng, taken=keep)
    if spots is None:
        return scene
    for i, (x, y) in zip(sorted(chosen), spots, strict=True):
        objects[i] = replace(objects[i], x=x, y=y)
    return replace(scene, objects=tuple(objects), layout="scatter")


def _edit_colour(scene: SceneSpec, rng: np.random.Generator) -> SceneSpec:
    usable = _contrasting_colours(scene.background)
    objects = list(scene.objects)
    if rng.random() < 0.4:
        # Swap one palette colour for another everywhere it is used.
        old = list(scene.colour_counts())[int(rng.integers(len(scene.colour_counts())))]
        new = usable[int(rng.integers(len(usable)))]
        return replace(scene, objects=tuple(replace(o, colour=new) if o.colour == old else o for o in objects))
    n_change = int(rng.integers(1, len(objects) + 1))
    new = usable[int(rng.integers(len(usable)))]
    for i in rng.choice(len(objects), size=n_change, replace=False).tolist():
        objects[i] = replace(objects[i], colour=new)
    return replace(scene, objects=tuple(objects))


def _edit_shape(scene: SceneSpec, rng: np.random.Generator) -> SceneSpec:
    objects = list(scene.objects)
    i = int(rng.integers(len(objects)))
    objects[i] = replace(objects[i], shape=SHAPES[int(rng.integers(len(SHAPES)))], rotation=_random_rotation(rng))
    return replace(scene, objects=tuple(objects))


def _edit_background(scene: SceneSpec, rng: np.random.Generator) -> SceneSpec:
    if rng.random() < 0.5:
        return replace(scene, texture=TEXTURES[int(rng.integers(len(TEXTURES)))])
    background = list(BACKGROUND_COLOURS)[int(rng.integers(len(BACKGROUND_COLOURS)))]
    usable = _contrasting_colours(background)
    # Objects that would vanish into the new background take a colour that still shows.
    objects = tuple(
        o if o.colour in usable else replace(o, colour=usable[int(rng.integers(len(usable)))]) for o in scene.objects
    )
    return replace(scene, background=background, objects=objects)


_EDIT_FUNCTIONS = {
    "count": _edit_count,
    "layout": _edit_layout,
    "colour": _edit_colour,
    "shape": _edit_shape,
    "background": _edit_background,
}


# --------------------------------------------------------------------------- NIGHTS-style triplets


@dataclass
class SyntheticTriplets:
    """Triplets over generated scenes: a :class:`TripletSet` whose references are NIGHTS
    relative paths (``ref/000/000.png``, ``distort/000/000_0.png``, ...) and the scene
    behind every path.

    ``triplets.extra`` holds ``left_votes``, ``right_votes``, ``votes``, ``is_imagenet``
    and ``prompt``; ``triplets.target`` is ``right_votes / votes``.
    """

    triplets: TripletSet
    scenes: dict[str, SceneSpec]
    image_size: int = 64
    judge: HumanJudge = field(default_factory=HumanJudge)

    def __len__(self) -> int:
        return len(self.triplets)

    def image(self, ref: str, jitter_seed: int | None = None) -> Image.Image:
        """The rendered image behind a reference path."""
        return render(self.scenes[ref], self.image_size, jitter_seed)

    def with_min_votes(self, min_votes: int = 6) -> TripletSet:
        """The triplets with at least ``min_votes`` votes (DreamSim keeps ``votes >= 6``)."""
        return self.triplets.subset(self.triplets.extra["votes"] >= min_votes)

    def write_nights(self, root: str | Path) -> Path:
        """Write every image and a NIGHTS ``data.csv`` under ``root``; returns the CSV path.

        Vote columns hold shares, as NIGHTS does (``left_vote + right_vote == 1``), and
        ``votes`` the count, so ``read_nights_csv(path)`` gives back these triplets (those
        with ``votes >= 6`` by default).
        """
        root = Path(root)
        for ref, scene in self.scenes.items():
            path = root / ref
            path.parent.mkdir(parents=True, exist_ok=True)
            render(scene, self.image_size).save(path)
        ts = self.triplets
        csv_path = root / "data.csv"
        with csv_path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow([*NIGHTS_COLUMNS, "prompt"])
            for i in range(len(ts)):
                votes = int(ts.extra["votes"][i])
                writer.writerow(
                    [
                        ts.ids[i],
                        repr(int(ts.extra["left_votes"][i]) / votes),
                        repr(int(ts.extra["right_votes"][i]) / votes),
                        votes,
                        ts.anchor[i],
                        ts.left[i],
                        ts.right[i],
                        ts.split[i],
                        bool(ts.extra["is_imagenet"][i]),
                        ts.extra["prompt"][i],
                    ]
                )
        return csv_path


def make_nights_triplets(
    world: World,
    n: int,
    rng: np.random.Generator,
    *,
    judge: HumanJudge | None = None,
    voters: int | tuple[int, int] = (5, 10),
    edits_per_variant: tuple[int, int] = (1, 3),
    edits: Sequence[str] = EDITS,
    imagenet_shapes: Iterable[str] = SHAPES[:3],
    image_size: int = 64,
    first_variant_id: int = 1_000_000_000,
) -> SyntheticTriplets:
    """``n`` NIGHTS-like triplets: a world scene as reference and two distortions of it.

    Each variation gets ``edits_per_variant`` (inclusive range) random edits (see
    :func:`distort`) and keeps the reference's category, so the judge decides by count,
    layout, colour and background. Each triplet is judged by ``voters`` people (a fixed
    number or an inclusive range; the default 5-10 leaves about 1 in 6 triplets under
    NIGHTS' ``votes >= 6`` filter). The split is the reference scene's; ``is_imagenet``
    says whether the category is in ``imagenet_shapes`` (it makes NIGHTS' two test halves)
    and the prompt is ``"an image of <category>s"``. References are used in turn, in a
    shuffled order, so every scene serves before any serves twice.

    >>> made = make_nights_triplets(generate_world(10, seed=0), 4, np.random.default_rng(0))
    >>> len(made), made.triplets.anchor[0], made.triplets.right[0]
    (4, 'ref/000/000.png', 'distort/000/000_1.png')
    """
    if len(world) == 0:
        raise SceneError("the world has no scenes to make triplets from")
    if n < 0:
        raise SceneError(f"n must be >= 0, got {n}")
    low, high = (voters, voters) if isinstance(voters, int) else voters
    if not 1 <= low <= high:
        raise SceneError(f"voters must be >= 1 (a number or a (low, high) range), got {voters}")
    if not 1 <= edits_per_variant[0] <= edits_per_variant[1]:
        raise SceneError(f"edits_per_variant must be a range of at least 1 edit, got {edits_per_variant}")
    judge = judge or HumanJudge()
    imagenet = set(imagenet_shapes)
    order = np.concatenate([rng.permutation(len(world)) for _ in range(math.ceil(n / len(world)))])[:n]
    columns: dict[str, list] = {key: [] for key in ("anchor", "left", "right", "target", "ids", "split")}
    extra: dict[str, list] = {key: [] for key in ("left_votes", "right_votes", "votes", "is_imagenet", "prompt")}
    scenes: dict[str, SceneSpec] = {}
    for t, index in enumerate(order.tolist()):
        ref = world.scenes[index]
        folder, name = f"{t // 1000:03d}", f"{t % 1000:03d}"
        paths = (f"ref/{folder}/{name}.png", f"distort/{folder}/{name}_0.png", f"distort/{folder}/{name}_1.png")
        left, right = (
            distort(
                ref,
                rng,
                n_edits=int(rng.integers(edits_per_variant[0], edits_per_variant[1] + 1)),
                edits=edits,
                instance_id=first_variant_id + 2 * t + side,
            )
            for side in (0, 1)
        )
        n_voters = int(rng.integers(low, high + 1))
        left_votes, right_votes = judge.votes(ref, left, right, rng, n_voters)
        scenes.update(zip(paths, (ref, left, right), strict=True))
        for key, value in zip(("anchor", "left", "right"), paths, strict=True):
            columns[key].append(value)
        columns["target"].append(right_votes / n_voters)
        columns["ids"].append(f"{t:06d}")
        columns["split"].append(world.split[index])
        extra["left_votes"].append(left_votes)
        extra["right_votes"].append(right_votes)
        extra["votes"].append(n_voters)
        extra["is_imagenet"].append(ref.category in imagenet)
        extra["prompt"].append(f"an image of {ref.category}s")
    subsplit = [
        None if split != "test" else ("test_imagenet" if is_imagenet else "test_no_imagenet")
        for split, is_imagenet in zip(columns["split"], extra["is_imagenet"], strict=True)
    ]
    dtypes = {"left_votes": np.int64, "right_votes": np.int64, "votes": np.int64, "is_imagenet": bool, "prompt": object}
    triplets = TripletSet(
        np.asarray(columns["anchor"], dtype=object),
        np.asarray(columns["left"], dtype=object),
        np.asarray(columns["right"], dtype=object),
        columns["target"],
        ids=columns["ids"],
        split=columns["split"],
        subsplit=subsplit,
        extra={key: np.asarray(values, dtype=dtypes[key]) for key, values in extra.items()},
    )
    return SyntheticTriplets(triplets, scenes, image_size=image_size, judge=judge)
