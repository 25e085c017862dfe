"""Images added through a service: kept in a folder per collection and listed there, as a source is.

A collection's uploads folder (by default ``<edge store>/.uploads/<collection>/``) holds each
uploaded image under its content hash, and ``uploads.json`` lists their records. A sync, in
the service or by ``index --sync`` on the same store, adds these records to the source's: the
source folder and the uploads together are the catalog, so a sync keeps what was uploaded.

Order, for ``kill -9`` at any moment: an upload is listed before its point is written (a sync
after a crash indexes it); a deletion takes it off the list, then deletes the point, then the
file (a sync after a crash never brings it back).

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> path = keep_upload(folder, b"bytes", "ab" * 32, "a.png")
>>> write_uploaded(folder, [(ImageRecord(id="uploads/a", uri=str(path)), "pid")])
>>> [pid for _, pid in uploaded_records(folder)], forget_uploads(folder, {"pid"}) == [path]
(['pid'], True)
>>> uploaded_records(folder)
[]
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from percep_rag.datasets.records import IMAGE_EXTENSIONS, ImageRecord
from percep_rag.io.files import atomic_write_bytes, atomic_write_text

#: The list of uploaded records in a collection's uploads folder.
UPLOADS_LIST = "uploads.json"
#: The folder, inside an Edge store, that holds its collections' uploads (hidden: not a collection).
UPLOADS_FOLDER = ".uploads"


def default_uploads(store_root: str | os.PathLike[str], collection: str) -> Path:
    """Where a service keeps ``collection``'s uploads in the Edge store at ``store_root`` (unless ``--uploads``)."""
    return Path(store_root).expanduser() / UPLOADS_FOLDER / collection


def uploaded_records(folder: Path | None) -> list[tuple[ImageRecord, str]]:
    """The uploaded ``(record, point id)`` pairs listed in ``folder`` (none: no folder, or no list yet)."""
    if folder is None:
        return []
    path = folder / UPLOADS_LIST
    if not path.is_file():
        return []
    rows = json.loads(path.read_text(encoding="utf-8"))
    return [(ImageRecord.model_validate(row["record"]), str(row["point"])) for row in rows]


def write_uploaded(folder: Path, rows: Sequence[tuple[ImageRecord, str]]) -> None:
    """Replace the uploads list of ``folder`` with ``rows`` (atomically)."""
    listed = [{"record": record.model_dump(mode="json"), "point": pid} for record, pid in rows]
    atomic_write_text(folder / UPLOADS_LIST, json.dumps(listed, indent=0) + "\n")


def keep_upload(folder: Path, data: bytes, digest: str, filename: str | None) -> Path:
    """Store an uploaded image in ``folder`` under its content hash (same bytes, same file)."""
    suffix = Path(filename or "").suffix.lower()
    path = folder / f"{digest[:32]}{suffix if suffix in IMAGE_EXTENSIONS else '.img'}"
    if not path.is_file():
        atomic_write_bytes(path, data)
    return path


def forget_uploads(folder: Path | None, point_ids: set[str]) -> list[Path]:
    """Take ``point_ids`` off ``folder``'s uploads list; the files they had (to remove after the points)."""
    rows = uploaded_records(folder)
    gone = [Path(record.uri) for record, pid in rows if pid in point_ids]
    if folder is not None and gone:
        write_uploaded(folder, [(record, pid) for record, pid in rows if pid not in point_ids])
    return gone
