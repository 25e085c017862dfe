"""Safe image decoding: every odd or broken input decodes right or fails precisely.

All images are made here, in memory or under ``tmp_path``; nothing is downloaded.
"""

from __future__ import annotations

import base64
import io
import os
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile
from torchvision import transforms

from percep_rag.errors import ImageDecodeError, PercepRagError
from percep_rag.io import (
    DEFAULT_MAX_PIXELS,
    DecodedBatch,
    ImageFailure,
    decode_image,
    decode_image_bytes,
    decode_images,
    describe_source,
    is_jpeg,
    read_image_bytes,
    to_square_tensor,
)

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


@pytest.fixture(autouse=True)
def _pil_global_switches_are_left_alone():
    """Decoding must neither read its limits from nor write them to PIL's global switches."""
    before = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
    yield
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES) == before


# --------------------------------------------------------------------------- helpers


def encode(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def random_rgb(size: tuple[int, int], seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def decode_error(source, **options) -> ImageDecodeError:
    with pytest.raises(ImageDecodeError) as caught:
        decode_image(source, **options)
    return caught.value


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels: a decompression bomb."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    pixel_data = zlib.compress(bytes(1000))
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", pixel_data) + png_chunk(b"IEND", b"")


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image).astype(int)


def colours(image: Image.Image) -> list[tuple[int, ...]]:
    """The pixels of an RGB image, row by row, as tuples."""
    return [tuple(int(v) for v in pixel) for pixel in np.asarray(image).reshape(-1, 3)]


# --------------------------------------------------------------------------- broken inputs


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere.jpg"
    error = decode_error(str(path))
    assert (error.source, error.reason) == (str(path), "file not found")
    assert str(error) == f"{path}: file not found"


def test_empty_file(tmp_path):
    path = write(tmp_path, "empty.png", b"")
    error = decode_error(path)
    assert (error.source, error.reason) == (str(path), "file is empty (0 bytes)")


def test_directory(tmp_path):
    folder = tmp_path / "album.jpg"
    folder.mkdir()
    error = decode_error(folder)
    assert (error.source, error.reason) == (str(folder), "is a directory, not an image file")


def test_text_file_named_jpg(tmp_path):
    path = write(tmp_path, "notes.jpg", b"shopping list: eggs, milk\n")
    error = decode_error(str(path))
    assert error.source == str(path)
    assert error.reason.startswith("not an image in a supported format (JPEG, PNG, GIF, ")
    assert error.reason.endswith("the data starts with b'shopping list: e'")


def test_corrupt_bytes_after_a_valid_png_header(tmp_path):
    data = bytearray(encode(random_rgb((40, 30)), "PNG"))
    data[60:200] = bytes(140)  # zero the compressed pixel data (and its checksum)
    path = write(tmp_path, "corrupt.png", bytes(data))
    error = decode_error(str(path))
    assert error.source == str(path)
    assert error.reason.startswith("corrupt PNG file: ") or error.reason.startswith("truncated or corrupt PNG file: ")


def test_garbage_with_a_jpeg_signature(tmp_path):
    path = write(tmp_path, "junk.jpg", b"\xff\xd8\xff" + bytes(range(256)) * 4)
    error = decode_error(str(path))
    assert error.source == str(path) and "JPEG" in error.reason and "corrupt" in error.reason


@pytest.mark.parametrize("format, name", [("JPEG", "cut.jpg"), ("PNG", "cut.png")])
@pytest.mark.parametrize("pil_tolerates_truncation", [False, True])
def test_truncated_files_raise_whatever_pils_global_switch_says(
    tmp_path, monkeypatch, format, name, pil_tolerates_truncation
):
    data = encode(random_rgb((64, 48)), format)
    path = write(tmp_path, name, data[: len(data) * 2 // 3])
    # Someone else in the process may have set PIL's switch; truncation must still be an error.
    with monkeypatch.context() as patch:
        patch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", pil_tolerates_truncation)
        error = decode_error(str(path))
        assert ImageFile.LOAD_TRUNCATED_IMAGES is pil_tolerates_truncation
    assert error.source == str(path)
    assert error.reason.startswith(f"truncated {format} file: ")


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")  # PIL's, while it tries the cut header
def test_truncated_tiff_header_is_named(tmp_path):
    data = encode(random_rgb((30, 20)), "TIFF", compression="tiff_deflate")
    path = write(tmp_path, "scan.tif", data[: len(data) // 2])  # the directory is at the end
    assert decode_error(path).reason == "truncated or corrupt TIFF file: its header cannot be read"


def test_decompression_bomb_header_is_refused_by_our_limit_before_decoding(tmp_path):
    # 12000 x 9000 = 108 M pixels: over max_pixels, under PIL's hard error (2 x its limit).
    path = write(tmp_path, "bomb.png", png_claiming(12000, 9000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # PIL's own, not ours
        error = decode_error(str(path))
    assert error.source == str(path)
    assert error.reason == (
        "image is 12000x9000 = 108,000,000 pixels, more than max_pixels=89,478,485 (possible decompression bomb)"
    )


@pytest.mark.parametrize("warning_action", ["ignore", "error"])
def test_decompression_bomb_refused_by_pil_itself_is_reported(tmp_path, warning_action):
    # 100000 x 100000 is far past PIL's own limit: PIL raises inside Image.open.
    path = write(tmp_path, "huge.png", png_claiming(100_000, 100_000))
    with warnings.catch_warnings():
        warnings.simplefilter(warning_action, Image.DecompressionBombWarning)
        error = decode_error(path, max_pixels=10**12)
    assert error.source == str(path)
    assert error.reason.startswith("refused by PIL as a possible decompression bomb: ")


def test_pil_decompression_bomb_warning_never_reaches_the_user(tmp_path):
    # 108 Mpx: PIL only warns (1-2x its limit). Our max_pixels decides, so no raw warning escapes,
    # even when warnings are errors: a limit raised above the image lets the file be read as what it is.
    path = write(tmp_path, "big.png", png_claiming(12000, 9000))
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        allowed = decode_error(path, max_pixels=200_000_000)
        refused = decode_error(path)
    assert allowed.reason.startswith("truncated PNG file")
    assert refused.reason.endswith("(possible decompression bomb)")


def test_max_pixels_is_per_call_and_checked_from_the_header(tmp_path):
    data = encode(random_rgb((100, 80)), "PNG")
    path = write(tmp_path, "big.png", data)
    assert decode_image(path, max_pixels=8000).size == (100, 80)
    error = decode_error(path, max_pixels=7999)
    assert error.reason == "image is 100x80 = 8,000 pixels, more than max_pixels=7,999 (possible decompression bomb)"
    # A truncated file over the limit reports the limit: the pixels were never decoded.
    cut = write(tmp_path, "big-cut.png", data[: len(data) // 2])
    assert decode_error(cut, max_pixels=7999).reason.startswith("image is 100x80")
    assert DEFAULT_MAX_PIXELS == 89_478_485


def test_unsupported_format_is_refused_before_any_plugin_runs(tmp_path):
    # EPS would be handed to Ghostscript; it is not on the allow-list.
    path = write(tmp_path, "figure.eps", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    assert decode_error(path).reason.startswith("not an image in a supported format")


def test_unsupported_source_type():
    error = decode_error(42)
    assert error.source == "<builtins.int object>"
    assert error.reason.startswith("unsupported source type")


def test_remote_urls_are_not_fetched():
    error = decode_error("https://example.com/cat.jpg")
    assert error.source == "https://example.com/cat.jpg"
    assert error.reason.startswith("unsupported URI scheme 'https'")


def test_error_is_a_percep_rag_error_and_a_value_error(tmp_path):
    error = decode_error(str(tmp_path / "missing.png"))
    assert isinstance(error, PercepRagError) and isinstance(error, ValueError)


def test_files_are_closed_after_success_and_failure(tmp_path):
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to count open files")
    good = write(tmp_path, "good.jpg", encode(random_rgb((20, 10)), "JPEG"))
    bad = write(tmp_path, "bad.jpg", encode(random_rgb((20, 10)), "JPEG")[:300])
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        decode_image(good)
        with pytest.raises(ImageDecodeError):
            decode_image(bad)
    assert len(os.listdir("/proc/self/fd")) == before


# --------------------------------------------------------------------------- odd but valid inputs


def test_cmyk_jpeg_is_converted_to_rgb(tmp_path):
    colour = (200, 40, 90)
    source = Image.new("RGB", (32, 24), colour).convert("CMYK")
    path = write(tmp_path, "print.jpg", encode(source, "JPEG", quality=95))
    assert Image.open(path).mode == "CMYK"
    image = decode_image(path)
    assert (image.mode, image.size) == ("RGB", (32, 24))
    assert np.abs(pixels(image) - np.array(colour)).max() <= 3


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    path = tmp_path / "depth.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode in ("I;16", "I")
    image = decode_image(path)
    assert image.mode == "RGB"
    assert [image.getpixel((x, 0)) for x in range(4)] == [(0, 0, 0), (1, 1, 1), (128, 128, 128), (255, 255, 255)]


def test_32_bit_integer_image_is_read_as_16_bit():
    values = np.array([[-5, 32768, 65535, 100_000]], dtype=np.int32)
    image = decode_image(Image.fromarray(values))
    assert [image.getpixel((x, 0))[0] for x in range(4)] == [0, 128, 255, 255]


def test_16_bit_png_with_transparent_key(tmp_path):
    path = tmp_path / "keyed.png"
    Image.fromarray(np.array([[1000, 65535]], dtype=np.uint16)).save(path, transparency=1000)
    image = decode_image(path, background=(0, 0, 255))
    assert [image.getpixel((x, 0)) for x in range(2)] == [BLUE, WHITE]


def test_float_image_is_refused_with_the_reason():
    error = decode_error(Image.new("F", (3, 3), 0.5))
    assert error.reason == "32-bit floating-point image (mode F): its value range is unknown"


def test_palette_png_with_transparency_is_composited(tmp_path):
    image = Image.new("P", (4, 1))
    image.putpalette([*RED, *GREEN] + [0] * 762)
    image.putdata([0, 1, 0, 1])
    path = tmp_path / "palette.png"
    image.save(path, transparency=0)
    assert Image.open(path).mode == "P"
    decoded = decode_image(path)
    assert decoded.mode == "RGB"
    assert colours(decoded) == [WHITE, GREEN, WHITE, GREEN]
    assert colours(decode_image(path, background=(0, 0, 0))) == [(0, 0, 0), GREEN, (0, 0, 0), GREEN]


def test_palette_without_transparency(tmp_path):
    path = tmp_path / "plain-palette.png"
    Image.new("RGB", (5, 5), GREEN).convert("P").save(path)
    assert set(colours(decode_image(path))) == {GREEN}


def test_rgba_png_is_composited_on_white(tmp_path):
    path = tmp_path / "alpha.png"
    image = Image.new("RGBA", (3, 1))
    image.putdata([(255, 0, 0, 255), (255, 0, 0, 0), (255, 0, 0, 128)])
    image.save(path)
    decoded = decode_image(path)
    assert decoded.mode == "RGB"
    assert decoded.getpixel((0, 0)) == RED
    assert decoded.getpixel((1, 0)) == WHITE
    half = np.array(decoded.getpixel((2, 0)))
    assert np.abs(half - np.array([255, 127, 127])).max() <= 1
    assert decode_image(path, background=(0, 0, 255)).getpixel((1, 0)) == BLUE


def test_la_png_is_composited(tmp_path):
    path = tmp_path / "grey-alpha.png"
    image = Image.new("LA", (2, 1))
    image.putdata([(100, 255), (100, 0)])
    image.save(path)
    assert colours(decode_image(path)) == [(100, 100, 100), WHITE]


def test_greyscale_and_1_bit(tmp_path):
    grey = tmp_path / "grey.png"
    Image.new("L", (3, 2), 77).save(grey)
    assert set(colours(decode_image(grey))) == {(77, 77, 77)}
    bits = Image.new("1", (2, 1))
    bits.putdata([0, 1])
    path = tmp_path / "bits.png"
    bits.save(path)
    decoded = decode_image(path)
    assert decoded.mode == "RGB" and colours(decoded) == [(0, 0, 0), WHITE]


def test_exif_orientation_is_applied(tmp_path):
    stored = Image.new("RGB", (40, 20), BLUE)
    stored.paste(Image.new("RGB", (20, 20), RED), (0, 0))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "phone.jpg"
    stored.save(path, exif=exif.tobytes(), quality=95)
    image = decode_image(path)
    assert image.size == (20, 40)
    # Clockwise: the stored left edge becomes the top.
    assert np.abs(np.array(image.getpixel((10, 5))) - np.array(RED)).max() <= 8
    assert np.abs(np.array(image.getpixel((10, 35))) - np.array(BLUE)).max() <= 8


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 6), colour) for colour in (RED, GREEN, BLUE)]
    path = tmp_path / "blink.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(path).n_frames == 3
    image = decode_image(path)
    assert (image.mode, image.size) == ("RGB", (8, 6))
    assert set(colours(image)) == {RED}


def test_animated_webp_gives_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 6), colour) for colour in (GREEN, RED)]
    path = tmp_path / "blink.webp"
    frames[0].save(path, save_all=True, append_images=frames[1:], lossless=True)
    assert set(colours(decode_image(path))) == {GREEN}


def test_bytes_and_bytearray_input():
    image = random_rgb((9, 7), seed=3)
    data = encode(image, "PNG")
    np.testing.assert_array_equal(pixels(decode_image(data)), pixels(image))
    np.testing.assert_array_equal(pixels(decode_image(bytearray(data))), pixels(image))
    assert decode_error(b"").reason == "no image data (0 bytes)"


def test_decode_image_bytes_names_the_given_source():
    with pytest.raises(ImageDecodeError) as caught:
        decode_image_bytes(b"\x89PNG\r\n\x1a\n", source_name="bucket/key.png")
    assert str(caught.value) == "bucket/key.png: truncated or corrupt PNG file: its header cannot be read"


def test_data_uri_input():
    image = random_rgb((6, 5), seed=4)
    uri = "data:image/png;base64," + base64.b64encode(encode(image, "PNG")).decode()
    np.testing.assert_array_equal(pixels(decode_image(uri)), pixels(image))
    wrapped = uri[:40] + "\n" + uri[40:]  # wrapped base64 is common in HTML and JSON
    np.testing.assert_array_equal(pixels(decode_image(wrapped)), pixels(image))


@pytest.mark.parametrize(
    "uri, reason",
    [
        ("data:image/png;base64,@@@@", "data URI payload is not valid base64"),
        ("data:image/png,rawbytes", "data URI is not base64-encoded"),
        ("data:image/png;base64", "malformed data URI: no ','"),
        ("data:image/png;base64,", "data URI holds no data (0 bytes)"),
    ],
)
def test_bad_data_uris(uri, reason):
    error = decode_error(uri)
    assert error.source.startswith("<data URI: image/png, ")
    assert error.reason.startswith(reason)


def test_file_uri_input(tmp_path):
    path = tmp_path / "with space.png"
    Image.new("RGB", (3, 3), RED).save(path)
    assert set(colours(decode_image(path.as_uri()))) == {RED}
    assert decode_error("file://server/share/x.png").reason.startswith("file URI names the remote host 'server'")


def test_pil_input_is_converted_and_left_untouched():
    rgba = Image.new("RGBA", (4, 3), (10, 20, 30, 0))
    decoded = decode_image(rgba)
    assert (decoded.mode, decoded.getpixel((0, 0))) == ("RGB", WHITE)
    assert rgba.mode == "RGBA" and rgba.getpixel((0, 0)) == (10, 20, 30, 0)
    rgb = Image.new("RGB", (4, 3), RED)
    copy = decode_image(rgb)
    assert copy is not rgb and colours(copy) == colours(rgb)
    assert decode_image(Image.new("L", (2, 2), 9)).getpixel((1, 1)) == (9, 9, 9)


def test_lazily_opened_pil_image_of_a_truncated_file_names_the_file(tmp_path):
    data = encode(random_rgb((64, 48)), "JPEG")
    path = write(tmp_path, "lazy.jpg", data[: len(data) // 2])
    with Image.open(path) as lazy:
        error = decode_error(lazy)
    assert error.source == f"<PIL image 64x48 RGB from {path}>"
    assert "truncated" in error.reason


def test_every_common_format_decodes(tmp_path):
    image = random_rgb((13, 11), seed=5)
    for format, options in [
        ("PNG", {}),
        ("BMP", {}),
        ("TIFF", {}),
        ("PPM", {}),
        ("TGA", {}),
        ("WEBP", {"lossless": True}),
    ]:
        decoded = decode_image(encode(image, format, **options))
        np.testing.assert_array_equal(pixels(decoded), pixels(image), err_msg=format)


# --------------------------------------------------------------------------- helpers of the API


def test_describe_source():
    assert describe_source("a/b.jpg") == "a/b.jpg"
    assert describe_source(Path("a") / "b.jpg") == os.path.join("a", "b.jpg")
    assert describe_source(b"1234") == "<bytes: 4 B>"
    assert describe_source(Image.new("RGB", (32, 32))) == "<PIL image 32x32 RGB>"
    assert describe_source("data:image/jpeg;base64,AAAA") == "<data URI: image/jpeg, 4 chars>"
    assert describe_source("") == "<empty path>"


def test_is_jpeg():
    assert is_jpeg(encode(random_rgb((4, 4)), "JPEG"))
    assert not is_jpeg(encode(random_rgb((4, 4)), "PNG"))
    assert not is_jpeg(b"") and not is_jpeg(b"\xff\xd8")


def test_read_image_bytes(tmp_path):
    data = encode(random_rgb((4, 4)), "PNG")
    path = write(tmp_path, "x.png", data)
    assert read_image_bytes(path) == read_image_bytes(str(path)) == read_image_bytes(path.as_uri()) == data
    assert read_image_bytes("data:image/png;base64," + base64.b64encode(data).decode()) == data
    with pytest.raises(ImageDecodeError, match="empty.png: file is empty"):
        read_image_bytes(write(tmp_path, "empty.png", b""))
    with pytest.raises(ImageDecodeError, match="is a directory"):
        read_image_bytes(tmp_path)
    with pytest.raises(ValueError, match="decode_image_bytes"):
        read_image_bytes(data)  # type: ignore[arg-type]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_a_fifo_swapped_in_after_the_check_is_refused_not_waited_on(tmp_path, monkeypatch):
    """The path becomes a FIFO (``os.replace``) right after it was checked, before it is opened."""
    import threading

    path = write(tmp_path, "x.png", encode(random_rgb((4, 4)), "PNG"))
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    swapped = threading.Event()

    def swap() -> None:
        if not swapped.is_set():
            swapped.set()
            os.replace(fifo, path)

    real_stat, real_open = os.stat, os.open

    def stat_then_swap(target, *args, **kwargs):
        result = real_stat(target, *args, **kwargs)
        if os.fspath(target) == str(path):
            swap()  # checked as a regular file; a FIFO is opened
        return result

    def swap_then_open(target, *args, **kwargs):
        if os.fspath(target) == str(path):
            swap()
        return real_open(target, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat_then_swap)
    monkeypatch.setattr(os, "open", swap_then_open)
    outcome: list[BaseException | bytes] = []

    def read() -> None:
        try:
            outcome.append(read_image_bytes(path))
        except BaseException as error:  # noqa: BLE001 - checked below
            outcome.append(error)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive():  # blocked opening the FIFO: a writer end lets it go, then fail
        os.close(real_open(path, os.O_WRONLY | os.O_NONBLOCK))
        reader.join(timeout=10)
        pytest.fail("read_image_bytes blocked on a FIFO swapped in after its check")
    assert swapped.is_set()
    [error] = outcome
    assert isinstance(error, ImageDecodeError) and "is not a regular file" in str(error)


def test_a_fifo_is_refused(tmp_path):
    if not hasattr(os, "mkfifo"):
        pytest.skip("FIFOs are POSIX")
    os.mkfifo(tmp_path / "fifo.png")
    with pytest.raises(ImageDecodeError, match="is not a regular file"):
        read_image_bytes(tmp_path / "fifo.png")


def test_options_are_validated():
    image = Image.new("RGB", (2, 2))
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="max_pixels"):
            decode_image(image, max_pixels=bad)
    for bad in ((256, 0, 0), (0, 0), [0, 0, 0]):
        with pytest.raises(ValueError, match="background"):
            decode_image(image, background=bad)


# --------------------------------------------------------------------------- batches


def test_batch_keeps_good_items_in_order_and_lists_failures(tmp_path):
    good = write(tmp_path, "good.png", encode(Image.new("RGB", (5, 4), RED), "PNG"))
    text = write(tmp_path, "text.jpg", b"hello")
    sources = [
        str(good),
        str(tmp_path / "missing.png"),
        encode(Image.new("RGB", (3, 2), GREEN), "JPEG"),
        text,
        Image.new("L", (2, 2), 200),
    ]
    batch = decode_images(sources)
    assert isinstance(batch, DecodedBatch)
    assert batch.indices == [0, 2, 4]
    assert [image.size for image in batch.images] == [(5, 4), (3, 2), (2, 2)]
    assert all(image.mode == "RGB" for image in batch.images)
    missing, not_an_image = batch.failures
    assert missing == ImageFailure(index=1, source=str(tmp_path / "missing.png"), reason="file not found")
    assert (not_an_image.index, not_an_image.source) == (3, str(text))
    assert not_an_image.reason.startswith("not an image in a supported format (")
    assert not_an_image.reason.endswith("the data starts with b'hello'")


def test_batch_applies_options_to_every_item():
    big, small = Image.new("RGB", (10, 10)), Image.new("RGB", (3, 3))
    batch = decode_images([big, small, big], max_pixels=50)
    assert batch.indices == [1]
    assert [(f.index, f.source) for f in batch.failures] == [(0, "<PIL image 10x10 RGB>"), (2, "<PIL image 10x10 RGB>")]
    assert decode_images([]) == DecodedBatch([], [], [])


def test_batch_refuses_a_single_source_by_mistake():
    with pytest.raises(ValueError, match="sequence of sources"):
        decode_images("photo.jpg")


# --------------------------------------------------------------------------- geometry


def _torchvision_crop(image: Image.Image, size: int, shorter_side: int, mode) -> torch.Tensor:
    return transforms.Compose(
        [transforms.Resize(shorter_side, interpolation=mode), transforms.CenterCrop(size), transforms.ToTensor()]
    )(image)


@pytest.mark.parametrize("size", [(301, 227), (227, 301), (223, 225), (97, 61), (224, 224), (500, 173)])
def test_crop_matches_torchvision_exactly(size):
    image = random_rgb(size, seed=sum(size))
    ours = to_square_tensor(image, image_size=224, resize="crop", shorter_side=224, interpolation="bicubic")
    assert (ours.dtype, tuple(ours.shape)) == (torch.uint8, (3, 224, 224))
    expected = _torchvision_crop(image, 224, 224, transforms.InterpolationMode.BICUBIC)
    assert torch.equal(ours.float() / 255, expected)


@pytest.mark.parametrize("size", [(301, 227), (61, 97)])
def test_crop_with_larger_shorter_side_and_bilinear_matches_torchvision(size):
    image = random_rgb(size, seed=7)
    ours = to_square_tensor(image, image_size=224, resize="crop", shorter_side=256, interpolation="bilinear")
    expected = _torchvision_crop(image, 224, 256, transforms.InterpolationMode.BILINEAR)
    assert torch.equal(ours.float() / 255, expected)


@pytest.mark.parametrize("size", [(301, 227), (97, 61)])
def test_squash_matches_torchvision_exactly(size):
    image = random_rgb(size, seed=11)
    ours = to_square_tensor(image, image_size=224, resize="squash", shorter_side=224, interpolation="bicubic")
    expected = transforms.Compose(
        [transforms.Resize((224, 224), interpolation=transforms.InterpolationMode.BICUBIC), transforms.ToTensor()]
    )(image)
    assert torch.equal(ours.float() / 255, expected)


def test_to_square_tensor_rejects_bad_arguments():
    rgb = Image.new("RGB", (10, 10))
    common = {"image_size": 8, "shorter_side": 8, "interpolation": "bicubic"}
    with pytest.raises(ValueError, match="RGB image"):
        to_square_tensor(Image.new("L", (10, 10)), resize="crop", **common)
    with pytest.raises(ValueError, match="resize"):
        to_square_tensor(rgb, resize="pad", **common)
    with pytest.raises(ValueError, match="shorter_side"):
        to_square_tensor(rgb, image_size=8, resize="crop", shorter_side=7, interpolation="bicubic")
    with pytest.raises(ValueError, match="interpolation"):
        to_square_tensor(rgb, image_size=8, resize="squash", shorter_side=8, interpolation="nearest")
