"""The query's copies among its hits: marked in a search, dropped in few-shot retrieval.

:func:`mark_copies` sets ``copy_of_query`` on the hits of one query (``"exact"``: the query's
pixel hash, :func:`query_pixel_hash`; ``"near"``: the rule
:func:`~percep_rag.copy_threshold.near_copy_rule` gives); :func:`drop_query_copies` drops the
query's file, pixels and vector instead (the few-shot rule of
:class:`~percep_rag.retrieval.ExampleRetriever`). What the words mean is in :mod:`percep_rag.duplicates`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from percep_rag.copy_threshold import NearCopyRule
from percep_rag.io.images import decode_image
from percep_rag.io.pixel_hash import image_pixel_hash
from percep_rag.pixel_backfill import known_pixel_hash
from percep_rag.point_records import payload_records
from percep_rag.store import ScoredPoint

if TYPE_CHECKING:
    from percep_rag.embedder import ImageInput

#: A hit without a stored pixel hash (a point indexed before hashes were recorded) has its file
#: decoded for one only when it scores at least this: a cost cut, not a copy criterion (the same
#: pixels embed to the same vector up to float rounding, cosine > 0.999 in any space).
ON_DEMAND_PIXELS_MIN_SCORE = 0.99


def mark_copies(hits: list[ScoredPoint], query_pixels: str | None, rule: NearCopyRule | None) -> list[ScoredPoint]:
    """``hits`` with ``copy_of_query`` (and ``duplicate_of_query``) set: ``"exact"`` when a hit's
    pixel hash is ``query_pixels``, else ``"near"`` when ``rule`` says its score is near enough.

    >>> hits = [ScoredPoint("a", 0.99, {"pixel_hash": "ab"}), ScoredPoint("b", 0.98, {}), ScoredPoint("c", 0.5, {})]
    >>> [h.copy_of_query for h in mark_copies(hits, "ab", NearCopyRule(0.97, "given"))]
    ['exact', 'near', None]
    >>> [h.copy_of_query for h in mark_copies(hits, "ab", None)]  # no threshold: nothing is near
    ['exact', None, None]
    """
    marked = []
    for hit in hits:
        copy = None
        if query_pixels is not None and _hit_pixels(hit) == query_pixels:
            copy = "exact"
        elif rule is not None and hit.score >= rule.threshold:
            copy = "near"
        marked.append(replace(hit, copy_of_query=copy, duplicate_of_query=copy is not None))
    return marked


def _hit_pixels(hit: ScoredPoint) -> str | None:
    stored = hit.payload.get("pixel_hash")
    if stored:
        return str(stored)
    return known_pixel_hash(hit.payload) if hit.score >= ON_DEMAND_PIXELS_MIN_SCORE else None


def query_pixel_hash(image: ImageInput) -> str | None:
    """The pixel hash of a query image: of a file, bytes, a PIL image or a ``uint8``
    ``(H, W[, 3|4])`` array; ``None`` for a tensor or another array (no 8-bit pixels).

    >>> import numpy as np
    >>> query_pixel_hash(np.zeros((2, 2, 3), np.uint8)) == query_pixel_hash(np.zeros((2, 2, 3), np.uint8))
    True
    >>> query_pixel_hash(np.zeros((2, 2, 3), np.float32)) is None
    True
    """
    if isinstance(image, torch.Tensor):
        return None
    if isinstance(image, np.ndarray):
        shaped = image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))
        if image.dtype != np.uint8 or not shaped:
            return None
        from PIL import Image

        image = Image.fromarray(image)
    return image_pixel_hash(decode_image(image))


#: A stored vector this close to the query's (``1 - cosine`` at most this) is the query image
#: itself: the same pixels embed to the same vector up to float rounding across batches.
SAME_IMAGE_TOLERANCE = 1e-5


def drop_query_copies(
    hits: list[ScoredPoint], image: ImageInput, vector: np.ndarray, using: str, pixels: str | None = None
) -> list[ScoredPoint]:
    """Hits that are not the query image: not its file (``uri``, any of the point's files), not
    its pixels (``pixels``, its pixel hash), not its exact vector.

    >>> hit = ScoredPoint("a", 1.0, {"uri": "x.png"}, {"aligned": np.array([1.0, 0.0], dtype=np.float32)})
    >>> drop_query_copies([hit], "other.png", np.array([2.0, 0.0]), "aligned")
    []
    >>> len(drop_query_copies([hit], "other.png", np.array([1.0, 0.01]), "aligned"))
    1
    """
    own = str(Path(image)) if isinstance(image, (str, Path)) else None
    query = np.asarray(vector, dtype=np.float64)
    query = query / (np.linalg.norm(query) or 1.0)
    kept = []
    for hit in hits:
        if own is not None and own in {record.get("uri") for record in payload_records(hit.payload)}:
            continue
        if pixels is not None and hit.payload.get("pixel_hash") == pixels:
            continue
        stored = None if hit.vectors is None else hit.vectors.get(using)
        if stored is not None:
            stored = np.asarray(stored, dtype=np.float64)
            if 1.0 - float(query @ stored) / (np.linalg.norm(stored) or 1.0) <= SAME_IMAGE_TOLERANCE:
                continue
        kept.append(hit)
    return kept
