"""Store throughput: inserts/s, query latency p50/p99 and recall@k, per back end.

Compares, on the same synthetic data (unit vectors with cluster structure):

* **edge**: :class:`percep_rag.store.edge.EdgeStore` (Qdrant Edge on disk), bulk upsert,
  then one ``optimize()`` (HNSW + int8 scalar quantization, rescored);
* **client-local**: qdrant-client's in-process local mode (``QdrantClient(":memory:")``,
  exact numpy search in Python), skipped above ``--skip-client-above`` points;
* **numpy-exact**: a float32 matrix in RAM, ``X @ q`` + ``argpartition`` (the ground truth).

Latency is per single query, sequential, through the public ``VectorStore.query``.
Memory is the growth of this process's resident set (``/proc/self/statm``) from just before
the store is filled to after its queries, per point; disk is what Edge's folder takes on disk
after it is closed, per point (raw float32 vectors alone are ``4 * dim`` bytes a point). Both
include fixed sizes (preallocated WAL segments, thread stacks): read them at large ``n``.
Recall@k is measured against the exact top-k over the same queries that are timed:
``--queries`` for Edge, ``--slow-queries`` for the slow paths (client-local, numpy).

Usage::

    python benchmarks/store_throughput.py --n 100000 --dim 768 --queries 1000 --json out.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

import numpy as np

from percep_rag.config import Fingerprint
from percep_rag.evaluation.tables import markdown_table
from percep_rag.store import CollectionOptions, VectorStore, content_hash, point_id
from percep_rag.store.client import QdrantClientStore
from percep_rag.store.edge import EdgeStore

COLLECTION = "bench"


@dataclass
class Row:
    """One line of the results table."""

    backend: str
    n: int
    insert_pts_per_s: float | None
    index_build_s: float | None
    p50_ms: float
    p99_ms: float
    recall_at_k: float
    timed_queries: int
    note: str = ""
    resident_bytes_per_point: float | None = None
    disk_bytes_per_point: float | None = None


def resident_bytes() -> int | None:
    """This process's resident memory now (Linux ``/proc``); ``None`` elsewhere."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def disk_bytes(folder: Path) -> int:
    """Bytes allocated on disk (as ``du`` counts them) to every file under ``folder``."""
    return sum(path.stat().st_blocks * 512 for path in folder.rglob("*") if path.is_file())


def make_data(n: int, dim: int, n_queries: int, seed: int, noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` unit vectors around ``n // 100`` Gaussian centres, and ``n_queries`` more as queries.

    Centres and noise are N(0, 1) and N(0, noise^2) per coordinate, so two points of one
    cluster have cosine ~ 1 / (1 + noise^2) (0.5 at the default) and of two clusters ~ 0.
    """
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(1, n // 100), dim)).astype(np.float32)
    x = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, 100_000):  # chunked: keeps the temporaries small at 1M x 768
        e = min(n, s + 100_000)
        blk = centres[rng.integers(0, len(centres), e - s)] + rng.normal(scale=noise, size=(e - s, dim)).astype(
            np.float32
        )
        x[s:e] = blk / np.linalg.norm(blk, axis=1, keepdims=True)
    # Queries are fresh draws from the same mixture (new images, not near-duplicates).
    q = centres[rng.integers(0, len(centres), n_queries)] + rng.normal(scale=noise, size=(n_queries, dim)).astype(
        np.float32
    )
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return x, q


def exact_topk(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    """Indices of the exact top-k rows of ``x`` by dot product, per query (unordered)."""
    best_s = np.full((len(q), k), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(q), k), dtype=np.int64)
    for s in range(0, len(x), 100_000):
        scores = q @ x[s : s + 100_000].T
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        cand_s = np.concatenate([best_s, np.take_along_axis(scores, part, 1)], axis=1)
        cand_i = np.concatenate([best_i, part + s], axis=1)
        keep = np.argpartition(-cand_s, k - 1, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(cand_s, keep, 1), np.take_along_axis(cand_i, keep, 1)
    return best_i


def latency(fn: Callable[[np.ndarray], object], queries: np.ndarray) -> tuple[float, float]:
    """p50 and p99 in ms of ``fn(q)`` over ``queries`` (after 5 warm-up calls)."""
    for q in queries[:5]:
        fn(q)
    times = []
    for q in queries:
        t = time.perf_counter()
        fn(q)
        times.append((time.perf_counter() - t) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def recall(found: list[list[int]], truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(f) & set(t)) / k for f, t in zip(found, truth.tolist(), strict=True)]))


def fingerprint(dim: int) -> Fingerprint:
    return Fingerprint(
        backbone="synthetic",
        weights_digest="-",
        random_weights=True,
        pooling="cls",
        normalization="l2",
        alignment="identity",
        alignment_digest="-",
        base_dim=dim,
        dim=dim,
    )


def bench_store(
    store: VectorStore,
    label: str,
    x: np.ndarray,
    q: np.ndarray,
    truth: np.ndarray,
    timed: int,
    k: int,
    optimize: bool,
) -> Row:
    n, dim = x.shape
    ids = [point_id(content_hash(str(i).encode()), COLLECTION) for i in range(n)]
    index_of = {pid: i for i, pid in enumerate(ids)}
    rss_before = resident_bytes()
    store.create_collection(COLLECTION, fingerprint(dim), vectors={"aligned": dim}, options=CollectionOptions())
    t = time.perf_counter()
    chunk = 16_384  # bounds the Python objects alive at once
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        store.upsert_arrays(COLLECTION, ids[s:e], {"aligned": x[s:e]}, [{"i": i} for i in range(s, e)])
    insert_s = time.perf_counter() - t
    print(f"# {label}: inserted {n:,} in {insert_s:.1f} s", file=sys.stderr, flush=True)
    build_s = None
    if optimize:
        t = time.perf_counter()
        store.optimize(COLLECTION)
        build_s = time.perf_counter() - t
        print(f"# {label}: index built in {build_s:.1f} s", file=sys.stderr, flush=True)

    def one(v: np.ndarray) -> object:
        return store.query(COLLECTION, v, k=k, with_payload=False)

    p50, p99 = latency(one, q[:timed])
    # Recall over the timed queries only: client-local takes ~0.5 s a query at 100k.
    hits = store.query_batch(COLLECTION, q[:timed], k=k, with_payload=False)
    found = [[index_of[h.id] for h in row] for row in hits]
    rss_after = resident_bytes()
    row = Row(label, n, n / insert_s, build_s, p50, p99, recall(found, truth[:timed]), timed)
    if rss_before is not None and rss_after is not None:
        row.resident_bytes_per_point = max(0, rss_after - rss_before) / n
    return row


def bench_numpy(x: np.ndarray, q: np.ndarray, truth: np.ndarray, timed: int, k: int) -> Row:
    def one(v: np.ndarray) -> np.ndarray:
        scores = x @ v
        return np.argpartition(-scores, k - 1)[:k]

    p50, p99 = latency(one, q[:timed])
    found = [list(one(v)) for v in q[:timed]]
    note = "in RAM, no persistence"
    # Its memory is the matrix it searches, allocated before the measurement could start.
    hits = recall(found, truth[:timed])
    return Row("numpy-exact", len(x), None, None, p50, p99, hits, timed, note, x.nbytes / len(x))


def table(rows: list[Row], k: int) -> str:
    columns = [
        "backend", "n", "insert pts/s", "index build s", "p50 ms", "p99 ms", f"recall@{k}", "timed queries",
        "resident B/pt", "disk B/pt", "note",
    ]  # fmt: skip
    cells = [
        [
            r.backend,
            f"{r.n:,}",
            f"{r.insert_pts_per_s:,.0f}" if r.insert_pts_per_s else "-",
            f"{r.index_build_s:.1f}" if r.index_build_s is not None else "-",
            f"{r.p50_ms:.2f}",
            f"{r.p99_ms:.2f}",
            f"{r.recall_at_k:.3f}",
            r.timed_queries,
            f"{r.resident_bytes_per_point:,.0f}" if r.resident_bytes_per_point is not None else "-",
            f"{r.disk_bytes_per_point:,.0f}" if r.disk_bytes_per_point is not None else "-",
            r.note,
        ]
        for r in rows
    ]
    return markdown_table(columns, cells)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000], help="collection sizes")
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--queries", type=int, default=1000, help="queries for recall (and Edge latency)")
    ap.add_argument("--slow-queries", type=int, default=100, help="timed queries for client-local and numpy")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--skip-client-above", type=int, default=200_000, help="skip client-local above this n")
    ap.add_argument("--noise", type=float, default=1.0, help="cluster spread (see make_data)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None, help="where Edge writes (default: a temp dir)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)

    # qdrant-client local mode warns above 20k points; the benchmark knows.
    warnings.filterwarnings("ignore", message=".*Local mode is not recommended.*")
    rows: list[Row] = []
    started = dt.datetime.now(dt.UTC)
    for n in args.n:
        print(f"# n={n:,} dim={args.dim}: generating data", file=sys.stderr, flush=True)
        x, q = make_data(n, args.dim, args.queries, args.seed, args.noise)
        truth = exact_topk(x, q, args.k)
        rows.append(bench_numpy(x, q, truth, min(args.slow_queries, args.queries), args.k))
        print(table(rows[-1:], args.k).splitlines()[-1], file=sys.stderr, flush=True)

        work = Path(tempfile.mkdtemp(prefix="store-bench-", dir=args.workdir))
        try:
            t = time.perf_counter()
            with EdgeStore(work / "edge", auto_optimize=False) as store:
                rows.append(bench_store(store, "edge", x, q, truth, args.queries, args.k, optimize=True))
            t_close = time.perf_counter()
            rows[-1].disk_bytes_per_point = disk_bytes(work / "edge") / n
            with EdgeStore(work / "edge") as store:
                store.count(COLLECTION)
            rows[-1].note = (
                f"HNSW m=16 + int8 SQ, rescore x2; reopen {time.perf_counter() - t_close:.2f} s; "
                f"total {t_close - t:.0f} s"
            )
            print(table(rows[-1:], args.k).splitlines()[-1], file=sys.stderr, flush=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)

        if n <= args.skip_client_above:
            with QdrantClientStore.in_memory() as store:
                row = bench_store(
                    store, "client-local", x, q, truth, min(args.slow_queries, args.queries), args.k, False
                )
            row.note = "qdrant-client :memory:, exact brute force"
            rows.append(row)
            print(table(rows[-1:], args.k).splitlines()[-1], file=sys.stderr, flush=True)
        else:
            rows.append(
                Row(
                    "client-local",
                    n,
                    None,
                    None,
                    float("nan"),
                    float("nan"),
                    float("nan"),
                    0,
                    f"skipped: n > --skip-client-above {args.skip_client_above:,}",
                )
            )
        del x, q, truth

    cpu = platform.processor() or platform.machine()
    print(f"\nStore throughput, dim={args.dim}, k={args.k}, {os.cpu_count()} CPUs ({cpu}), {started:%Y-%m-%d}\n")
    print(table(rows, args.k))
    if args.json:
        meta = {
            "date": started.isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "qdrant_edge_py": version("qdrant-edge-py"),
            "qdrant_client": version("qdrant-client"),
            "numpy": np.__version__,
        }
        args.json.write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=2, allow_nan=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
