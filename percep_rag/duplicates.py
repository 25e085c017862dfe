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
  (:meth:`~percep_rag.store.VectorStore.set_copy_threshold`, shown by ``info``). Without either,
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
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from tqdm.auto import tqdm

from percep_rag.errors import CalibrationError, ConfigError
from percep_rag.io.decode import decode_image
from percep_rag.io.images import ImageSource
from percep_rag.io.pixel_hash import image_pixel_hash
from percep_rag.pixel_backfill import known_pixel_hash
from percep_rag.point_records import payload_records
from percep_rag.store import CopyThreshold, VectorStore

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


# --------------------------------------------------------------------------- the near-copy rule


@dataclass(frozen=True)
class NearCopyRule:
    """The threshold at or above which a hit is a near copy, and where it came from (one line)."""

    threshold: float
    source: str


def copy_rule_json(rule: NearCopyRule | None) -> dict[str, Any]:
    """The copy marks' rule as JSON (search output, the API's ``copies``).

    >>> copy_rule_json(None)
    {'exact': 'same pixels', 'near_threshold': None, 'near_source': None}
    """
    return {
        "exact": "same pixels",
        "near_threshold": None if rule is None else rule.threshold,
        "near_source": None if rule is None else rule.source,
    }


def check_threshold(threshold: float) -> float:
    """``threshold`` if it is a cosine similarity in [-1, 1] (else :class:`ConfigError`)."""
    if isinstance(threshold, bool) or not isinstance(threshold, int | float) or not -1.0 <= threshold <= 1.0:
        raise ConfigError(f"a copy threshold is a cosine similarity in [-1, 1], got {threshold!r}")
    return float(threshold)


def near_copy_rule(
    store: VectorStore, collection: str, using: str, threshold: float | None = None, *, given_as: str = "given"
) -> NearCopyRule | None:
    """The near-copy rule for ``using`` vectors of ``collection``: ``threshold`` when given (its
    source ``given_as``), else the one calibrated and stored for that space, else ``None``
    (nothing is near).

    >>> from percep_rag.store import open_store
    >>> near_copy_rule(open_store(":memory:"), "any", "aligned", 0.95, given_as="--threshold")
    NearCopyRule(threshold=0.95, source='--threshold')
    """
    if threshold is not None:
        return NearCopyRule(check_threshold(threshold), given_as)
    stored = store.collection_info(collection).copy_thresholds.get(using)
    if stored is None:
        return None
    return NearCopyRule(stored.threshold, f"calibrated from {stored.source or 'labelled pairs'} ({stored.pairs} pairs)")


# --------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class LabelledPair:
    """Two images and whether they are the same image (``same``); ``a``/``b`` name them."""

    a: str
    b: str
    same: bool


def calibrate(
    scores: Sequence[float], same: Sequence[bool], *, source: str = "", calibrated_at: str = ""
) -> CopyThreshold:
    """The near-copy threshold for labelled pairs of cosine ``scores`` (``same[i]``: pair ``i``
    is one image), with its precision and recall on those pairs.

    The rule, precision first: the threshold is the midpoint between the most similar pair of
    **different** images and the least similar pair of the **same** image that scores above it.
    No labelled different pair is then a near copy (precision 1 on the pairs) and the same pairs
    above it are (the recall); the midpoint leaves a margin on both sides. A catalog team acts on
    a copy mark (merges two products), so calling two different items the same is the costly
    error; a missed near copy is still found by search, one rank away. Maximising balanced
    accuracy instead would trade that precision for recall whenever the classes overlap.

    Raises :class:`ConfigError` without a pair of each kind, and
    :class:`~percep_rag.errors.CalibrationError` when no same pair scores above every different
    pair (this space cannot tell those copies apart).

    >>> t = calibrate([0.99, 0.985, 0.97, 0.80, 0.93, 0.95], [True, True, True, False, False, False])
    >>> t.threshold, t.precision, t.recall
    (0.96, 1.0, 1.0)
    >>> calibrate([0.99, 0.94, 0.95], [True, True, False]).recall  # 0.94 falls below a different pair
    0.5
    """
    if len(scores) != len(same):
        raise ConfigError(f"{len(scores)} scores for {len(same)} labels")
    alike = [float(s) for s, y in zip(scores, same, strict=True) if y]
    unlike = [float(s) for s, y in zip(scores, same, strict=True) if not y]
    if not alike or not unlike:
        raise ConfigError(
            "calibration needs pairs of both kinds: at least one of the same image (same=1) and one of "
            f"two different images (same=0); got {len(alike)} same and {len(unlike)} different"
        )
    highest_different = max(unlike)
    above = [s for s in alike if s > highest_different]
    if not above:
        raise CalibrationError(
            f"no threshold separates these pairs: every same pair scores at or below the most similar different pair "
            f"(cosine {highest_different:.4f}); this space cannot tell those copies apart"
        )
    threshold = round((highest_different + min(above)) / 2, 6)
    true_positive = sum(s >= threshold for s in alike)
    marked = true_positive + sum(s >= threshold for s in unlike)
    return CopyThreshold(
        threshold=threshold,
        pairs=len(scores),
        same=len(alike),
        different=len(unlike),
        precision=true_positive / marked,
        recall=true_positive / len(alike),
        source=source,
        calibrated_at=calibrated_at,
    )


def pair_scores(
    store: VectorStore, collection: str, pairs: Iterable[tuple[str, str]], *, using: str = "aligned"
) -> list[float]:
    """Cosine similarity in ``using`` of each pair of stored point ids (for calibration)."""
    pairs = list(pairs)
    wanted = sorted({i for pair in pairs for i in pair})
    vectors = {p.id: p.vectors[using] for p in store.retrieve(collection, wanted, with_vectors=True)}
    missing = [i for i in wanted if i not in vectors]
    if missing:
        raise ConfigError(f"no point {missing[0]!r} in collection {collection!r}")
    return [cosine(vectors[a], vectors[b]) for a, b in pairs]


def cosine(a: Any, b: Any) -> float:
    """Cosine similarity of two vectors.

    >>> cosine([1.0, 0.0], [2.0, 0.0])
    1.0
    """
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / ((np.linalg.norm(a) * np.linalg.norm(b)) or 1.0))


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


def read_pairs(rows: Iterable[tuple[int, Any]], where: str) -> list[LabelledPair]:
    """Labelled pairs from table rows (``(line, row dict)``, as :func:`percep_rag.io.tables.read_table`
    yields): columns ``image_a``, ``image_b`` (or ``a``, ``b``) and ``same`` (1/0, yes/no, true/false).
    Raises :class:`ConfigError` naming ``where`` and the line for anything else.

    >>> read_pairs([(2, {"image_a": "x.png", "image_b": "y.png", "same": "1"})], "pairs.csv")
    [LabelledPair(a='x.png', b='y.png', same=True)]
    >>> read_pairs([(2, {"image_a": "x.png", "image_b": "y.png", "same": "maybe"})], "pairs.csv")
    Traceback (most recent call last):
    ...
    percep_rag.errors.ConfigError: pairs.csv:2: same must be 1 or 0 (yes/no, true/false), got 'maybe'
    """
    truthy, falsy = {"1", "true", "yes", "y", "same"}, {"0", "false", "no", "n", "different"}
    pairs = []
    for line, row in rows:
        if not isinstance(row, Mapping):
            raise ConfigError(f"{where}:{line}: expected columns image_a, image_b, same")
        a, b = row.get("image_a", row.get("a")), row.get("image_b", row.get("b"))
        if a in (None, "") or b in (None, "") or "same" not in row:
            got = ", ".join(row) or "none"
            raise ConfigError(f"{where}:{line}: need columns image_a, image_b and same (got {got})")
        label = str(row["same"]).strip().lower()
        if label not in truthy | falsy:
            raise ConfigError(f"{where}:{line}: same must be 1 or 0 (yes/no, true/false), got {row['same']!r}")
        pairs.append(LabelledPair(str(a), str(b), label in truthy))
    if not pairs:
        raise ConfigError(f"{where}: no pairs (a header image_a,image_b,same and one row per pair)")
    return pairs


def pair_vectors(
    store: VectorStore,
    collection: str,
    images: Sequence[str],
    *,
    using: str = "aligned",
    embed: Callable[[list[str]], Any] | None = None,
) -> dict[str, Any]:
    """The ``using`` vector of each image of labelled pairs: the stored point of its bytes (its
    content id), else the stored point whose ``uri`` it is, else ``embed(paths)`` (the
    collection's embedder; images outside the collection are calibration data too).

    Raises :class:`ConfigError` for an image that is neither stored nor readable, or when one
    needs embedding and no ``embed`` is given.
    """
    from percep_rag.catalog import matching_ids, uri_forms
    from percep_rag.errors import ImageDecodeError
    from percep_rag.io.sources import read_image_bytes
    from percep_rag.store import content_hash, point_id

    wanted: dict[str, str] = {}
    unstored: list[str] = []
    for image in dict.fromkeys(images):
        try:
            pid = point_id(content_hash(read_image_bytes(image)), collection)
        except ImageDecodeError:
            pid = None
        if pid is None or not store.existing_ids(collection, [pid]):
            found = matching_ids(store, collection, uris=[uri_forms(image)])
            if found:
                pid = found[0]
            elif pid is None:
                raise ConfigError(f"{image}: not a stored image of {collection!r} and not a readable file")
            else:
                unstored.append(image)
                continue
        wanted[image] = pid
    vectors = {}
    if wanted:
        points = store.retrieve(collection, sorted(set(wanted.values())), with_vectors=True)
        stored = {p.id: p.vectors[using] for p in points}
        vectors = {image: stored[pid] for image, pid in wanted.items()}
    if unstored:
        if embed is None:
            raise ConfigError(f"{unstored[0]}: not in collection {collection!r}, and no embedder to embed it with")
        vectors.update(zip(unstored, embed(unstored), strict=True))
    return vectors


def calibrate_pairs(
    store: VectorStore,
    collection: str,
    pairs: Sequence[LabelledPair],
    *,
    using: str = "aligned",
    embed: Callable[[list[str]], Any] | None = None,
    source: str = "",
) -> tuple[CopyThreshold, list[float]]:
    """The near-copy threshold :func:`calibrate` chooses for labelled ``pairs`` in ``using``
    space of ``collection`` (vectors from :func:`pair_vectors`), and each pair's cosine.
    Nothing is stored: :meth:`~percep_rag.store.VectorStore.set_copy_threshold` does that.

    Example: ``calibrate_pairs(store, "catalog", read_pairs(read_table("pairs.csv"), "pairs.csv"))``
    """
    from datetime import UTC, datetime

    vectors = pair_vectors(store, collection, [i for p in pairs for i in (p.a, p.b)], using=using, embed=embed)
    scores = [cosine(vectors[p.a], vectors[p.b]) for p in pairs]
    when = datetime.now(UTC).isoformat(timespec="seconds")
    return calibrate(scores, [p.same for p in pairs], source=source, calibrated_at=when), scores
