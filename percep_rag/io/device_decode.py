"""Decoding JPEGs and resizing on the compute device (nvJPEG on CUDA).

JPEG decode and resize are the bottleneck of end-to-end embedding on a GPU; torchvision's
``decode_jpeg(device="cuda")`` moves decoding off the CPU and :mod:`percep_rag.io.transforms`
resizes on the same device. The same code runs on the CPU (it is how the tests check it);
results differ from the PIL path by resampling round-off only.
"""

from __future__ import annotations

import io

import torch
from PIL import Image

from percep_rag.config import PreprocessSpec
from percep_rag.io.decode import DEFAULT_MAX_PIXELS
from percep_rag.io.transforms import resize_and_crop

# The old name of the tensor path of the one geometry in percep_rag.io.transforms.
resize_on_device = resize_and_crop

__all__ = ["decode_jpegs", "jpeg_fits_device_decode", "resize_on_device"]


def jpeg_fits_device_decode(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> bool:
    """True for a baseline/progressive RGB or greyscale JPEG within ``max_pixels``.

    Anything else (CMYK, oversized, unreadable header) goes through the checked PIL path,
    which reports precise errors. Only the header is parsed here.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.format == "JPEG" and image.mode in ("RGB", "L") and image.width * image.height <= max_pixels
    except Exception:  # noqa: BLE001 - any header problem means "use the careful path"
        return False


def decode_jpegs(
    datas: list[bytes], spec: PreprocessSpec, device: torch.device | str
) -> tuple[torch.Tensor, list[int]]:
    """Decode JPEG byte strings on ``device`` and resize them: ``(pixels, ok_positions)``.

    Positions not in ``ok_positions`` failed to decode here; the caller retries them
    through the PIL path so that their errors are reported precisely.
    """
    from torchvision.io import ImageReadMode, decode_jpeg

    encoded = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in datas]
    try:
        decoded = decode_jpeg(encoded, mode=ImageReadMode.RGB, device=device, apply_exif_orientation=True)
        pairs = list(enumerate(decoded))
    except RuntimeError:
        # One bad stream fails the whole batched call: decode one by one to keep the good ones.
        pairs = []
        for position, tensor in enumerate(encoded):
            try:
                pairs.append(
                    (position, decode_jpeg(tensor, mode=ImageReadMode.RGB, device=device, apply_exif_orientation=True))
                )
            except RuntimeError:
                continue
    if not pairs:
        return torch.empty(0, 3, spec.image_size, spec.image_size, dtype=torch.uint8, device=device), []
    pixels = torch.stack([resize_and_crop(image, spec) for _, image in pairs])
    return pixels, [position for position, _ in pairs]
