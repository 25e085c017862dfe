"""benchmarks/gpu_check.sh, the one script a GPU issue runs: its plan, its options and its one JSON.

The stages themselves are the benchmark scripts (smoke-tested in test_benchmark_scripts.py);
the full CPU rehearsal (``bash benchmarks/gpu_check.sh --device cpu``) takes minutes and is
recorded in benchmarks/RESULTS.md, so here the plumbing runs as a dry run and the report is
built from stage outputs written by hand.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
STAGES = ["tests", "embed", "fewshot", "serve", "ray"]


def gpu_check(*args: str) -> subprocess.CompletedProcess:
    command = ["bash", str(BENCHMARKS / "gpu_check.sh"), "--python", sys.executable, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.fixture
def report_module(monkeypatch):
    spec = importlib.util.spec_from_file_location("benchmark_gpu_check_report", BENCHMARKS / "gpu_check_report.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("device", "size", "gpus"), [("cpu", "small", "0"), ("cuda", "full", "1")])
def test_a_dry_run_plans_every_stage_for_the_device(tmp_path, device, size, gpus):
    done = gpu_check("--device", device, "--dry-run", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["schema"] == "percep-rag/gpu-check/1" and (report["device"], report["size"]) == (device, size)
    assert [stage["name"] for stage in report["stages"]] == STAGES
    assert all(stage["status"] == "skipped" and stage["skip_reason"] == "dry run" for stage in report["stages"])
    commands = {stage["name"]: stage["command"] for stage in report["stages"]}
    assert "-m gpu tests" in commands["tests"] and f"--device {device}" in commands["embed"]
    assert f"--gpus-per-actor {gpus}" in commands["ray"] and ("--tiny" in commands["fewshot"]) == (size == "small")
    assert "| embed | skipped |" in done.stdout


def test_sizes_and_stages_can_be_chosen_and_bad_options_are_usage_errors(tmp_path):
    done = gpu_check("--device", "cpu", "--dry-run", "--out", str(tmp_path), "--stages", "embed",
                     "--backbones", "clip-vit-b-16 dreamsim-ensemble", "--embed-images", "64")  # fmt: skip
    assert done.returncode == 0, done.stderr
    [stage] = json.loads((tmp_path / "gpu_check.json").read_text())["stages"]
    assert "--backbones clip-vit-b-16 dreamsim-ensemble --images 64 --tensor-images 64" in stage["command"]
    assert gpu_check("--device", "tpu").returncode == 2
    assert gpu_check("--device", "cpu", "--stages", "embed nope", "--dry-run", "--out", str(tmp_path)).returncode == 2


def test_the_report_reads_each_stage_back_and_a_failed_test_turns_it_red(tmp_path, report_module):
    (tmp_path / "stages.tsv").write_text(
        "tests\t0\t3.5\tpytest -m gpu\nembed\t0\t20.0\tembed_throughput.py\n"
        "ray\tskip:not importable: ray\t0\tray_index.py\n"
    )
    (tmp_path / "tests.xml").write_text(
        '<testsuites><testsuite name="pytest" tests="4" failures="1" errors="0" skipped="2"/></testsuites>'
    )
    row = {"backbone": "clip-vit-b-16", "bf16_limit_img_s": 20.0, "embedder_long_tensors_img_s": 16.0,
           "long_jpeg_vs_tensors": 0.97, "long_job_cosine_to_fp32": 0.9995, "long_job_compile_s": 30.0}  # fmt: skip
    (tmp_path / "embed.json").write_text(json.dumps({"results": [row]}))
    assert report_module.main([str(tmp_path), "--device", "cpu", "--size", "small"]) == 1
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    tests, embed, ray = report["stages"]
    assert tests["status"] == "failed" and tests["headline"] == {
        "tests": 4, "passed": 1, "failed": 1, "errors": 0, "skipped": 2}  # fmt: skip
    assert embed["status"] == "ok" and embed["headline"]["clip-vit-b-16"]["of_bf16_limit"] == pytest.approx(0.8)
    assert ray["status"] == "skipped" and ray["skip_reason"] == "not importable: ray" and not report["green"]
