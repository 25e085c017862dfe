"""Every ```bash command and ```python snippet of the README, run in order in a folder of generated images.

The real weights cannot be here, so names of real models are replaced by the tiny
random-weight ones before a block runs (:data:`TINY`):

=================================================================  ==========================
``dreamsim-ensemble``                                              ``tiny-ensemble-random``
``dino-vit-b-16``                                                  ``tiny-vit-random``
``clip-vit-b-16``                                                  ``tiny-clip-random``
``--vlm OpenFlamingo-4B-vitl-rpj3b --vlm-checkpoint ... --vlm-lang ...``  ``--vlm tiny-flamingo-random``
``smolvlm:HuggingFaceTB/SmolVLM-256M-Instruct``                     ``tiny-smolvlm-random``
``qwen-vl:Qwen/Qwen2.5-VL-3B-Instruct``                             ``tiny-qwen2.5-vl-random``
``/data/deepfashion2``                                             ``deepfashion2`` (a generated mini copy)
``align fit ...``                                                  ``... --epochs 1`` (seconds, not hours)
=================================================================  ==========================

Only :data:`NOT_RUN` is left out: installing, the test suite itself, the perceptual-world
study (minutes; run by ``tests/test_study.py``) and its triplet-source ablation (run small by
``tests/test_ablation.py``), and the long-running ``percep-rag serve`` with
the ``curl`` requests to it (the service is run by ``tests/test_serve_browser.py``; the README's
``create_app`` snippet sends the same search in process). ``percep-rag`` commands run through the real
entry point :func:`percep_rag.cli.main` in this process (a subprocess would import torch for
each of them); ``python integrations/...`` runs its script's ``main``.
"""

from __future__ import annotations

import importlib.util
import json
import re
import runpy
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from percep_rag.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

TINY = (
    (r"--vlm OpenFlamingo-4B-vitl-rpj3b --vlm-checkpoint \S+ --vlm-lang \S+", "--vlm tiny-flamingo-random"),
    (r"smolvlm:HuggingFaceTB/SmolVLM-256M-Instruct", "tiny-smolvlm-random"),
    (r"qwen-vl:Qwen/Qwen2.5-VL-3B-Instruct", "tiny-qwen2.5-vl-random"),
    (r"dreamsim-ensemble", "tiny-ensemble-random"),
    (r"dino-vit-b-16", "tiny-vit-random"),
    (r"(?<![a-z])clip-vit-b-16", "tiny-clip-random"),
    (r"/data/deepfashion2", "deepfashion2"),
    (r"^(percep-rag align fit .*)$", r"\1 --epochs 1"),
)
#: Commands and snippets the test does not run, each with why.
NOT_RUN = {
    "pip install": "installs packages",
    "python -m pytest": "the test suite itself",
    "python benchmarks/perceptual_world.py": "minutes of training; its figures are checked by test_study",
    "--engine ray": "a Ray cluster and a Qdrant server; tests/test_distributed.py runs the Ray path on local Ray",
    "run_study(": "minutes of training; tests/test_study.py runs run_study(StudyConfig.small())",
    "percep-rag serve": "a server that runs until stopped; tests/test_serve_browser.py runs it on a free port",
    "curl ": "requests to that running server; tests/test_serve_api.py sends each of them",
    "percep-rag study ablation": "minutes of training; tests/test_ablation.py runs it with --size small",
    "dreamsim:": "a DreamSim release folder (GBs); tests/test_dreamsim_release.py indexes and searches a random one, "
    "tests/test_dreamsim_parity.py runs align eval and PerceptualDistance on one",
}

pytest.importorskip("open_flamingo", reason="the README's few-shot commands need open-flamingo")


def blocks(text: str) -> list[tuple[str, str]]:
    """The README's ```bash and ```python blocks, in order, as (language, code)."""
    return [(match[1], match[2]) for match in re.finditer(r"```(bash|python)\n(.*?)```", text, re.S)]


def bash_commands(code: str) -> list[str]:
    """One string per command: continuation lines joined, comments dropped."""
    joined = code.replace("\\\n", " ")
    commands = []
    for line in joined.splitlines():
        command = line.split(" #")[0].strip() if not line.lstrip().startswith("#") else ""
        if command:
            commands.append(" ".join(command.split()))
    return commands


def tiny(command: str) -> str:
    for pattern, replacement in TINY:
        command = re.sub(pattern, replacement, command, flags=re.M)
    return command


def _image(path: Path, colour: tuple[int, int, int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour) + rng.normal(0, 25, (32, 32, 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def make_world(root: Path) -> None:
    """The files the README names: photos/<split>/<label>/, queries, triplets, a task, manifests."""
    colours = {"cat": (200, 40, 40), "dog": (40, 40, 200)}
    seed = 0
    for split in ("train", "test"):
        for label, colour in colours.items():
            for n in range(1, 4):
                seed += 1
                _image(root / "photos" / split / label / f"{n}.{'jpg' if n % 2 else 'png'}", colour, seed)
                _image(root / "tasks" / "svhn" / split / label / f"{n}.png", colour, 100 + seed)
    for n, name in enumerate(("query.jpg", "q1.jpg", "q2.jpg", "q3.jpg")):
        _image(root / name, colours["cat" if n % 2 == 0 else "dog"], 500 + n)
    (root / "not-an-image.txt").write_text("plain text\n")
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(8, 8)).astype(np.float32)
    bias = np.zeros(8, np.float32)
    np.savez(root / "transform.npz", weights=weights, bias=bias, mean=np.float32(0), std=np.float32(1))
    # NIGHTS data.csv: "humans" prefer the image of the reference's colour.
    nights = root / "nights"
    rows = ["id,left_vote,right_vote,votes,ref_path,left_path,right_path,split,is_imagenet"]
    for n in range(24):
        ref, same, other = (f"img/{n}_{kind}.png" for kind in ("ref", "same", "other"))
        hue = rng.uniform(0, 255, 3)
        for name, colour in ((ref, hue), (same, hue), (other, 255 - hue)):
            _image(nights / name, tuple(int(c) for c in colour), n)
        left_first = n % 2 == 0
        left, right = (same, other) if left_first else (other, same)
        vote = "1.0,0.0" if left_first else "0.0,1.0"
        split = ("train", "val", "test")[n % 3]
        rows.append(f"{n},{vote},6,{ref},{left},{right},{split},False")
    (nights / "data.csv").write_text("\n".join(rows) + "\n")
    # products.csv: instance retrieval, a query and a gallery image per product.
    products = ["image,instance_id,role"]
    for n in range(4):
        colour = tuple(int(c) for c in rng.uniform(0, 255, 3))
        for role in ("query", "gallery"):
            _image(root / "products" / f"{n}_{role}.png", colour, 900 + n)
            products.append(f"products/{n}_{role}.png,{n},{role}")
    (root / "products.csv").write_text("\n".join(products) + "\n")
    spec = importlib.util.spec_from_file_location("df2_maker", ROOT / "tests" / "test_retrieval_eval.py")
    maker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(maker)  # type: ignore[union-attr]
    maker.make_mini_df2(root / "deepfashion2", pairs=2)


def run_command(command: str, capsys) -> tuple[int, str, str]:
    argv = shlex.split(command)
    if argv[0] == "percep-rag":
        target, args = (lambda: main(argv[1:])), argv[1:]
    elif argv[:2] == ["python", "integrations/fewshot_prompting.py"]:
        script = str(ROOT / argv[1])

        def target() -> None:
            saved = sys.argv
            sys.argv = [script, *argv[2:]]
            try:
                runpy.run_path(script, run_name="__main__")
            finally:
                sys.argv = saved

        args = argv[2:]
    else:
        raise AssertionError(f"the README runs a command this test does not know: {command}")
    code = 0
    try:
        target()
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err, (args, captured.err)
    return code, captured.out, captured.err


def test_every_readme_command_and_snippet_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PERCEP_RAG_STORE", str(tmp_path / "default_store"))
    make_world(tmp_path)
    outputs: dict[str, str] = {}
    left_out = set()
    for language, code in blocks(README.read_text(encoding="utf-8")):
        skipped = [marker for marker in NOT_RUN if marker in code]
        if language == "python":
            if skipped:
                left_out.update(skipped)
                continue
            exec(compile(tiny(code), "README.md", "exec"), {"__name__": "readme"})
            outputs[code] = capsys.readouterr().out
            continue
        for command in bash_commands(code):
            marker = next((marker for marker in NOT_RUN if marker in command), None)
            if marker is not None:
                left_out.add(marker)
                continue
            status, out, err = run_command(tiny(command), capsys)
            assert status == 0, f"{command}\n{err}"
            outputs[command] = out
    assert left_out == set(NOT_RUN), "NOT_RUN names something the README no longer has"

    # What the README says these return.
    [embedded] = [out for code, out in outputs.items() if "embed_many" in code]
    assert "(1, 128) ['not-an-image.txt']" in embedded
    [stored] = [out for code, out in outputs.items() if "ExampleRetriever" in code]
    assert len(eval(stored.splitlines()[-1])) == 3  # three (label, score) examples
    [filtered] = [out for command, out in outputs.items() if "--filter split=train --grid" in command]
    uris = [line.split()[-1] for line in filtered.splitlines() if line[:1].isdigit()]
    assert len(uris) == 10 and all("/photos/train/" in uri for uri in uris)
    assert (tmp_path / "neighbours.png").exists() and (tmp_path / "figure.pdf").read_bytes()[:4] == b"%PDF"
    [as_json] = [out for command, out in outputs.items() if "--json" in command and "search query" in command]
    hits = json.loads(as_json)["hits"]
    assert {hit["payload"]["label"] for space in hits.values() for hit in space} <= {"cat", "dog"}
    [by_text] = [out for command, out in outputs.items() if "--text" in command and "--json" not in command]
    assert "base top-3 for text 'a red cat'" in by_text and "base top-3 for text 'a dog on grass'" in by_text
    [text_json] = [out for command, out in outputs.items() if "--text" in command and "--json" in command]
    assert set(json.loads(text_json)["hits"]) == {"base", "aligned"}
    [retrieved] = [out for code, out in outputs.items() if 'search(text="a red cat"' in code]
    assert len(eval(retrieved.splitlines()[-1])) == 3
    [recipe] = [out for code, out in outputs.items() if "add_images" in code]
    assert recipe.splitlines()[-1] == "3"  # the question and two retrieved images
    [described] = [out for command, out in outputs.items() if command.startswith("percep-rag info")]
    assert json.loads(described)["payload_fields"]["split"] == "str"
    [served] = [out for code, out in outputs.items() if "create_app" in code]
    assert len(eval(served.splitlines()[-1])) == 3  # three (label, score) hits from the service
    [listed] = [out for command, out in outputs.items() if command.startswith("percep-rag collections")]
    assert re.search(r"photos-test\s+6 points", listed) and re.search(r"photos\s+12 points", listed)
    assert Path("photos.meta.json").exists() and json.loads(Path("photos.meta.json").read_text())["labels"][0] == "cat"
    [synced] = [out for command, out in outputs.items() if "--sync" in command and "--dry-run" not in command]
    assert "0 added, 6 kept, 0 replaced, 6 removed, 0 relinked, 0 failed" in synced
    [dry] = [out for command, out in outputs.items() if "--dry-run" in command]
    assert "6 removed" in dry and "dry run" in dry and "holds 12 points" in dry
    [deleted] = [out for command, out in outputs.items() if command.startswith("percep-rag delete")]
    assert "deleted 3 points" in deleted and "3 left" in deleted
    [duplicated] = [out for command, out in outputs.items() if "duplicates" in command and "--json" in command]
    [table] = [out for command, out in outputs.items() if "--figure duplicates.png" in command]
    assert json.loads(duplicated)["points"] == 3 and (Path("duplicates.png").exists() or ": 0 groups" in table)
