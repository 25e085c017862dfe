"""VTAB-style classification tasks from a folder or a manifest.

Folder layout: ``root/<split>/<class name>/<image>`` (``train`` is the example pool,
``test`` the queries). A manifest (CSV / JSONL) needs ``label`` and ``split`` columns.

>>> import tempfile, pathlib
>>> from PIL import Image
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> for split in ("train", "test"):
...     (root / split / "cat").mkdir(parents=True)
...     Image.new("RGB", (8, 8)).save(root / split / "cat" / "0.png")
>>> task = read_task(root)
>>> task.class_names, len(task.pool), len(task.queries)
(['cat'], 1, 1)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from percep_rag.datasets.records import ImageRecord, read_manifest, scan_folder
from percep_rag.errors import ConfigError


@dataclass
class ClassificationTask:
    """An example pool and queries with labels; ``class_names`` sorted, from both splits."""

    name: str
    pool: list[ImageRecord]
    queries: list[ImageRecord]

    @property
    def class_names(self) -> list[str]:
        return sorted({r.label for r in self.pool + self.queries if r.label is not None})


def read_task(source: str | Path, *, pool_split: str = "train", query_split: str = "test") -> ClassificationTask:
    """Read a task from ``root/<split>/<class>/...`` or a manifest with ``label`` and ``split``."""
    source = Path(source)
    if source.is_dir():
        pool = _split_folder(source, pool_split)
        queries = _split_folder(source, query_split)
    else:
        records = read_manifest(source)
        pool = [r for r in records if r.split == pool_split]
        queries = [r for r in records if r.split == query_split]
    unlabelled = [r.id for r in pool + queries if r.label is None]
    if unlabelled:
        raise ConfigError(f"{source}: {len(unlabelled)} images have no label, e.g. {unlabelled[0]!r}")
    if not pool or not queries:
        raise ConfigError(
            f"{source}: need both a {pool_split!r} split (examples) and a {query_split!r} split (queries); "
            f"found {len(pool)} and {len(queries)} images"
        )
    return ClassificationTask(source.stem or source.name, pool, queries)


def _split_folder(root: Path, split: str) -> list[ImageRecord]:
    folder = root / split
    if not folder.is_dir():
        return []
    return [record.model_copy(update={"id": f"{split}/{record.id}", "split": split}) for record in scan_folder(folder)]
