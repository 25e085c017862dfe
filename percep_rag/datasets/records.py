"""Image records from a folder or a manifest (CSV / JSONL): what to embed or index.

A record is one image plus what users attach to it (label, prompt, split, any field).
Folder layout ``root/<label>/<image>`` gives labels from sub-folder names; the VTAB layout
``root/<split>/<label>/<image>`` (every top-level folder a split name such as ``train``,
``val`` or ``test``, see :data:`SPLIT_NAMES`) gives splits and labels.

>>> import tempfile, pathlib
>>> from PIL import Image
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> (root / "cat").mkdir(); Image.new("RGB", (8, 8)).save(root / "cat" / "a.png")
>>> [(r.id, r.label, r.split) for r in scan_folder(root)]
[('cat/a.png', 'cat', None)]
>>> _ = (root / "cat").rename(root / "train"); (root / "train" / "a.png").unlink()
>>> (root / "train" / "cat").mkdir(); Image.new("RGB", (8, 8)).save(root / "train" / "cat" / "b.png")
>>> [(r.id, r.label, r.split) for r in scan_folder(root)]
[('train/cat/b.png', 'cat', 'train')]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from percep_rag.errors import ConfigError, PercepRagError
from percep_rag.io.tables import read_table

#: Top-level folder names that make a folder a ``root/<split>/<label>/...`` (VTAB) layout.
SPLIT_NAMES = frozenset(
    {"train", "training", "val", "valid", "validation", "dev", "test", "testing", "trainval", "minival", "train800",
     "val200", "train800val200", "query", "gallery"}
)  # fmt: skip
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

    With ``labels_from_folders`` an image in ``root/<label>/...`` gets that label; when every
    top-level folder is a split name (:data:`SPLIT_NAMES`), an image in ``root/<split>/<label>/...``
    gets that split and label instead.
    """
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder")
    pattern = "**/*" if recursive else "*"
    top = [child.name for child in root.iterdir() if child.is_dir() and not child.name.startswith(".")]
    split_layout = labels_from_folders and bool(top) and all(name.lower() in SPLIT_NAMES for name in top)
    records = []
    for path in sorted(root.glob(pattern)):
        # A broken symlink is kept: reading it fails later and is reported, not skipped in silence.
        if path.suffix.lower() not in IMAGE_EXTENSIONS or not (path.is_file() or path.is_symlink()):
            continue
        relative = path.relative_to(root)
        folders = relative.parts[:-1] if labels_from_folders else ()
        split = folders[0] if split_layout and folders else None
        labels = folders[1:] if split_layout else folders
        records.append(
            ImageRecord(id=relative.as_posix(), uri=str(path), label=labels[0] if labels else None, split=split)
        )
    return records


def read_manifest(path: str | Path) -> list[ImageRecord]:
    """Records from a CSV or TSV (header row) or JSONL manifest; a byte-order mark is fine.

    The image column is one of ``uri``, ``path``, ``image``, ``image_path``, ``file``;
    relative paths are taken relative to the manifest's folder. ``id`` defaults to the
    image path as written; ``label``, ``prompt``, ``split`` are read when present and every
    other column goes into ``extra``. Duplicate ids and rows without an image are errors
    that name the line.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"manifest {path} does not exist")
    records, seen = [], {}
    for line, row in read_table(path):
        if isinstance(row, str):
            raise ManifestError(f"{path}:{line}: {row}")
        record = _record_from_row(row, path, line)
        if record.id in seen:
            raise ManifestError(f"{path}:{line}: duplicate id {record.id!r} (first on line {seen[record.id]})")
        seen[record.id] = line
        records.append(record)
    return records


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
