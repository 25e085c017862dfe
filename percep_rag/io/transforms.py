"""The preprocessing geometry, written once: resize the shorter side and centre-crop, or squash.

Built on ``torchvision.transforms.v2.functional``, which dispatches on the input type: a PIL
image (the CPU path, in decoding threads or DataLoader workers) is resampled by PIL exactly
as torchvision's ``Resize``/``CenterCrop`` do for open_clip and timm; a ``(3, H, W)`` uint8
tensor (JPEGs decoded on the GPU, tensors given by the caller) is resampled on its own device
with antialiasing, which differs from PIL by round-off only.

>>> from PIL import Image
>>> spec = PreprocessSpec(image_size=24, resize_size=27)
>>> preprocess_image(Image.new("RGB", (50, 30)), spec).shape
torch.Size([3, 24, 24])
>>> resize_and_crop(torch.zeros(3, 50, 80, dtype=torch.uint8), spec).shape
torch.Size([3, 24, 24])
"""

from __future__ import annotations

from typing import TypeVar

import torch
from PIL import Image

from percep_rag.config import INTERPOLATIONS, RESIZE_MODES, Interpolation, PreprocessSpec, ResizeMode

__all__ = ["preprocess_image", "resize_and_crop", "to_square_tensor"]

ImageOrTensor = TypeVar("ImageOrTensor", Image.Image, torch.Tensor)


def resize_and_crop(image: ImageOrTensor, spec: PreprocessSpec) -> ImageOrTensor:
    """Resize (and centre-crop) a PIL image or a ``(..., H, W)`` tensor to ``spec.image_size`` squared.

    ``"crop"`` is torchvision ``Resize(shorter_side)`` + ``CenterCrop(image_size)``;
    ``"squash"`` is ``Resize((image_size, image_size))``. The output has the input's type.
    """
    # Imported late: torchvision pulls in torch._dynamo (seconds); backbones import it anyway.
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as F

    size = [spec.image_size, spec.image_size]
    mode = InterpolationMode(spec.interpolation)
    if spec.resize == "squash":
        return F.resize(image, size, interpolation=mode, antialias=True)
    resized = F.resize(image, [spec.shorter_side], interpolation=mode, antialias=True)
    return F.center_crop(resized, size)


def preprocess_image(image: Image.Image, spec: PreprocessSpec) -> torch.Tensor:
    """A decoded RGB PIL image -> uint8 ``(3, S, S)`` tensor, as the backbone's ``spec`` says."""
    if image.mode != "RGB":
        raise ValueError(f"preprocessing needs an RGB image (see decode_image), got mode {image.mode}")
    from torchvision.transforms.v2.functional import pil_to_tensor

    return pil_to_tensor(resize_and_crop(image, spec)).contiguous()


def to_square_tensor(
    image: Image.Image,
    *,
    image_size: int,
    resize: ResizeMode,
    shorter_side: int,
    interpolation: Interpolation,
) -> torch.Tensor:
    """:func:`preprocess_image` with the geometry given field by field (and checked).

    >>> to_square_tensor(Image.new("RGB", (50, 30)), image_size=24, resize="crop",
    ...                  shorter_side=27, interpolation="bicubic").shape
    torch.Size([3, 24, 24])
    """
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, got {resize!r}")
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    if image_size <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    if resize == "crop" and shorter_side < image_size:
        raise ValueError(f"shorter_side ({shorter_side}) must be >= image_size ({image_size}) to crop")
    resize_size = shorter_side if resize == "crop" else None
    spec = PreprocessSpec(image_size=image_size, resize=resize, resize_size=resize_size, interpolation=interpolation)
    return preprocess_image(image, spec)
