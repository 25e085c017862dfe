"""What a ``SOURCE`` argument names: a folder, a CSV/JSONL manifest or ``deepfashion2:<root>``.

>>> import tempfile, pathlib
>>> from PIL import Image
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> (root / "cat").mkdir(); Image.new("RGB", (8, 8)).save(root / "cat" / "a.png")
>>> source = load_source(str(root))
>>> [r.label for r in source.records], source.dataset, pathlib.Path(source.records[0].uri).is_absolute()
(['cat'], None, True)
>>> load_source(str(root), split="train")
Traceback (most recent call last):
...
percep_rag.errors.ConfigError: no image of split 'train' in ... (its images have no split; ...)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from percep_rag.datasets.deepfashion2 import DATASET_NAME, PAYLOAD_INDEXES, read_deepfashion2
from percep_rag.datasets.records import ImageRecord, load_records
from percep_rag.errors import ConfigError
from percep_rag.store.schema import PayloadType

#: Prefix of a DeepFashion2 source: ``deepfashion2:<root>``.
DEEPFASHION2_PREFIX = "deepfashion2:"


@dataclass(frozen=True)
class Source:
    """Records to index, the ``dataset`` payload value they default to and the payload indexes they need."""

    records: list[ImageRecord]
    dataset: str | None = None
    payload_indexes: dict[str, PayloadType] = field(default_factory=dict)


def load_source(source: str | Path, *, split: str | None = None) -> Source:
    """The records ``source`` names, only those of ``split`` when given.

    DeepFashion2 reads one split (``validation`` by default); a folder in the
    ``root/<split>/<label>/...`` layout or a manifest with a ``split`` column keeps the records
    of ``split``. Paths are made absolute: stored uris outlive the working directory. A path
    that does not exist, or a split no record has, is a :class:`~percep_rag.errors.ConfigError`.
    """
    text = str(source)
    if text.startswith(DEEPFASHION2_PREFIX):
        root = Path(text.removeprefix(DEEPFASHION2_PREFIX)).resolve()
        return Source(read_deepfashion2(root, split or "validation"), DATASET_NAME, dict(PAYLOAD_INDEXES))
    path = Path(text)
    if not path.exists():
        raise ConfigError(
            f"{text} does not exist (give a folder, a .csv/.jsonl manifest or {DEEPFASHION2_PREFIX}<root>)"
        )
    records = load_records(path.resolve())
    if split is None:
        return Source(records)
    kept = [record for record in records if record.split == split]
    if records and not kept:
        splits = sorted({record.split for record in records if record.split is not None})
        found = (
            f"its splits: {', '.join(splits)}"
            if splits
            else "its images have no split; a folder gets splits from root/<split>/<label>/..."
        )
        raise ConfigError(f"no image of split {split!r} in {text} ({found})")
    return Source(kept)
