"""0-shot prompts as open_flamingo's evaluation makes them: two text-only demonstrations."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest
from PIL import Image

from percep_rag import AlignedEmbedder, EmbedderSpec
from percep_rag.errors import ConfigError
from percep_rag.fewshot.prompt import build_prompt, demonstrations_needed
from percep_rag.vlm.openflamingo.errors import PromptError

pytest.importorskip("open_flamingo", reason="percep-rag[flamingo] installs open-flamingo with --no-deps")

from percep_rag.datasets.vtab import read_task  # noqa: E402
from percep_rag.fewshot.evaluate import evaluate_fewshot, load_vlm  # noqa: E402
from percep_rag.store import open_store  # noqa: E402
from percep_rag.vlm.openflamingo.classify import FewShotClassifier  # noqa: E402


@pytest.fixture(scope="module")
def task_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("vtab0")
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("test", 2)):
        for name, colour in {"red": (220, 30, 30), "blue": (30, 40, 220)}.items():
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(np.array(colour) + rng.normal(0, 25, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


def test_openflamingo_zero_shot_prompt_is_two_texts_and_the_query_image():
    assert demonstrations_needed(0, "openflamingo") == 2 and demonstrations_needed(0) == 0
    text, images = build_prompt([(None, "red"), (None, "blue")])
    assert text == "Output:red<|endofchunk|>Output:blue<|endofchunk|><image>Output:" and images == []
    with pytest.raises(PromptError, match="zero_shot_style"):
        demonstrations_needed(0, "flamingo")


def _prompts(task_root, shots: int, style: str) -> list[tuple[list, str]]:
    """The (examples, query) each VLM call got in a 0-shot protocol run."""
    calls = []
    original = FewShotClassifier.predict

    def spy(self, examples, query, class_names):
        calls.append((list(examples), query))
        return original(self, examples, query, class_names)

    embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random"))
    with mock.patch.object(FewShotClassifier, "predict", spy), open_store(":memory:") as store:
        report = evaluate_fewshot(
            read_task(task_root), embedder=embedder, store=store, collection="c", classifier=load_vlm(),
            shots=shots, seeds=(0,), methods=("aligned", "random"), zero_shot_style=style,
        )  # fmt: skip
    assert set(report.accuracy) == {"aligned", "random"}
    return calls, report


def test_zero_shot_protocol_in_both_styles(task_root):
    calls, report = _prompts(task_root, 0, "openflamingo")
    assert calls and all(len(examples) == 2 and all(image is None for image, _ in examples) for examples, _ in calls)
    assert all(label in ("red", "blue") for examples, _ in calls for _, label in examples)
    assert "open_flamingo style" in report.table()
    calls, report = _prompts(task_root, 0, "plain")
    assert calls and all(examples == [] for examples, _ in calls) and "open_flamingo" not in report.table()
    with open_store(":memory:") as store, pytest.raises(ConfigError, match="knn"):
        evaluate_fewshot(
            read_task(task_root), embedder=AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random")),
            store=store, collection="c", shots=0, methods=("knn-base",),
        )  # fmt: skip


def test_cli_zero_shot_openflamingo(task_root, capsys):
    from percep_rag.cli import main

    with pytest.raises(SystemExit) as done:
        main([
            "eval", "fewshot", str(task_root), "-b", "tiny-vit-random", "--seeds", "1", "--queries", "2",
            "--methods", "aligned", "--shots", "0", "--zero-shot-style", "openflamingo", "--no-progress",
        ])  # fmt: skip
    out = capsys.readouterr()
    assert (done.value.code or 0) == 0, out.err
    assert "0 shots (open_flamingo style: 2 text-only demonstrations)" in out.out and "| aligned |" in out.out
