"""Safe image decoding: any path, URI, bytes or PIL input -> a loaded 8-bit RGB PIL image.

Every input either decodes to what a person would see (EXIF orientation applied,
transparency composited on a background, 16-bit scaled, CMYK converted, first frame of an
animation) or raises :class:`~percep_rag.errors.ImageDecodeError` naming the input and
saying why. Nothing here reads or changes PIL's process-wide switches
(``Image.MAX_IMAGE_PIXELS``, ``ImageFile.LOAD_TRUNCATED_IMAGES``): the pixel limit is a
per-call argument and truncation is detected independently of PIL's flag.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from percep_rag.errors import ImageDecodeError
from percep_rag.failures import Failure
from percep_rag.io.sources import ImageSource, describe_source, read_image_bytes

__all__ = ["DEFAULT_MAX_PIXELS", "DecodedBatch", "ImageFailure", "decode_image", "decode_image_bytes", "decode_images"]

DEFAULT_MAX_PIXELS: int = 89_478_485
"""Largest ``width * height`` decoded by default; the same number as PIL's own default limit."""

_WHITE = (255, 255, 255)

# Formats we let PIL open. Not every format PIL knows: EPS, for one, runs Ghostscript on
# load, and the rarer plugins see little fuzzing. Filtered at call time to what this PIL has.
# HEIF is there for when pillow-heif has registered its plugin.
_OPEN_FORMATS = (
    "JPEG",
    "PNG",
    "GIF",
    "WEBP",
    "AVIF",
    "HEIF",
    "BMP",
    "TIFF",
    "ICO",
    "PPM",
    "TGA",
    "QOI",
    "JPEG2000",
)

# OpenJPEG reads until the stream runs dry even for complete files, so an empty read
# proves nothing there; PIL's own truncation error still applies to these formats.
_READS_PAST_END = frozenset({"JPEG2000"})

_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
)
_FTYP_BRANDS = {b"avif": "AVIF", b"avis": "AVIF", b"heic": "HEIF", b"heix": "HEIF", b"mif1": "HEIF", b"msf1": "HEIF"}

_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})

# EXIF orientation 1 is upright; 2..8 each need the transpose ImageOps.exif_transpose applies.
_TRANSPOSING_ORIENTATIONS = frozenset(range(2, 9))

#: One input that could not be decoded: its position (``index``), :func:`describe_source` and why.
ImageFailure = Failure


@dataclass
class DecodedBatch:
    """The inputs that decoded (``images`` at input positions ``indices``) and the failures."""

    images: list[Image.Image] = field(default_factory=list)
    indices: list[int] = field(default_factory=list)
    failures: list[ImageFailure] = field(default_factory=list)


def decode_image(
    source: ImageSource,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    background: tuple[int, int, int] = _WHITE,
) -> Image.Image:
    """Decode ``source`` into a new, fully loaded 8-bit RGB image.

    ``source`` is a path, a ``file://`` or ``data:image/...;base64,`` URI, encoded bytes or a
    PIL image (never modified: a new image is returned). Images with more than
    ``max_pixels`` pixels are refused before their pixels are decoded; PIL's own global
    limit still refuses images over twice ``PIL.Image.MAX_IMAGE_PIXELS`` whatever
    ``max_pixels`` says. Transparent pixels are composited on ``background``.

    >>> image = decode_image(Image.new("LA", (4, 2), (0, 0)))  # fully transparent
    >>> image.mode, image.size, image.getpixel((0, 0))
    ('RGB', (4, 2), (255, 255, 255))
    >>> decode_image(b"GIF89a, or so it says")
    Traceback (most recent call last):
    ...
    percep_rag.errors.ImageDecodeError: <bytes: 21 B>: truncated or corrupt GIF file: ...
    """
    _check_options(max_pixels, background)
    name = describe_source(source)
    if isinstance(source, Image.Image):
        return _decode_pil_image(source, name, max_pixels, background)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return decode_image_bytes(bytes(source), source_name=name, max_pixels=max_pixels, background=background)
    if isinstance(source, (str, os.PathLike)):
        data = read_image_bytes(source)
        return decode_image_bytes(data, source_name=name, max_pixels=max_pixels, background=background)
    raise ImageDecodeError(
        name, "unsupported source type: expected a path, a file:// or data: URI, bytes or a PIL image"
    )


def decode_image_bytes(
    data: bytes,
    *,
    source_name: str,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    background: tuple[int, int, int] = _WHITE,
) -> Image.Image:
    """Like :func:`decode_image` for encoded bytes in memory; errors name ``source_name``.

    >>> import io
    >>> buffer = io.BytesIO()
    >>> Image.new("RGB", (3, 2), (10, 20, 30)).save(buffer, format="PNG")
    >>> decode_image_bytes(buffer.getvalue(), source_name="x.png").getpixel((2, 1))
    (10, 20, 30)
    >>> decode_image_bytes(buffer.getvalue(), source_name="x.png", max_pixels=5)
    Traceback (most recent call last):
    ...
    percep_rag.errors.ImageDecodeError: x.png: image is 3x2 = 6 pixels, more than max_pixels=5 (possible ...)
    """
    _check_options(max_pixels, background)
    if not data:
        raise ImageDecodeError(source_name, "no image data (0 bytes)")
    stream = _EndWatchingBytesIO(data)
    with _decode_errors(source_name, _open_failure_subject(data)):
        image = _open(stream, source_name, data)
    with image, _decode_errors(source_name, f"{image.format} file"):
        _check_size(image, source_name, max_pixels)
        stream.watching = True
        image.load()
        stream.watching = False
        if stream.read_past_end and image.format not in _READS_PAST_END:
            raise ImageDecodeError(source_name, f"truncated {image.format} file: the data ends before the image does")
        return _to_rgb(image, source_name, background)


def decode_images(
    sources: Sequence[ImageSource],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    background: tuple[int, int, int] = _WHITE,
) -> DecodedBatch:
    """Decode every source; bad ones become :class:`ImageFailure` s, good ones are kept in order.

    >>> batch = decode_images([Image.new("RGB", (2, 2)), b"not an image", Image.new("L", (3, 3))])
    >>> batch.indices, [image.size for image in batch.images]
    ([0, 2], [(2, 2), (3, 3)])
    >>> batch.failures[0].index, batch.failures[0].source
    (1, '<bytes: 12 B>')
    """
    if isinstance(sources, (str, bytes, bytearray, os.PathLike, Image.Image)):
        raise ValueError("decode_images takes a sequence of sources; use decode_image for a single one")
    _check_options(max_pixels, background)
    batch = DecodedBatch()
    for index, source in enumerate(sources):
        try:
            image = decode_image(source, max_pixels=max_pixels, background=background)
        except ImageDecodeError as error:
            batch.failures.append(ImageFailure(source=error.source, reason=error.reason, index=index))
            continue
        batch.images.append(image)
        batch.indices.append(index)
    return batch


def _check_options(max_pixels: int, background: tuple[int, int, int]) -> None:
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels <= 0:
        raise ValueError(f"max_pixels must be a positive int, got {max_pixels!r}")
    if (
        not isinstance(background, tuple)
        or len(background) != 3
        or not all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in background)
    ):
        raise ValueError(f"background must be a tuple of three ints in 0..255, got {background!r}")


class _EndWatchingBytesIO(io.BytesIO):
    """A BytesIO that notes when a read comes back empty while ``watching``.

    PIL reports truncation only while the process-wide ``ImageFile.LOAD_TRUNCATED_IMAGES``
    is False, and misses some cases (a PNG cut after its pixel data) even then. A decoder
    asking for data past the end is the format-independent sign that the file is cut short.
    """

    def __init__(self, data: bytes):
        super().__init__(data)
        self.watching = False
        self.read_past_end = False

    def read(self, size: int | None = -1, /) -> bytes:
        chunk = super().read(size)
        if self.watching and not chunk and size != 0:
            self.read_past_end = True
        return chunk


def _open(stream: io.BytesIO, name: str, data: bytes) -> Image.Image:
    """``Image.open`` (header only) restricted to the allowed formats, with precise errors."""
    Image.init()  # registers every plugin once, so that the allow-list can be checked
    formats = [fmt for fmt in _OPEN_FORMATS if fmt in Image.ID]
    try:
        with warnings.catch_warnings():
            # PIL warns for 1-2x its pixel limit; _check_size refuses those images with our own message.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(stream, formats=formats)
    except UnidentifiedImageError:
        raise ImageDecodeError(name, _unidentified_reason(data, formats)) from None


def _unidentified_reason(data: bytes, formats: list[str]) -> str:
    claimed = _sniff_format(data)
    if claimed is None:
        return f"not an image in a supported format ({', '.join(formats)}); the data starts with {data[:16]!r}"
    if claimed not in formats:
        return f"{claimed} images cannot be read by this installation (supported: {', '.join(formats)})"
    return f"truncated or corrupt {claimed} file: its header cannot be read"


def _open_failure_subject(data: bytes) -> str:
    magic = _sniff_format(data)
    return f"{magic} file" if magic else "image file"


def _sniff_format(data: bytes) -> str | None:
    """The format a file claims by its first bytes, to name it in errors PIL cannot explain."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp":  # ISO base media file: the brand tells AVIF from HEIC/HEIF
        return _FTYP_BRANDS.get(bytes(data[8:12]))
    return next((name for magic, name in _MAGIC if data.startswith(magic)), None)


@contextmanager
def _decode_errors(name: str, subject: str) -> Iterator[None]:
    """Turn whatever PIL raises into an :class:`ImageDecodeError` about ``subject``.

    PIL signals bad data with many exception types (OSError, SyntaxError, ValueError,
    struct.error, zlib.error, ...) depending on the plugin, so all are caught here; the
    decode boundary is the one place where "anything went wrong" means "bad image".
    """
    try:
        yield
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageDecodeError(name, f"refused by PIL as a possible decompression bomb: {error}") from None
    except MemoryError:
        raise ImageDecodeError(name, f"out of memory while decoding the {subject}") from None
    except OSError as error:
        if "truncated" in str(error).lower():
            raise ImageDecodeError(name, f"truncated {subject}: {error}") from None
        raise ImageDecodeError(name, f"truncated or corrupt {subject}: {_explain(error)}") from None
    except Exception as error:
        raise ImageDecodeError(name, f"corrupt {subject}: {_explain(error)}") from None


def _explain(error: BaseException) -> str:
    return str(error) or type(error).__name__


def _check_size(image: Image.Image, name: str, max_pixels: int) -> None:
    """Refuse empty and oversized images from the header alone, before any pixel is decoded."""
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageDecodeError(name, f"image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise ImageDecodeError(
            name,
            f"image is {width}x{height} = {width * height:,} pixels, more than max_pixels={max_pixels:,} "
            "(possible decompression bomb)",
        )


def _decode_pil_image(image: Image.Image, name: str, max_pixels: int, background: tuple[int, int, int]) -> Image.Image:
    with _decode_errors(name, "PIL image"):
        _check_size(image, name, max_pixels)
        image.load()  # a lazily opened image may still have to read (and fail on) its file
        return _to_rgb(image, name, background)


# --------------------------------------------------------------------------- modes


def _to_rgb(image: Image.Image, name: str, background: tuple[int, int, int]) -> Image.Image:
    """A new 8-bit RGB image with EXIF orientation applied; ``image`` is left unchanged."""
    if image.getexif().get(ExifTags.Base.Orientation, 1) in _TRANSPOSING_ORIENTATIONS:
        image = ImageOps.exif_transpose(image)
    if image.mode == "F":
        raise ImageDecodeError(name, "32-bit floating-point image (mode F): its value range is unknown")
    if image.mode in _SIXTEEN_BIT_MODES:
        image = _sixteen_bit_to_8bit(image)
    if _has_transparency(image):
        return _composite(image.convert("RGBA"), background)
    try:
        return image.convert("RGB")  # a copy even for RGB: the caller closes the original
    except ValueError as error:
        raise ImageDecodeError(name, f"cannot convert mode {image.mode} to RGB: {error}") from None


def _sixteen_bit_to_8bit(image: Image.Image) -> Image.Image:
    """Scale 0..65535 to 0..255 with rounding (65535 -> 255, 32768 -> 128).

    PIL's own ``convert("L")`` clips instead, which turns most 16-bit images white. Mode
    ``I`` is read as 16-bit too: PNG and TIFF readers use it for 16-bit data.
    """
    raw = np.asarray(image)
    values = np.clip(raw, 0, 65535).astype(np.uint32)
    grey = ((values * 255 + 32767) // 65535).astype(np.uint8)
    transparent_value = image.info.get("transparency")
    if isinstance(transparent_value, int):
        # A 16-bit tRNS key names one raw value; match it before scaling merges neighbours.
        alpha = np.where(raw == transparent_value, 0, 255).astype(np.uint8)
        return Image.fromarray(np.stack([grey, alpha], axis=-1))
    return Image.fromarray(grey)


def _has_transparency(image: Image.Image) -> bool:
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        return True
    return image.mode == "P" and image.palette is not None and image.palette.mode == "RGBA"


def _composite(rgba: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    backdrop = Image.new("RGBA", rgba.size, (*background, 255))
    return Image.alpha_composite(backdrop, rgba).convert("RGB")
