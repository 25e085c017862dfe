"""Where figures are written: the format follows the file's extension, or the path is refused.

>>> figure_format("neighbours.PDF")
'pdf'
>>> figure_format("neighbours.gif")
Traceback (most recent call last):
...
percep_rag.errors.ConfigError: cannot write a figure as '.gif' (neighbours.gif): use .png, .jpg, .jpeg, .pdf or .svg
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

from PIL import Image

from percep_rag.errors import ConfigError
from percep_rag.io.files import atomic_write, atomic_write_text

#: Figure extensions and the format each is written in.
FIGURE_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".pdf": "pdf", ".svg": "svg"}


def figure_format(path: str | Path) -> str:
    """The format a figure at ``path`` is written in; :class:`ConfigError` for another extension."""
    suffix = Path(path).suffix.lower()
    if suffix not in FIGURE_FORMATS:
        raise ConfigError(
            f"cannot write a figure as {suffix or 'a file without extension'!r} ({Path(path).name}): "
            f"use {', '.join(list(FIGURE_FORMATS)[:-1])} or {list(FIGURE_FORMATS)[-1]}"
        )
    return FIGURE_FORMATS[suffix]


def save_picture(picture: Image.Image, path: str | Path) -> Path:
    """Write a PIL picture in the format of ``path``'s extension (SVG embeds it as a PNG); returns the path.

    >>> import tempfile, os
    >>> out = save_picture(Image.new("RGB", (4, 3)), os.path.join(tempfile.mkdtemp(), "f.svg"))
    >>> out.read_text().startswith("<svg")
    True
    """
    kind = figure_format(path)
    if kind != "svg":
        return atomic_write(path, lambda temporary: picture.save(temporary, format=kind.upper()))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    width, height = picture.size
    return atomic_write_text(
        path,
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><image width="{width}" height="{height}" '
        f'href="data:image/png;base64,{data}"/></svg>\n',
    )
