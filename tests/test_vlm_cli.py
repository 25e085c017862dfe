"""The VLM interface end to end: spec parsing, the eval fewshot protocol, classify and the
prompting script with the SmolVLM backend on the tiny random-weight model."""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path

import pytest

from percep_rag import AlignedEmbedder, EmbedderSpec
from percep_rag.datasets.vtab import read_task
from percep_rag.fewshot.evaluate import evaluate_fewshot
from percep_rag.store import open_store
from percep_rag.vlm import VlmSpec, VlmSpecError, build_tiny_smolvlm, list_vlm_backends, load_vlm, parse_vlm_spec

from .conftest import make_colour_task

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def task_root(tmp_path_factory):
    return make_colour_task(tmp_path_factory.mktemp("vtab"))


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return build_tiny_smolvlm(tmp_path_factory.mktemp("tiny-smolvlm"))


def run(capsys, *args: str) -> tuple[int, str, str]:
    from percep_rag.cli import main

    with pytest.raises(SystemExit) as done:
        main(list(args))
    out = capsys.readouterr()
    return done.value.code or 0, out.out, out.err


@pytest.mark.parametrize(
    ("text", "backend", "target"),
    [
        ("OpenFlamingo-4B-vitl-rpj3b", "openflamingo", "OpenFlamingo-4B-vitl-rpj3b"),
        ("tiny-flamingo-random", "openflamingo", "tiny-flamingo-random"),
        ("openflamingo:OpenFlamingo-9B-vitl-mpt7b", "openflamingo", "OpenFlamingo-9B-vitl-mpt7b"),
        ("tiny-smolvlm-random", "smolvlm", "tiny-smolvlm-random"),
        ("smolvlm:HuggingFaceTB/SmolVLM-500M-Instruct", "smolvlm", "HuggingFaceTB/SmolVLM-500M-Instruct"),
        ("smolvlm:/models/a:b", "smolvlm", "/models/a:b"),
        ("idefics3", "idefics3", None),
        ("tiny-qwen2.5-vl-random", "qwen-vl", "tiny-qwen2.5-vl-random"),
        ("tiny-qwen3-vl-random", "qwen-vl", "tiny-qwen3-vl-random"),
        ("tiny-gemma3-random", "gemma3", "tiny-gemma3-random"),
        ("qwen-vl:Qwen/Qwen3-VL-2B-Instruct", "qwen-vl", "Qwen/Qwen3-VL-2B-Instruct"),
        ("gemma3:/models/gemma-3-4b-it", "gemma3", "/models/gemma-3-4b-it"),
        ("hf:google/gemma-3-4b-it", "hf", "google/gemma-3-4b-it"),
    ],
)
def test_spec_parsing_keeps_todays_names(text, backend, target):
    assert parse_vlm_spec(text) == VlmSpec(backend=backend, target=target)


@pytest.mark.parametrize("text", ["", "smolvlm:", "gpt-5", "clip:ViT-L-14"])
def test_bad_specs_are_one_clear_error(text):
    with pytest.raises(VlmSpecError):
        parse_vlm_spec(text)


def test_backends_and_their_options():
    assert list_vlm_backends() == ["openflamingo", "smolvlm", "idefics3", "qwen-vl", "gemma3", "hf"]
    with pytest.raises(VlmSpecError, match="takes no option 'class_batch_size'"):
        load_vlm("tiny-flamingo-random", class_batch_size=2)


def test_openflamingo_through_the_interface_is_todays_classifier():
    pytest.importorskip("open_flamingo", reason="percep-rag[flamingo] installs open-flamingo with --no-deps")
    from percep_rag.vlm.openflamingo import FewShotClassifier, build_tiny_flamingo
    from percep_rag.vlm.openflamingo.tiny import make_test_image

    vlm = load_vlm("openflamingo:tiny-flamingo-random", precision="fp32")
    assert isinstance(vlm, FewShotClassifier) and vlm.random_weights and vlm.name == "tiny-flamingo-random"
    shots = [(make_test_image(1), "cat"), (make_test_image(2), "dog")]
    today = FewShotClassifier.from_bundle(build_tiny_flamingo())
    expected = today.score_classes(shots, make_test_image(3), ["cat", "dog"])
    assert (vlm.score_classes(shots, make_test_image(3), ["cat", "dog"]) == expected).all()


def test_the_protocol_runs_end_to_end_with_smolvlm(task_root, tiny_folder):
    task = read_task(task_root)
    embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random"))
    vlm = load_vlm(f"smolvlm:{tiny_folder}", precision="fp32")
    with open_store(":memory:") as store:
        report = evaluate_fewshot(
            task, embedder=embedder, store=store, collection="vtab", classifier=vlm, shots=2, seeds=(0, 1, 2),
            queries=3,
        )  # fmt: skip
    assert set(report.accuracy) == {"aligned", "base", "random", "knn-aligned", "knn-base"}
    assert all(len(values) == 3 and all(0 <= v <= 1 for v in values) for values in report.accuracy.values())
    assert report.accuracy["aligned"] == report.accuracy["base"]  # identity alignment: the same examples
    interval = report.interval("aligned")
    assert interval.low <= interval.mean <= interval.high
    assert "RANDOM weights" in report.table() and "95% interval over the" in report.table()


def test_cli_eval_fewshot_and_classify_with_smolvlm(task_root, tiny_folder, tmp_path, capsys):
    code, out, err = run(
        capsys, "eval", "fewshot", str(task_root), "-b", "tiny-vit-random", "--vlm", "tiny-smolvlm-random",
        "--shots", "1", "--seeds", "2", "--queries", "2", "--methods", "aligned,base,random,knn-aligned",
        "--precision", "fp32", "--json", str(tmp_path / "fs.json"), "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert "| aligned |" in out and "| random |" in out and "| knn-aligned |" in out and "RANDOM weights" in out
    accuracy = json.loads((tmp_path / "fs.json").read_text())["accuracy"]
    assert set(accuracy) == {"aligned", "base", "random", "knn-aligned"}

    store = f"edge:{tmp_path / 'store'}"
    code, _, err = run(
        capsys, "index", str(task_root / "train"), "-c", "pool", "--store", store, "-b", "tiny-vit-random"
    )
    assert code == 0, err
    query = task_root / "test" / "red" / "0.png"
    code, out, err = run(
        capsys, "classify", str(query), "-c", "pool", "--store", store, "--vlm", f"smolvlm:{tiny_folder}",
        "--shots", "2",
    )  # fmt: skip
    assert code == 0, err
    assert out.startswith(f"{query}: ") and "examples: red, red" in out and "random weights" in out
    assert out.split(": ", 1)[1].split()[0] in ("blue", "green", "red")


def test_cli_vlm_mistakes_are_one_line(task_root, tmp_path, capsys):
    code, _, err = run(capsys, "eval", "fewshot", str(task_root), "-b", "tiny-vit-random", "--vlm", "gpt-5")
    assert code == 2 and "unknown VLM 'gpt-5'" in err and "Traceback" not in err
    code, _, err = run(
        capsys, "eval", "fewshot", str(task_root), "-b", "tiny-vit-random", "--vlm", f"smolvlm:{tmp_path / 'none'}",
        "--no-progress",
    )  # fmt: skip
    assert code == 1 and "does not exist" in err and len(err.strip().splitlines()) <= 3 and "Traceback" not in err
    code, _, err = run(
        capsys, "eval", "fewshot", str(task_root), "-b", "tiny-vit-random", "--vlm", "tiny-smolvlm-random",
        "--vlm-checkpoint", "of.pt", "--no-progress",
    )  # fmt: skip
    assert code != 0 and "takes no option 'checkpoint'" in err


def test_prompting_script_with_smolvlm(task_root, tmp_path, monkeypatch, capsys):
    argv = [
        str(task_root / "train"), str(task_root / "test" / "red" / "0.png"), "--backbone", "tiny-vit-random",
        "--vlm", "tiny-smolvlm-random", "--shots", "2", "--store", f"edge:{tmp_path / 'store'}",
    ]  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["fewshot_prompting.py", *argv])
    runpy.run_path(str(ROOT / "integrations" / "fewshot_prompting.py"), run_name="not_main")["main"]()
    out = capsys.readouterr().out
    assert "prompt: <|im_start|>User: " in out and "<image>red\n" in out
    assert "prediction: " in out and "random weights" in out
