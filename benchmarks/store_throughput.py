"""Store throughput and memory per point: the collection layouts a user chooses between.

One run compares, on the same synthetic data (unit vectors with cluster structure):

* **edge/<layout>**: :class:`percep_rag.store.edge.EdgeStore` (Qdrant Edge on disk), one
  collection per memory layout of :mod:`percep_rag.store.layouts` (``balanced`` = int8 in RAM,
  ``low``, ``float16``, ``binary{2,1.5,1}-disk``), created through the same
  ``CollectionOptions`` that ``percep-rag index --memory`` uses, with the real two named
  vectors a point holds (``base`` and ``aligned``, both ``--dim``); bulk upsert, then one
  ``optimize()`` (HNSW on both vectors);
* **client-local**: qdrant-client's in-process local mode (exact numpy search in Python),
  skipped above ``--skip-client-above`` points;
* **numpy-exact**: a float32 matrix in RAM, ``X @ q`` + ``argpartition`` (the ground truth).

Latency is per single query over ``aligned``, sequential, through the public ``VectorStore.query``.
Recall@k is against the exact top-k of the same queries.

Memory, honestly: after the build the collection is closed and a **fresh process** (a "serving
process") reopens it, runs the timed queries and the recall batch, and reports its own
``/proc/self/status`` VmRSS, RssAnon (heap: what must be RAM) and RssFile (file pages it has
mapped and touched: evictable page cache) minus the same figures just before the open. So
``resident B/pt`` counts everything that process holds after reopen + queries; ``open B/pt``
is right after reopen (a cold start for this process; the OS page cache is not dropped, which
needs root, so reads of on-disk originals may be served from cache: latencies of on-disk
layouts are optimistic for a truly cold disk). Disk is what the collection's folder takes
(``du``) after close. All include fixed sizes (WAL segments, thread stacks): read them at large ``n``.

Each finished row is appended to ``--json`` at once, so a run cut short keeps what it measured.

Usage::

    python benchmarks/store_throughput.py --n 20000 --dim 768 --queries 500 --json out.json
    python benchmarks/store_throughput.py --n 1000000 --layouts low balanced --json out.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from percep_rag.config import Fingerprint
from percep_rag.evaluation.tables import markdown_table
from percep_rag.store import CollectionOptions, VectorStore, content_hash, point_id
from percep_rag.store.client import QdrantClientStore
from percep_rag.store.edge import EdgeStore
from percep_rag.store.layouts import MEMORY_LAYOUTS, memory_layout

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
    open_bytes_per_point: float | None = None
    anon_bytes_per_point: float | None = None
    file_bytes_per_point: float | None = None


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


def status_bytes() -> dict[str, int]:
    """VmRSS, RssAnon and RssFile of this process in bytes (Linux); empty elsewhere."""
    out: dict[str, int] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


def base_of(block: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """A second, distinct vector per point with the same distribution (columns permuted)."""
    return np.ascontiguousarray(block[:, perm])


def fill(store: VectorStore, x: np.ndarray, perm: np.ndarray | None, options: CollectionOptions) -> float:
    """Create the bench collection (``aligned`` and, with ``perm``, ``base``) and insert ``x``; seconds taken."""
    n, dim = x.shape
    ids = [point_id(content_hash(str(i).encode()), COLLECTION) for i in range(n)]
    vectors = {"aligned": dim} if perm is None else {"base": dim, "aligned": dim}
    store.create_collection(COLLECTION, fingerprint(dim), vectors=vectors, options=options)
    t = time.perf_counter()
    chunk = 16_384  # bounds the Python objects alive at once
    for s in range(0, n, chunk):
        e = min(n, s + chunk)
        arrays = {"aligned": x[s:e]} if perm is None else {"base": base_of(x[s:e], perm), "aligned": x[s:e]}
        store.upsert_arrays(COLLECTION, ids[s:e], arrays, [{"i": i} for i in range(s, e)])
    return time.perf_counter() - t


def measure_queries(store: VectorStore, n: int, q: np.ndarray, truth: np.ndarray, k: int) -> dict[str, float]:
    """p50/p99 of single queries over ``aligned`` and recall@k of a batch over the same queries."""
    ids = [point_id(content_hash(str(i).encode()), COLLECTION) for i in range(n)]
    index_of = {pid: i for i, pid in enumerate(ids)}
    p50, p99 = latency(lambda v: store.query(COLLECTION, v, k=k, with_payload=False), q)
    hits = store.query_batch(COLLECTION, q, k=k, with_payload=False)
    found = [[index_of[h.id] for h in row] for row in hits]
    return {"p50_ms": p50, "p99_ms": p99, "recall_at_k": recall(found, truth)}


def serve(folder: Path, n: int, k: int) -> dict[str, Any]:
    """In a fresh process: reopen the Edge store at ``folder``, query it, report timings and memory."""
    q, truth = np.load(folder.parent.parent / "queries.npy"), np.load(folder.parent.parent / "truth.npy")
    before = status_bytes()
    t = time.perf_counter()
    with EdgeStore(folder, auto_optimize=False) as store:
        store.count(COLLECTION)
        reopen_s = time.perf_counter() - t
        opened = status_bytes()
        result: dict[str, Any] = measure_queries(store, n, q, truth, k)
        after = status_bytes()
    result["reopen_s"] = reopen_s
    result["memory"] = {"before": before, "opened": opened, "after_queries": after}
    return result


def bench_layout(layout: str, x: np.ndarray, perm: np.ndarray | None, work: Path, k: int, timed: int) -> Row:
    """Build ``layout`` into ``work/layout``, then measure it from a fresh serving process."""
    n = len(x)
    folder = work / layout
    options = memory_layout(layout)
    with EdgeStore(folder, auto_optimize=False) as store:
        insert_s = fill(store, x, perm, options)
        print(f"# {layout}: inserted {n:,} in {insert_s:.1f} s", file=sys.stderr, flush=True)
        t = time.perf_counter()
        store.optimize(COLLECTION)
        build_s = time.perf_counter() - t
        print(f"# {layout}: index built in {build_s:.1f} s", file=sys.stderr, flush=True)
    disk = disk_bytes(folder) / n
    cmd = [sys.executable, __file__, "--serve", str(folder), "--n", str(n), "--k", str(k)]
    served = json.loads(subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout)
    mem = served["memory"]

    def per_point(stage: str, key: str) -> float | None:
        if key not in mem[stage] or key not in mem["before"]:
            return None
        return max(0, mem[stage][key] - mem["before"][key]) / n

    opts = options.model_dump(include={"quantization", "datatype", "on_disk", "oversampling"})
    return Row(
        f"edge/{layout}",
        n,
        n / insert_s,
        build_s,
        served["p50_ms"],
        served["p99_ms"],
        served["recall_at_k"],
        timed,
        note=f"{opts}; {'base+aligned' if perm is not None else 'aligned only'}; reopen {served['reopen_s']:.2f} s",
        resident_bytes_per_point=per_point("after_queries", "VmRSS"),
        disk_bytes_per_point=disk,
        open_bytes_per_point=per_point("opened", "VmRSS"),
        anon_bytes_per_point=per_point("after_queries", "RssAnon"),
        file_bytes_per_point=per_point("after_queries", "RssFile"),
    )


def bench_client(x: np.ndarray, q: np.ndarray, truth: np.ndarray, k: int) -> Row:
    """qdrant-client's local mode, ``aligned`` only, resident memory as this process's growth."""
    before = status_bytes().get("VmRSS")
    with QdrantClientStore.in_memory() as store:
        insert_s = fill(store, x, None, CollectionOptions())
        measured = measure_queries(store, len(x), q, truth, k)
    after = status_bytes().get("VmRSS")
    row = Row("client-local", len(x), len(x) / insert_s, None, timed_queries=len(q), **measured)
    row.note = "qdrant-client :memory:, exact brute force, aligned only"
    if before is not None and after is not None:
        row.resident_bytes_per_point = max(0, after - before) / len(x)
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


def fmt(value: float | None, spec: str = ",.0f") -> str:
    return format(value, spec) if value is not None else "-"


def table(rows: list[Row], k: int) -> str:
    columns = [
        "backend", "n", "insert pts/s", "build s", "p50 ms", "p99 ms", f"recall@{k}", "queries",
        "resident B/pt", "(anon + file)", "open B/pt", "disk B/pt", "note",
    ]  # fmt: skip
    cells = [
        [
            r.backend,
            f"{r.n:,}",
            fmt(r.insert_pts_per_s),
            fmt(r.index_build_s, ".1f"),
            f"{r.p50_ms:.2f}",
            f"{r.p99_ms:.2f}",
            f"{r.recall_at_k:.3f}",
            r.timed_queries,
            fmt(r.resident_bytes_per_point),
            f"{fmt(r.anon_bytes_per_point)} + {fmt(r.file_bytes_per_point)}" if r.anon_bytes_per_point else "-",
            fmt(r.open_bytes_per_point),
            fmt(r.disk_bytes_per_point),
            r.note,
        ]
        for r in rows
    ]
    return markdown_table(columns, cells)


def environment(argv: list[str] | None, started: dt.datetime) -> dict[str, Any]:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())  # fmt: skip
    return {
        "date": started.isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "qdrant_edge_py": version("qdrant-edge-py"),
        "qdrant_client": version("qdrant-client"),
        "numpy": np.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000], help="collection sizes")
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--layouts", nargs="+", default=list(MEMORY_LAYOUTS), choices=list(MEMORY_LAYOUTS),
                    help="memory layouts to build, in this order")  # fmt: skip
    ap.add_argument("--one-vector", action="store_true", help="store only 'aligned' (default: base + aligned)")
    ap.add_argument("--queries", type=int, default=1000, help="queries for recall and Edge latency")
    ap.add_argument("--slow-queries", type=int, default=100, help="timed queries for client-local and numpy")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--skip-client-above", type=int, default=200_000, help="skip client-local above this n")
    ap.add_argument("--noise", type=float, default=1.0, help="cluster spread (see make_data)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None, help="where Edge writes (default: a temp dir)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here (after every row)")
    ap.add_argument("--serve", type=Path, default=None, help=argparse.SUPPRESS)  # the fresh serving process
    args = ap.parse_args(argv)
    if args.serve is not None:
        print(json.dumps(serve(args.serve, args.n[0], args.k)))
        return 0

    # qdrant-client local mode warns above 20k points; the benchmark knows.
    warnings.filterwarnings("ignore", message=".*Local mode is not recommended.*")
    rows: list[Row] = []
    started = dt.datetime.now(dt.UTC)
    meta = environment(argv, started)

    def record(row: Row) -> None:
        rows.append(row)
        print(table([row], args.k).splitlines()[-1], file=sys.stderr, flush=True)
        if args.json:
            args.json.write_text(json.dumps({"meta": meta, "rows": [asdict(r) for r in rows]}, indent=2))

    for n in args.n:
        print(f"# n={n:,} dim={args.dim}: generating data", file=sys.stderr, flush=True)
        x, q = make_data(n, args.dim, args.queries, args.seed, args.noise)
        truth = exact_topk(x, q, args.k)
        slow = min(args.slow_queries, args.queries)
        record(bench_numpy(x, q, truth, slow, args.k))
        perm = None if args.one_vector else np.random.default_rng(args.seed + 1).permutation(args.dim)
        if args.workdir is not None:
            args.workdir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="store-bench-", dir=args.workdir))
        try:
            np.save(work / "queries.npy", q)
            np.save(work / "truth.npy", truth)
            for layout in args.layouts:
                t = time.perf_counter()
                row = bench_layout(layout, x, perm, work / "edge", args.k, args.queries)
                row.note += f"; total {time.perf_counter() - t:.0f} s"
                record(row)
                shutil.rmtree(work / "edge" / layout, ignore_errors=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if n <= args.skip_client_above:
            record(bench_client(x, q[:slow], truth[:slow], args.k))
        del x, q, truth

    print(f"\nStore layouts, dim={args.dim}, k={args.k}, {meta['cpus']} CPUs ({meta['cpu']}), {started:%Y-%m-%d}\n")
    print(table(rows, args.k))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
