"""The pixel hash of a decoded image: equal for the same pixels whatever the file's bytes.

What it hashes (the definition :func:`percep_rag.duplicates.pixel_hash` gives users): SHA-256
of ``"{width}x{height}:"`` followed by the raw bytes of the image as
:func:`~percep_rag.io.decode.decode_image` returns it, that is 8-bit RGB, row-major, with EXIF
orientation applied, 16-bit images reduced to 8 bits and transparent pixels composited on
white: exactly the pixels the embedder sees before resizing. So a PNG re-saved with other
compression or metadata, a BMP, a lossless WebP or a TIFF of the same pixels all hash alike;
a JPEG re-encode (lossy), a resize or a crop does not. It lives in ``io`` so the decoding
workers of indexing can compute it on the image they decode anyway.

>>> from PIL import Image
>>> image_pixel_hash(Image.new("RGB", (2, 1), "red")) == image_pixel_hash(Image.new("RGB", (1, 2), "red"))
False
"""

from __future__ import annotations

import hashlib

from PIL import Image


def image_pixel_hash(image: Image.Image) -> str:
    """The hex pixel hash of an already decoded 8-bit RGB image (see the module docstring).

    >>> from PIL import Image
    >>> len(image_pixel_hash(Image.new("RGB", (4, 3), "red")))
    64
    """
    if image.mode != "RGB":
        image = image.convert("RGB")
    digest = hashlib.sha256(f"{image.width}x{image.height}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()
