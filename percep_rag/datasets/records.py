"""Image records from a folder or a manifest (CSV / JSONL): what to embed or index.

A record is one image plus what users attach to it (label, prompt, split, any field).
Folder layout ``root/<label>/<image>`` gives labels from sub-folder names.

>>> import tempfile, pathlib
>>> from PIL import Image
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> (root / "cat").mkdir(); Image.new("RGB", (8, 8)).save(root / "cat" / "a.png")
>>> [(r.id, r.label) for r in scan_folder(root)]
[('cat/a.png', 'cat')]
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from percep_rag.errors import ConfigError, PercepRagError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
#: Manifest columns that may name the image, in order of preference.
URI_COLUMNS = ("uri", "path", "image", "image_path", "file")


class ManifestError(PercepRagError, ValueError):
    """A manifest row could not be read; the message names the file and line."""


class ImageRecord(BaseModel):
    """One image and its payload. ``uri`` is a local path (or ``file://`` URI)."""

    model_config = ConfigDict(frozen=True)

    id: str
    uri: str
    label: str | None = None
    prompt: str | None = None
    split: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        """The fields stored next to the vectors (``None`` values left out)."""
        fields = {
            "record_id": self.id,
            "uri": self.uri,
            "label": self.label,
            "prompt": self.prompt,
            "split": self.split,
        }
        return {key: value for key, value in {**self.extra, **fields}.items() if value is not None}


def scan_folder(root: str | Path, *, recursive: bool = True, labels_from_folders: bool = True) -> list[ImageRecord]:
    """Every image file under ``root``, sorted; ids are paths relative to ``root``.

    With ``labels_from_folders`` an image in ``root/<label>/...`` gets that label.
    """
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder")
    pattern = "**/*" if recursive else "*"
    records = []
    for path in sorted(root.glob(pattern)):
        if path.suffix.lower() not in IMAGE_EXTENSIONS or not path.is_file():
            continue
        relative = path.relative_to(root)
        label = relative.parts[0] if labels_from_folders and len(relative.parts) > 1 else None
        records.append(ImageRecord(id=relative.as_posix(), uri=str(path), label=label))
    return records


def read_manifest(path: str | Path) -> list[ImageRecord]:
    """Records from a CSV (header row) or JSONL manifest.

    The image column is one of ``uri``, ``path``, ``image``, ``image_path``, ``file``;
    relative paths are taken relative to the manifest's folder. ``id`` defaults to the
    image path as written; ``label``, ``prompt``, ``split`` are read when present and every
    other column goes into ``extra``. Duplicate ids and rows without an image are errors
    that name the line.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"manifest {path} does not exist")
    rows = _jsonl_rows(path) if path.suffix.lower() in (".jsonl", ".ndjson") else _csv_rows(path)
    records, seen = [], {}
    for line, row in rows:
        record = _record_from_row(row, path, line)
        if record.id in seen:
            raise ManifestError(f"{path}:{line}: duplicate id {record.id!r} (first on line {seen[record.id]})")
        seen[record.id] = line
        records.append(record)
    return records


def _csv_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            yield reader.line_num, {key: value for key, value in row.items() if value not in (None, "")}


def _jsonl_rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ManifestError(f"{path}:{line_number}: not valid JSON ({error.msg})") from None
            if not isinstance(row, dict):
                raise ManifestError(f"{path}:{line_number}: expected a JSON object, got {type(row).__name__}")
            yield line_number, row


def _record_from_row(row: dict[str, Any], manifest: Path, line: int) -> ImageRecord:
    column = next((name for name in URI_COLUMNS if row.get(name)), None)
    if column is None:
        raise ManifestError(f"{manifest}:{line}: no image column (one of {', '.join(URI_COLUMNS)})")
    written = str(row[column])
    local = written.removeprefix("file://")
    uri = local if Path(local).is_absolute() else str(manifest.parent / local)
    known = {column, "id", "label", "prompt", "split"}
    return ImageRecord(
        id=str(row.get("id", written)),
        uri=uri,
        label=_optional_str(row.get("label")),
        prompt=_optional_str(row.get("prompt")),
        split=_optional_str(row.get("split")),
        extra={key: value for key, value in row.items() if key not in known},
    )


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def load_records(source: str | Path) -> list[ImageRecord]:
    """A folder or a manifest file, whichever ``source`` is."""
    source = Path(source)
    return scan_folder(source) if source.is_dir() else read_manifest(source)
