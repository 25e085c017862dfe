"""Issue 33: the few-shot protocol's pools and baselines cannot make a table lie.

Each test is one reproduced case: more shots than the pool holds, tasks sharing a store (and a
relabelled task), a method named twice, unlabelled points in a classify collection, and a random
baseline that could show the VLM its own query (byte copies across splits).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from percep_rag import AlignedEmbedder, EmbedderSpec
from percep_rag.cli import main
from percep_rag.datasets.vtab import read_task
from percep_rag.errors import ConfigError
from percep_rag.fewshot.evaluate import PoolTooSmallError, evaluate_fewshot, example_pool
from percep_rag.store import content_hash, open_store


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return done.value.code or 0, captured.out, captured.err


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def colour_task(root, colours: dict[str, tuple[int, int, int]], *, train: int = 4, test: int = 3, seed: int = 0):
    """``root/<split>/<class>/<n>.png``: noisy solid colours, ``train`` and ``test`` per class."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", train), ("test", test)):
        for name, colour in colours.items():
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                pixels = np.clip(np.array(colour) + rng.normal(0, 30, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / name / f"{i}.png")
    return root


class RecordingVLM:
    """A stand-in VLM that answers the first class and keeps every prompt it was shown."""

    random_weights = True

    def __init__(self):
        self.prompts: list[tuple[list, str]] = []

    def predict(self, examples, query, class_names):
        self.prompts.append((list(examples), str(query)))
        return class_names[0]


@pytest.fixture(scope="module")
def embedder() -> AlignedEmbedder:
    return AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random", precision="fp32"))


COMMON = ("-b", "tiny-vit-random", "--precision", "fp32", "--no-progress")


# Case 1: more shots than the pool holds.


def test_more_shots_than_the_pool_holds_is_refused_for_every_method(tmp_path, embedder, capsys):
    root = colour_task(tmp_path / "task", {"red": (220, 30, 30), "blue": (30, 40, 220), "green": (30, 200, 40)},
                       train=3, test=2)  # fmt: skip
    task = read_task(root)
    assert len(task.pool) == 9
    for methods in (("random",), ("aligned",), ("knn-base",)):
        vlm = RecordingVLM()
        with open_store(":memory:") as store, pytest.raises(PoolTooSmallError, match="10 shots.*9 distinct"):
            evaluate_fewshot(task, embedder=embedder, store=store, collection="c", classifier=vlm, shots=10,
                             seeds=(0,), methods=methods)  # fmt: skip
        assert vlm.prompts == []  # refused before any prompt
    for methods in ("random", "aligned"):
        code, out, err = run_cli(capsys, "eval", "fewshot", str(root), "--shots", "10", "--methods", methods,
                                 "--vlm", "tiny-flamingo-random", *COMMON)  # fmt: skip
        assert code == 2 and out == "", err
        assert one_line(err).startswith("error: ") and "10 shots" in err and "9 distinct images" in err
    # Every prompt of a run that fits holds exactly the shots the title names.
    vlm = RecordingVLM()
    with open_store(":memory:") as store:
        report = evaluate_fewshot(task, embedder=embedder, store=store, collection="c", classifier=vlm, shots=8,
                                  seeds=(0, 1), methods=("aligned", "random"))  # fmt: skip
    assert "8 shots" in report.table() and {len(examples) for examples, _ in vlm.prompts} == {8}


def test_a_query_whose_copies_leave_too_few_examples_is_named(tmp_path, embedder):
    root = colour_task(tmp_path / "task", {"red": (220, 30, 30), "blue": (30, 40, 220)}, train=2, test=1)
    shutil.copy(root / "train" / "red" / "0.png", root / "test" / "red" / "0.png")  # a byte copy of a pool image
    task = read_task(root)
    with open_store(":memory:") as store, pytest.raises(PoolTooSmallError, match=r"test/red/0\.png.*3 pool"):
        evaluate_fewshot(task, embedder=embedder, store=store, collection="c", methods=("knn-aligned",), shots=4,
                         seeds=(0,))  # fmt: skip


# Case 2: tasks sharing a store, and a relabelled task.


def test_eval_fewshot_twice_in_one_store_with_another_task_between_gives_the_same_table(tmp_path, capsys):
    fruit = colour_task(tmp_path / "fruit", {"apple": (220, 30, 30), "car": (30, 40, 220)}, seed=1)
    animals = colour_task(tmp_path / "animals", {"cat": (220, 30, 30), "dog": (30, 200, 40), "bird": (30, 40, 220)},
                          train=6, seed=2)  # fmt: skip
    store = f"edge:{tmp_path / 'store'}"
    args = ("--methods", "knn-aligned,knn-base", "--shots", "3", "--seeds", "2", "--store", store, *COMMON)

    def table(task) -> str:
        code, out, err = run_cli(capsys, "eval", "fewshot", str(task), *args)
        assert code == 0, err
        return out

    first = table(fruit)
    assert "| knn-aligned | 1.00" in first  # solid colours: the nearest neighbours are right
    table(animals)
    assert table(fruit) == first

    # Relabelled: the class folder car renamed auto in both splits; the store must answer auto, not car.
    for split in ("train", "test"):
        (fruit / split / "car").rename(fruit / split / "auto")
    assert table(fruit) == first
    task = read_task(fruit)
    embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random", precision="fp32"))
    pool = example_pool(task, "fewshot-pool", embedder)
    with open_store(store) as opened:
        labels = {point.payload["label"] for point in opened.iterate(pool.collection)}
        assert labels == {"apple", "auto"} and opened.count(pool.collection) == len(task.pool)


def test_a_pool_collection_holds_that_pool_alone(tmp_path, embedder):
    one = read_task(colour_task(tmp_path / "one", {"a": (220, 30, 30), "b": (30, 40, 220)}, seed=3))
    other = read_task(colour_task(tmp_path / "other", {"c": (220, 30, 30), "d": (30, 40, 220)}, seed=4))
    with open_store(":memory:") as store:
        for task in (one, other, one):
            report = evaluate_fewshot(task, embedder=embedder, store=store, collection="pool", methods=("knn-base",),
                                      seeds=(0,))  # fmt: skip
            assert report.accuracy["knn-base"] == [1.0]
        names = {example_pool(task, "pool", embedder).collection for task in (one, other)}
        assert len(names) == 2 and all(name.startswith("pool-") for name in names)
        for task in (one, other):
            stored = store.iterate(example_pool(task, "pool", embedder).collection)
            assert sorted(p.payload["uri"] for p in stored) == sorted(r.uri for r in task.pool)


# Case 3: a method named twice.


def test_a_method_named_twice_is_refused(tmp_path, embedder, capsys):
    root = colour_task(tmp_path / "task", {"red": (220, 30, 30), "blue": (30, 40, 220)})
    with open_store(":memory:") as store, pytest.raises(ConfigError, match="more than once: knn-aligned"):
        evaluate_fewshot(read_task(root), embedder=embedder, store=store, collection="c",
                         methods=("knn-aligned", "knn-aligned"), seeds=(0, 1))  # fmt: skip
    code, out, err = run_cli(capsys, "eval", "fewshot", str(root), "--methods", "knn-aligned,knn-aligned", *COMMON)
    assert code == 2 and out == "" and "more than once: knn-aligned" in one_line(err)
    code, _, err = run_cli(capsys, "eval", "fewshot", str(root), "--methods", "knn-aligned,nope", *COMMON)
    assert code == 2 and "unknown methods ['nope']" in one_line(err)


# Case 5: classify on a collection that also holds unlabelled points.


@pytest.mark.parametrize("vlm", ["tiny-flamingo-random", "tiny-smolvlm-random"])
def test_classify_prompts_with_labelled_points_only(tmp_path, capsys, vlm):
    if vlm == "tiny-flamingo-random":
        pytest.importorskip("open_flamingo", reason="percep-rag[flamingo] installs open-flamingo with --no-deps")
    labelled = colour_task(tmp_path / "labelled", {"red": (220, 30, 30), "blue": (30, 40, 220)}, test=0)
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    rng = np.random.default_rng(5)
    for i in range(6):  # closer to the red query than any labelled image
        pixels = np.clip(np.array((220, 30, 30)) + rng.normal(0, 3, (32, 32, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(unlabelled / f"{i}.png")
    query = tmp_path / "query.png"
    Image.new("RGB", (32, 32), (220, 30, 30)).save(query)
    store = f"edge:{tmp_path / 'store'}"
    for folder in (labelled / "train", unlabelled):
        code, _, err = run_cli(capsys, "index", str(folder), "-c", "pool", "--store", store, "-b", "tiny-vit-random",
                               "--no-progress")  # fmt: skip
        assert code == 0, err
    code, out, err = run_cli(capsys, "classify", str(query), "-c", "pool", "--store", store, "--shots", "3",
                             "--vlm", vlm, "--precision", "fp32")  # fmt: skip
    assert code == 0, err
    assert "(examples: red, red, red)" in out


# Case 6: every method draws its examples under the same rule: never the query or a copy of it.


@pytest.mark.parametrize("kind", ["memory", "edge"])
def test_no_method_shows_the_vlm_its_own_query(tmp_path, embedder, kind):
    root = colour_task(tmp_path / "task", {"red": (220, 30, 30), "blue": (30, 40, 220)}, train=3, test=1)
    # The test images are copies of pool images: byte copies, and one the same pixels saved anew.
    shutil.copy(root / "train" / "red" / "0.png", root / "test" / "red" / "0.png")
    Image.open(root / "train" / "blue" / "1.png").save(root / "test" / "blue" / "0.png", compress_level=0)
    assert (root / "test" / "blue" / "0.png").read_bytes() != (root / "train" / "blue" / "1.png").read_bytes()
    copies = {
        str(root / "test" / "red" / "0.png"): {content_hash((root / "train" / "red" / "0.png").read_bytes())},
        str(root / "test" / "blue" / "0.png"): {content_hash((root / "train" / "blue" / "1.png").read_bytes())},
    }
    task = read_task(root)
    spec = ":memory:" if kind == "memory" else f"edge:{tmp_path / 'store'}"
    for method in ("random", "aligned", "base", "mmr-aligned"):
        vlm = RecordingVLM()
        with open_store(spec) as store:
            evaluate_fewshot(task, embedder=embedder, store=store, collection="c", classifier=vlm, shots=2,
                             seeds=range(5), methods=(method,))  # fmt: skip
        assert len(vlm.prompts) == 10
        for examples, query in vlm.prompts:
            shown = {content_hash(open(uri, "rb").read()) for uri, _ in examples}
            assert len(examples) == 2 and not shown & (copies[query] | {content_hash(open(query, "rb").read())})


def test_query_copies_are_what_few_shot_retrieval_leaves_out(tmp_path, embedder):
    from percep_rag.datasets.records import scan_folder
    from percep_rag.indexing import index_records
    from percep_rag.retrieval import ExampleRetriever

    root = colour_task(tmp_path / "task", {"red": (220, 30, 30), "blue": (30, 40, 220)}, train=3, test=0)
    with open_store(":memory:") as store:
        index_records(scan_folder(root / "train"), embedder=embedder, store=store, collection="c", progress=False)
        retriever = ExampleRetriever(store, "c", embedder)
        ids = {p.payload["uri"]: p.id for p in store.iterate("c")}
        stale = root / "train" / "red" / "0.png"  # replaced after indexing: its stored point has its uri only
        Image.new("RGB", (32, 32), (30, 200, 40)).save(stale)
        resaved = tmp_path / "resaved.png"  # the same pixels as a pool image, other bytes
        Image.open(root / "train" / "blue" / "1.png").save(resaved, compress_level=0)
        queries = [str(stale), str(resaved), str(root / "train" / "red" / "1.png")]
        copies = retriever.query_copies(queries)
        stored = set(ids.values())  # the query's own id is left out whether it is stored or not
        wanted = [{ids[str(stale)]}, {ids[str(root / "train" / "blue" / "1.png")]}, {ids[queries[2]]}]
        assert [found & stored for found in copies] == wanted
        for found, excluded in zip(retriever.examples_batch(queries, k=5), copies, strict=True):
            assert len(found) == 5 and not {example.id for example in found} & excluded
