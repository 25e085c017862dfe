"""Distributed indexing and embedding on Ray Data (``pip install "percep-rag[ray]"``).

The same records, embedder spec and store as the local path, with the embedding spread over
an actor pool (one :class:`~percep_rag.embedder.AlignedEmbedder` per actor, one per GPU on a
cluster). Runs on one machine with a local Ray and unchanged on a cluster
(``RayOptions(address="auto")`` or ``$RAY_ADDRESS``); see ``docs/scale-out.md``.

* :func:`index_with_ray`: records -> points in a store, same ids, payloads and fingerprint
  checks as :func:`percep_rag.indexing.index_records`;
* :func:`sync_with_ray`: :func:`index_with_ray`, then the removals of :func:`percep_rag.sync.sync_records`;
* :func:`embed_with_ray`: records -> a folder of parquet shards (:func:`read_vector_shards`).

Importing this package does not import Ray; running does.

>>> RayOptions(actors=2).actors
2
"""

from percep_rag.distributed.embed import EmbedReport, embed_with_ray, read_vector_shards
from percep_rag.distributed.index import RayIndexReport, index_with_ray
from percep_rag.distributed.options import RayOptions
from percep_rag.distributed.sync import sync_with_ray

__all__ = [
    "EmbedReport",
    "RayIndexReport",
    "RayOptions",
    "embed_with_ray",
    "index_with_ray",
    "read_vector_shards",
    "sync_with_ray",
]
