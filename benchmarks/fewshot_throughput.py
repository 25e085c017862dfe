"""Few-shot classification throughput: cached class scoring vs naive per-class recompute.

One query = ``--shots`` labelled examples + a query image, ranked over ``--classes`` class
names by mean token log-probability (:class:`percep_rag.fewshot.FewShotClassifier`):

* **cached** (``score_classes``): the images are encoded once, the prompt runs once with a
  KV cache, then all class names run as one batch on per-row copies of that cache;
* **naive** (``naive_scores``): one full forward (vision tower included) per class name,
  open_flamingo's ``--no_caching_for_classification`` path and our correctness reference.

Both run in the same process on the same inputs; the report gives queries/s, the speed-up
and the largest score difference between the two paths on the timed queries.

Models have RANDOM weights (numbers measure speed only, never accuracy):

* default: OpenFlamingo-4B-sized: open_clip ViT-L/14 (QuickGELU, 224 px) + a GPT-NeoX
  config of RedPajama-INCITE-Base-3B (2560 wide, 32 layers, vocab 50432), cross-attention
  every 2 layers, bf16 on the GPU. The tokenizer is the locally trained tiny BPE, so class
  names take a few more tokens than with the real GPT-NeoX tokenizer.
* ``--tiny``: :func:`percep_rag.fewshot.build_tiny_flamingo` in fp32, a CPU smoke run.

Usage::

    python benchmarks/fewshot_throughput.py                 # GPU, 4B-sized, bf16
    OMP_NUM_THREADS=1 python benchmarks/fewshot_throughput.py --tiny --device cpu
    python benchmarks/fewshot_throughput.py --device cpu --dtype bf16 --vs-fp32   # CPU: bf16 vs fp32
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from percep_rag.fewshot import FewShotClassifier, build_tiny_flamingo
from percep_rag.fewshot.flamingo import FlamingoBundle, assemble_flamingo, open_gates
from percep_rag.fewshot.tiny import make_test_image, train_tiny_tokenizer
from percep_rag.precision import resolve_precision

CLASS_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck", "apple"]


def redpajama_3b_config(vocab_size: int = 50432):
    """The architecture of togethercomputer/RedPajama-INCITE-Base-3B-v1 (OpenFlamingo-4B's LM)."""
    from transformers import GPTNeoXConfig

    return GPTNeoXConfig(
        vocab_size=vocab_size,
        hidden_size=2560,
        intermediate_size=10240,
        num_hidden_layers=32,
        num_attention_heads=32,
        max_position_embeddings=2048,
        rotary_pct=1.0,
        use_parallel_residual=False,
        layer_norm_eps=1e-5,
        hidden_act="gelu",
        tie_word_embeddings=False,
    )


def build_random_4b(device: torch.device, dtype: torch.dtype, lm_layers: int = 32) -> FlamingoBundle:
    """OpenFlamingo-4B's architecture with random weights, built directly on ``device``.

    ``lm_layers`` < 32 only shrinks the LM's depth, to smoke-test this path on a CPU.
    """
    import open_clip
    from open_clip.transform import image_transform
    from transformers import GPTNeoXForCausalLM

    from percep_rag.backbones.openclip import OPENAI_MEAN, OPENAI_STD

    tokenizer = train_tiny_tokenizer()
    with torch.device(device):  # random init on the GPU: seconds instead of minutes on the CPU
        torch.manual_seed(0)
        clip = open_clip.create_model("ViT-L-14-quickgelu", pretrained=None)
        config = redpajama_3b_config()
        config.num_hidden_layers = lm_layers
        lm = GPTNeoXForCausalLM._from_config(config, dtype=dtype)
        model = assemble_flamingo(
            clip.visual,
            clip.visual.transformer.width,
            lm,
            tokenizer,
            decoder_layers_attr="gpt_neox.layers",
            cross_attn_every_n_layers=2,
        )
    open_gates(model)
    model.to(device=device, dtype=dtype)
    processor = image_transform(224, is_train=False, mean=OPENAI_MEAN, std=OPENAI_STD)
    return FlamingoBundle(model, tokenizer, processor, "random-OpenFlamingo-4B-architecture", random_weights=True)


@dataclass
class Result:
    path: str
    queries: int
    seconds: float
    queries_per_s: float
    ms_per_query: float


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_path(name: str, run: Callable[[int], np.ndarray], queries: int, device: torch.device) -> tuple[Result, list]:
    scores = []
    _sync(device)
    start = time.perf_counter()
    for index in range(queries):
        scores.append(run(index))
    _sync(device)
    seconds = time.perf_counter() - start
    return Result(name, queries, seconds, queries / seconds, 1000 * seconds / queries), scores


def score_agreement(reference: list[np.ndarray], scores: list[np.ndarray]) -> dict[str, float]:
    """How far two paths' class scores on the same queries agree: the largest absolute difference,
    the share of queries with the same top class, and with the same full ranking.

    >>> score_agreement([np.array([0.0, -1.0, -2.0])], [np.array([0.01, -1.02, -1.99])])["ranking_identical"]
    1.0
    """
    pairs = list(zip(reference, scores, strict=True))
    return {
        "max_abs_score_diff": float(max(np.abs(a - b).max() for a, b in pairs)),
        "argmax_agreement": float(np.mean([a.argmax() == b.argmax() for a, b in pairs])),
        "ranking_identical": float(np.mean([np.array_equal(np.argsort(-a), np.argsort(-b)) for a, b in pairs])),
    }


def vs_fp32(reference: list[np.ndarray], scores: list[np.ndarray], fp32_row: Result, row: Result) -> dict:
    """How the lower-precision cached scores compare with fp32 on the same queries and weights.

    >>> a, b = [np.array([0.0, -1.0, -2.0])], [np.array([0.01, -1.02, -1.99])]
    >>> out = vs_fp32(a, b, Result("fp32", 1, 2.0, 0.5, 2000.0), Result("bf16", 1, 1.0, 1.0, 1000.0))
    >>> out["speedup_vs_fp32"], out["ranking_identical_vs_fp32"], round(out["max_abs_score_diff_vs_fp32"], 3)
    (2.0, 1.0, 0.02)
    """
    return {
        "speedup_vs_fp32": row.queries_per_s / fp32_row.queries_per_s,
        **{f"{key}_vs_fp32": value for key, value in score_agreement(reference, scores).items()},
        # How close the two nearest classes are in fp32: a difference above this can flip a ranking.
        "min_fp32_score_gap": float(min(np.diff(np.sort(a)).min() if len(a) > 1 else np.inf for a in reference)),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny random Flamingo (CPU smoke run)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--dtype",
        choices=["auto", "bf16", "fp16", "fp32"],
        default="auto",
        help="auto: bf16 on GPU and on CPUs with AMX/AVX-512 BF16, else fp32 (percep_rag.precision)",
    )
    parser.add_argument("--shots", type=int, default=3)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--queries", type=int, default=None, help="timed queries per path (default 20 GPU, 10 CPU)")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--class-batch-size", type=int, default=None)
    parser.add_argument("--lm-layers", type=int, default=32, help="4B path only: fewer LM layers for a CPU smoke test")
    parser.add_argument(
        "--vs-fp32",
        action="store_true",
        help="first score the same queries in fp32 on the same weights (then cast in place, so only one "
        "copy is resident): report fp32 queries/s, the largest score difference to fp32 and ranking agreement",
    )
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if args.dtype == "auto":
        dtype = resolve_precision("auto", device)
    else:
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    if not 1 <= args.classes <= len(CLASS_NAMES):
        parser.error(f"--classes must be in 1..{len(CLASS_NAMES)}")
    queries = args.queries or (20 if device.type == "cuda" else 10)

    reference = args.vs_fp32 and dtype != torch.float32
    build_dtype = torch.float32 if reference else dtype
    start = time.perf_counter()
    bundle = build_tiny_flamingo(seed=0) if args.tiny else build_random_4b(device, build_dtype, args.lm_layers)
    bundle.model.to(device=device, dtype=build_dtype)
    build_s = time.perf_counter() - start
    names = CLASS_NAMES[: args.classes]
    size = (32, 32) if args.tiny else (256, 224)

    def inputs(index: int):
        # Distinct random images per query, so nothing is cached across queries by accident.
        shots = [(make_test_image(1000 * index + k, size), names[(index + k) % len(names)]) for k in range(args.shots)]
        return shots, make_test_image(1000 * index + 999, size)

    prepared = [inputs(index) for index in range(queries)]

    def warm_up(clf: FewShotClassifier, naive: bool = True) -> None:
        for index in range(args.warmup):
            shots, query = prepared[index % queries]
            clf.score_classes(shots, query, names)
            if naive:
                clf.naive_scores(shots, query, names)

    fp32_row, fp32_scores = None, None
    if reference:
        clf = FewShotClassifier.from_bundle(bundle, class_batch_size=args.class_batch_size)
        warm_up(clf, naive=False)
        fp32_row, fp32_scores = time_path(
            "cached fp32", lambda i: clf.score_classes(*prepared[i], names), queries, device
        )
        bundle.model.to(dtype=dtype)  # in place: the bf16 weights are the fp32 weights rounded
    clf = FewShotClassifier.from_bundle(bundle, class_batch_size=args.class_batch_size)
    warm_up(clf)

    cached, cached_scores = time_path("cached", lambda i: clf.score_classes(*prepared[i], names), queries, device)
    naive, naive_scores = time_path("naive", lambda i: clf.naive_scores(*prepared[i], names), queries, device)
    agreement = score_agreement(cached_scores, naive_scores)
    max_diff, argmax_agree = agreement["max_abs_score_diff"], agreement["argmax_agreement"]
    tokens = clf.class_token_ids(names)
    prompt_ids, _ = clf.encode_prompt(*prepared[0])

    report = {
        "model": bundle.name,
        "random_weights": bundle.random_weights,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "dtype": str(dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "shots": args.shots,
        "classes": args.classes,
        "lm_layers": None if args.tiny else args.lm_layers,
        "prompt_tokens": int(prompt_ids.shape[1]),
        "class_tokens_min_max": [min(map(len, tokens)), max(map(len, tokens))],
        "build_s": round(build_s, 2),
        "results": [asdict(cached), asdict(naive)],
        "speedup": cached.queries_per_s / naive.queries_per_s,
        "max_abs_score_diff": max_diff,
        "argmax_agreement": argmax_agree,
    }
    if fp32_row is not None:
        report["results"].insert(0, asdict(fp32_row))
        report.update(vs_fp32(fp32_scores, cached_scores, fp32_row, cached))
    weights = "RANDOM weights" if bundle.random_weights else "pretrained"
    print(
        f"{bundle.name} ({weights}) on {report['device_name']} [{report['device']}, {report['dtype']}, "
        f"{report['threads']} threads]: {args.shots} shots, {args.classes} classes, "
        f"prompt {report['prompt_tokens']} tokens, class names {report['class_tokens_min_max']} tokens"
    )
    for row in [r for r in (fp32_row, cached, naive) if r is not None]:
        print(
            f"  {row.path:6s} {row.queries_per_s:8.2f} queries/s {row.ms_per_query:9.1f} ms/query"
            f" ({row.queries} queries)"
        )
    print(f"  speed-up cached/naive: {report['speedup']:.2f}x; max |score diff| {max_diff:.2e}; ", end="")
    print(f"argmax agreement {argmax_agree:.0%}")
    if fp32_row is not None:
        print(
            f"  vs fp32 (cached path): {report['speedup_vs_fp32']:.2f}x; max |score diff| "
            f"{report['max_abs_score_diff_vs_fp32']:.2e}; argmax agreement {report['argmax_agreement_vs_fp32']:.0%}; "
            f"identical class ranking {report['ranking_identical_vs_fp32']:.0%}; smallest fp32 score gap "
            f"{report['min_fp32_score_gap']:.2e}"
        )
    if args.json:
        with open(args.json, "w") as file:
            json.dump(report, file, indent=2)
    return report


if __name__ == "__main__":
    main()
