"""Few-shot classification throughput: cached class scoring vs naive per-class recompute.

One query = ``--shots`` labelled examples + a query image, ranked over ``--classes`` class
names by mean token log-probability (:class:`percep_rag.vlm.openflamingo.FewShotClassifier`):

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
* ``--tiny``: :func:`percep_rag.vlm.openflamingo.build_tiny_flamingo` in fp32, a CPU smoke run.
* ``--vlm smolvlm``: SmolVLM-256M-Instruct's architecture (:func:`smolvlm_256m_config`: Idefics3,
  a SigLIP-base-patch16-512 vision tower, pixel shuffle x4 -> 64 tokens per 512 px image, a
  SmolLM2-135M Llama), one tile per image, through :class:`percep_rag.vlm.SmolVlmClassifier`;
  the tokenizer is the locally trained tiny BPE (class names take more tokens than with
  SmolLM2's). With ``--tiny``: the tiny random SmolVLM of :mod:`percep_rag.vlm.tiny_smolvlm`.
* ``--vlm qwen3-vl`` / ``--vlm qwen2.5-vl``: Qwen3-VL-2B-Instruct's / Qwen2.5-VL-3B-Instruct's
  architecture (:func:`qwen3_vl_2b_config`, :func:`qwen2_5_vl_3b_config`), each image resized to at
  most ``--max-image-tokens`` tokens; ``--vlm gemma3``: Gemma-3-4B-it's (:func:`gemma3_4b_config`,
  896 px images of 256 tokens, pan-and-scan off). All through :class:`percep_rag.vlm.ChatVlmClassifier`
  with the locally trained tiny BPE of the family's tiny model (its special tokens, its chat template)
  and the published vocabulary size. With ``--tiny``: the family's tiny random model.

Usage::

    python benchmarks/fewshot_throughput.py                 # GPU, 4B-sized, bf16
    python benchmarks/fewshot_throughput.py --vlm smolvlm --device cpu --dtype fp32   # SmolVLM-256M-sized
    OMP_NUM_THREADS=1 python benchmarks/fewshot_throughput.py --tiny --device cpu
    python benchmarks/fewshot_throughput.py --device cpu --dtype bf16 --vs-fp32   # CPU: bf16 vs fp32
    python benchmarks/fewshot_throughput.py --vlm qwen3-vl --device cpu --dtype bf16 --vs-fp32 --queries 1
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

from percep_rag.precision import resolve_precision
from percep_rag.vlm.tiny_smolvlm import make_test_image

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


def smolvlm_256m_config(image_token_id: int, pad_token_id: int):
    """The architecture of HuggingFaceTB/SmolVLM-256M-Instruct (an Idefics3), its published values typed in.

    Vision: google/siglip-base-patch16-512 (768 wide, 12 layers, 12 heads, MLP 3072, 16 px patches
    of 512 px images); pixel shuffle ``scale_factor=4`` -> 1024 / 16 = 64 tokens per image. Text:
    SmolLM2-135M, a Llama (576 wide, 30 layers, 9 heads, 3 KV heads, MLP 1536, RoPE theta 1e5,
    tied embeddings) with the vocabulary grown to 49280 for the image tokens. The token ids are
    this benchmark's tokenizer's (the real tokenizer cannot be downloaded here).
    """
    from transformers import Idefics3Config, LlamaConfig
    from transformers.models.idefics3.configuration_idefics3 import Idefics3VisionConfig

    vision = Idefics3VisionConfig(
        hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        image_size=512, patch_size=16, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6,
    )  # fmt: skip
    text = LlamaConfig(
        vocab_size=49280, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
        num_key_value_heads=3, head_dim=64, max_position_embeddings=8192, rope_theta=100000.0, rms_norm_eps=1e-5,
        tie_word_embeddings=True, pad_token_id=pad_token_id,
    )  # fmt: skip
    return Idefics3Config(
        vision_config=vision.to_dict(), text_config=text.to_dict(), scale_factor=4, image_token_id=image_token_id,
        tie_word_embeddings=True, pad_token_id=pad_token_id,
    )  # fmt: skip


def qwen3_vl_2b_config(token_ids: dict[str, int], pad_token_id: int):
    """The architecture of Qwen/Qwen3-VL-2B-Instruct, its published values typed in.

    Vision: 24 layers, 1024 wide, 16 heads, MLP 4096, 16 px patches merged 2 x 2 (one LM token
    per 32 x 32 px), 2304 learned position embeddings, DeepStack features from layers 5, 11, 17.
    Text: 28 layers, 2048 wide, 16 heads of 128, 8 KV heads, MLP 6144, vocabulary 151936, tied
    embeddings, interleaved multimodal RoPE (sections 24/20/20, theta 5e6).
    """
    from transformers import Qwen3VLConfig

    vision = dict(
        depth=24, hidden_size=1024, intermediate_size=4096, num_heads=16, out_hidden_size=2048, patch_size=16,
        spatial_merge_size=2, temporal_patch_size=2, num_position_embeddings=2304, deepstack_visual_indexes=[5, 11, 17],
        hidden_act="gelu_pytorch_tanh",
    )  # fmt: skip
    text = dict(
        vocab_size=151936, hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
        num_key_value_heads=8, head_dim=128, max_position_embeddings=262144, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 5000000.0, "mrope_section": [24, 20, 20],
                         "mrope_interleaved": True},
        tie_word_embeddings=True, pad_token_id=pad_token_id, bos_token_id=None, eos_token_id=None,
    )  # fmt: skip
    return Qwen3VLConfig(vision_config=vision, text_config=text, tie_word_embeddings=True, **_qwen_ids(token_ids))


def qwen2_5_vl_3b_config(token_ids: dict[str, int], pad_token_id: int):
    """The architecture of Qwen/Qwen2.5-VL-3B-Instruct, its published values typed in.

    Vision: 32 layers, 1280 wide, 16 heads, MLP 3420, 14 px patches merged 2 x 2 (one LM token per
    28 x 28 px), window attention of 112 px with full attention in layers 7, 15, 23, 31. Text: 36
    layers, 2048 wide, 16 heads, 2 KV heads, MLP 11008, vocabulary 151936, tied embeddings,
    multimodal RoPE (sections 16/24/24, theta 1e6).
    """
    from transformers import Qwen2_5_VLConfig

    vision = dict(
        depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048, patch_size=14,
        spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[7, 15, 23, 31],
        tokens_per_second=2,
    )  # fmt: skip
    text = dict(
        vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
        num_key_value_heads=2, max_position_embeddings=128000, rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
        tie_word_embeddings=True, pad_token_id=pad_token_id, bos_token_id=None, eos_token_id=None,
    )  # fmt: skip
    return Qwen2_5_VLConfig(vision_config=vision, text_config=text, tie_word_embeddings=True, **_qwen_ids(token_ids))


def _qwen_ids(token_ids: dict[str, int]) -> dict[str, int]:
    return {
        "image_token_id": token_ids["<|image_pad|>"], "video_token_id": token_ids["<|video_pad|>"],
        "vision_start_token_id": token_ids["<|vision_start|>"], "vision_end_token_id": token_ids["<|vision_end|>"],
    }  # fmt: skip


def gemma3_4b_config(token_ids: dict[str, int]):
    """The architecture of google/gemma-3-4b-it, its published values typed in.

    Vision: SigLIP so400m (27 layers, 1152 wide, 16 heads, MLP 4304) on 896 px images in 14 px
    patches, pooled to 256 tokens. Text: 34 layers, 2560 wide, 8 heads of 256, 4 KV heads, MLP
    10240, vocabulary 262208, sliding window 1024 on 5 of every 6 layers, RoPE theta 1e6 (global,
    linear scaling 8) and 1e4 (local).
    """
    from transformers import Gemma3Config, Gemma3TextConfig, SiglipVisionConfig

    vision = SiglipVisionConfig(
        hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16, image_size=896,
        patch_size=14, vision_use_head=False, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6,
    )  # fmt: skip
    text = Gemma3TextConfig(
        vocab_size=262208, hidden_size=2560, intermediate_size=10240, num_hidden_layers=34, num_attention_heads=8,
        num_key_value_heads=4, head_dim=256, query_pre_attn_scalar=256, sliding_window=1024,
        max_position_embeddings=131072, rms_norm_eps=1e-6,
        rope_parameters={
            "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1000000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
        },
        pad_token_id=token_ids["<pad>"], bos_token_id=token_ids["<bos>"], eos_token_id=token_ids["<eos>"],
    )  # fmt: skip
    return Gemma3Config(
        vision_config=vision.to_dict(), text_config=text.to_dict(), mm_tokens_per_image=256,
        boi_token_index=token_ids["<start_of_image>"], eoi_token_index=token_ids["<end_of_image>"],
        image_token_index=token_ids["<image_soft_token>"],
    )  # fmt: skip


@dataclass
class Subject:
    """The model under test: built once, cast in place for --vs-fp32, wrapped by ``classifier()``."""

    name: str
    random_weights: bool
    model: torch.nn.Module
    classifier: Callable[[int | None], object]


def build_random_smolvlm_256m(device: torch.device, dtype: torch.dtype) -> Subject:
    """SmolVLM-256M's architecture with random weights (:func:`smolvlm_256m_config`), built on ``device``."""
    from transformers import Idefics3ForConditionalGeneration

    from percep_rag.vlm import SmolVlmClassifier
    from percep_rag.vlm.tiny_smolvlm import make_processor, tiny_tokenizer

    tokenizer = tiny_tokenizer()
    processor = make_processor(tokenizer, image_size=512, image_seq_len=64)
    config = smolvlm_256m_config(tokenizer.convert_tokens_to_ids("<image>"), tokenizer.pad_token_id)
    with torch.device(device):
        torch.manual_seed(0)
        model = Idefics3ForConditionalGeneration._from_config(config, dtype=dtype).eval()
    name = "random-SmolVLM-256M-architecture"

    def classifier(class_batch_size: int | None) -> SmolVlmClassifier:
        return SmolVlmClassifier(model, processor, class_batch_size=class_batch_size, name=name, random_weights=True)

    return Subject(name, True, model, classifier)


#: ``--vlm`` choices of the transformers chat families -> their tiny random model.
CHAT_TINY = {
    "smolvlm": "tiny-smolvlm-random",
    "qwen3-vl": "tiny-qwen3-vl-random",
    "qwen2.5-vl": "tiny-qwen2.5-vl-random",
    "gemma3": "tiny-gemma3-random",
}


def build_random_chat_vlm(
    family: str, device: torch.device, dtype: torch.dtype, max_image_tokens: int = 256, lm_layers: int | None = None
) -> Subject:
    """Qwen3-VL-2B's, Qwen2.5-VL-3B's or Gemma-3-4B's architecture with random weights, built on ``device``.

    ``lm_layers`` shrinks only the text model's depth, to smoke-test this path on a CPU.
    """
    from percep_rag.vlm import ChatVlmClassifier, ImageBudget

    if family == "gemma3":
        from transformers import Gemma3ForConditionalGeneration as model_class

        from percep_rag.vlm.tiny_gemma3 import make_gemma3_processor, tiny_gemma3_tokenizer

        tokenizer = tiny_gemma3_tokenizer()
        ids = {token: tokenizer.convert_tokens_to_ids(token) for token in tokenizer.all_special_tokens}
        config = gemma3_4b_config(ids)
        processor = make_gemma3_processor(tokenizer, image_size=896, tokens_per_image=256)
        name = "random-Gemma-3-4B-architecture"
    else:
        from percep_rag.vlm.tiny_qwen_vl import make_qwen_processor, tiny_qwen_tokenizer

        tokenizer = tiny_qwen_tokenizer()
        ids = {token: tokenizer.convert_tokens_to_ids(token) for token in tokenizer.all_special_tokens}
        if family == "qwen3-vl":
            from transformers import Qwen3VLForConditionalGeneration as model_class

            config, architecture, patch = qwen3_vl_2b_config(ids, tokenizer.pad_token_id), "qwen3_vl", 16
            name = "random-Qwen3-VL-2B-architecture"
        else:
            from transformers import Qwen2_5_VLForConditionalGeneration as model_class

            config, architecture, patch = qwen2_5_vl_3b_config(ids, tokenizer.pad_token_id), "qwen2_5_vl", 14
            name = "random-Qwen2.5-VL-3B-architecture"
        processor = make_qwen_processor(tokenizer, architecture=architecture, patch_size=patch)
    if lm_layers is not None:
        config.text_config.num_hidden_layers = lm_layers
        if getattr(config.text_config, "layer_types", None):
            config.text_config.layer_types = config.text_config.layer_types[:lm_layers]
    with torch.device(device):
        torch.manual_seed(0)
        model = model_class._from_config(config, dtype=dtype).eval()
    budget = ImageBudget(max_tokens=max_image_tokens)

    def classifier(class_batch_size: int | None) -> ChatVlmClassifier:
        return ChatVlmClassifier(
            model, processor, image_budget=budget, class_batch_size=class_batch_size, name=name, random_weights=True
        )

    return Subject(name, True, model, classifier)


def build_subject(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> Subject:
    """The model ``--vlm``/``--tiny`` ask for, with random weights, on ``device`` in ``dtype``."""
    if args.vlm in ("qwen3-vl", "qwen2.5-vl", "gemma3") and not args.tiny:
        return build_random_chat_vlm(args.vlm, device, dtype, args.max_image_tokens, args.lm_layers)
    if args.vlm in CHAT_TINY:
        if not args.tiny:
            return build_random_smolvlm_256m(device, dtype)
        from percep_rag.vlm import load_vlm

        tiny = load_vlm(CHAT_TINY[args.vlm], device=str(device), precision="fp32")
        tiny.model.to(dtype=dtype)

        def tiny_classifier(class_batch_size: int | None):
            tiny.class_batch_size = class_batch_size
            return tiny

        return Subject(tiny.name, True, tiny.model, tiny_classifier)
    from percep_rag.vlm.openflamingo import FewShotClassifier, build_tiny_flamingo

    bundle = build_tiny_flamingo(seed=0) if args.tiny else build_random_4b(device, dtype, args.lm_layers or 32)

    def classifier(class_batch_size: int | None) -> FewShotClassifier:
        return FewShotClassifier.from_bundle(bundle, class_batch_size=class_batch_size)

    return Subject(bundle.name, bundle.random_weights, bundle.model, classifier)


def token_counts(clf, shots, query, names) -> tuple[int, list[int]]:
    """The prompt's length in tokens and the class names' shortest and longest token counts."""
    from percep_rag.vlm import SmolVlmClassifier

    if isinstance(clf, SmolVlmClassifier):
        prompt = clf.encode_prompt(shots, query)
        tokens = clf.class_token_ids(prompt.text, names)
        return prompt.length, [min(map(len, tokens)), max(map(len, tokens))]
    tokens = clf.class_token_ids(names)
    prompt_ids, _ = clf.encode_prompt(shots, query)
    return int(prompt_ids.shape[1]), [min(map(len, tokens)), max(map(len, tokens))]


def build_random_4b(device: torch.device, dtype: torch.dtype, lm_layers: int = 32):
    """OpenFlamingo-4B's architecture with random weights, built directly on ``device``.

    ``lm_layers`` < 32 only shrinks the LM's depth, to smoke-test this path on a CPU.
    """
    import open_clip
    from open_clip.transform import image_transform
    from transformers import GPTNeoXForCausalLM

    from percep_rag.backbones.openclip import OPENAI_MEAN, OPENAI_STD
    from percep_rag.vlm.openflamingo.model import FlamingoBundle, assemble_flamingo, open_gates
    from percep_rag.vlm.openflamingo.tiny import train_tiny_tokenizer

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
    parser.add_argument("--vlm", choices=["openflamingo", *CHAT_TINY], default="openflamingo", help="which model")
    parser.add_argument("--tiny", action="store_true", help="the backend's tiny random model (CPU smoke run)")
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
    parser.add_argument(
        "--lm-layers", type=int, default=None, help="fewer LM layers, for a CPU smoke test (not the chat smolvlm)"
    )
    parser.add_argument("--max-image-tokens", type=int, default=256, help="Qwen-VL: most LM tokens per image")
    parser.add_argument(
        "--vs-fp32",
        action="store_true",
        help="first score the same queries in fp32 on the same weights (then cast in place, so only one "
        "copy is resident): report fp32 queries/s, the largest score difference to fp32 and ranking agreement",
    )
    parser.add_argument(
        "--skip-naive",
        action="store_true",
        help="time only the cached path (e.g. bf16 on a CPU without native bf16, where the naive path takes hours)",
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
    subject = build_subject(args, device, build_dtype)
    subject.model.to(device=device, dtype=build_dtype)
    build_s = time.perf_counter() - start
    names = CLASS_NAMES[: args.classes]
    size = (32, 32) if args.tiny else (256, 224) if args.vlm == "openflamingo" else (640, 512)

    def inputs(index: int):
        # Distinct random images per query, so nothing is cached across queries by accident.
        shots = [(make_test_image(1000 * index + k, size), names[(index + k) % len(names)]) for k in range(args.shots)]
        return shots, make_test_image(1000 * index + 999, size)

    prepared = [inputs(index) for index in range(queries)]

    def warm_up(clf, naive: bool = not args.skip_naive) -> None:
        for index in range(args.warmup):
            shots, query = prepared[index % queries]
            clf.score_classes(shots, query, names)
            if naive:
                clf.naive_scores(shots, query, names)

    fp32_row, fp32_scores = None, None
    if reference:
        clf = subject.classifier(args.class_batch_size)
        warm_up(clf, naive=False)
        fp32_row, fp32_scores = time_path(
            "cached fp32", lambda i: clf.score_classes(*prepared[i], names), queries, device
        )
        subject.model.to(dtype=dtype)  # in place: the bf16 weights are the fp32 weights rounded
    clf = subject.classifier(args.class_batch_size)
    warm_up(clf)

    cached, cached_scores = time_path("cached", lambda i: clf.score_classes(*prepared[i], names), queries, device)
    naive, max_diff, argmax_agree = None, None, None
    if not args.skip_naive:
        naive, naive_scores = time_path("naive", lambda i: clf.naive_scores(*prepared[i], names), queries, device)
        agreement = score_agreement(cached_scores, naive_scores)
        max_diff, argmax_agree = agreement["max_abs_score_diff"], agreement["argmax_agreement"]
    prompt_tokens, class_tokens = token_counts(clf, *prepared[0], names)

    report = {
        "model": subject.name,
        "backend": args.vlm,
        "random_weights": subject.random_weights,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "dtype": str(dtype).removeprefix("torch."),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "shots": args.shots,
        "classes": args.classes,
        "lm_layers": None if args.tiny else args.lm_layers,  # None: the architecture's own depth
        "max_image_tokens": args.max_image_tokens if args.vlm.startswith("qwen") else None,
        "prompt_tokens": prompt_tokens,
        "class_tokens_min_max": class_tokens,
        "build_s": round(build_s, 2),
        "results": [asdict(row) for row in (cached, naive) if row is not None],
        "speedup": None if naive is None else cached.queries_per_s / naive.queries_per_s,
        "max_abs_score_diff": max_diff,
        "argmax_agreement": argmax_agree,
    }
    if fp32_row is not None:
        report["results"].insert(0, asdict(fp32_row))
        report.update(vs_fp32(fp32_scores, cached_scores, fp32_row, cached))
    weights = "RANDOM weights" if subject.random_weights else "pretrained"
    print(
        f"{subject.name} ({weights}) on {report['device_name']} [{report['device']}, {report['dtype']}, "
        f"{report['threads']} threads]: {args.shots} shots, {args.classes} classes, "
        f"prompt {report['prompt_tokens']} tokens, class names {report['class_tokens_min_max']} tokens"
    )
    for row in [r for r in (fp32_row, cached, naive) if r is not None]:
        print(
            f"  {row.path:6s} {row.queries_per_s:8.2f} queries/s {row.ms_per_query:9.1f} ms/query"
            f" ({row.queries} queries)"
        )
    if naive is not None:
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
