"""The retrieval-augmented few-shot protocol end to end on a generated VTAB-style task."""

from __future__ import annotations

import pytest

from percep_rag import AlignedEmbedder, EmbedderSpec
from percep_rag.datasets.vtab import read_task
from percep_rag.errors import ConfigError
from percep_rag.fewshot.evaluate import evaluate_fewshot, example_pool, load_vlm, majority_label
from percep_rag.store import open_store

from .conftest import make_colour_task

pytest.importorskip("open_flamingo", reason="percep-rag[flamingo] installs open-flamingo with --no-deps")


@pytest.fixture(scope="module")
def task_root(tmp_path_factory):
    return make_colour_task(tmp_path_factory.mktemp("vtab"))


def test_protocol_reports_every_method_with_intervals(task_root):
    task = read_task(task_root)
    assert task.class_names == ["blue", "green", "red"] and len(task.pool) == 18 and len(task.queries) == 12
    embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random"))
    with open_store(":memory:") as store:
        report = evaluate_fewshot(
            task, embedder=embedder, store=store, collection="vtab", classifier=load_vlm(), shots=3, seeds=(0, 1),
            queries=6,
        )  # fmt: skip
        assert store.count(example_pool(task, "vtab", embedder).collection) == 18
    assert set(report.accuracy) == {"aligned", "base", "random", "knn-aligned", "knn-base"}
    assert all(len(values) == 2 and all(0 <= v <= 1 for v in values) for values in report.accuracy.values())
    # Solid colours are easy for nearest neighbours even with random weights; chance is 1/3.
    assert report.interval("knn-aligned").mean >= 0.8
    # Identity alignment: aligned and base retrieval are the same retrieval.
    assert report.accuracy["knn-aligned"] == report.accuracy["knn-base"]
    assert report.accuracy["aligned"] == report.accuracy["base"]
    assert "RANDOM weights" in report.table() and "95% interval over the 12 queries" in report.table()


def test_knn_without_vlm_and_errors(task_root):
    task = read_task(task_root)
    embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random"))
    with open_store(":memory:") as store:
        with pytest.raises(ConfigError, match="need a VLM"):
            evaluate_fewshot(task, embedder=embedder, store=store, collection="c", seeds=(0,))
        report = evaluate_fewshot(
            task, embedder=embedder, store=store, collection="c", methods=("knn-base",), seeds=(0, 1, 2)
        )
    # 3 bootstrap seeds of the 12 queries: a Wilson interval of 12 * 3 / 4 effective queries
    assert report.interval("knn-base").n == 9
    # every seed draws its own (bootstrap) query sample; solid colours are all right in each
    assert report.queries_per_seed == len(task.queries) and report.interval("knn-base").mean == pytest.approx(1.0)
    with pytest.raises(ConfigError, match="split"):
        read_task(task_root / "train")


def test_majority_vote_tie_goes_to_most_similar():
    from percep_rag.retrieval import Example

    examples = [Example("1", "", "a", None, 0.5, {}), Example("2", "", "b", None, 0.9, {})]
    assert majority_label(examples) == "b"


def test_cli_eval_fewshot_and_classify(task_root, tmp_path, capsys):
    from percep_rag.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as done:
            main(list(args))
        out = capsys.readouterr()
        return done.value.code or 0, out.out, out.err

    code, out, err = run(
        "eval", "fewshot", str(task_root), "-b", "tiny-vit-random", "--seeds", "2", "--queries", "3",
        "--methods", "aligned,random,knn-aligned", "--json", str(tmp_path / "fs.json"), "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert "| aligned |" in out and "| knn-aligned |" in out and "RANDOM weights" in out
    assert set(__import__("json").loads((tmp_path / "fs.json").read_text())["accuracy"]) == {
        "aligned", "random", "knn-aligned",
    }  # fmt: skip

    store = f"edge:{tmp_path / 'store'}"
    code, _, err = run("index", str(task_root / "train"), "-c", "pool", "--store", store, "-b", "tiny-vit-random")
    assert code == 0, err
    query = task_root / "test" / "red" / "0.png"
    code, out, err = run(
        "classify", str(query), "-c", "pool", "--store", store, "-b", "tiny-vit-random", "--vlm", "tiny-flamingo-random"
    )
    assert code == 0, err
    assert out.startswith(f"{query}: ") and "examples: red, red, red" in out and "random weights" in out


def test_mmr_methods_in_the_protocol_and_the_cli(task_root, tmp_path, capsys):
    from percep_rag.cli import main

    task = read_task(task_root)
    embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random"))
    vlm = load_vlm()
    with open_store(":memory:") as store:
        report = evaluate_fewshot(
            task, embedder=embedder, store=store, collection="vtab", classifier=vlm, shots=2, seeds=(0,),
            queries=3, methods=("aligned", "mmr-aligned"), diversity=0.0,
        )  # fmt: skip
        assert report.accuracy["mmr-aligned"] == report.accuracy["aligned"]  # diversity 0: the same examples
        with pytest.raises(ConfigError, match="diversity"):
            evaluate_fewshot(task, embedder=embedder, store=store, collection="vtab", classifier=vlm,
                             methods=("mmr-base",), seeds=(0,), queries=1, diversity=1.5)  # fmt: skip

    def run(*args: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as done:
            main(list(args))
        out = capsys.readouterr()
        return done.value.code or 0, out.out, out.err

    common = ("-b", "tiny-vit-random", "--seeds", "1", "--queries", "2", "--no-progress")
    code, out, err = run("eval", "fewshot", str(task_root), *common, "--methods", "mmr-base", "--diversity", "0.7")
    assert code == 0, err
    assert "| mmr-base |" in out
    store = f"edge:{tmp_path / 'store'}"
    code, _, err = run("index", str(task_root / "train"), "-c", "pool", "--store", store, "-b", "tiny-vit-random")
    assert code == 0, err
    query = task_root / "test" / "red" / "0.png"
    code, out, err = run(
        "classify", str(query), "-c", "pool", "--store", store, "--diversity", "1", "--vlm", "tiny-flamingo-random"
    )
    assert code == 0, err
    assert out.startswith(f"{query}: ") and out.count(",") >= 2  # three examples listed
    code, _, err = run("classify", str(query), "-c", "pool", "--store", store, "--diversity", "2")
    assert code == 2 and "diversity" in err
