"""Where image bytes come from: paths, ``file://`` and ``data:`` URIs, bytes and PIL images.

Each source has a short name for error messages (:func:`describe_source`); paths and URIs
are read into memory (:func:`read_image_bytes`) with a precise
:class:`~percep_rag.errors.ImageDecodeError` when they cannot be. Nothing is fetched from
the network.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import stat
from typing import TypeAlias

from PIL import Image

from percep_rag.errors import ImageDecodeError

__all__ = ["ImageSource", "describe_source", "is_jpeg", "read_image_bytes", "read_image_file", "stat_source"]

#: What every image-taking function accepts: a path, a ``file://``/``data:`` URI, encoded bytes or a PIL image.
ImageSource: TypeAlias = str | os.PathLike | bytes | Image.Image

_URI_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]+)://")  # 2+ letters: "C:\x" is a path


def describe_source(source: ImageSource) -> str:
    """A short, human-readable name for ``source``, used in every error message.

    Paths and URIs are shown as given; data URIs, bytes and PIL images are summarised so
    that messages stay short.

    >>> describe_source("photos/cat.jpg")
    'photos/cat.jpg'
    >>> describe_source(b"\\x89PNG....")
    '<bytes: 8 B>'
    >>> describe_source(Image.new("L", (32, 16)))
    '<PIL image 32x16 L>'
    >>> describe_source("data:image/png;base64,iVBORw0KGgo=")
    '<data URI: image/png, 12 chars>'
    """
    if isinstance(source, str):
        if _is_data_uri(source):
            header, _, payload = source.partition(",")
            media_type = header[len("data:") :].split(";")[0] or "no media type"
            return f"<data URI: {media_type}, {len(payload)} chars>"
        return source or "<empty path>"
    if isinstance(source, os.PathLike):
        return os.fsdecode(source) or "<empty path>"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<bytes: {memoryview(source).nbytes} B>"
    if isinstance(source, Image.Image):
        origin = getattr(source, "filename", "")
        suffix = f" from {os.fsdecode(origin)}" if origin else ""
        return f"<PIL image {source.width}x{source.height} {source.mode}{suffix}>"
    return f"<{type(source).__module__}.{type(source).__qualname__} object>"


def is_jpeg(data: bytes) -> bool:
    """True when ``data`` starts with the JPEG SOI marker (cheap: no decoding).

    >>> is_jpeg(b"\\xff\\xd8\\xff\\xe0rest"), is_jpeg(b"\\x89PNG\\r\\n\\x1a\\n")
    (True, False)
    """
    return bytes(data[:3]) == b"\xff\xd8\xff"


def read_image_bytes(source: str | os.PathLike) -> bytes:
    """The bytes of an image file, or :class:`ImageDecodeError` saying why there are none.

    ``file://`` URIs are read as paths; a ``data:`` URI is decoded instead of read, so that
    callers can pass any string source here. Only regular files are opened (a FIFO or a
    device would block or never end).

    >>> read_image_bytes("data:image/png;base64,iVBORw0KGgo=")
    b'\\x89PNG\\r\\n\\x1a\\n'
    >>> read_image_bytes("/no/such/file.jpg")
    Traceback (most recent call last):
    ...
    percep_rag.errors.ImageDecodeError: /no/such/file.jpg: file not found
    """
    return read_image_file(source)[0]


def read_image_file(source: str | os.PathLike) -> tuple[bytes, os.stat_result | None]:
    """:func:`read_image_bytes`, and the stat of the file it read (``None`` for a ``data:`` URI).

    The stat is the opened descriptor's, taken before its bytes are read: a write during the
    read changes the file's mtime, so a later stat differs from it and the file is read again.

    >>> read_image_file("data:image/png;base64,iVBORw0KGgo=")[1] is None
    True
    """
    if not isinstance(source, (str, os.PathLike)):
        raise ValueError("read_image_bytes reads paths and URIs; pass encoded bytes to decode_image_bytes")
    name = describe_source(source)
    if isinstance(source, str) and _is_data_uri(source):
        return _decode_data_uri(source, name), None
    data, opened = _read_regular_file(_local_path(source, name), name)
    if not data:
        raise ImageDecodeError(name, "file is empty (0 bytes)")
    return data, opened


def stat_source(source: str | os.PathLike) -> os.stat_result | None:
    """The stat of a local image path or ``file://`` URI (symlinks followed) without opening it;
    ``None`` for a ``data:`` URI or a path that is missing, unreadable or not a regular file.

    >>> stat_source("/no/such/file.jpg") is None, stat_source("data:,x") is None
    (True, True)
    """
    if isinstance(source, str) and _is_data_uri(source):
        return None
    try:
        found = os.stat(_local_path(source, describe_source(source)))
    except (OSError, ValueError, ImageDecodeError):
        return None
    return found if stat.S_ISREG(found.st_mode) else None


#: How image files are opened: never waiting for a writer (a FIFO swapped in opens at once, and
#: fstat of the descriptor then refuses it), never becoming a controlling terminal.
_OPEN_FLAGS = (
    os.O_RDONLY
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)


def _read_regular_file(path: str | bytes, name: str) -> tuple[bytes, os.stat_result]:
    """The bytes of ``path`` if it is a regular file, and the opened descriptor's stat.

    Checked twice: by path first (a device or FIFO is refused without being opened), then on
    the opened descriptor, since the path may be swapped (``os.replace``) between the check
    and the open; the open does not block, so a FIFO swapped in is refused instead of waited on.
    """
    try:
        mode = os.stat(path).st_mode
    except ValueError:  # os.stat refuses paths with NUL characters
        raise ImageDecodeError(name, "invalid path: it contains a NUL character") from None
    except OSError as error:
        raise _read_error(name, error) from None
    _check_regular(mode, name)
    try:
        descriptor = os.open(path, _OPEN_FLAGS)
    except IsADirectoryError:  # swapped in after the check
        raise ImageDecodeError(name, "is a directory, not an image file") from None
    except OSError as error:
        raise _read_error(name, error) from None
    try:
        opened = os.fstat(descriptor)
        _check_regular(opened.st_mode, name)
        if _OPEN_FLAGS & getattr(os, "O_NONBLOCK", 0):
            os.set_blocking(descriptor, True)
        with os.fdopen(descriptor, "rb") as file:
            descriptor = -1  # the file object closes it now
            return file.read(), opened
    except OSError as error:
        raise _read_error(name, error) from None
    finally:
        if descriptor >= 0:
            os.close(descriptor)


def _check_regular(mode: int, name: str) -> None:
    if stat.S_ISDIR(mode):
        raise ImageDecodeError(name, "is a directory, not an image file")
    if not stat.S_ISREG(mode):
        raise ImageDecodeError(name, "is not a regular file (a device, FIFO or socket)")


def _read_error(name: str, error: OSError) -> ImageDecodeError:
    if isinstance(error, FileNotFoundError):
        return ImageDecodeError(name, "file not found")
    if isinstance(error, PermissionError):
        return ImageDecodeError(name, "permission denied")
    return ImageDecodeError(name, f"cannot read file: {error.strerror or error}")


def _is_data_uri(text: str) -> bool:
    return text[:5].lower() == "data:"


def _decode_data_uri(uri: str, name: str) -> bytes:
    header, comma, payload = uri.partition(",")
    if not comma:
        raise ImageDecodeError(name, "malformed data URI: no ',' between the header and the data")
    parameters = [part.strip().lower() for part in header[len("data:") :].split(";")[1:]]
    if "base64" not in parameters:
        raise ImageDecodeError(name, "data URI is not base64-encoded (only ';base64,' data URIs are supported)")
    try:
        # Line breaks and spaces are common in wrapped base64 and carry no data.
        data = base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError) as error:
        raise ImageDecodeError(name, f"data URI payload is not valid base64 ({error})") from None
    if not data:
        raise ImageDecodeError(name, "data URI holds no data (0 bytes)")
    return data


def _local_path(source: str | os.PathLike, name: str) -> str | bytes:
    """A filesystem path for a path or ``file://`` URI; other URI schemes are refused."""
    if not isinstance(source, str):
        return os.fspath(source)
    if source[:5].lower() == "file:":
        from urllib.parse import urlsplit
        from urllib.request import url2pathname  # imported late: it pulls in http.client

        parts = urlsplit(source)
        if parts.netloc not in ("", "localhost"):
            raise ImageDecodeError(name, f"file URI names the remote host {parts.netloc!r}; only local files are read")
        return url2pathname(parts.path)
    scheme = _URI_SCHEME.match(source)
    if scheme:
        raise ImageDecodeError(
            name,
            f"unsupported URI scheme {scheme.group(1)!r}: only paths, file:// and data: URIs are read "
            "(download remote images first)",
        )
    return source
