"""The speed benchmarks run end to end on tiny models: smoke runs of seconds.

No speed is checked (speed figures belong in benchmarks/RESULTS.md); what is checked is that
each path the scripts report is measured, labelled and consistent, so a recorded run means
what its table says.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def load_script(monkeypatch):
    """Import a benchmark script by name (registered in sys.modules for this test only: dataclasses need it)."""

    def load(name: str) -> ModuleType:
        spec = importlib.util.spec_from_file_location(f"benchmark_{name}", BENCHMARKS / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, spec.name, module)
        spec.loader.exec_module(module)
        return module

    return load


def test_embed_throughput_measures_every_path_against_the_limit(load_script, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PERCEP_RAG_CPU_BF16", "1")  # the bf16 path runs (slowly) on any CPU
    script = load_script("embed_throughput")
    out = tmp_path / "embed.json"
    report = script.main(
        ["--backbones", "tiny-vit-random", "--images", "6", "--tensor-images", "4", "--batch-size", "2",
         "--repeats", "1", "--matmul-size", "64", "--jpeg-size", "48", "40", "--plain", "--json", str(out)]
    )  # fmt: skip
    [row] = report["results"]
    assert row["random_weights"] and row["embedder_dtype"] == "bfloat16"
    speeds = [key for key in row if key.endswith("_img_s") and "limit" not in key]
    assert {"bare_fp32_img_s", "bare_bf16_img_s", "embedder_fp32_tensors_img_s", "embedder_jpeg_img_s"} <= set(speeds)
    assert all(row[key] > 0 for key in speeds)
    assert row["jpeg_vs_tensors"] == pytest.approx(row["embedder_jpeg_img_s"] / row["embedder_tensors_img_s"])
    assert row["bf16_limit_img_s"] == pytest.approx(report["matmul_gflop_s"]["bf16"] / row["gflop_per_image"])
    assert json.loads(out.read_text())["results"][0]["backbone"] == "tiny-vit-random"
    # the long job: the default embedder as index/embed of 512+ images runs it, compiled once on CPU
    assert row["long_job_compiled"] and row["long_job_compile_s"] > 0
    assert {"embedder_long_tensors_img_s", "embedder_long_jpeg_img_s"} <= set(speeds)
    long_ratio = row["embedder_long_jpeg_img_s"] / row["embedder_long_tensors_img_s"]
    assert row["long_jpeg_vs_tensors"] == pytest.approx(long_ratio)
    assert row["long_job_cosine_to_fp32"] > 0.99 and row["embedder_cosine_to_fp32"] > 0.99
    # a forward batch between two peaks, kept where they agree; JPEG and tensors back to back, per round
    assert row["args_samples"] == 24 and all(0 < f for f in row["per_batch_fractions"])
    assert len(row["alternating_jpeg_vs_tensors"]) == 8 and row["long_job_alternating_jpeg_vs_tensors"] > 0
    printed = capsys.readouterr().out
    assert "tiny-vit-random (random)" in printed and "of bf16 limit" in printed and "long job (default)" in printed


def test_bf16_forward_profile_splits_the_forward_and_bounds_its_fraction(load_script, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PERCEP_RAG_CPU_BF16", "1")  # the bf16 path runs (slowly) on any CPU
    script = load_script("bf16_forward_profile")
    out = tmp_path / "profile.json"
    report = script.main(["--backbone", "tiny-vit-random", "--batch", "2", "--calls", "1",
                          "--matmul-size", "64", "--json", str(out)])  # fmt: skip
    assert report["random_weights"] and report["batch"] == 2
    assert report["parts_s"]["linears"] > 0 and report["parts_s"]["attention"] > 0
    assert set(report["parts_s"]) <= set(script.PARTS.values())
    assert report["attention_matmuls_only_s"] > 0 and report["attention_softmax_only_s"] > 0
    assert 0 < report["bound_with_softmax_of_bf16_limit"] < report["bound_of_bf16_limit"]
    assert json.loads(out.read_text())["bound_of_bf16_limit"] == pytest.approx(report["bound_of_bf16_limit"])
    printed = capsys.readouterr().out
    assert "tiny-vit-random (random weights)" in printed and "bound, + the softmax" in printed


def test_embed_throughput_reuses_the_fp32_embedder_where_auto_is_fp32(load_script, monkeypatch):
    monkeypatch.setenv("PERCEP_RAG_CPU_BF16", "0")
    script = load_script("embed_throughput")
    report = script.main(
        ["--backbones", "tiny-vit-random", "--images", "2", "--tensor-images", "2", "--batch-size", "2",
         "--repeats", "1", "--matmul-size", "64", "--jpeg-size", "32", "32", "--bf16-images", "0", "--no-long-job"]
    )  # fmt: skip
    [row] = report["results"]
    assert row["embedder_dtype"] == "float32" and "bare_bf16_img_s" not in row
    assert row["embedder_vs_fp32"] == 1.0


def test_fewshot_throughput_compares_bf16_with_fp32_on_the_same_queries(load_script, capsys):
    script = load_script("fewshot_throughput")
    report = script.main(
        ["--tiny", "--device", "cpu", "--dtype", "bf16", "--vs-fp32", "--queries", "2", "--warmup", "1",
         "--classes", "4"]
    )  # fmt: skip
    assert report["dtype"] == "bfloat16" and report["random_weights"]
    assert [row["path"] for row in report["results"]] == ["cached fp32", "cached", "naive"]
    # bf16 is not fp32 (the comparison is real), yet close on the tiny model.
    assert 0 < report["max_abs_score_diff_vs_fp32"] < 0.1
    assert report["argmax_agreement_vs_fp32"] == 1.0
    assert report["ranking_identical_vs_fp32"] in (0.0, 0.5, 1.0)
    assert report["min_fp32_score_gap"] > 0
    assert "vs fp32 (cached path)" in capsys.readouterr().out


def test_vs_fp32_counts_a_flipped_ranking(load_script):
    script = load_script("fewshot_throughput")
    fp32, bf16 = script.Result("fp32", 2, 2.0, 1.0, 1000.0), script.Result("bf16", 2, 1.0, 2.0, 500.0)
    reference = [np.array([0.0, -0.5, -1.0]), np.array([-1.0, -0.1, -0.2])]
    scores = [np.array([0.0, -0.9, -0.8]), np.array([-1.0, -0.1, -0.2])]
    out = script.vs_fp32(reference, scores, fp32, bf16)
    assert out["ranking_identical_vs_fp32"] == 0.5 and out["argmax_agreement_vs_fp32"] == 1.0
    assert out["speedup_vs_fp32"] == 2.0
    assert out["max_abs_score_diff_vs_fp32"] == pytest.approx(0.4)
    assert out["min_fp32_score_gap"] == pytest.approx(0.1)


def test_fewshot_throughput_runs_the_smolvlm_backend(load_script, capsys):
    script = load_script("fewshot_throughput")
    report = script.main(
        ["--vlm", "smolvlm", "--tiny", "--device", "cpu", "--dtype", "bf16", "--vs-fp32", "--queries", "2",
         "--warmup", "1", "--classes", "4"]
    )  # fmt: skip
    assert report["backend"] == "smolvlm" and report["model"] == "tiny-smolvlm-random" and report["random_weights"]
    assert [row["path"] for row in report["results"]] == ["cached fp32", "cached", "naive"]
    assert report["argmax_agreement_vs_fp32"] in (0.0, 0.5, 1.0) and report["max_abs_score_diff_vs_fp32"] > 0
    assert report["prompt_tokens"] > 3 * 4 and report["class_tokens_min_max"][0] >= 2  # name + end of utterance
    assert "tiny-smolvlm-random (RANDOM weights)" in capsys.readouterr().out


def test_smolvlm_256m_config_is_the_published_architecture(load_script):
    config = load_script("fewshot_throughput").smolvlm_256m_config(image_token_id=3, pad_token_id=6)
    vision, text = config.vision_config, config.text_config
    assert (vision.hidden_size, vision.num_hidden_layers, vision.image_size, vision.patch_size) == (768, 12, 512, 16)
    assert (text.hidden_size, text.num_hidden_layers, text.num_attention_heads, text.num_key_value_heads) == (
        576, 30, 9, 3,
    )  # fmt: skip
    assert (text.intermediate_size, text.vocab_size, config.scale_factor) == (1536, 49280, 4)
    assert (vision.image_size // vision.patch_size) ** 2 // config.scale_factor**2 == 64  # tokens per image


def test_fewshot_throughput_can_time_the_cached_path_alone(load_script):
    script = load_script("fewshot_throughput")
    report = script.main(["--vlm", "smolvlm", "--tiny", "--device", "cpu", "--skip-naive", "--queries", "1",
                          "--warmup", "0", "--classes", "3"])  # fmt: skip
    assert [row["path"] for row in report["results"]] == ["cached"] and report["speedup"] is None


def test_text_query_latency_times_both_query_kinds_on_the_same_embedder(load_script):
    script = load_script("text_query_latency")
    row = script.measure("tiny-clip-random", "fp32", repeats=2, threads=None)
    assert row["compute_dtype"] == "float32" and row["weights"] == "random"
    for kind in ("text_query", "image_query_jpeg_640x480"):
        assert 0 < row[kind]["min_ms"] <= row[kind]["median_ms"] <= row[kind]["p90_ms"]
    assert row["first_text_query_s"] > 0


@pytest.mark.parametrize("vlm", ["qwen3-vl", "qwen2.5-vl", "gemma3"])
def test_fewshot_throughput_runs_the_qwen_and_gemma_backends(load_script, vlm, capsys):
    script = load_script("fewshot_throughput")
    report = script.main(
        ["--vlm", vlm, "--tiny", "--device", "cpu", "--dtype", "fp32", "--queries", "1", "--warmup", "0",
         "--classes", "3"]
    )  # fmt: skip
    assert report["model"] == script.CHAT_TINY[vlm] and report["random_weights"]
    assert [row["path"] for row in report["results"]] == ["cached", "naive"]
    assert report["max_abs_score_diff"] < 1e-5 and report["argmax_agreement"] == 1.0  # fp32: the same scores
    assert report["class_tokens_min_max"][0] >= 2  # name + end of turn


def test_qwen_and_gemma_configs_are_the_published_architectures(load_script):
    from percep_rag.vlm.tiny_gemma3 import tiny_gemma3_tokenizer
    from percep_rag.vlm.tiny_qwen_vl import tiny_qwen_tokenizer

    script = load_script("fewshot_throughput")
    qwen = tiny_qwen_tokenizer()
    ids = {token: qwen.convert_tokens_to_ids(token) for token in qwen.all_special_tokens}
    q3 = script.qwen3_vl_2b_config(ids, qwen.pad_token_id)
    assert (q3.vision_config.depth, q3.vision_config.hidden_size, q3.vision_config.patch_size) == (24, 1024, 16)
    assert (q3.text_config.hidden_size, q3.text_config.num_hidden_layers, q3.text_config.vocab_size) == (
        2048,
        28,
        151936,
    )
    assert q3.text_config.rope_parameters["mrope_section"] == [24, 20, 20]
    q25 = script.qwen2_5_vl_3b_config(ids, qwen.pad_token_id)
    assert (q25.vision_config.depth, q25.vision_config.hidden_size, q25.vision_config.patch_size) == (32, 1280, 14)
    text = q25.text_config
    assert (text.num_hidden_layers, text.intermediate_size, text.num_key_value_heads) == (36, 11008, 2)
    gemma = tiny_gemma3_tokenizer()
    g = script.gemma3_4b_config({token: gemma.convert_tokens_to_ids(token) for token in gemma.all_special_tokens})
    assert (g.vision_config.num_hidden_layers, g.vision_config.image_size, g.mm_tokens_per_image) == (27, 896, 256)
    text = g.text_config
    assert (text.hidden_size, text.num_hidden_layers, text.head_dim, text.vocab_size) == (2560, 34, 256, 262208)
    assert text.layer_types[:6] == ["sliding_attention"] * 5 + ["full_attention"] and text.sliding_window == 1024


def test_sync_scale_times_every_sync_against_the_walk(load_script, tmp_path, capsys):
    script = load_script("sync_scale")
    report = script.main(["--files", "300", "--images", "10", "--copies", "2", "--root", str(tmp_path)])
    distinct, copies = report["rows"]["300 distinct"], report["rows"]["10 x 2 copies"]
    assert (distinct["files"], distinct["points"], copies["files"], copies["points"]) == (300, 300, 20, 10)
    assert "0 of 300 files read" in distinct["noop_line"] and "300 of 300 files read" in distinct["checksum_line"]
    assert "3 of 300 files read" in distinct["change_line"] and "10 new points for 20 records" in copies["index_line"]
    for row in (distinct, copies):
        floor = row["walk_s"] + row["store_scan_s"]
        assert row["noop_vs_walk_plus_scan"] == pytest.approx(row["noop_sync_s"] / floor)
    assert list(tmp_path.iterdir()) == []  # the generated folders are removed
