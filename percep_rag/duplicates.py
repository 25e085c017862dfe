"""Copies of images in a collection: exact (the same pixels) and near (a calibrated cosine).

What the words mean here, everywhere percep-rag says "copy" (``duplicates``, the copy marks of
``search``, ``show``, the HTTP API and page, LangChain):

* **exact copy**: the same decoded pixels (:func:`pixel_hash`: RGB, same size), whatever the
  file's bytes (PNG vs BMP vs lossless WebP, other metadata or compression); and, first of all,
  the several files of one point (byte-identical files are one point whose payload lists every
  one, :func:`percep_rag.point_records.payload_records`). Indexing stores each point's
  ``pixel_hash``; a point indexed before that gets it on the next ``index`` / ``sync``, or
  from its file on demand (:mod:`percep_rag.pixel_backfill`). A JPEG re-encode, even at quality
  100, is not pixel-identical: at most a near copy.
* **near copy**: cosine similarity at or above a threshold **chosen for this collection's
  space**: given explicitly (``--threshold`` / ``--duplicate-threshold``, the API's
  ``duplicate_threshold``) or calibrated from labelled pairs (:func:`calibrate`,
  ``duplicates --calibrate pairs.csv``) and stored in the collection's metadata
  (:func:`~percep_rag.copy_threshold.set_copy_threshold`, shown by ``info``). Without either,
  nothing is a near copy: cosines are not comparable across backbones (a random tiny ViT puts
  any two dark images above 0.98; CLIP puts white-background shots of different products above
  0.9), so no fixed number can say "the same image".

Grouping (:func:`find_duplicates`) never chains: exact groups are points of one pixel hash;
a near group is a representative and the units (points or exact groups) each within the
threshold **of the representative** (greedy leader clustering over the store's own nearest
neighbours, no all-pairs scan), so A~B and B~C never put A and C together unless A~C too.

>>> groups = leader_groups({"a": 1, "b": 1, "c": 1}, {("a", "b"): 0.95, ("b", "c"): 0.95}, 0.9)
>>> groups  # a chain a~b~c: b leads (most neighbours) and takes both, each within 0.9 of b
[('b', ['a', 'c'])]
>>> leader_groups({"a": 1, "b": 1, "c": 1, "d": 1}, {("a", "b"): 0.95, ("c", "d"): 0.92, ("b", "c"): 0.91}, 0.9)
[('b', ['a', 'c']), ('d', [])]
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from tqdm.auto import tqdm

from percep_rag.copy_threshold import (  # the near-copy rule and its calibration, re-exported
    LabelledPair as LabelledPair,
)
from percep_rag.copy_threshold import NearCopyRule as NearCopyRule
from percep_rag.copy_threshold import calibrate as calibrate
from percep_rag.copy_threshold import calibrate_pairs as calibrate_pairs
from percep_rag.copy_threshold import copy_rule_json as copy_rule_json
from percep_rag.copy_threshold import near_copy_rule
from percep_rag.copy_threshold import pair_scores as pair_scores
from percep_rag.copy_threshold import read_pairs as read_pairs
from percep_rag.copy_threshold import set_copy_threshold as set_copy_threshold
from percep_rag.errors import ConfigError
from percep_rag.io.decode import decode_image
from percep_rag.io.images import ImageSource
from percep_rag.io.pixel_hash import image_pixel_hash
from percep_rag.pixel_backfill import known_pixel_hash
from percep_rag.point_records import payload_records
from percep_rag.store import VectorStore

#: Neighbours asked for per point when looking for near copies (each near copy of a
#: representative must be among its nearest this many to join its group).
DEFAULT_NEIGHBOURS = 10


def pixel_hash(source: ImageSource) -> str:
    """The pixel hash of an image: SHA-256 of ``"{width}x{height}:"`` and its decoded 8-bit RGB
    bytes (row-major; EXIF orientation applied, 16-bit reduced to 8, transparency composited on
    white, exactly as the embedder decodes it; :mod:`percep_rag.io.pixel_hash`). Equal for the
    same pixels in any lossless format; a resize, crop or lossy re-encode changes it.

    >>> from PIL import Image
    >>> import io
    >>> image = Image.new("RGB", (4, 3), "red")
    >>> as_png, as_bmp = io.BytesIO(), io.BytesIO()
    >>> image.save(as_png, "PNG"); image.save(as_bmp, "BMP")
    >>> pixel_hash(as_png.getvalue()) == pixel_hash(as_bmp.getvalue())
    True
    """
    return image_pixel_hash(decode_image(source))


# --------------------------------------------------------------------------- grouping


@dataclass(frozen=True)
class Member:
    """A point of a group: its id, primary ``uri`` and ``label``, pixel hash (if known), every
    file it stands for (``files``: uris), and its cosine to the group's representative
    (``score``; ``None`` for the representative and in exact groups)."""

    id: str
    uri: str
    label: str | None
    pixels: str | None
    files: list[str] = field(default_factory=list)
    score: float | None = None


@dataclass
class DuplicateGroup:
    """Copies of one image: ``exact`` (one pixel hash: a point's several files and the points
    of the same pixels) or ``near`` (each member within the threshold of the representative,
    ``members[0]``). ``exact_sets`` lists the member ids sharing a pixel hash (2+), in any group;
    ``min_score`` / ``max_score`` span the members' cosines to the representative (``None``
    for an exact group)."""

    members: list[Member]
    kind: Literal["exact", "near"]
    min_score: float | None = None
    max_score: float | None = None
    exact_sets: list[list[str]] = field(default_factory=list)

    @property
    def files(self) -> int:
        """How many files the group names (several per point where byte-identical files share one)."""
        return sum(len(m.files) for m in self.members)


@dataclass
class DuplicateReport:
    """All groups found in ``collection``, with the rule used: ``threshold`` and its
    ``threshold_source`` (both ``None`` when near copies were not looked for)."""

    collection: str
    using: str
    threshold: float | None
    threshold_source: str | None
    points: int
    files: int
    groups: list[DuplicateGroup]
    hashes_computed: int = 0
    hashes_missing: int = 0

    @property
    def duplicate_files(self) -> int:
        """Files beyond the first of each group (what removing copies would free)."""
        return sum(g.files - 1 for g in self.groups)

    @property
    def duplicate_points(self) -> int:
        """Points beyond the first of each group."""
        return sum(len(g.members) - 1 for g in self.groups)

    def rule(self) -> str:
        """What "copy" meant in this report, one line."""
        exact = "exact: same pixels"
        if self.threshold is None:
            return f"{exact}; near: not looked for (no threshold given or calibrated: --threshold, --calibrate)"
        return f"{exact}; near: {self.using} cosine >= {self.threshold:.4f} ({self.threshold_source})"


def similar_pairs(
    store: VectorStore,
    collection: str,
    *,
    using: str = "aligned",
    threshold: float,
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


def leader_groups(
    weights: Mapping[str, int],
    pairs: Mapping[tuple[str, str], float],
    threshold: float,
    names: Mapping[str, str] | None = None,
) -> list[tuple[str, list[str]]]:
    """Greedy leader clustering without chaining: units with the most neighbours at or above
    ``threshold`` lead first (ties: heavier ``weights``, then ``names``, e.g. uris, else the
    unit itself); a leader takes every still unassigned unit within ``threshold`` **of itself**.
    Returns ``(leader, members)`` for every unit that had a neighbour (members may be empty
    when its neighbours were taken)."""
    neighbours: dict[str, dict[str, float]] = {}
    for (a, b), score in pairs.items():
        if a != b and score >= threshold:
            neighbours.setdefault(a, {})[b] = max(score, neighbours.get(a, {}).get(b, -1.0))
            neighbours.setdefault(b, {})[a] = max(score, neighbours.get(b, {}).get(a, -1.0))
    order = sorted(neighbours, key=lambda u: (-len(neighbours[u]), -weights.get(u, 1), (names or {}).get(u, u), u))
    taken: set[str] = set()
    groups = []
    for leader in order:
        if leader in taken:
            continue
        taken.add(leader)
        members = sorted(u for u in neighbours[leader] if u not in taken)
        taken.update(members)
        groups.append((leader, members))
    return groups


def find_duplicates(
    store: VectorStore,
    collection: str,
    *,
    using: str = "aligned",
    threshold: float | None = None,
    threshold_source: str = "given",
    neighbours: int = DEFAULT_NEIGHBOURS,
    progress: bool = False,
) -> DuplicateReport:
    """Groups of copies in ``collection`` (see the module docstring), largest first.

    Exact groups always; near groups only with a rule: ``threshold`` (its source
    ``threshold_source``), else the one calibrated for ``using`` in the collection's metadata.

    Example: ``find_duplicates(store, "catalog").groups[0].members[0].files``
    """
    if using not in store.collection_info(collection).vectors:
        raise ConfigError(f"collection {collection!r} has no {using!r} vectors")
    if neighbours < 1:
        raise ConfigError(f"neighbours must be >= 1, got {neighbours}")
    rule = near_copy_rule(store, collection, using, threshold, given_as=threshold_source)
    if rule is None:
        pairs: dict[tuple[str, str], float] = {}
        payloads = {p.id: p.payload for p in store.iterate(collection, batch=512)}
    else:
        pairs, payloads = similar_pairs(
            store, collection, using=using, threshold=rule.threshold, neighbours=neighbours, progress=progress
        )
    hashes, computed = _pixel_hashes(payloads, progress)
    members = {pid: _member(pid, payload, hashes.get(pid)) for pid, payload in payloads.items()}
    units = _units(members)  # unit id (its first point) -> its point ids, one pixel hash each
    unit_of = {pid: unit for unit, ids in units.items() for pid in ids}
    groups: list[DuplicateGroup] = []
    grouped: set[str] = set()
    if rule is not None:
        unit_pairs: dict[tuple[str, str], float] = {}
        for (a, b), score in pairs.items():
            ua, ub = unit_of[a], unit_of[b]
            if ua != ub:
                key = (min(ua, ub), max(ua, ub))
                unit_pairs[key] = max(unit_pairs.get(key, -1.0), score)
        weights = {unit: sum(len(members[p].files) for p in ids) for unit, ids in units.items()}
        uris = {unit: members[unit].uri for unit in units}
        for leader, near in leader_groups(weights, unit_pairs, rule.threshold, uris):
            if not near:
                continue
            scores = {u: unit_pairs[(min(leader, u), max(leader, u))] for u in near}
            group_members = [members[p] for p in units[leader]]
            for unit in sorted(near, key=lambda u: (-scores[u], members[u].uri)):
                group_members += [_scored(members[p], scores[unit]) for p in units[unit]]
            exact_sets = [sorted(units[u]) for u in [leader, *near] if len(units[u]) > 1]
            groups.append(DuplicateGroup(group_members, "near", min(scores.values()), max(scores.values()), exact_sets))
            grouped.update([leader, *near])
    for unit, ids in units.items():
        files = sum(len(members[p].files) for p in ids)
        if unit not in grouped and files > 1:
            chosen = sorted((members[p] for p in ids), key=lambda m: m.uri)
            groups.append(DuplicateGroup(chosen, "exact", exact_sets=[sorted(ids)] if len(ids) > 1 else []))
    groups.sort(key=lambda g: (-g.files, g.kind, g.members[0].uri))
    return DuplicateReport(
        collection,
        using,
        None if rule is None else rule.threshold,
        None if rule is None else rule.source,
        len(payloads),
        sum(len(m.files) for m in members.values()),
        groups,
        hashes_computed=computed,
        hashes_missing=sum(1 for pid in payloads if not hashes.get(pid)),
    )


def _pixel_hashes(payloads: Mapping[str, Mapping[str, Any]], progress: bool) -> tuple[dict[str, str | None], int]:
    """Each point's pixel hash: stored, else from its file (threads: decoding releases the GIL)."""
    hashes: dict[str, str | None] = {pid: p.get("pixel_hash") or None for pid, p in payloads.items()}
    todo = [pid for pid, digest in hashes.items() if digest is None]
    if todo:
        workers = max(1, min(8, os.cpu_count() or 1))
        with ThreadPoolExecutor(workers) as pool:
            found = pool.map(lambda pid: known_pixel_hash(payloads[pid]), todo)
            for pid, digest in tqdm(
                zip(todo, found, strict=True), total=len(todo), desc="pixel hashes", disable=not progress
            ):
                hashes[pid] = digest
    return hashes, sum(1 for pid in todo if hashes[pid])


def _member(pid: str, payload: Mapping[str, Any], pixels: str | None) -> Member:
    records = payload_records(payload)
    files = [str(r.get("uri", "")) for r in records if r.get("uri")]
    uri = str(payload.get("uri", ""))
    return Member(pid, uri, payload.get("label"), pixels, files or [uri])


def _scored(member: Member, score: float) -> Member:
    return Member(member.id, member.uri, member.label, member.pixels, member.files, score)


def _units(members: Mapping[str, Member]) -> dict[str, list[str]]:
    """Points grouped by pixel hash (a point without one is a unit alone), keyed by their first id."""
    by_pixels: dict[str, list[str]] = {}
    units: dict[str, list[str]] = {}
    for pid in sorted(members, key=lambda p: (members[p].uri, p)):
        pixels = members[pid].pixels
        if pixels is None:
            units[pid] = [pid]
        else:
            by_pixels.setdefault(pixels, []).append(pid)
    for ids in by_pixels.values():
        units[ids[0]] = ids
    return units
