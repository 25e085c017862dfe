"""Reading images and vectors. The image decoding API is re-exported here.

>>> from PIL import Image
>>> from percep_rag.io import decode_image
>>> decode_image(Image.new("L", (2, 2))).mode
'RGB'
"""

from percep_rag.io.decode import (
    DEFAULT_MAX_PIXELS,
    DecodedBatch,
    ImageFailure,
    decode_image,
    decode_image_bytes,
    decode_images,
)
from percep_rag.io.sources import ImageSource, describe_source, is_jpeg, read_image_bytes
from percep_rag.io.transforms import to_square_tensor

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
