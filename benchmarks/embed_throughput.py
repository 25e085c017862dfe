"""Embedding throughput: images/s from JPEG files end to end and from preprocessed tensors.

Compares, in one run and on the same backbone:
  * ``bare``      the backbone's forward on preprocessed tensors (no pooling/alignment/normalisation),
  * ``embedder``  ``AlignedEmbedder.embed_tensors`` on the same tensors,
  * ``plain``     a per-batch loop written the way open_clip's README shows it
                  (PIL open -> torchvision transform -> stack -> model, under no_grad/autocast),
  * ``e2e``       ``AlignedEmbedder.embed_many`` on the JPEG files (workers; nvJPEG on CUDA).

Weights are random unless --weights says otherwise (speed does not depend on the values).

    python benchmarks/embed_throughput.py --backbones clip-vit-b-16 dreamsim-ensemble --images 256
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from percep_rag import AlignedEmbedder, EmbedderSpec
from percep_rag.evaluation.tables import markdown_table


def make_jpegs(folder: Path, count: int, size: tuple[int, int], seed: int = 0) -> list[str]:
    """Smooth random photos-like JPEGs (so the encoder does realistic work), quality 90."""
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        small = rng.integers(0, 256, (size[1] // 16, size[0] // 16, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize(size, Image.BICUBIC)
        path = folder / f"{index:06d}.jpg"
        image.save(path, quality=90)
        paths.append(str(path))
    return paths


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: torch.device, repeats: int) -> float:
    """Best-of-``repeats`` wall time of ``fn()`` after one warm-up call."""
    fn()
    synchronize(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def plain_loop(paths: list[str], embedder: AlignedEmbedder, batch_size: int) -> None:
    """What a user writes from open_clip's README: PIL + torchvision transform per image."""
    from torchvision import transforms as T

    spec = embedder.backbone.preprocess
    if spec.resize == "squash":
        resize = T.Resize((spec.image_size, spec.image_size), interpolation=T.InterpolationMode.BICUBIC)
        transform = T.Compose([resize, T.ToTensor()])
    else:
        resize = T.Resize(spec.shorter_side, interpolation=T.InterpolationMode.BICUBIC)
        transform = T.Compose([resize, T.CenterCrop(spec.image_size), T.ToTensor()])
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if embedder.on_cuda else contextlib.nullcontext()
    for start in range(0, len(paths), batch_size):
        batch = torch.stack([transform(Image.open(p).convert("RGB")) for p in paths[start : start + batch_size]])
        with torch.no_grad(), autocast:
            features = embedder.backbone(batch.to(embedder.device)).cls
            features = torch.nn.functional.normalize(features.float(), dim=-1)
        features.cpu()


def bench_backbone(name: str, args: argparse.Namespace, paths: list[str]) -> dict:
    spec = EmbedderSpec(backbone=name, weights=args.weights, device=args.device, batch_size=args.batch_size)
    embedder = AlignedEmbedder.from_spec(spec)
    device = embedder.device
    size = embedder.backbone.preprocess.image_size
    pixels = torch.randint(0, 256, (args.tensor_images, 3, size, size), dtype=torch.uint8)
    if device.type == "cuda":
        pixels = pixels.to(device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if embedder.on_cuda else contextlib.nullcontext()

    def bare() -> None:
        with torch.inference_mode(), autocast:
            for start in range(0, len(pixels), args.batch_size):
                embedder.backbone(pixels[start : start + args.batch_size].float().div(255)).cls.float().cpu()

    def ours_tensors() -> None:
        embedder.embed_tensors(pixels)

    results = {
        "backbone": name,
        "random_weights": embedder.backbone.random_weights,
        "bare_tensors_img_s": len(pixels) / timed(bare, device, args.repeats),
        "embedder_tensors_img_s": len(pixels) / timed(ours_tensors, device, args.repeats),
        "plain_loop_jpeg_img_s": len(paths) / timed(lambda: plain_loop(paths, embedder, args.batch_size), device, 1),
        "embedder_jpeg_img_s": len(paths) / timed(lambda: embedder.embed_many(paths), device, 1),
    }
    results["embedder_vs_bare"] = results["embedder_tensors_img_s"] / results["bare_tensors_img_s"]
    results["e2e_speedup_vs_plain"] = results["embedder_jpeg_img_s"] / results["plain_loop_jpeg_img_s"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["clip-vit-b-16", "dreamsim-ensemble"])
    parser.add_argument("--weights", default="random", help="'random' (default) or empty for local pretrained weights")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--images", type=int, default=256, help="JPEG files for the end-to-end runs")
    parser.add_argument("--tensor-images", type=int, default=256, help="tensor batch size total for forward runs")
    parser.add_argument("--jpeg-size", type=int, nargs=2, default=(500, 375))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    args.weights = args.weights or None

    with tempfile.TemporaryDirectory() as folder:
        paths = make_jpegs(Path(folder), args.images, tuple(args.jpeg_size))
        rows = [bench_backbone(name, args, paths) for name in args.backbones]

    device = (
        torch.cuda.get_device_name()
        if torch.cuda.is_available() and args.device != "cpu"
        else platform.processor() or "cpu"
    )
    header = {
        "date": datetime.date.today().isoformat(),
        "device": device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "args": {
            k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
        },
    }
    print(f"# embed throughput ({header['date']}, {device}, torch {torch.__version__})")
    columns = [
        "backbone", "weights", "bare fwd (img/s)", "embedder tensors (img/s)", "ratio",
        "plain loop JPEG (img/s)", "embedder JPEG (img/s)", "speed-up",
    ]  # fmt: skip
    cells = [
        [
            row["backbone"],
            "random" if row["random_weights"] else "pretrained",
            f"{row['bare_tensors_img_s']:.1f}",
            f"{row['embedder_tensors_img_s']:.1f}",
            f"{row['embedder_vs_bare']:.2f}",
            f"{row['plain_loop_jpeg_img_s']:.1f}",
            f"{row['embedder_jpeg_img_s']:.1f}",
            f"{row['e2e_speedup_vs_plain']:.2f}x",
        ]
        for row in rows
    ]
    print(markdown_table(columns, cells))
    if args.json:
        args.json.write_text(json.dumps({**header, "results": rows}, indent=1))


if __name__ == "__main__":
    main()
