"""DreamSim's released ensemble (``dreamsim:ensemble``) against today's untuned ``dreamsim-ensemble``, one run.

Both embed the same preprocessed 224 x 224 images with ``AlignedEmbedder.embed_tensors`` at
``--precision`` (default ``auto``: bf16 on CPUs with AMX / AVX-512 BF16, fp32 elsewhere):

  * ``dreamsim-ensemble``  the three pretrained networks, no alignment (one ensemble forward per image),
  * ``dreamsim:ensemble``  the release: base + aligned vectors (two ensemble forwards per image: the
                           bare networks, then the copy with the LoRA adapter merged into its weights),
  * ``unmerged``           the release's aligned forward alone, adapter merged vs left as peft layers
                           (what ``dreamsim`` runs), fp32 and at ``--precision``.

Without ``--release`` a release folder of RANDOM weights is written to a temporary folder (speed does
not depend on the values); ``dreamsim-ensemble`` always has random weights here.

    python benchmarks/dreamsim_release_speed.py --images 32 --batch-size 16 --json out.json
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from percep_rag import AlignedEmbedder, EmbedderSpec
from percep_rag.evaluation.tables import markdown_table
from percep_rag.precision import compute_copy, cpu_has_fast_bf16, resolve_precision


def _images_per_second(run, count: int, repeats: int) -> float:
    run()  # warm-up: first-call allocations and kernel selection
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return count / best


def _embedder_row(name: str, spec: EmbedderSpec, pixels: torch.Tensor, repeats: int) -> dict:
    started = time.perf_counter()
    embedder = AlignedEmbedder.from_spec(spec)
    built = time.perf_counter() - started
    speed = _images_per_second(lambda: embedder.embed_tensors(pixels), len(pixels), repeats)
    forwards = 1 if embedder.aligned_backbone is None else 2
    row = {
        "backbone": name,
        "alignment": embedder.alignment.kind,
        "dtype": str(embedder.compute_dtype).removeprefix("torch."),
        "ensemble forwards per image": forwards,
        "img/s (base + aligned)": round(speed, 2),
        "build s": round(built, 1),
    }
    return row, embedder


def _unmerged_rows(embedder: AlignedEmbedder, pixels: torch.Tensor, batch: int, repeats: int, precision: str) -> list:
    """The release's aligned forward: the merged copy vs the backbone with peft's LoRA layers left in place."""
    import peft

    from percep_rag.alignment.lora.dreamsim import dreamsim_to_percep_rag
    from percep_rag.alignment.lora.peft_format import lora_config

    adapter = embedder.alignment._adapter  # read once by the embedder
    unmerged = peft.get_peft_model(copy.deepcopy(embedder.backbone), lora_config(adapter))
    peft.set_peft_model_state_dict(unmerged, {dreamsim_to_percep_rag(k): v for k, v in adapter.tensors.items()})
    unmerged.eval()
    rows = []
    for dtype in dict.fromkeys([torch.float32, resolve_precision(precision, torch.device("cpu"))]):
        for label, module in (("merged", embedder.aligned_backbone), ("unmerged (peft layers)", unmerged)):
            model = compute_copy(module, dtype)

            def run(model=model) -> None:
                with torch.inference_mode():
                    for start in range(0, len(pixels), batch):
                        model(pixels[start : start + batch].float().div(255))

            speed = _images_per_second(run, len(pixels), repeats)
            rows.append(
                {"aligned forward": label, "dtype": str(dtype).removeprefix("torch."), "img/s": round(speed, 2)}
            )
    return rows


def _table(rows: list[dict]) -> str:
    return markdown_table(list(rows[0]), [list(row.values()) for row in rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--release", type=Path, help="a DreamSim release folder (default: random weights, written)")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--no-unmerged", action="store_true", help="skip the merged vs unmerged comparison")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (args.images, 3, 224, 224), dtype=torch.uint8, generator=generator)
    common = dict(batch_size=args.batch_size, precision=args.precision, compile="never", device="cpu")
    with tempfile.TemporaryDirectory() as scratch:
        release = args.release
        if release is None:
            from percep_rag.backbones.dreamsim_random import write_random_release

            release = write_random_release(Path(scratch) / "release", ["ensemble"])
        untuned, _ = _embedder_row(
            "dreamsim-ensemble",
            EmbedderSpec(backbone="dreamsim-ensemble", weights="random", **common),
            pixels,
            args.repeats,
        )
        released, embedder = _embedder_row(
            "dreamsim:ensemble", EmbedderSpec(backbone="dreamsim:ensemble", weights=str(release), **common), pixels,
            args.repeats,
        )  # fmt: skip
        unmerged = (
            [] if args.no_unmerged else _unmerged_rows(embedder, pixels, args.batch_size, args.repeats, args.precision)
        )
    result = {
        "date": datetime.date.today().isoformat(),
        "cpu": platform.processor() or platform.machine(),
        "fast_bf16_cpu": cpu_has_fast_bf16(),
        "threads": torch.get_num_threads(),
        "images": args.images,
        "batch_size": args.batch_size,
        "rows": [untuned, released],
        "unmerged": unmerged,
        "random_weights": args.release is None,
    }
    print(_table([untuned, released]))
    if unmerged:
        print()
        print(_table(unmerged))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
