"""The world of issue 38: twelve images (a circle and a square on each of six dark backgrounds)
where a random tiny ViT puts every pair above cosine 0.97, plus the copies that must be told
apart from that: a pixel-identical re-encode, a slightly resized copy, and labelled pairs."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

#: Six dark backgrounds; shapes are drawn in light colours on them.
BACKGROUNDS = [(20, 20, 30), (40, 10, 10), (10, 40, 20), (30, 30, 60), (50, 40, 10), (15, 15, 15)]
SHAPE_COLOURS = [(230, 200, 60), (200, 220, 240), (240, 120, 120), (140, 230, 140), (250, 250, 250), (180, 160, 250)]


Colour = tuple[int, int, int]


def shape_image(kind: str, background: Colour, colour: Colour, size: int = 64) -> Image.Image:
    """A circle or a square, centred, on a plain background."""
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    box = [size // 4, size // 4, 3 * size // 4, 3 * size // 4]
    (draw.ellipse if kind == "circle" else draw.rectangle)(box, fill=colour)
    return image


def make_world(folder: Path) -> Path:
    """``folder/catalog/{circle,square}/<n>.png`` (twelve images); returns the catalog folder."""
    catalog = folder / "catalog"
    for kind in ("circle", "square"):
        (catalog / kind).mkdir(parents=True, exist_ok=True)
        for n, (background, colour) in enumerate(zip(BACKGROUNDS, SHAPE_COLOURS, strict=True)):
            shape_image(kind, background, colour).save(catalog / kind / f"{n}.png")
    return catalog


def query_in_none(folder: Path) -> Path:
    """A circle of another colour on another background: in none of the twelve."""
    path = folder / "q.png"
    shape_image("circle", (35, 25, 45), (90, 200, 230)).save(path)
    return path


def reencoded(original: Path, out: Path) -> Path:
    """The same pixels in other bytes (PNG at another compression level, with a text chunk)."""
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("comment", "re-encoded")
    with Image.open(original) as opened:
        opened.convert("RGB").save(out, compress_level=1, pnginfo=info)
    assert out.read_bytes() != original.read_bytes()
    return out


def resized(original: Path, out: Path, size: int = 60) -> Path:
    """A slightly smaller copy (bicubic), as a re-upload of a catalog photo would be."""
    with Image.open(original) as opened:
        opened.convert("RGB").resize((size, size), Image.Resampling.BICUBIC).save(out)
    return out
