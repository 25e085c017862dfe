"""Duplicate images in a collection: exact (same pixels, other bytes) and near (similar vectors).

No all-pairs scan: every point asks the store for its ``neighbours`` nearest (the store's own
HNSW search, batched), pairs scoring at least ``threshold`` are joined by union-find, and each
group is then checked pixel by pixel.

What the words mean here:

* **near-duplicates**: cosine similarity >= ``threshold`` in the chosen space (``aligned`` by
  default: human-aligned vectors put re-encoded, resized and re-cropped copies of one photo
  closest). The default :data:`DEFAULT_THRESHOLD` is a starting point, not a law: choose it
  from a few labelled pairs with :func:`choose_threshold` (``duplicates --calibrate pairs.csv``).
* **exact duplicates**: members of a group whose decoded pixels are identical (RGB, same
  size: :func:`pixel_hash`), whatever the file bytes (PNG vs BMP vs lossless WebP, other
  metadata or compression). Pixel hashes are computed from the files at ``uri`` for group
  members only (no index-time field, so collections indexed before work unchanged); a file
  that cannot be read leaves its point a near-duplicate. A JPEG, even at quality 100, is not
  pixel-identical to its PNG source (lossy colour conversion): it is a near-duplicate,
  typically with similarity > 0.999.

Two files with the same bytes are already one point (ids are content hashes), so they never
show up here.

>>> find = UnionFind()
>>> find.union("a", "b"); find.union("c", "b"); find.union("d", "e")
>>> sorted(sorted(g) for g in find.groups())
[['a', 'b', 'c'], ['d', 'e']]
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from tqdm.auto import tqdm

from percep_rag.errors import ConfigError, ImageDecodeError
from percep_rag.io.images import decode_image
from percep_rag.store import VectorStore

#: Similarity at or above which two points are near-duplicates unless told otherwise.
DEFAULT_THRESHOLD = 0.97
#: Neighbours asked for per point: a point with more near-duplicates still joins them all
#: through the others (union-find is transitive).
DEFAULT_NEIGHBOURS = 10


class UnionFind:
    """Disjoint sets of hashable items (path halving); :meth:`groups` lists sets of 2+."""

    def __init__(self) -> None:
        self._parent: dict[str, str] = {}

    def find(self, item: str) -> str:
        parent = self._parent.setdefault(item, item)
        while parent != item:
            grand = self._parent[parent]
            self._parent[item] = grand
            item, parent = parent, self._parent[grand]
        return item

    def union(self, a: str, b: str) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a != root_b:
            self._parent[max(root_a, root_b)] = min(root_a, root_b)

    def groups(self) -> list[list[str]]:
        members: dict[str, list[str]] = {}
        for item in self._parent:
            members.setdefault(self.find(item), []).append(item)
        return [sorted(group) for group in members.values() if len(group) > 1]


def pixel_hash(source: str | bytes) -> str:
    """SHA-256 of the decoded RGB pixels and the size: equal for the same pixels in any format.

    >>> from PIL import Image
    >>> import io
    >>> image = Image.new("RGB", (4, 3), "red")
    >>> as_png, as_bmp = io.BytesIO(), io.BytesIO()
    >>> image.save(as_png, "PNG"); image.save(as_bmp, "BMP")
    >>> pixel_hash(as_png.getvalue()) == pixel_hash(as_bmp.getvalue())
    True
    """
    image = decode_image(source).convert("RGB")
    digest = hashlib.sha256(f"{image.width}x{image.height}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class Member:
    """A point of a duplicate group: its id, ``uri`` and ``label``, and its pixel hash (if read)."""

    id: str
    uri: str
    label: str | None
    pixels: str | None


@dataclass
class DuplicateGroup:
    """Points joined by similarity >= threshold. ``kind`` is ``exact`` when all have one pixel
    hash; ``exact_sets`` lists the member ids sharing a pixel hash (2+), in any group."""

    members: list[Member]
    min_score: float
    max_score: float
    kind: Literal["exact", "near"]
    exact_sets: list[list[str]] = field(default_factory=list)


@dataclass
class DuplicateReport:
    """All groups found in ``collection`` with the settings used."""

    collection: str
    using: str
    threshold: float
    points: int
    groups: list[DuplicateGroup]

    @property
    def duplicate_points(self) -> int:
        """Points beyond the first of each group (what removing duplicates would free)."""
        return sum(len(g.members) - 1 for g in self.groups)


def similar_pairs(
    store: VectorStore,
    collection: str,
    *,
    using: str = "aligned",
    threshold: float = DEFAULT_THRESHOLD,
    neighbours: int = DEFAULT_NEIGHBOURS,
    batch: int = 256,
    progress: bool = False,
) -> tuple[dict[tuple[str, str], float], dict[str, dict]]:
    """Every pair (a < b) of points with similarity >= ``threshold`` among each point's
    ``neighbours`` nearest, and the payload of every point seen; one batched query per ``batch``."""
    pairs: dict[tuple[str, str], float] = {}
    payloads: dict[str, dict] = {}
    total = store.count(collection)
    with tqdm(total=total, desc=f"neighbours in {collection}", unit="pt", disable=not progress) as bar:
        points = store.iterate(collection, batch=batch, with_vectors=True)
        while chunk := [p for _, p in zip(range(batch), points, strict=False)]:
            vectors = [p.vectors[using] for p in chunk]
            hits = store.query_batch(
                collection, vectors, using=using, k=neighbours, exclude_per_query=[[p.id] for p in chunk]
            )
            for point, row in zip(chunk, hits, strict=True):
                payloads[point.id] = point.payload
                for hit in row:
                    if hit.score >= threshold:
                        key = (min(point.id, hit.id), max(point.id, hit.id))
                        pairs[key] = max(pairs.get(key, -1.0), hit.score)
            bar.update(len(chunk))
    return pairs, payloads


def find_duplicates(
    store: VectorStore,
    collection: str,
    *,
    using: str = "aligned",
    threshold: float = DEFAULT_THRESHOLD,
    neighbours: int = DEFAULT_NEIGHBOURS,
    check_pixels: bool = True,
    progress: bool = False,
) -> DuplicateReport:
    """Groups of duplicate images in ``collection`` (see the module docstring), largest first.

    Example: ``find_duplicates(store, "catalog", threshold=0.98).groups[0].members``
    """
    if using not in store.collection_info(collection).vectors:
        raise ConfigError(f"collection {collection!r} has no {using!r} vectors")
    if not -1.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold is a cosine similarity in [-1, 1], got {threshold}")
    if neighbours < 1:
        raise ConfigError(f"neighbours must be >= 1, got {neighbours}")
    pairs, payloads = similar_pairs(
        store, collection, using=using, threshold=threshold, neighbours=neighbours, progress=progress
    )
    union = UnionFind()
    for a, b in pairs:
        union.union(a, b)
    groups = [_group(ids, pairs, payloads, check_pixels) for ids in union.groups()]
    groups.sort(key=lambda g: (-len(g.members), -g.max_score, g.members[0].uri))
    return DuplicateReport(collection, using, threshold, len(payloads), groups)


def _group(
    ids: list[str], pairs: dict[tuple[str, str], float], payloads: dict[str, dict], check: bool
) -> DuplicateGroup:
    members = []
    for pid in ids:
        payload = payloads.get(pid, {})
        uri = str(payload.get("uri", ""))
        pixels = None
        if check and uri:
            try:
                pixels = pixel_hash(uri)
            except ImageDecodeError:
                pixels = None  # moved or unreadable: the vectors alone say "near"
        members.append(Member(pid, uri, payload.get("label"), pixels))
    members.sort(key=lambda m: m.uri)
    scores = [s for (a, b), s in pairs.items() if a in set(ids) and b in set(ids)]
    by_pixels: dict[str, list[str]] = {}
    for m in members:
        if m.pixels is not None:
            by_pixels.setdefault(m.pixels, []).append(m.id)
    exact_sets = [sorted(s) for s in by_pixels.values() if len(s) > 1]
    exact = len(exact_sets) == 1 and len(exact_sets[0]) == len(members)
    return DuplicateGroup(members, min(scores), max(scores), "exact" if exact else "near", exact_sets)


def choose_threshold(same: Sequence[float], different: Sequence[float]) -> float:
    """The similarity threshold that best separates labelled pairs: most pairs right, and among
    equally good cuts the middle one (ties between a same and a different score
    cannot be separated; the cut keeps the different pair out).

    >>> choose_threshold([0.99, 0.985, 0.97], [0.80, 0.93, 0.95])
    0.96
    >>> choose_threshold([0.99], [])
    0.99
    """
    if not same:
        raise ConfigError("calibration needs at least one pair labelled as the same image")
    if not different:
        return float(min(same))
    scores = sorted(set(same) | set(different))
    cuts = [scores[0]] + [(lo + hi) / 2 for lo, hi in zip(scores, scores[1:], strict=False)] + [scores[-1] + 1e-6]

    def errors(cut: float) -> int:
        return sum(s < cut for s in same) + sum(d >= cut for d in different)

    best = min(errors(c) for c in cuts)
    good = [c for c in cuts if errors(c) == best]
    return round(float(good[len(good) // 2]), 6)


def pair_scores(
    store: VectorStore, collection: str, pairs: Iterable[tuple[str, str]], *, using: str = "aligned"
) -> list[float]:
    """Cosine similarity in ``using`` of each pair of stored point ids (for calibration)."""
    import numpy as np

    pairs = list(pairs)
    wanted = sorted({i for pair in pairs for i in pair})
    vectors = {p.id: p.vectors[using] for p in store.retrieve(collection, wanted, with_vectors=True)}
    missing = [i for i in wanted if i not in vectors]
    if missing:
        raise ConfigError(f"no point {missing[0]!r} in collection {collection!r}")

    def unit(v: np.ndarray) -> np.ndarray:
        return v / (np.linalg.norm(v) or 1.0)

    return [float(unit(vectors[a]) @ unit(vectors[b])) for a, b in pairs]
