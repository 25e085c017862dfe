"""Text vs image query latency: what a search by text costs next to a search by image.

A text query is one text-tower forward (tokenise, ``encode_text``, normalise); an image query
is decode + preprocess + one image-tower forward. Both are timed as a service sees them, one
query at a time (batch of 1), after warm-up, on a backbone with random weights at its real size
(speed does not depend on the values). The one-off cost of the first text query (building the
text tower from the image tower's recipe and checking it against it) is reported apart.

    python benchmarks/text_query_latency.py --backbone clip-vit-b-16 --repeats 30          # CPU
    python benchmarks/text_query_latency.py --backbone tiny-clip-random --repeats 5        # smoke
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from percep_rag import AlignedEmbedder, EmbedderSpec
from percep_rag.precision import cpu_precision_summary

TEXTS = ("a red floral midi dress", "a photo of a dog on the grass", "two people riding bicycles at sunset")


def _times(function, repeats: int) -> list[float]:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - started)
    return seconds


def _summary(seconds: list[float]) -> dict:
    ordered = sorted(seconds)
    return {
        "median_ms": 1000 * statistics.median(ordered),
        "p90_ms": 1000 * ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
        "min_ms": 1000 * ordered[0],
    }


def measure(backbone: str, precision: str, repeats: int, threads: int | None) -> dict:
    if threads:
        torch.set_num_threads(threads)
    spec = EmbedderSpec(backbone=backbone, weights="random", precision=precision, compile="never", device="cpu")
    embedder = AlignedEmbedder.from_spec(spec)
    started = time.perf_counter()
    embedder.embed_text([TEXTS[0]])
    first_text = time.perf_counter() - started
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(buffer, format="JPEG", quality=90)
    jpeg = buffer.getvalue()
    for _ in range(3):  # warm-up both paths
        embedder.embed_both([jpeg])
        embedder.embed_text([TEXTS[1]])
    counter = iter(range(10**9))
    text = _times(lambda: embedder.embed_text([TEXTS[next(counter) % len(TEXTS)]]), repeats)
    image = _times(lambda: embedder.embed_both([jpeg]), repeats)
    return {
        "backbone": backbone,
        "weights": "random",
        "precision": precision,
        "compute_dtype": str(embedder.compute_dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "repeats": repeats,
        "first_text_query_s": first_text,
        "text_query": _summary(text),
        "image_query_jpeg_640x480": _summary(image),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="clip-vit-b-16")
    parser.add_argument("--precision", nargs="+", default=["fp32", "auto"], choices=["fp32", "auto", "bf16"])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="Also write the results as JSON here.")
    args = parser.parse_args()
    rows = [measure(args.backbone, precision, args.repeats, args.threads) for precision in args.precision]
    result = {
        "date": datetime.date.today().isoformat(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_precision": cpu_precision_summary(),
        "torch": torch.__version__,
        "rows": rows,
    }
    for row in rows:
        text, image = row["text_query"]["median_ms"], row["image_query_jpeg_640x480"]["median_ms"]
        print(
            f"{row['backbone']} {row['precision']} ({row['compute_dtype']}, {row['threads']} threads): "
            f"text {text:.1f} ms, image {image:.1f} ms (median of {row['repeats']}); "
            f"first text query {row['first_text_query_s']:.2f} s"
        )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    from percep_rag.cli.errors import run_script

    run_script(main)
