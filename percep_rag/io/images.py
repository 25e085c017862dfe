"""The image API in one place (sources, safe decoding, preprocessing geometry).

Each job lives in its own module: :mod:`percep_rag.io.sources` (paths, URIs, bytes),
:mod:`percep_rag.io.decode` (safe decoding to RGB) and :mod:`percep_rag.io.transforms`
(resize and crop); this module re-exports them under their old import path.
"""

from percep_rag.io.decode import DEFAULT_MAX_PIXELS as DEFAULT_MAX_PIXELS
from percep_rag.io.decode import DecodedBatch as DecodedBatch
from percep_rag.io.decode import ImageFailure as ImageFailure
from percep_rag.io.decode import decode_image as decode_image
from percep_rag.io.decode import decode_image_bytes as decode_image_bytes
from percep_rag.io.decode import decode_images as decode_images
from percep_rag.io.sources import ImageSource as ImageSource
from percep_rag.io.sources import describe_source as describe_source
from percep_rag.io.sources import is_jpeg as is_jpeg
from percep_rag.io.sources import read_image_bytes as read_image_bytes
from percep_rag.io.transforms import to_square_tensor as to_square_tensor

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DecodedBatch",
    "ImageFailure",
    "ImageSource",
    "decode_image",
    "decode_image_bytes",
    "decode_images",
    "describe_source",
    "is_jpeg",
    "read_image_bytes",
    "to_square_tensor",
]
