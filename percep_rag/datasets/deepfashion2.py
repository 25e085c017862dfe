"""DeepFashion2 as image records, and its consumer-to-shop retrieval ground truth.

Layout (as released)::

    <root>/<split>/image/000001.jpg
    <root>/<split>/annos/000001.json   {"source": "user" | "shop", "pair_id": 1,
                                        "item1": {"style": 1, "category_id": 1,
                                                  "category_name": "short sleeve top",
                                                  "bounding_box": [x1, y1, x2, y2], ...},
                                        "item2": {...}, ...}

Images sharing a ``pair_id`` show the same outfits; within a pair, items with the same
``style`` > 0 are the same garment (an *instance*, written ``"pair_id:style"`` here).
``style`` 0 means the item has no correspondence. A customer (``user``) image matches a
shop image when they share an instance: that is the ground truth of consumer-to-shop
retrieval. Whole images are used (the paper's crop policy is not known).

>>> import json, tempfile, pathlib
>>> from PIL import Image
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> for stem, source in (("000001", "user"), ("000002", "shop")):
...     (root / "validation" / "image").mkdir(parents=True, exist_ok=True)
...     (root / "validation" / "annos").mkdir(exist_ok=True)
...     Image.new("RGB", (8, 8)).save(root / "validation" / "image" / f"{stem}.jpg")
...     item = {"style": 1, "category_id": 1, "category_name": "short sleeve top", "bounding_box": [0, 0, 8, 8]}
...     anno = {"source": source, "pair_id": 7, "item1": item}
...     _ = (root / "validation" / "annos" / f"{stem}.json").write_text(json.dumps(anno))
>>> records = read_deepfashion2(root)
>>> [(r.id, r.extra["source"], r.extra["instances"]) for r in records]
[('validation/000001', 'user', ['7:1']), ('validation/000002', 'shop', ['7:1'])]
>>> consumer_to_shop_ground_truth(records)
{'validation/000001': ['validation/000002']}
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from percep_rag.datasets.records import ImageRecord
from percep_rag.errors import ConfigError, PercepRagError
from percep_rag.store.schema import PayloadType

#: Name of the ``dataset`` payload field for DeepFashion2 records.
DATASET_NAME = "deepfashion2"
#: DeepFashion2's ``source`` values: customer photos are queries, shop photos the gallery.
QUERY_SOURCE = "user"
GALLERY_SOURCE = "shop"
#: Payload indexes for the fields DeepFashion2 evaluations and searches filter on.
PAYLOAD_INDEXES: dict[str, PayloadType] = {"source": "keyword", "pair_id": "integer", "instances": "keyword"}

_ITEM_KEY = re.compile(r"^item(\d+)$")
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG")


class DeepFashion2Error(PercepRagError, ValueError):
    """The DeepFashion2 folder or one of its annotation files is not as released; the
    message names the file."""


def instance_id(pair_id: int, style: int) -> str:
    """The id of one garment instance: ``"pair_id:style"`` (``style`` > 0).

    >>> instance_id(12, 2)
    '12:2'
    """
    return f"{pair_id}:{style}"


def read_deepfashion2(
    root: str | Path,
    split: str = "validation",
    *,
    max_pairs: int | None = None,
    sources: Iterable[str] = (QUERY_SOURCE, GALLERY_SOURCE),
) -> list[ImageRecord]:
    """One record per annotated image of ``<root>/<split>``, sorted by file name.

    Record ids are ``"<split>/<stem>"``; ``label`` is the first item's category name;
    ``split`` is ``split``. The payload (``extra``) holds ``source``, ``pair_id``,
    ``styles``, ``category_ids``, ``categories``, ``bounding_boxes`` (one entry per
    item, in item order) and ``instances`` (``"pair_id:style"`` for each item with
    style > 0, sorted, unique). ``max_pairs`` keeps the images of the first N pair ids
    (in sorted order) for quick runs; ``sources`` keeps only those sources.

    Raises :class:`DeepFashion2Error` naming the file for a malformed annotation or an
    annotation without its image, and :class:`~percep_rag.errors.ConfigError` for a
    missing folder.

    >>> read_deepfashion2("/nonexistent")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    percep_rag.errors.ConfigError: ...no DeepFashion2 annotations folder...
    """
    if max_pairs is not None and max_pairs < 1:
        raise ConfigError(f"max_pairs must be >= 1, got {max_pairs}")
    wanted_sources = set(sources)
    unknown = wanted_sources - {QUERY_SOURCE, GALLERY_SOURCE}
    if unknown:
        raise ConfigError(f"DeepFashion2 sources are 'user' and 'shop', got {sorted(unknown)}")
    split_dir = Path(root) / split
    annos, images = split_dir / "annos", split_dir / "image"
    if not annos.is_dir():
        raise ConfigError(
            f"no DeepFashion2 annotations folder {annos} (expected <root>/<split>/annos/*.json; "
            "the test split ships without annotations)"
        )
    if not images.is_dir():
        raise ConfigError(f"no DeepFashion2 image folder {images} (expected <root>/<split>/image/*.jpg)")
    records = [_record(path, images, split) for path in sorted(annos.glob("*.json"))]
    records = [r for r in records if r.extra["source"] in wanted_sources]
    if max_pairs is not None:
        keep = set(sorted({r.extra["pair_id"] for r in records})[:max_pairs])
        records = [r for r in records if r.extra["pair_id"] in keep]
    return records


def consumer_to_shop_ground_truth(records: Sequence[ImageRecord]) -> dict[str, list[str]]:
    """For each customer (``user``) record with at least one matching shop record, the ids
    of the shop records sharing one of its instances (sorted); the ``df2_gt.json`` map.

    Records without the DeepFashion2 payload (``source``, ``instances``) raise
    :class:`DeepFashion2Error`.
    """
    by_instance: dict[str, list[str]] = defaultdict(list)
    queries: list[tuple[str, list[str]]] = []
    for record in records:
        source, instances = _source_and_instances(record)
        if source == GALLERY_SOURCE:
            for instance in instances:
                by_instance[instance].append(record.id)
        elif source == QUERY_SOURCE:
            queries.append((record.id, instances))
    truth = {}
    for query_id, instances in queries:
        matches = sorted({shop for instance in instances for shop in by_instance.get(instance, ())})
        if matches:
            truth[query_id] = matches
    return truth


def _source_and_instances(record: ImageRecord) -> tuple[str, list[str]]:
    source, instances = record.extra.get("source"), record.extra.get("instances")
    if not isinstance(source, str) or not isinstance(instances, list):
        raise DeepFashion2Error(f"record {record.id!r} has no DeepFashion2 'source'/'instances' payload")
    return source, instances


def _record(annotation: Path, images: Path, split: str) -> ImageRecord:
    anno = _load_json(annotation)
    source = anno.get("source")
    if source not in (QUERY_SOURCE, GALLERY_SOURCE):
        raise DeepFashion2Error(f"{annotation}: 'source' must be 'user' or 'shop', got {source!r}")
    pair_id = _int_field(anno, "pair_id", annotation)
    items = _items(anno, annotation)
    image = _image_for(annotation.stem, images, annotation)
    styles = [item["style"] for item in items]
    extra: dict[str, Any] = {
        "source": source,
        "pair_id": pair_id,
        "styles": styles,
        "category_ids": [item["category_id"] for item in items],
        "categories": [item["category_name"] for item in items],
        "bounding_boxes": [item["bounding_box"] for item in items],
        "instances": sorted({instance_id(pair_id, style) for style in styles if style > 0}),
    }
    return ImageRecord(
        id=f"{split}/{annotation.stem}",
        uri=str(image),
        label=items[0]["category_name"] if items else None,
        split=split,
        extra=extra,
    )


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise DeepFashion2Error(f"{path}: not valid JSON ({error.msg} at line {error.lineno})") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DeepFashion2Error(f"{path}: cannot be read ({error})") from None
    if not isinstance(data, dict):
        raise DeepFashion2Error(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def _int_field(data: Mapping[str, Any], key: str, path: Path, where: str = "") -> int:
    value = data.get(key)
    # bool is an int in Python, but never a valid id or style.
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise DeepFashion2Error(f"{path}: {where}{key!r} must be a non-negative integer, got {value!r}")
    return value


def _items(anno: Mapping[str, Any], path: Path) -> list[dict[str, Any]]:
    numbered = []
    for key, value in anno.items():
        match = _ITEM_KEY.match(key)
        if match is None:
            continue
        where = f"{key}: "
        if not isinstance(value, dict):
            raise DeepFashion2Error(f"{path}: {key} must be an object, got {type(value).__name__}")
        style = _int_field(value, "style", path, where)
        category_id = _int_field(value, "category_id", path, where)
        name = value.get("category_name")
        if not isinstance(name, str) or not name:
            raise DeepFashion2Error(f"{path}: {where}'category_name' must be a non-empty string, got {name!r}")
        box = value.get("bounding_box")
        if not (isinstance(box, list) and len(box) == 4 and all(_is_number(v) for v in box)):
            raise DeepFashion2Error(f"{path}: {where}'bounding_box' must be [x1, y1, x2, y2], got {box!r}")
        item = {"style": style, "category_id": category_id, "category_name": name, "bounding_box": box}
        numbered.append((int(match.group(1)), item))
    if not numbered:
        raise DeepFashion2Error(f"{path}: no item1, item2, ... entries")
    return [item for _, item in sorted(numbered, key=lambda pair: pair[0])]


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _image_for(stem: str, images: Path, annotation: Path) -> Path:
    for suffix in _IMAGE_SUFFIXES:
        candidate = images / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    raise DeepFashion2Error(f"{annotation}: no image {images / stem}.jpg for this annotation")
