"""Images added through a service: kept in a folder per collection and listed there, as a source is.

A collection's uploads folder (by default ``<edge store>/.uploads/<collection>/``) holds each
uploaded image under its content hash, and ``uploads.jsonl`` lists them: one line per upload
(its record and point id) and one per withdrawal, appended, so an upload costs the same with
ten or ten thousand before it. A sync, in the service or by ``index --sync`` on the same store,
adds the listed records to the source's: the source folder and the uploads together are the
catalog, so a sync keeps what was uploaded.

Order, for ``kill -9`` at any moment: an upload is listed before its point is written (a sync
after a crash indexes it); a deletion is listed before the point is deleted, and the file goes
last (a sync after a crash never brings it back). A line cut short by a crash is ignored.

>>> import tempfile
>>> folder = Path(tempfile.mkdtemp())
>>> path = keep_upload(folder, b"bytes", "ab" * 32, "a.png")
>>> list_uploads(folder, [(ImageRecord(id="uploads/a", uri=str(path)), "pid")])
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
from typing import Any

from percep_rag.datasets.records import IMAGE_EXTENSIONS, ImageRecord
from percep_rag.io.files import atomic_write_bytes, atomic_write_text

#: The list of uploaded records in a collection's uploads folder (JSON Lines, appended).
UPLOADS_LIST = "uploads.jsonl"
#: The folder, inside an Edge store, that holds its collections' uploads (hidden: not a collection).
UPLOADS_FOLDER = ".uploads"
#: The list is rewritten without its withdrawn entries once it has this many lines and twice the live ones.
COMPACT_AFTER = 1000


def default_uploads(store_root: str | os.PathLike[str], collection: str) -> Path:
    """Where a service keeps ``collection``'s uploads in the Edge store at ``store_root`` (unless ``--uploads``)."""
    return Path(store_root).expanduser() / UPLOADS_FOLDER / collection


def _replay(folder: Path | None) -> tuple[dict[str, dict[str, Any]], int]:
    """Point id -> record fields of the uploads listed now, and the number of lines read."""
    live: dict[str, dict[str, Any]] = {}
    if folder is None or not (folder / UPLOADS_LIST).is_file():
        return live, 0
    lines = 0
    with (folder / UPLOADS_LIST).open(encoding="utf-8") as listed:
        for line in listed:
            lines += 1
            try:
                entry = json.loads(line)
            except ValueError:  # the last line of a write cut short
                continue
            if "forget" in entry:
                live.pop(str(entry["forget"]), None)
            elif "point" in entry and "record" in entry:
                live[str(entry["point"])] = entry["record"]
    return live, lines


def uploaded_records(folder: Path | None) -> list[tuple[ImageRecord, str]]:
    """The uploaded ``(record, point id)`` pairs listed in ``folder`` (none: no folder, or no list yet)."""
    live, _ = _replay(folder)
    return [(ImageRecord.model_validate(record), pid) for pid, record in live.items()]


def _append(folder: Path, entries: Sequence[dict[str, Any]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(entry) + "\n" for entry in entries)
    with (folder / UPLOADS_LIST).open("a", encoding="utf-8") as listed:
        listed.write(text)
        listed.flush()
        os.fsync(listed.fileno())


def list_uploads(folder: Path, rows: Sequence[tuple[ImageRecord, str]]) -> None:
    """Add ``(record, point id)`` rows to ``folder``'s list (appended; durable when it returns)."""
    _append(folder, [{"record": record.model_dump(mode="json"), "point": pid} for record, pid in rows])


def keep_upload(folder: Path, data: bytes, digest: str, filename: str | None) -> Path:
    """Store an uploaded image in ``folder`` under its content hash (same bytes, same file)."""
    suffix = Path(filename or "").suffix.lower()
    path = folder / f"{digest[:32]}{suffix if suffix in IMAGE_EXTENSIONS else '.img'}"
    if not path.is_file():
        atomic_write_bytes(path, data)
    return path


def forget_uploads(folder: Path | None, point_ids: set[str]) -> list[Path]:
    """Take ``point_ids`` off ``folder``'s list; the files they had (to remove after the points)."""
    live, lines = _replay(folder)
    gone = [pid for pid in live if pid in point_ids]
    if folder is None or not gone:
        return []
    files = [Path(str(live[pid]["uri"])) for pid in gone]
    kept = {pid: record for pid, record in live.items() if pid not in point_ids}
    if lines + len(gone) >= COMPACT_AFTER and lines + len(gone) >= 2 * len(kept):
        listed = "".join(json.dumps({"record": record, "point": pid}) + "\n" for pid, record in kept.items())
        atomic_write_text(folder / UPLOADS_LIST, listed)
    else:
        _append(folder, [{"forget": pid} for pid in gone])
    return files
