"""Where the default CPU forward's time goes, and the fraction of the bf16 limit it could reach.

Runs the long-job embedder (compiled, frozen, bf16 where the CPU has it natively) on one
forward batch under ``torch.profiler`` and splits its time into the linears (oneDNN), the
attention kernel, the patch convolution and the rest of the compiled graph (LayerNorms,
residual adds: inductor's own kernels). It then times the attention's two matmuls alone
(``Q K^T`` and ``P V`` as bf16 batched matmuls) and its softmax alone, and prints two bounds:
the fraction of the bf16 limit the forward would reach if nothing but the linears as they run
and those matmuls took any time, and with the softmax as well. A target above the second
needs faster kernels (matmuls, exp), not a better schedule around them (benchmarks/RESULTS.md,
issue 40).

    python benchmarks/bf16_forward_profile.py --backbone clip-vit-b-16 --batch 16
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embed_throughput import gflops_per_image, matmul_peak, timed  # noqa: E402

from percep_rag import AlignedEmbedder, EmbedderSpec  # noqa: E402
from percep_rag.precision import FAST_BF16_CPU_FLAGS, cpu_flags  # noqa: E402

#: profiler event name -> the part of the forward it is
PARTS = {
    "mkldnn::_linear_pointwise": "linears",
    "mkldnn::_linear_pointwise.binary": "linears",
    "mkl::_mkl_linear": "linears",  # fp32 (a CPU without native bf16)
    "aten::addmm": "linears",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "attention",
    "mkldnn::_convolution_pointwise": "patch convolution",
    "## Call CompiledFxGraph None ##": "inductor kernels (norms, adds)",
}


def attention_shapes(backbone: torch.nn.Module, size: int) -> list[tuple[int, int, int]]:
    """(heads, tokens, head dim) of every self-attention in ``backbone``'s forward of one image."""
    shapes = []

    def record(module, args, _output):  # (batch, tokens, width) in: open_clip's batch-first MHA, timm's Attention
        _, tokens, width = args[0].shape
        shapes.append((module.num_heads, tokens, width // module.num_heads))

    attentions = [m for m in backbone.modules() if type(m).__name__.endswith("Attention") and hasattr(m, "num_heads")]
    hooks = [m.register_forward_hook(record) for m in attentions]
    with torch.no_grad():
        backbone(torch.rand(1, 3, size, size))
    for hook in hooks:
        hook.remove()
    return shapes


def attention_alone_seconds(shapes: list[tuple[int, int, int]], batch: int, repeats: int) -> tuple[float, float]:
    """Wall times of every attention's two bf16 batched matmuls, and of its softmax, for ``batch``
    images, each op timed alone (the fastest either can run)."""
    cpu = torch.device("cpu")
    total = softmax = 0.0
    for (heads, tokens, dim), layers in Counter(shapes).items():
        q, k_t, v = (torch.randn(batch, heads, tokens, dim).bfloat16() for _ in range(3))
        k_t = k_t.transpose(-1, -2)
        scores = torch.matmul(q, k_t)
        both = timed(lambda q=q, k_t=k_t: torch.matmul(q, k_t), cpu, repeats)
        both += timed(lambda scores=scores, v=v: torch.matmul(scores, v), cpu, repeats)
        total += layers * both
        softmax += layers * timed(lambda scores=scores: torch.softmax(scores, -1), cpu, repeats)
    return total, softmax


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="clip-vit-b-16")
    parser.add_argument("--weights", default="random", help="'random' (default) or empty for local pretrained weights")
    parser.add_argument("--batch", type=int, default=None, help="images per forward (default: the embedder's)")
    parser.add_argument("--calls", type=int, default=3, help="profiled forward calls")
    parser.add_argument("--matmul-size", type=int, default=2048, help="square matmul size for the bf16 peak")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    spec = EmbedderSpec(backbone=args.backbone, weights=args.weights or None, device="cpu")
    embedder = AlignedEmbedder.from_spec(spec)
    batch = args.batch or embedder.forward_batch_size
    embedder.cpu_forward_batch = batch
    embedder.prepare_for_job(embedder.cpu_compile_min_images)  # the long-job path: compiled, frozen
    size = embedder.backbone.preprocess.image_size
    pixels = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)
    forward_seconds = timed(lambda: embedder.embed_tensors(pixels), torch.device("cpu"), 5)  # compiles first
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        for _ in range(args.calls):
            embedder.embed_tensors(pixels)
    parts: dict[str, float] = {}
    for event in profiler.key_averages():
        part = PARTS.get(event.key)
        if part is not None:
            parts[part] = parts.get(part, 0.0) + event.self_cpu_time_total / 1e6 / args.calls

    gflops = gflops_per_image(embedder.backbone, size) * batch
    peak = matmul_peak(torch.device("cpu"), torch.bfloat16, args.matmul_size)
    matmuls, softmax = attention_alone_seconds(attention_shapes(embedder.backbone, size), batch, 10)
    linears = parts.get("linears", 0.0)
    bound, bound_with_softmax = (gflops / ((linears + matmuls + extra) * peak) for extra in (0.0, softmax))
    report = {
        "backbone": args.backbone,
        "random_weights": embedder.backbone.random_weights,
        "cpu_bf16_flags": sorted(set(FAST_BF16_CPU_FLAGS) & cpu_flags()),
        "threads": torch.get_num_threads(),
        "batch": batch,
        "bf16_peak_gflop_s": peak,
        "forward_s": forward_seconds,
        "forward_of_bf16_limit": gflops / forward_seconds / peak,
        "parts_s": parts,
        "attention_matmuls_only_s": matmuls,
        "attention_softmax_only_s": softmax,
        "bound_of_bf16_limit": bound,
        "bound_with_softmax_of_bf16_limit": bound_with_softmax,
    }
    weights = "random" if report["random_weights"] else "pretrained"
    print(
        f"# {args.backbone} ({weights} weights), {batch} images per forward, {report['threads']} threads, "
        f"bf16 peak {peak:.0f} GFLOP/s, {report['cpu_bf16_flags']}"
    )
    print(f"forward {forward_seconds * 1e3:.1f} ms: {report['forward_of_bf16_limit']:.2f} of the bf16 limit")
    for part, seconds in sorted(parts.items(), key=lambda item: -item[1]):
        print(f"  {part:32s} {seconds * 1e3:7.1f} ms  ({seconds / forward_seconds:.0%})")
    print(f"attention alone: its two matmuls {matmuls * 1e3:.1f} ms, its softmax {softmax * 1e3:.1f} ms")
    print(f"bound, the linears as they run + those matmuls, nothing else: {bound:.2f} of the bf16 limit")
    print(f"bound, + the softmax: {bound_with_softmax:.2f} of the bf16 limit")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
