"""Embedding throughput against the machine's limit, in one run.

For each backbone it measures:
  * the matmul peak of the device in fp32 and bf16 (GFLOP/s, 2048x2048), and from the model's
    FLOPs per image (counted by torch's FlopCounterMode) the bf16 limit in images/s,
  * ``bare``      the backbone's forward on preprocessed tensors, fp32 and bf16 (bf16 weights on
                  CPU, as the embedder runs them; ``--autocast`` adds CPU autocast for comparison),
  * ``embedder``  ``AlignedEmbedder.embed_tensors`` in fp32 and at ``--precision`` (default auto),
                  as a short job runs it (fewer than ``cpu_compile_min_images`` images: eager on CPU),
  * ``jpeg``      ``AlignedEmbedder.embed_many`` on JPEG files end to end (decode overlapped),
  * ``long job``  the default embedder as a long job runs it (``index``/``embed`` of 512+ images,
                  a Ray actor: ``prepare_for_job`` compiles it on CPU), tensors and JPEG files,
                  its one-off compile seconds and its cosine to the fp32 embedder (skip: ``--no-long-job``),
  * ``compiled``  with ``--compile``: the embedder with ``compile="always"`` (torch.compile),
  * ``plain``     with ``--plain``: a per-batch loop written the way open_clip's README shows it,
and prints each as a fraction of the bf16 limit. bf16 pays off on CPUs with AMX / AVX-512 BF16
only; ``precision=auto`` stays fp32 elsewhere (see percep_rag.precision).

Weights are random unless --weights says otherwise (speed does not depend on the values).

    python benchmarks/embed_throughput.py --backbones clip-vit-b-16 dreamsim-ensemble --images 256 --json out.json
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
from torch.utils.flop_counter import FlopCounterMode

from percep_rag import AlignedEmbedder, EmbedderSpec
from percep_rag.config import PRECISIONS
from percep_rag.evaluation.tables import markdown_table
from percep_rag.precision import FAST_BF16_CPU_FLAGS, compute_copy, cpu_flags, cpu_has_fast_bf16


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


def _seconds(fn, device: torch.device) -> float:
    """Wall time of one call of ``fn()`` (no warm-up)."""
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def of_bf16_limit(row: dict, key: str) -> float:
    """``row[key]`` (img/s) as a fraction of the bf16 limit: at the peak measured next to it where there is one."""
    peak = row.get("near_peak_gflop_s", {}).get(key)
    return row[key] / row["bf16_limit_img_s"] if peak is None else row[key] * row["gflop_per_image"] / peak


def per_batch_fractions(
    run_batch, images: int, gflops: float, peak_now, samples: int, device: torch.device, agree: float = 0.10
) -> list[tuple[float, float]]:
    """``samples`` times: the bf16 peak, ONE forward batch (``run_batch`` of ``images``), the peak
    again; the batch's rate as a fraction of the mean peak, for the samples whose two peaks agree
    within ``agree``. On a VM whose two vCPUs sometimes share one core's AMX unit the peak jumps
    between two levels within seconds: a sample of one batch (about a second) mostly sits in one
    state, a run of several batches often does not, and only a rate and a peak taken in the same
    state make a fraction. Returns ``(fraction, mean peak GFLOP/s)`` per kept sample."""
    fractions = []
    for _ in range(samples):
        before = peak_now()
        rate = images / _seconds(run_batch, device)
        after = peak_now()
        if abs(before - after) <= agree * max(before, after):
            peak = (before + after) / 2
            fractions.append((rate * gflops / peak, peak))
    return fractions


def alternating_ratios(numerator, denominator, images: tuple[int, int], rounds: int, device: torch.device) -> list:
    """``rounds`` times ``numerator()`` then ``denominator()`` back to back (``images`` each); per
    round the numerator's rate over the denominator's. Adjacent runs mostly share the machine's
    state, so the median of the rounds' ratios is the comparison."""
    ratios = []
    for _ in range(rounds):
        numerator_rate = images[0] / _seconds(numerator, device)
        ratios.append(numerator_rate / (images[1] / _seconds(denominator, device)))
    return ratios


def min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """The smallest row-wise cosine between two sets of vectors (row ``i`` with row ``i``)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(((a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())


def matmul_peak(device: torch.device, dtype: torch.dtype, size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a ``size`` x ``size`` matmul in ``dtype`` (best of ``repeats`` after a warm-up)."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    seconds = timed(lambda: torch.mm(a, b), device, repeats)
    return 2 * size**3 / seconds / 1e9


def gflops_per_image(backbone: torch.nn.Module, size: int) -> float:
    """FLOPs of one image's forward (matmuls and convolutions, as torch counts them), in GFLOP.

    Counted with autograd on: without it ``nn.MultiheadAttention`` takes its fused fast path,
    which the counter does not see (a third of a ViT's FLOPs: 22.7 instead of 33.9 for ViT-B/16).
    """
    image = torch.rand(1, 3, size, size, device=next(backbone.parameters()).device, requires_grad=True)
    with torch.enable_grad(), FlopCounterMode(display=False) as counter:
        backbone(image)
    return counter.get_total_flops() / 1e9


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


def bench_backbone(name: str, args: argparse.Namespace, paths: list[str], peaks: dict[str, float]) -> dict:
    def build(precision: str, compile: str = "auto") -> AlignedEmbedder:
        spec = EmbedderSpec(
            backbone=name,
            weights=args.weights,
            device=args.device,
            batch_size=args.batch_size,
            precision=precision,
            compile=compile,
        )
        return AlignedEmbedder.from_spec(spec)

    fp32 = build("fp32")
    chosen = build(args.precision)
    if chosen.compute_dtype == torch.float32:  # auto on a CPU without native bf16: the same embedder
        chosen = fp32
    device = fp32.device
    size = fp32.backbone.preprocess.image_size
    pixels = torch.randint(0, 256, (args.tensor_images, 3, size, size), dtype=torch.uint8)
    if device.type == "cuda":
        pixels = pixels.to(device)
    count = len(pixels)

    on_cpu = device.type == "cpu"
    # The machine's speed drifts (other jobs, a shared host): each path is compared with the bf16
    # matmul peak measured right before and after it (``near_peak_gflop_s``), where bf16 is native.
    near_peaks = args.near_peaks and (not on_cpu or cpu_has_fast_bf16())
    near: dict[str, float] = {}

    def peak_now() -> float:
        return matmul_peak(device, torch.bfloat16, args.matmul_size, repeats=3)

    def rate(key: str, images: int, fn, repeats: int) -> None:
        before = peak_now() if near_peaks else None
        results[key] = images / timed(fn, device, repeats)
        if near_peaks:
            near[key] = (before + peak_now()) / 2

    def bare(module: torch.nn.Module, autocast: bool = False, images: int | None = None):
        images = count if images is None else images

        def run() -> None:
            context = torch.autocast(device.type, dtype=torch.bfloat16) if autocast else contextlib.nullcontext()
            with torch.inference_mode(), context:
                for start in range(0, images, args.batch_size):
                    batch = pixels[start : min(start + args.batch_size, images)].float().div(255)
                    module(batch).cls.float().cpu()

        return images, run, args.repeats

    bf16_module = compute_copy(fp32.backbone, torch.bfloat16) if on_cpu else fp32.backbone
    gflops = gflops_per_image(fp32.backbone, size)
    limit = peaks["bf16"] / gflops
    results: dict = {
        "backbone": name,
        "random_weights": fp32.backbone.random_weights,
        "gflop_per_image": gflops,
        "bf16_limit_img_s": limit,
        "fp32_limit_img_s": peaks["fp32"] / gflops,
        "precision": args.precision,
        "embedder_dtype": str(chosen.compute_dtype).removeprefix("torch."),
        "near_peak_gflop_s": near,
    }
    rate("bare_fp32_img_s", *bare(fp32.backbone))
    bf16_images = count if args.bf16_images is None else min(args.bf16_images, count)
    if bf16_images:  # an emulated-bf16 CPU (AVX2) runs bf16 many times slower: --bf16-images keeps it short
        rate("bare_bf16_img_s", *bare(bf16_module, autocast=not on_cpu, images=bf16_images))
        if args.autocast and on_cpu:
            rate("bare_bf16_autocast_img_s", *bare(fp32.backbone, autocast=True, images=bf16_images))
    rate("embedder_fp32_tensors_img_s", count, lambda: fp32.embed_tensors(pixels), args.repeats)
    if chosen is fp32:
        results["embedder_tensors_img_s"] = results["embedder_fp32_tensors_img_s"]
    else:
        rate("embedder_tensors_img_s", count, lambda: chosen.embed_tensors(pixels), args.repeats)
    rate("embedder_jpeg_img_s", len(paths), lambda: chosen.embed_many(paths), 1)
    reference = fp32.embed_tensors(pixels).aligned
    results["embedder_cosine_to_fp32"] = min_cosine(chosen.embed_tensors(pixels).aligned, reference)
    if args.long_job:
        long_job = build(args.precision)
        long_job.prepare_for_job(long_job.cpu_compile_min_images)  # what index/embed of a large job does
        results["long_job_compiled"] = long_job.compiled
        long_job.embed_tensors(pixels)  # the first call compiles: its time is the one-off price
        results["long_job_compile_s"] = long_job.compile_seconds
        long_job.embed_many(paths)
        # Tensors and JPEG files interleaved, best of each: their ratio is not a drift of the machine.
        before = peak_now() if near_peaks else None
        best = {"tensors": float("inf"), "jpeg": float("inf")}
        calls = {"tensors": lambda: long_job.embed_tensors(pixels), "jpeg": lambda: long_job.embed_many(paths)}
        for _ in range(max(1, args.repeats)):
            for path, fn in calls.items():
                best[path] = min(best[path], _seconds(fn, device))
        results["embedder_long_tensors_img_s"] = count / best["tensors"]
        results["embedder_long_jpeg_img_s"] = len(paths) / best["jpeg"]
        if near_peaks:
            near["embedder_long_tensors_img_s"] = near["embedder_long_jpeg_img_s"] = (before + peak_now()) / 2
        results["long_job_cosine_to_fp32"] = min_cosine(long_job.embed_tensors(pixels).aligned, reference)
        results["long_jpeg_vs_tensors"] = results["embedder_long_jpeg_img_s"] / results["embedder_long_tensors_img_s"]
        results["long_job_of_bf16_limit"] = of_bf16_limit(results, "embedder_long_tensors_img_s")
        if near_peaks and args.samples:
            one_batch = pixels[: long_job.forward_batch_size]
            fractions = per_batch_fractions(
                lambda: long_job.embed_tensors(one_batch), len(one_batch), gflops, peak_now, args.samples, device
            )
            results["per_batch_fractions"] = [fraction for fraction, _ in fractions]
            results["per_batch_peaks_gflop_s"] = [peak for _, peak in fractions]
            results["args_samples"] = args.samples
            if fractions:
                results["long_job_per_batch_of_bf16_limit"] = float(np.median(results["per_batch_fractions"]))
        if args.rounds:
            ratios = alternating_ratios(calls["jpeg"], calls["tensors"], (len(paths), count), args.rounds, device)
            results["alternating_jpeg_vs_tensors"] = ratios
            results["long_job_alternating_jpeg_vs_tensors"] = float(np.median(ratios))
    if args.compile:
        compiled = build(args.precision, compile="always")
        rate("embedder_compiled_tensors_img_s", count, lambda: compiled.embed_tensors(pixels), args.repeats)
    if args.plain:
        rate("plain_loop_jpeg_img_s", len(paths), lambda: plain_loop(paths, fp32, args.batch_size), 1)
    results["embedder_vs_fp32"] = results["embedder_tensors_img_s"] / results["embedder_fp32_tensors_img_s"]
    results["jpeg_vs_tensors"] = results["embedder_jpeg_img_s"] / results["embedder_tensors_img_s"]
    return results


DTYPES = (("fp32", "float32"), ("bf16", "bfloat16"))
#: (column, result key) of the images/s figures, each also shown as a fraction of the bf16 limit.
SPEED_COLUMNS = [
    ("bare fp32", "bare_fp32_img_s"),
    ("bare bf16", "bare_bf16_img_s"),
    ("bare bf16 autocast", "bare_bf16_autocast_img_s"),
    ("embedder fp32", "embedder_fp32_tensors_img_s"),
    ("embedder, short job", "embedder_tensors_img_s"),
    ("embedder JPEG, short job", "embedder_jpeg_img_s"),
    ("embedder, long job (default)", "embedder_long_tensors_img_s"),
    ("embedder JPEG, long job (default)", "embedder_long_jpeg_img_s"),
    ("embedder compiled", "embedder_compiled_tensors_img_s"),
    ("plain loop JPEG", "plain_loop_jpeg_img_s"),
]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["clip-vit-b-16", "dreamsim-ensemble"])
    parser.add_argument("--weights", default="random", help="'random' (default) or empty for local pretrained weights")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help="the embedder's precision")
    parser.add_argument("--images", type=int, default=256, help="JPEG files for the end-to-end runs")
    parser.add_argument("--tensor-images", type=int, default=256, help="tensor batch size total for forward runs")
    parser.add_argument("--jpeg-size", type=int, nargs=2, default=(500, 375))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--matmul-size", type=int, default=2048, help="square matmul size for the peaks")
    parser.add_argument(
        "--bf16-images", type=int, default=None, help="images for the bare bf16 forward (default all; 0 skips it)"
    )
    parser.add_argument("--autocast", action="store_true", help="also time the bare forward under CPU autocast")
    parser.add_argument("--compile", action="store_true", help="also time the embedder with torch.compile")
    parser.add_argument("--plain", action="store_true", help="also time a plain open_clip-README loop on the JPEGs")
    parser.add_argument(
        "--near-peaks",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compare each path with the bf16 matmul peak measured right before and after it (native bf16 only)",
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=24,
        help="long job: (peak, one forward batch, peak) samples, those whose two peaks differ by <= 10%% kept; "
        "their median is the fraction of the bf16 limit a drifting machine can be judged by (0: none)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=8,
        help="long job: rounds of JPEG files then tensors back to back; the median of the rounds' ratios (0: none)",
    )
    parser.add_argument(
        "--long-job",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time the default embedder as a long job runs it (compiled on CPU; default on)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    args.weights = args.weights or None

    device = torch.device(
        "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device.replace("auto", "cpu")
    )
    peaks = {dtype: matmul_peak(device, getattr(torch, name), args.matmul_size) for dtype, name in DTYPES}
    with tempfile.TemporaryDirectory() as folder:
        paths = make_jpegs(Path(folder), args.images, tuple(args.jpeg_size))
        rows = [bench_backbone(name, args, paths, peaks) for name in args.backbones]

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    header = {
        "date": datetime.date.today().isoformat(),
        "device": name,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_bf16_flags": sorted(set(FAST_BF16_CPU_FLAGS) & cpu_flags()),
        "cpu_fast_bf16": cpu_has_fast_bf16(),
        "matmul_gflop_s": peaks,
        "args": {
            k: (list(v) if isinstance(v, tuple) else str(v) if isinstance(v, Path) else v)
            for k, v in vars(args).items()
        },
    }
    print(f"# embed throughput ({header['date']}, {name}, torch {torch.__version__}, {header['threads']} threads)")
    print(
        f"CPU capability {header['cpu_capability']}, native bf16: {header['cpu_fast_bf16']} "
        f"{header['cpu_bf16_flags'] or ''}; matmul {args.matmul_size}^2: "
        f"fp32 {peaks['fp32']:.1f}, bf16 {peaks['bf16']:.1f} GFLOP/s"
    )
    for row in rows:
        weights = "random" if row["random_weights"] else "pretrained"
        print(
            f"\n## {row['backbone']} ({weights}): {row['gflop_per_image']:.1f} GFLOP/image, "
            f"bf16 limit {row['bf16_limit_img_s']:.1f} img/s; embedder precision {row['precision']} "
            f"-> {row['embedder_dtype']}; embedder vs fp32 {row['embedder_vs_fp32']:.2f}x, "
            f"JPEG vs tensors {row['jpeg_vs_tensors']:.2f}; cosine to fp32 >= {row['embedder_cosine_to_fp32']:.5f}"
        )
        if "embedder_long_tensors_img_s" in row:
            compile_s = row["long_job_compile_s"]
            print(
                f"long job (default): compiled {row['long_job_compiled']}"
                + (f" (first call {compile_s:.1f} s, paid once per process)" if compile_s is not None else "")
                + f", {of_bf16_limit(row, 'embedder_long_tensors_img_s'):.2f} of the bf16 limit, "
                f"JPEG vs tensors {row['long_jpeg_vs_tensors']:.2f}, "
                f"cosine to fp32 >= {row['long_job_cosine_to_fp32']:.5f}"
            )
        if "per_batch_fractions" in row:
            fraction = row.get("long_job_per_batch_of_bf16_limit")
            print(
                f"long job, one forward batch between two peaks ({len(row['per_batch_fractions'])} of "
                f"{row['args_samples']} samples kept): "
                + (f"median {fraction:.2f} of the bf16 limit" if fraction is not None else "no sample kept")
            )
        if "alternating_jpeg_vs_tensors" in row:
            print(
                f"long job, JPEG files then tensors back to back ({len(row['alternating_jpeg_vs_tensors'])} rounds): "
                f"median JPEG vs tensors {row['long_job_alternating_jpeg_vs_tensors']:.2f}"
            )
        cells = [
            [
                label,
                f"{row[key]:.2f}",
                f"{of_bf16_limit(row, key):.2f}",
                f"{row['near_peak_gflop_s'][key]:.0f}" if key in row["near_peak_gflop_s"] else "-",
                f"{row[key] / row['fp32_limit_img_s']:.2f}",
            ]
            for label, key in SPEED_COLUMNS
            if key in row
        ]
        print(markdown_table(["path", "img/s", "of bf16 limit", "bf16 peak next to it", "of fp32 limit"], cells))
    report = {**header, "results": rows}
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
