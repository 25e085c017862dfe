"""What does Ray cost on one machine? Images/s of the local indexing path vs Ray with 1 and 2 actors.

On the same generated JPEG files and embedder spec, each into a fresh Qdrant Edge collection
(or, with ``--store http://host:6333``, a fresh collection on that server, written by writer
actors in parallel and deleted afterwards):

* ``local``  ``index_records`` in this process (the embedder is built inside the timed run,
  as the CLI builds it; the idle local Ray is up, as in the Ray runs);
* ``ray xN`` ``index_with_ray`` with N embedding actors on a local Ray started once before
  (a cluster is already up when a job runs), each actor with ``(CPUs - read CPUs) / N`` CPUs
  and as many torch threads (rounded up); the driver is the single Edge writer.

Per Ray run: the wall time of the hash pass (read + hash every file, check the store) and of
the embedding pass, and the busy seconds summed over workers of reading, embedding and
writing. ``img/s per actor`` = images / embed busy s is one actor's steady-state rate, the
figure a sizing table scales; ``writer pts/s`` = images / write busy s is one writer's upsert rate;
``other s`` = run s - embed busy s / actors is the time not spent embedding in parallel: what
a run pays once (the fingerprint task, worker and actor processes, model loads) plus waits
(actors starved of CPU by reading, writing or, on a shared machine, other jobs). Weights are
random (speed does not depend on them); nothing is downloaded.

    python benchmarks/ray_index.py --backbone clip-vit-b-32 --images 512 --json ray.json
    python benchmarks/ray_index.py --gpus-per-actor 1 --actors 1 2 --images 20000   # on a GPU machine
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from percep_rag import AlignedEmbedder, EmbedderSpec
from percep_rag.datasets.records import ImageRecord
from percep_rag.distributed import RayOptions, index_with_ray
from percep_rag.distributed.runtime import ray_session
from percep_rag.evaluation.tables import markdown_table
from percep_rag.indexing import index_records
from percep_rag.store import open_store

sys.path.insert(0, str(Path(__file__).resolve().parent))
from index_vs_embed import make_jpegs  # noqa: E402  (the same generated JPEGs as that benchmark)


def run_local(records: list[ImageRecord], spec: EmbedderSpec, store: str, collection: str) -> dict:
    started = time.perf_counter()
    embedder = AlignedEmbedder.from_spec(spec)
    built = time.perf_counter() - started
    with open_store(store) as opened:
        report = index_records(records, embedder=embedder, store=opened, collection=collection, progress=False)
    seconds = time.perf_counter() - started
    assert report.indexed == len(records), report
    return {"engine": "local", "actors": 0, "threads": torch.get_num_threads(), "run_s": seconds, "build_s": built}


def run_ray(
    records: list[ImageRecord], spec: EmbedderSpec, store: str, collection: str, actors: int, args: argparse.Namespace
) -> dict:
    cpus = float(os.cpu_count() or 2)
    per_actor = (cpus - args.read_cpus) / actors
    options = RayOptions(
        actors=actors, cpus_per_actor=per_actor, read_cpus=args.read_cpus, gpus_per_actor=args.gpus_per_actor
    )
    started = time.perf_counter()
    report = index_with_ray(records, spec=spec, store=store, collection=collection, options=options, progress=False)
    seconds = time.perf_counter() - started
    assert report.indexed == len(records), report
    stages = report.stage_seconds
    per_actor_rate = len(records) / stages["embed"]  # each actor embedded its share in its busy time
    return {
        "engine": f"ray x{actors}",
        "actors": actors,
        "threads": max(1, -(-per_actor // 1)),
        "run_s": seconds,
        "hash_pass_s": stages["hash_pass"],
        "embed_pass_s": stages["embed_pass"],
        "read_busy_s": stages["read"],
        "embed_busy_s": stages["embed"],
        "write_busy_s": stages["write"],
        "img_s_per_actor": per_actor_rate,
        "other_s": seconds - stages["embed"] / actors,
        "writer_pts_s": len(records) / stages["write"] if stages["write"] else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="clip-vit-b-32")
    parser.add_argument("--weights", default="random", help="weights of a non-tiny backbone ('random' default)")
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--jpeg-size", type=int, nargs=2, default=(320, 240))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--actors", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--read-cpus", type=float, default=0.5, help="CPUs per read task (left free of actors)")
    parser.add_argument("--gpus-per-actor", type=float, default=0.0, help="1 on a GPU machine (local path: cuda)")
    parser.add_argument("--store", default=None, help="a Qdrant URL to write to (default: Edge in a temp dir)")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved repeats; the best run of each counts")
    parser.add_argument("--note", default="", help="a label for the run, e.g. 'machine shared with other jobs'")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    weights = None if args.backbone.startswith("tiny-") else args.weights
    device = "cuda" if args.gpus_per_actor else "cpu"
    spec = EmbedderSpec(backbone=args.backbone, weights=weights, device=device, batch_size=args.batch_size)
    run_id = f"{os.getpid()}-{int(time.time())}"
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "images").mkdir()
        paths = make_jpegs(root / "images", args.images, tuple(args.jpeg_size))
        records = [ImageRecord(id=Path(p).name, uri=p) for p in paths]

        collections: list[str] = []

        def fresh(name: str) -> tuple[str, str]:
            collections.append(f"bench-{name}-{run_id}-{len(collections)}")
            return args.store or f"edge:{root / collections[-1]}", collections[-1]

        best: dict[str, dict] = {}
        try:
            started = time.perf_counter()
            with ray_session(RayOptions(num_cpus=os.cpu_count()), progress=False):
                ray_init_s = time.perf_counter() - started
                # Interleaved repeats, best of each: on a shared machine the load drifts between runs.
                for _ in range(args.repeats):
                    runs = [run_local(records, spec, *fresh("local"))]
                    runs += [run_ray(records, spec, *fresh(f"ray-{n}"), n, args) for n in args.actors]
                    for row in runs:
                        if row["engine"] not in best or row["run_s"] < best[row["engine"]]["run_s"]:
                            best[row["engine"]] = row
        finally:
            if args.store:  # leave nothing behind on a shared server
                with open_store(args.store) as opened:
                    for name in collections:
                        opened.delete_collection(name, missing_ok=True)
    rows = list(best.values())
    local_rate = args.images / rows[0]["run_s"]
    for row in rows:
        row["img_s"] = args.images / row["run_s"]
        row["vs_local"] = row["img_s"] / local_rate

    header = {
        "date": datetime.date.today().isoformat(),
        "cpu": platform.processor() or platform.machine(),
        "gpu": torch.cuda.get_device_name() if args.gpus_per_actor and torch.cuda.is_available() else None,
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "ray_init_s": ray_init_s,
        "note": args.note,
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    note = f" {args.note}" if args.note else ""
    print(
        f"# local vs Ray indexing ({header['date']}, {header['cpus']} CPUs, {args.backbone} random, "
        f"{args.images} JPEGs, batch {args.batch_size}, {args.store or 'Edge'}; Ray start {ray_init_s:.1f} s, "
        f"not counted){note}"
    )
    columns = [
        "engine", "threads/actor", "run s", "img/s", "vs local", "hash pass s", "embed pass s",
        "read busy s", "embed busy s", "write busy s", "img/s per actor", "writer pts/s", "other s",
    ]  # fmt: skip

    def cell(row: dict, key: str, fmt: str = ".1f") -> str:
        return format(row[key], fmt) if key in row else "-"

    cells = [
        [
            row["engine"],
            str(int(row["threads"])),
            cell(row, "run_s"),
            cell(row, "img_s"),
            cell(row, "vs_local", ".2f"),
            cell(row, "hash_pass_s"),
            cell(row, "embed_pass_s"),
            cell(row, "read_busy_s", ".2f"),
            cell(row, "embed_busy_s"),
            cell(row, "write_busy_s", ".2f"),
            cell(row, "img_s_per_actor"),
            cell(row, "writer_pts_s", ".0f"),
            cell(row, "other_s"),
        ]
        for row in rows
    ]
    print(markdown_table(columns, cells))
    if args.json:
        args.json.write_text(json.dumps({**header, "results": rows}, indent=1))


if __name__ == "__main__":
    main()
