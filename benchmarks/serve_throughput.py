"""Service throughput: N concurrent clients against a local `percep-rag serve`, with and without batching.

A collection of ``--points`` synthetic points (random unit vectors stored under the fingerprint
of a tiny random-weight embedder, so building it takes seconds, not an embedding run) is served
by a real ``percep-rag serve`` process on a free loopback port (127.0.0.1 only). For each mode
(``--batching`` / ``--no-batching``) and each client count N, N threads each send search requests
(a PNG upload, k=10, both spaces) in a bounded loop for ``--seconds``; meanwhile a prober asks
``/healthz`` every 50 ms. Reported: requests/s, p50/p99 latency, errors (non-200 or failed
requests), the ``/healthz`` p99 and error count under that load.

The figures are for tiny-vit-random, where the HTTP, decoding and store query dominate the
forward pass; a real backbone's forward pass is where batching pays (see RESULTS.md).

``--modes mixed`` (issue 37): reads and writes at once. ``--mixed-clients`` threads search (as
above) while one writer adds ``--adds`` new images through ``POST /collections/NAME/points``
(one per request) and, after every few adds, deletes one of them with ``DELETE``, ``--deletes``
in all; the load lasts until the writer is done. Reported: the searches' errors, req/s, p50/p99,
``/healthz`` p99, the writes' errors and p50/p99, and whether the final point count is exactly
the start + adds - deletes.

Usage::

    nice -n 10 python benchmarks/serve_throughput.py --points 50000 --clients 1 4 16 --seconds 15 --json out.json
    nice -n 10 python benchmarks/serve_throughput.py --points 50000 --modes mixed --adds 200 --deletes 50
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from percep_rag import AlignedEmbedder, EmbedderSpec
from percep_rag.cli.study import cpu_name
from percep_rag.evaluation.tables import markdown_table
from percep_rag.indexing import DEFAULT_PAYLOAD_INDEXES
from percep_rag.store import content_hash, open_store, point_id

ROOT = Path(__file__).resolve().parents[1]
#: Asks /healthz every 50 ms until a line arrives on stdin; prints the latencies (s) and errors as JSON.
PROBER = """
import json, select, sys, time, urllib.request
latencies, errors = [], 0
while not select.select([sys.stdin], [], [], 0.05)[0]:
    began = time.perf_counter()
    try:
        with urllib.request.urlopen(sys.argv[1] + "/healthz", timeout=10) as answer:
            answer.read()
        latencies.append(time.perf_counter() - began)
    except OSError:
        errors += 1
print(json.dumps({"latencies": latencies, "errors": errors}))
"""
COLLECTION = "catalog"
BACKBONE = "tiny-vit-random"


@dataclass
class Row:
    """One line of the results table."""

    mode: str
    clients: int
    requests: int
    errors: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    healthz_p99_ms: float
    healthz_errors: int
    load_1min: float = float("nan")


def build_collection(path: Path, points: int, seed: int = 0) -> None:
    """``points`` random unit vectors in an Edge store, under the tiny embedder's fingerprint."""
    embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone=BACKBONE, precision="fp32"))
    rng = np.random.default_rng(seed)
    labels = [f"class-{n:02d}" for n in range(20)]
    with open_store(f"edge:{path}") as store:
        store.ensure_collection(COLLECTION, embedder.fingerprint, payload_indexes=DEFAULT_PAYLOAD_INDEXES)
        for start in range(0, points, 5000):
            count = min(5000, points - start)
            vectors = {}
            for name, dim in (("base", embedder.base_dim), ("aligned", embedder.dim)):
                x = rng.normal(size=(count, dim)).astype(np.float32)
                vectors[name] = x / np.linalg.norm(x, axis=1, keepdims=True)
            digests = [content_hash(f"synthetic-{start + i}".encode()) for i in range(count)]
            payloads = [
                {"uri": f"/nonexistent/{start + i}.png", "label": labels[(start + i) % 20],
                 "split": "train" if (start + i) % 5 else "test", "content_hash": digest}
                for i, digest in enumerate(digests)
            ]  # fmt: skip
            store.upsert_arrays(COLLECTION, [point_id(d, COLLECTION) for d in digests], vectors, payloads)
        store.optimize(COLLECTION)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(store: Path, batching: bool, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [
        sys.executable, "-m", "percep_rag", "serve", "--store", f"edge:{store}", "--port", str(port),
        "--log-level", "warning", "--batching" if batching else "--no-batching",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited: {log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2):
                return process, url
        except OSError:
            time.sleep(0.25)
    process.kill()
    raise RuntimeError("the server did not start in 180 s")


def query_images(count: int, size: int = 64, seed: int = 1) -> list[bytes]:
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, format="PNG")
        images.append(buffer.getvalue())
    return images


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


def run_load(
    url: str, clients: int, seconds: float, max_requests: int, images: list[bytes], stop: threading.Event | None = None
) -> dict:
    """``clients`` threads searching for ``seconds`` (at most ``max_requests`` each, or until ``stop``
    is set), and the health prober."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = stop or threading.Event()

    def client(n: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            for sent in range(max_requests):
                if stop.is_set():
                    return
                image = images[(n * 7919 + sent) % len(images)]
                began = time.perf_counter()
                try:
                    ok = http.post(f"/collections/{COLLECTION}/search", files={"image": ("q.png", image, "image/png")},
                                   data={"k": "10"}).status_code == 200  # fmt: skip
                except httpx.HTTPError:
                    ok = False
                took = time.perf_counter() - began
                with lock:
                    latencies.append(took) if ok else None
                    errors[0] += 0 if ok else 1

    # /healthz is timed from its own process, so that the load generator's threads do not delay it.
    prober = subprocess.Popen(
        [sys.executable, "-c", PROBER, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    timer = threading.Timer(seconds, stop.set)
    timer.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    stop.set()
    timer.cancel()
    probed = json.loads(prober.communicate("stop\n", timeout=60)[0])
    return {
        "requests": len(latencies) + errors[0],
        "errors": errors[0],
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "healthz_p99_ms": percentile(probed["latencies"], 99),
        "healthz_errors": probed["errors"],
        "load_1min": os.getloadavg()[0],  # the machine's load: other jobs share these CPUs
    }


@dataclass
class MixedRow:
    """The read/write case: searches while one writer adds and deletes."""

    clients: int
    requests: int
    errors: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    healthz_p99_ms: float
    healthz_errors: int
    adds: int
    deletes: int
    write_errors: int
    add_p50_ms: float
    add_p99_ms: float
    delete_p99_ms: float
    count_exact: bool
    seconds: float
    load_1min: float = float("nan")


def run_mixed(url: str, clients: int, adds: int, deletes: int, images: list[bytes]) -> dict:
    """``clients`` searching threads while one writer adds ``adds`` images and deletes ``deletes`` of them."""
    stop = threading.Event()
    searched: dict = {}
    written: dict = {"add": [], "delete": [], "errors": 0}

    def writer() -> None:
        # Not in the collection, even a reused one (seeded by its size): every add writes a point.
        fresh = query_images(adds, seed=37 + before)
        added: list[str] = []
        every = max(1, adds // max(1, deletes))
        with httpx.Client(base_url=url, timeout=60) as http:
            for n, image in enumerate(fresh):
                began = time.perf_counter()
                try:
                    answer = http.post(
                        f"/collections/{COLLECTION}/points",
                        files={"image": (f"new{n}.png", image, "image/png")},
                        data={"label": "new"},
                    )
                    ok = answer.status_code == 200 and answer.json()["added"] == 1
                    added += [p["id"] for p in answer.json().get("points", [])] if ok else []
                except (httpx.HTTPError, ValueError):
                    ok = False
                written["add"].append(time.perf_counter() - began) if ok else None
                written["errors"] += 0 if ok else 1
                if (n + 1) % every == 0 and len(written["delete"]) < deletes and added:
                    began = time.perf_counter()
                    try:
                        ok = http.delete(f"/collections/{COLLECTION}/points/{added.pop(0)}").status_code == 200
                    except httpx.HTTPError:
                        ok = False
                    written["delete"].append(time.perf_counter() - began) if ok else None
                    written["errors"] += 0 if ok else 1
        stop.set()

    with httpx.Client(base_url=url, timeout=60) as http:
        before = http.get("/collections").json()["collections"][0]["points"]
    thread = threading.Thread(target=writer)
    began = time.perf_counter()
    thread.start()
    searched = run_load(url, clients, 3600.0, 10**9, images, stop=stop)
    thread.join()
    elapsed = time.perf_counter() - began
    with httpx.Client(base_url=url, timeout=60) as http:
        after = http.get("/collections").json()["collections"][0]["points"]
    return {
        **searched,
        "adds": len(written["add"]),
        "deletes": len(written["delete"]),
        "write_errors": written["errors"],
        "add_p50_ms": percentile(written["add"], 50),
        "add_p99_ms": percentile(written["add"], 99),
        "delete_p99_ms": percentile(written["delete"], 99),
        "count_exact": after == before + len(written["add"]) - len(written["delete"]),
        "seconds": elapsed,
    }


def mixed_table(rows: list[MixedRow]) -> str:
    return markdown_table(
        ["search clients", "searches", "search errors", "req/s", "search p50 ms", "search p99 ms", "/healthz p99 ms",
         "/healthz errors", "adds", "deletes", "write errors", "add p50 ms", "add p99 ms", "delete p99 ms",
         "count exact", "s", "load"],
        [
            [r.clients, r.requests, r.errors, f"{r.requests_per_s:.1f}", f"{r.p50_ms:.1f}", f"{r.p99_ms:.1f}",
             f"{r.healthz_p99_ms:.1f}", r.healthz_errors, r.adds, r.deletes, r.write_errors, f"{r.add_p50_ms:.1f}",
             f"{r.add_p99_ms:.1f}", f"{r.delete_p99_ms:.1f}", "yes" if r.count_exact else "NO", f"{r.seconds:.0f}",
             f"{r.load_1min:.1f}"]
            for r in rows
        ],
    )  # fmt: skip


def table(rows: list[Row]) -> str:
    return markdown_table(
        ["mode", "clients", "requests", "errors", "req/s", "p50 ms", "p99 ms", "/healthz p99 ms", "/healthz errors",
         "load"],
        [
            [r.mode, r.clients, r.requests, r.errors, f"{r.requests_per_s:.1f}", f"{r.p50_ms:.1f}", f"{r.p99_ms:.1f}",
             f"{r.healthz_p99_ms:.1f}", r.healthz_errors, f"{r.load_1min:.1f}"]
            for r in rows
        ],
    )  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=50_000)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--seconds", type=float, default=15.0, help="Load per client count.")
    parser.add_argument("--max-requests", type=int, default=2000, help="Bound on each client's loop.")
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=["batching", "no-batching", "mixed"],
        default=["batching", "no-batching"],
        help="mixed: searches while one writer adds and deletes (issue 37), batching on.",
    )
    parser.add_argument("--mixed-clients", type=int, default=16, help="Searching clients in the mixed case.")
    parser.add_argument("--adds", type=int, default=200, help="Images the mixed case's writer adds.")
    parser.add_argument("--deletes", type=int, default=50, help="Of which it deletes this many.")
    parser.add_argument("--store", type=Path, help="Keep the built collection here (reused when it exists).")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    started = dt.datetime.now(dt.UTC)
    images = query_images(64)
    rows: list[Row] = []
    mixed: list[MixedRow] = []
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as folder:
        store = args.store or Path(folder) / "store"
        if not store.exists():
            began = time.perf_counter()
            build_collection(store, args.points)
            print(f"built {args.points:,} points in {time.perf_counter() - began:.1f} s", file=sys.stderr)
        for mode in args.modes:
            process, url = start_server(store, mode != "no-batching", Path(folder) / f"{mode}.log")
            try:
                run_load(url, 2, 2.0, 20, images)  # warm-up: first requests pay for lazy initialisation
                if mode == "mixed":
                    mixed.append(
                        MixedRow(
                            clients=args.mixed_clients,
                            **run_mixed(url, args.mixed_clients, args.adds, args.deletes, images),
                        )
                    )
                    print(mixed_table(mixed[-1:]).splitlines()[-1], file=sys.stderr)
                    continue
                for clients in args.clients:
                    measured = run_load(url, clients, args.seconds, args.max_requests, images)
                    rows.append(Row(mode=mode, clients=clients, **measured))
                    print(table(rows[-1:]).splitlines()[-1], file=sys.stderr)
            finally:
                process.terminate()
                process.wait(30)
    print(f"\nServe throughput, {args.points:,} points, {BACKBONE} (random weights), {os.cpu_count()} CPUs "
          f"({cpu_name()}), {started:%Y-%m-%d}\n")  # fmt: skip
    if rows:
        print(table(rows))
    if mixed:
        print(f"\nReads and writes: {args.mixed_clients} searching clients, one writer adding {args.adds} images "
              f"and deleting {args.deletes}\n")  # fmt: skip
        print(mixed_table(mixed))
    report = {
        "meta": {
            "date": started.isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]),
            "cpu": cpu_name(),
            "cpus": os.cpu_count(),
            "points": args.points,
            "backbone": BACKBONE,
            "random_weights": True,
        },
        "rows": [asdict(row) for row in rows],
        "mixed": [asdict(row) for row in mixed],
    }
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
