"""Low-level (BAPPS-like) distortions of one rendered image: noise, blur, JPEG, pixelation,
colour and contrast shifts, each with a strength in (0, 1].

Nothing here changes what is in the scene (count, layout, shapes): only its pixels. A
strength of 0 gives the image back; larger is visibly worse.

>>> from PIL import Image
>>> image = Image.new("RGB", (32, 32), (200, 40, 40))
>>> distort_pixels(image, "blur", 0.0, np.random.default_rng(0)) == image
True
>>> sorted(PIXEL_DISTORTIONS)[:3]
['blur', 'contrast', 'hue']
"""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from percep_rag.study.scenes import SceneError


def _noise(image: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float64)
    noisy = pixels + rng.normal(0.0, 60.0 * strength, pixels.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def _blur(image: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(radius=3.0 * strength)) if strength > 0 else image.copy()


def _jpeg(image: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    if strength <= 0:
        return image.copy()
    buffer = io.BytesIO()
    # Quality 95 (barely visible) down to 2 (blocks).
    image.save(buffer, format="JPEG", quality=max(2, int(round(95 - 93 * strength))))
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _pixelate(image: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    factor = 1 + int(round(7 * strength))
    if factor == 1:
        return image.copy()
    small = image.resize((max(1, image.width // factor), max(1, image.height // factor)), Image.Resampling.BILINEAR)
    return small.resize(image.size, Image.Resampling.NEAREST)


def _contrast(image: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    # Lower or raise the contrast, at random.
    sign = -1.0 if rng.random() < 0.5 else 1.0
    return ImageEnhance.Contrast(image).enhance(max(0.05, 1.0 + sign * 0.9 * strength))


def _hue(image: Image.Image, strength: float, rng: np.random.Generator) -> Image.Image:
    # A global colour cast: every pixel moves toward one random RGB colour.
    pixels = np.asarray(image, dtype=np.float64)
    cast = rng.uniform(0, 255, 3)
    shifted = (1 - 0.6 * strength) * pixels + 0.6 * strength * cast
    return Image.fromarray(np.clip(shifted, 0, 255).astype(np.uint8))


#: Distortion name -> ``(image, strength, rng) -> image``.
PIXEL_DISTORTIONS: dict[str, Callable[[Image.Image, float, np.random.Generator], Image.Image]] = {
    "noise": _noise,
    "blur": _blur,
    "jpeg": _jpeg,
    "pixelate": _pixelate,
    "contrast": _contrast,
    "hue": _hue,
}


def distort_pixels(image: Image.Image, kind: str, strength: float, rng: np.random.Generator) -> Image.Image:
    """``image`` distorted by ``kind`` (a :data:`PIXEL_DISTORTIONS` name) at ``strength`` in [0, 1]."""
    if kind not in PIXEL_DISTORTIONS:
        raise SceneError(f"unknown pixel distortion {kind!r}; known: {', '.join(PIXEL_DISTORTIONS)}")
    if not 0.0 <= strength <= 1.0:
        raise SceneError(f"strength must be in [0, 1], got {strength}")
    return PIXEL_DISTORTIONS[kind](image.convert("RGB"), float(strength), rng)


def pixel_distance(a: Image.Image, b: Image.Image) -> float:
    """Root-mean-square difference of two same-sized images, in [0, 1] (1: black vs white).

    The low-level judge's measure of how distorted an image is.

    >>> pixel_distance(Image.new("RGB", (4, 4), "black"), Image.new("RGB", (4, 4), "white"))
    1.0
    """
    if a.size != b.size:
        raise SceneError(f"images differ in size: {a.size} vs {b.size}")
    diff = np.asarray(a.convert("RGB"), dtype=np.float64) - np.asarray(b.convert("RGB"), dtype=np.float64)
    return float(np.sqrt(np.mean(diff**2)) / 255.0)
