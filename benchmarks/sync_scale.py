"""Sync at catalog scale (issue 39): what a sync costs against a bare directory walk.

One run, on a generated folder (under ``--root``, a temporary folder by default: never the repo):

* **walk**: ``os.walk`` and a ``stat`` of every file, nothing read: the floor of any sync;
* **store scan**: one pass over the collection's payloads (no vectors), as sync makes;
* **no-op sync**: :func:`percep_rag.sync.sync_records` with nothing changed (the stat fast path:
  no file read), and the listing (:func:`~percep_rag.datasets.records.scan_folder`) timed apart;
* **1% change**: 1% of the files rewritten with new pixels, then a sync (reads and embeds those);
* **--checksum**: ``sync_records(..., checksum=True)`` with nothing changed: every file read and hashed.

Target (issue 39): the no-op sync within 3x of walk + store scan.

Two folders: ``--files`` distinct small PNGs (the collection is filled with exactly the payloads
indexing writes, records and stats included, but random vectors: embedding is not what is
timed; :func:`prefill`), and ``--images`` x ``--copies`` byte-identical files (the issue's
18,000-file case: 3,000 x 6), indexed for real with ``tiny-vit-random`` (random weights), whose
``index`` line must say every record is kept. The store is Qdrant Edge (the on-disk default).
Seconds exclude the interpreter's start-up and model building (``index --sync`` adds them).

Usage::

    python benchmarks/sync_scale.py --files 100000 --images 3000 --copies 6 --json sync.json
    python benchmarks/sync_scale.py --files 2000 --images 50 --copies 3   # a smoke run
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from percep_rag import AlignedEmbedder, EmbedderSpec  # noqa: E402
from percep_rag.cli.study import cpu_name  # noqa: E402
from percep_rag.datasets.records import scan_folder  # noqa: E402
from percep_rag.duplicates import pixel_hash  # noqa: E402
from percep_rag.indexing import DEFAULT_PAYLOAD_INDEXES, index_records, read_record_stat, write_points  # noqa: E402
from percep_rag.point_records import record_entry  # noqa: E402
from percep_rag.store import open_store  # noqa: E402
from percep_rag.sync import sync_records  # noqa: E402

COLLECTION = "catalog"
#: Generated files are dated this far back: a catalog's files are not being written (their stats
#: are recorded; a file written in the last 2 s is read again until it settles).
SETTLED_S = 3600.0


def png(seed: int, size: int) -> bytes:
    import io

    pixels = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def settle(folder: Path) -> None:
    when = time.time_ns() - int(SETTLED_S * 1e9)
    for base, _, names in os.walk(folder):
        for name in names:
            os.utime(os.path.join(base, name), ns=(when, when))


def make_distinct(folder: Path, files: int, size: int) -> None:
    """``files`` distinct PNGs in 100 label folders."""
    for n in range(files):
        sub = folder / f"label{n % 100:02d}"
        if n < 100:
            sub.mkdir(parents=True)
        (sub / f"{n:07d}.png").write_bytes(png(n, size))
    settle(folder)


def make_copies(folder: Path, images: int, copies: int, size: int) -> None:
    """``images`` distinct PNGs, each as ``copies`` byte-identical files (one photo for several products)."""
    for n in range(images):
        data = png(10_000_000 + n, size)
        for c in range(copies):
            sub = folder / f"product{c}"
            sub.mkdir(parents=True, exist_ok=True)
            (sub / f"{n:06d}.png").write_bytes(data)
    settle(folder)


def walk_and_stat(folder: Path) -> int:
    count = 0
    for base, _, names in os.walk(folder):
        for name in names:
            os.stat(os.path.join(base, name))
            count += 1
    return count


def prefill(store, records, embedder: AlignedEmbedder, batch: int = 2048) -> None:
    """The payloads ``index`` writes (every file read, hashed, stat-ed, its pixel hash taken), with
    random unit vectors: a collection indexed now, whose syncs have no pixel hash to backfill."""
    store.ensure_collection(COLLECTION, embedder.fingerprint, payload_indexes=DEFAULT_PAYLOAD_INDEXES)
    rng = np.random.default_rng(0)
    fp = embedder.fingerprint
    for start in range(0, len(records), batch):
        part = records[start : start + batch]
        read = [read_record_stat(record, COLLECTION) for record in part]
        vectors = {
            name: (v := rng.normal(size=(len(part), dim)).astype(np.float32)) / np.linalg.norm(v, axis=1, keepdims=True)
            for name, dim in (("base", fp.base_dim), ("aligned", fp.dim))
        }
        write_points(
            store, COLLECTION, part, [d for _, d, _, _ in read], [p for _, _, p, _ in read],
            vectors["base"], vectors["aligned"], None,
            entries=[[record_entry(r.payload(), s)] for r, (_, _, _, s) in zip(part, read, strict=True)],
            pixel_hashes=[pixel_hash(data) for data, _, _, _ in read],
        )  # fmt: skip
    store.optimize(COLLECTION)


def timed(fn):
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def measure(folder: Path, store_path: Path, embedder: AlignedEmbedder, *, real_index: bool, change: float) -> dict:
    row: dict = {"folder": str(folder)}
    row["walk_s"], row["files"] = timed(lambda: walk_and_stat(folder))
    row["scan_folder_s"], records = timed(lambda: scan_folder(folder))
    with open_store(f"edge:{store_path}") as store:
        if real_index:
            row["index_s"], report = timed(
                lambda: index_records(records, embedder=embedder, store=store, collection=COLLECTION, progress=False)
            )
            row["index_line"] = str(report).split(" in ")[0] + " ..." + str(report).split(")")[-1]
        else:
            row["prefill_s"], _ = timed(lambda: prefill(store, records, embedder))
        row["points"] = store.count(COLLECTION)
        row["store_scan_s"], _ = timed(lambda: sum(1 for _ in store.iterate(COLLECTION, batch=1024)))

        def sync(**kwargs):
            return sync_records(records, embedder=embedder, store=store, collection=COLLECTION, progress=False,
                                **kwargs)  # fmt: skip

        row["noop_sync_s"], noop = timed(sync)
        row["noop_line"] = str(noop)
        changed = sorted(records, key=lambda r: r.uri)[:: max(1, round(1 / change))]
        for n, record in enumerate(changed):
            Path(record.uri).write_bytes(png(50_000_000 + n, 16))
        row["changed_files"] = len(changed)
        row["change_sync_s"], changed_report = timed(sync)
        row["change_line"] = str(changed_report)
        when = time.time_ns() - int(SETTLED_S * 1e9)
        for record in changed:  # the changed files settle: one more sync records their stats
            os.utime(record.uri, ns=(when, when))
        sync()
        row["checksum_sync_s"], full = timed(lambda: sync(checksum=True))
        row["checksum_line"] = str(full)
    floor = row["walk_s"] + row["store_scan_s"]
    for key in ("noop_sync", "change_sync", "checksum_sync"):
        row[f"{key}_files_s"] = row["files"] / row[f"{key}_s"]
        row[f"{key}_vs_walk"] = row[f"{key}_s"] / row["walk_s"]
    row["walk_files_s"] = row["files"] / row["walk_s"]
    row["noop_vs_walk_plus_scan"] = row["noop_sync_s"] / floor
    row["target_met"] = row["noop_vs_walk_plus_scan"] <= 3.0
    return row


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=100_000, help="Distinct small files of the large folder.")
    parser.add_argument("--images", type=int, default=3000, help="Distinct images of the copies folder.")
    parser.add_argument("--copies", type=int, default=6, help="Byte-identical files per image there.")
    parser.add_argument("--change", type=float, default=0.01, help="Share of files rewritten for the change sync.")
    parser.add_argument("--root", type=Path, default=None, help="Where to generate (default: a temporary folder).")
    parser.add_argument("--json", type=Path, default=None, help="Also write the results here.")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="sync-scale-", dir=args.root))
    embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random", device="cpu"))
    report = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "rows": {},
    }
    try:
        cases = []
        if args.files:
            cases.append((f"{args.files} distinct", lambda f: make_distinct(f, args.files, 8), False))
        if args.images:
            cases.append(
                (f"{args.images} x {args.copies} copies", lambda f: make_copies(f, args.images, args.copies, 32), True)
            )
        for name, make, real in cases:
            folder = root / name.replace(" ", "_")
            made_s, _ = timed(lambda make=make, folder=folder: make(folder))
            row = measure(folder, root / f"{folder.name}.store", embedder, real_index=real, change=args.change)
            row["generate_s"] = made_s
            report["rows"][name] = row
            print(
                f"{name}: {row['files']} files, {row['points']} points | walk {row['walk_s']:.2f}s "
                f"({row['walk_files_s']:.0f} files/s), store scan {row['store_scan_s']:.2f}s | "
                f"no-op sync {row['noop_sync_s']:.2f}s ({row['noop_sync_files_s']:.0f} files/s, "
                f"{row['noop_vs_walk_plus_scan']:.2f}x walk+scan) | {row['changed_files']} changed "
                f"{row['change_sync_s']:.2f}s | --checksum {row['checksum_sync_s']:.2f}s "
                f"({row['checksum_sync_files_s']:.0f} files/s)",
                flush=True,
            )
            for key in ("index_line", "noop_line", "change_line", "checksum_line"):
                if key in row:
                    print(f"  {key}: {row[key]}", flush=True)
            if args.json is not None:
                args.json.write_text(json.dumps(report, indent=1))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return report


if __name__ == "__main__":
    main()
