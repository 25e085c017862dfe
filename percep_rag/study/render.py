"""Drawing a scene with PIL, exactly or as "the same instance, different pixels" (jitter).

>>> from percep_rag.study.scenes import SceneObject, SceneSpec
>>> render(SceneSpec((SceneObject("star", "red", 0.5, 0.5, 0.1),), "grey"), size=32).size
(32, 32)
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from percep_rag.study.scenes import BACKGROUND_COLOURS, OBJECT_COLOURS, SceneError, SceneSpec

# Render jitter: "the same instance" - small enough that the judge would not notice.
_JITTER_POSITION = 0.012
_JITTER_SIZE = 0.05
_JITTER_ROTATION = 6.0
_JITTER_COLOUR = 9.0
_JITTER_BACKGROUND = 5.0


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

    >>> from percep_rag.study.worlds import generate_world
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
