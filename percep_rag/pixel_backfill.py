"""Pixel hashes for points stored before indexing recorded them, and for hits that still lack one.

Indexing writes each point's ``pixel_hash`` (:func:`percep_rag.duplicates.pixel_hash`) from the
image it decodes. A collection indexed before that has none: :func:`backfill_pixel_hashes`
(called once by every ``index`` / ``sync`` run, local or Ray) fills them from the files still
there, and :func:`known_pixel_hash` gives one point's hash on demand (stored, else from its
file). A file is used only while its bytes are still the point's (same content hash), so a file
replaced since indexing never lends the point someone else's pixels; a point none of whose
files is readable stays without a hash (it is then never marked an exact copy, and still found).

>>> from PIL import Image
>>> import io, tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "a.png"
>>> Image.new("RGB", (4, 4), "red").save(path)
>>> from percep_rag.store import content_hash
>>> payload = {"uri": str(path), "content_hash": content_hash(path.read_bytes())}
>>> known_pixel_hash(payload) == image_pixel_hash(Image.open(path))
True
>>> known_pixel_hash({"uri": "/gone.png"}) is None
True
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tqdm.auto import tqdm

from percep_rag.errors import ImageDecodeError
from percep_rag.io.decode import decode_image_bytes
from percep_rag.io.pixel_hash import image_pixel_hash
from percep_rag.io.sources import read_image_bytes
from percep_rag.point_records import payload_records
from percep_rag.store import VectorStore, content_hash

#: Points read (and rewritten) per store request while backfilling.
BACKFILL_BATCH = 256


def known_pixel_hash(payload: Mapping[str, Any]) -> str | None:
    """The point's stored ``pixel_hash``, else the hash of the first of its files that still
    holds its bytes; ``None`` when there is neither (see the module docstring)."""
    stored = payload.get("pixel_hash")
    if stored:
        return str(stored)
    expected = payload.get("content_hash")
    for record in payload_records(payload):
        uri = record.get("uri")
        if not uri:
            continue
        try:
            data = read_image_bytes(str(uri))
            if expected and content_hash(data) != expected:
                continue  # the file was replaced since it was indexed: not this point's pixels
            return image_pixel_hash(decode_image_bytes(data, source_name=str(uri)))
        except ImageDecodeError:
            continue
    return None


def backfill_pixel_hashes(store: VectorStore, collection: str, *, progress: bool = False) -> int:
    """Store ``pixel_hash`` on every point of ``collection`` that has none and whose file is still
    there; returns how many points got one. One pass over the payloads (no vectors); only the
    points it fills are read with vectors and rewritten (vectors unchanged). Idempotent.

    Example: ``backfill_pixel_hashes(store, "catalog")`` (``index`` and ``sync`` call it).
    """
    if not store.has_collection(collection):
        return 0
    missing = [p for p in store.iterate(collection, batch=BACKFILL_BATCH) if not p.payload.get("pixel_hash")]
    if not missing:
        return 0
    filled = 0
    workers = max(1, min(8, os.cpu_count() or 1))  # decoding releases the GIL
    vector_names = list(store.collection_info(collection).vectors)
    with ThreadPoolExecutor(workers) as pool, tqdm(
        total=len(missing), desc=f"pixel hashes for {collection}", unit="pt", disable=not progress
    ) as bar:
        for start in range(0, len(missing), BACKFILL_BATCH):
            chunk = missing[start : start + BACKFILL_BATCH]
            digests = pool.map(lambda point: known_pixel_hash(point.payload), chunk)
            hashes = dict(zip([p.id for p in chunk], digests, strict=True))
            found = [pid for pid, digest in hashes.items() if digest]
            stored = store.retrieve(collection, found, with_vectors=True) if found else []
            if stored:
                store.upsert_arrays(
                    collection,
                    [p.id for p in stored],
                    {name: [p.vectors[name] for p in stored] for name in vector_names},
                    [{**p.payload, "pixel_hash": hashes[p.id]} for p in stored],
                )
                filled += len(stored)
            bar.update(len(chunk))
    return filled
