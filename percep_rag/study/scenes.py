"""Scene descriptions: objects (shape, colour, place, size) on a background, and their labels.

A scene's **semantic category** is the shape most of its objects have; it also has an
object **count**, a spatial **layout** and an **instance id**.

>>> SceneSpec((SceneObject("star", "red", 0.5, 0.5, 0.1),), "grey").category
'star'
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

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
LabelKind = Literal["category", "count", "layout", "background", "texture", "main_colour"]
LABEL_KINDS: tuple[str, ...] = ("category", "count", "layout", "background", "texture", "main_colour")
MAX_OBJECTS = 10


class SceneError(PercepRagError, ValueError):
    """A scene description is invalid (unknown shape or colour, out-of-range value, ...)."""


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
        if self.shape not in SHAPES:
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

        >>> from percep_rag.study.worlds import generate_world
        >>> scene = generate_world(1, seed=3).scenes[0]
        >>> SceneSpec.from_dict(scene.to_dict()) == scene
        True
        """
        objects = tuple(SceneObject(**o) for o in data["objects"])
        return cls(objects, **{k: v for k, v in data.items() if k != "objects"})


def _shape_rank(shape: str) -> int:
    return SHAPES.index(shape) if shape in SHAPES else len(SHAPES)
