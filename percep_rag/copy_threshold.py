"""What "near copy" means for a collection: a cosine threshold given, or calibrated from labelled
pairs and stored in the collection's metadata (shown by ``info``); without either, nothing is near.

:func:`near_copy_rule` says which threshold applies to a vector space; :func:`calibrate` chooses
one from labelled pairs' cosines (precision first, see there); :func:`calibrate_pairs` computes
those cosines in a collection's space and :func:`set_copy_threshold` stores the result. The
words themselves are defined in :mod:`percep_rag.duplicates`.

>>> calibrate([0.999, 0.97, 0.80], [True, False, False]).threshold
0.9845
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from percep_rag.errors import CalibrationError, ConfigError
from percep_rag.store import CollectionInfo, CopyThreshold, UnknownVectorNameError, VectorStore

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
    Nothing is stored: :func:`~percep_rag.copy_threshold.set_copy_threshold` does that.

    Example: ``calibrate_pairs(store, "catalog", read_pairs(read_table("pairs.csv"), "pairs.csv"))``
    """
    from datetime import UTC, datetime

    vectors = pair_vectors(store, collection, [i for p in pairs for i in (p.a, p.b)], using=using, embed=embed)
    scores = [cosine(vectors[p.a], vectors[p.b]) for p in pairs]
    when = datetime.now(UTC).isoformat(timespec="seconds")
    return calibrate(scores, [p.same for p in pairs], source=source, calibrated_at=when), scores


def set_copy_threshold(
    store: VectorStore, collection: str, using: str, threshold: CopyThreshold | None
) -> CollectionInfo:
    """Record (or, with ``None``, forget) the near-copy threshold of ``collection``'s ``using``
    vectors in its metadata; returns the updated metadata.

    Example: ``set_copy_threshold(store, "catalog", "aligned", calibrate_pairs(store, "catalog", pairs)[0])``
    """
    info = store.collection_info(collection)
    if using not in info.vectors:
        raise UnknownVectorNameError(f"collection {collection!r} has no {using!r} vectors ({', '.join(info.vectors)})")
    thresholds = {key: value for key, value in info.copy_thresholds.items() if key != using}
    if threshold is not None:
        thresholds[using] = threshold
    return store.update_collection_info(collection, copy_thresholds=thresholds)
