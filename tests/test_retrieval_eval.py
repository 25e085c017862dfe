"""Instance-retrieval evaluation: recall@k by hand, the DeepFashion2 adapter on a generated
mini DF2 folder, the store-backed protocol, and the index / search / eval CLI end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from percep_rag import AlignedEmbedder, EmbedderSpec
from percep_rag.datasets.deepfashion2 import (
    DeepFashion2Error,
    consumer_to_shop_ground_truth,
    read_deepfashion2,
)
from percep_rag.datasets.records import ImageRecord
from percep_rag.errors import ConfigError
from percep_rag.evaluation import (
    EvaluationError,
    evaluate_collection,
    evaluate_records,
    parse_instances,
    recall_at_k,
    retrieval_task,
)
from percep_rag.indexing import index_records
from percep_rag.store import open_store
from percep_rag.viz import GridLayout
from tests.conftest import run_cli  # absolute: tests/test_readme.py loads this file by path


def unit(degrees: float) -> list[float]:
    return [math.cos(math.radians(degrees)), math.sin(math.radians(degrees))]


# --------------------------------------------------------------------------- recall@k by hand

# Gallery on the unit circle at 0, 30, 60, 90 and 120 degrees; cosine ranks by angle.
GALLERY = np.array([unit(a) for a in (0, 30, 60, 90, 120)])
GALLERY_INSTANCES = [{"a"}, {"b"}, {"c"}, {"a", "d"}, set()]
# Q0 at 5: G0(a) first                        -> hit @1 @3 @5
# Q1 at 50 wants d: G2, G1, G3(d)             -> hit @3 @5
# Q2 at 118 wants b: G4, G3, G2, G1(b)        -> hit @5 only
# Q3 wants z: nothing in the gallery has it   -> skipped
# Q4 at 70 wants c or e: G2(c) first          -> hit @1 @3 @5
QUERIES = np.array([unit(a) for a in (5, 50, 118, 0, 70)])
QUERY_INSTANCES = [{"a"}, {"d"}, {"b"}, {"z"}, {"c", "e"}]


def test_recall_at_k_hand_checked():
    result = recall_at_k(QUERIES, GALLERY, QUERY_INSTANCES, GALLERY_INSTANCES, ks=(1, 3, 5))
    assert result.recall == {1: 0.5, 3: 0.75, 5: 1.0}
    assert result.hits == {1: 2, 3: 3, 5: 4}
    assert (result.n_queries, result.n_skipped) == (4, 1)


def test_recall_at_k_is_cosine_chunked_and_k_beyond_the_gallery():
    scaled = QUERIES * np.array([[3.0], [0.5], [7.0], [1.0], [2.0]])  # lengths must not matter
    chunked = recall_at_k(scaled, GALLERY * 4, QUERY_INSTANCES, GALLERY_INSTANCES, ks=(1, 3, 5, 50), block_entries=5)
    assert chunked.recall == {1: 0.5, 3: 0.75, 5: 1.0, 50: 1.0}


def test_recall_at_k_excludes_the_query_itself_when_ids_say_so():
    vectors = np.array([unit(0), unit(10), unit(90)])
    instances = [{"x"}, {"x"}, {"y"}]
    ids = ["a", "b", "c"]
    # Without ids every query finds itself first; "c" then has a match (itself).
    plain = recall_at_k(vectors, vectors, instances, instances, ks=(1,))
    assert plain.recall == {1: 1.0} and plain.n_queries == 3
    # Leave-one-out: a and b find each other; c has no other y and is skipped.
    loo = recall_at_k(vectors, vectors, instances, instances, ks=(1,), query_ids=ids, gallery_ids=ids)
    assert loo.recall == {1: 1.0} and (loo.n_queries, loo.n_skipped) == (2, 1)
    # A bare string instance is one id, not a set of letters.
    assert recall_at_k(vectors[:1], vectors[:1], ["xy"], ["xy"], ks=(1,)).recall == {1: 1.0}


def test_recall_at_k_validation():
    with pytest.raises(ConfigError, match="ks"):
        recall_at_k(QUERIES, GALLERY, QUERY_INSTANCES, GALLERY_INSTANCES, ks=(0,))
    with pytest.raises(EvaluationError, match="query_instances has 2 entries"):
        recall_at_k(QUERIES, GALLERY, QUERY_INSTANCES[:2], GALLERY_INSTANCES)
    with pytest.raises(EvaluationError, match="zero"):
        recall_at_k(np.zeros((1, 2)), GALLERY, [{"a"}], GALLERY_INSTANCES)
    nothing = recall_at_k(QUERIES[:1], GALLERY, [{"nope"}], GALLERY_INSTANCES, ks=(1,))
    assert math.isnan(nothing.recall[1]) and nothing.n_skipped == 1


def test_parse_instances_and_roles():
    assert parse_instances("1:1; 1:2;") == {"1:1", "1:2"}
    assert parse_instances([3, "4"]) == {"3", "4"}
    with pytest.raises(EvaluationError, match="record 'x'"):
        parse_instances([[1]], where="record 'x': ")
    records = [
        ImageRecord(id="q", uri="q.jpg", extra={"role": "Query", "instance_id": "1"}),
        ImageRecord(id="g", uri="g.jpg", extra={"role": "gallery", "instance_id": "1"}),
        ImageRecord(id="b", uri="b.jpg", extra={"role": "both", "instance_id": "1"}),
    ]
    task = retrieval_task(records)
    assert [r.id for r in task.queries] == ["q", "b"] and [r.id for r in task.gallery] == ["g", "b"]
    bad = [ImageRecord(id="odd", uri="o.jpg", extra={"role": "train"})]
    with pytest.raises(EvaluationError, match="record 'odd': role='train'"):
        retrieval_task(bad)


# --------------------------------------------------------------------------- a mini DeepFashion2

CATEGORIES = {1: "short sleeve top", 7: "shorts", 8: "trousers"}


def _garment(pair: int, style: int) -> np.ndarray:
    rng = np.random.default_rng(1000 * pair + style)
    return rng.integers(0, 256, (6, 6, 3)).astype(np.float64)


def _photo(path, pair: int, styles: list[int], seed: int) -> None:
    """A 48x48 JPEG: the garments' patterns, upscaled, plus per-photo noise."""
    rng = np.random.default_rng(seed)
    base = sum(_garment(pair, style) for style in styles) / max(len(styles), 1)
    pixels = np.kron(base, np.ones((8, 8, 1))) + rng.normal(0, 20, (48, 48, 3))
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=92)


def _item(style: int, category: int) -> dict:
    return {
        "segmentation": [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]],
        "scale": 2,
        "viewpoint": 2,
        "zoom_in": 1,
        "landmarks": [0, 0, 0],
        "style": style,
        "bounding_box": [1, 2, 40, 44],
        "category_id": category,
        "occlusion": 1,
        "category_name": CATEGORIES[category],
    }


def make_mini_df2(root, split: str = "validation", pairs: int = 4) -> dict[str, dict]:
    """Per pair: 2 customer photos and 2 shop photos of style 1 (one shop photo also has a
    style-0 item), a shop photo of style 2 that no customer shares, and in pair 1 a customer
    photo of style 3 that no shop shares (a query without a match)."""
    images, annos = root / split / "image", root / split / "annos"
    images.mkdir(parents=True)
    annos.mkdir(parents=True)
    layout: dict[str, dict] = {}
    n = 0

    def add(source: str, pair: int, items: list[tuple[int, int]]) -> None:
        nonlocal n
        n += 1
        stem = f"{n:06d}"
        anno = {"source": source, "pair_id": pair}
        for index, (style, category) in enumerate(items, start=1):
            anno[f"item{index}"] = _item(style, category)
        (annos / f"{stem}.json").write_text(json.dumps(anno))
        _photo(images / f"{stem}.jpg", pair, [s for s, _ in items if s > 0] or [99], seed=n)
        layout[f"{split}/{stem}"] = anno

    for pair in range(1, pairs + 1):
        add("user", pair, [(1, 1)])
        add("user", pair, [(1, 1), (0, 8)])
        add("shop", pair, [(1, 1)])
        add("shop", pair, [(1, 1), (0, 7)])
        add("shop", pair, [(2, 8)])
        if pair == 1:
            add("user", pair, [(3, 7)])
    return layout


@pytest.fixture
def df2_root(tmp_path):
    root = tmp_path / "df2"
    make_mini_df2(root)
    return root


@pytest.fixture(scope="module")
def tiny():
    return AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random", device="cpu", batch_size=16))


def test_read_deepfashion2_payload_and_ground_truth(df2_root):
    records = read_deepfashion2(df2_root, "validation")
    assert len(records) == 4 * 5 + 1
    first = records[1]
    assert first.id == "validation/000002" and first.split == "validation" and first.label == "short sleeve top"
    assert first.uri.endswith("validation/image/000002.jpg")
    assert first.extra["source"] == "user" and first.extra["pair_id"] == 1
    assert first.extra["styles"] == [1, 0] and first.extra["category_ids"] == [1, 8]
    assert first.extra["categories"] == ["short sleeve top", "trousers"]
    assert first.extra["instances"] == ["1:1"]  # style 0 is no instance
    assert first.payload()["bounding_boxes"] == [[1, 2, 40, 44], [1, 2, 40, 44]]
    truth = consumer_to_shop_ground_truth(records)
    assert truth["validation/000001"] == ["validation/000003", "validation/000004"]
    assert "validation/000006" not in truth  # style 3 has no shop image
    assert len(truth) == 8
    assert len(read_deepfashion2(df2_root, max_pairs=2)) == 11
    assert {r.extra["source"] for r in read_deepfashion2(df2_root, sources=["shop"])} == {"shop"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not valid JSON"),
        ('{"source": "user", "item1": {}}', "'pair_id' must be a non-negative integer"),
        ('{"source": "store", "pair_id": 1}', "'source' must be 'user' or 'shop'"),
        ('{"source": "user", "pair_id": 1, "item1": {"category_id": 1}}', "item1: 'style'"),
        ('{"source": "user", "pair_id": 1}', "no item1"),
    ],
)
def test_malformed_annotation_names_the_file(df2_root, content, message):
    (df2_root / "validation" / "annos" / "000003.json").write_text(content)
    with pytest.raises(DeepFashion2Error, match=message) as caught:
        read_deepfashion2(df2_root)
    assert "000003.json" in str(caught.value)


def test_missing_image_and_missing_split_are_clear(df2_root):
    (df2_root / "validation" / "image" / "000002.jpg").unlink()
    with pytest.raises(DeepFashion2Error, match="000002.json: no image"):
        read_deepfashion2(df2_root)
    with pytest.raises(ConfigError, match="test/annos"):
        read_deepfashion2(df2_root, "test")


def test_records_and_collection_protocols_agree(df2_root, tiny):
    records = read_deepfashion2(df2_root)
    task = retrieval_task(records, instance_field="instances")  # roles from DF2's 'source'
    assert len(task.queries) == 9 and len(task.gallery) == 12
    in_memory = evaluate_records(task, tiny, ks=(1, 3, 5))
    assert (in_memory.n_queries, in_memory.n_skipped, in_memory.n_gallery) == (8, 1, 12)
    with open_store(":memory:") as store:
        index_records(records, embedder=tiny, store=store, collection="df2", progress=False)
        stored = evaluate_collection(store, "df2", ks=(1, 3, 5))
    assert stored.base.recall == in_memory.base.recall
    assert stored.aligned.recall == in_memory.aligned.recall
    assert (stored.n_queries, stored.n_skipped, stored.n_gallery) == (8, 1, 12)


def test_evaluate_records_scores_base_and_aligned_separately(df2_root, tiny):
    from percep_rag.alignment.glocal import GlocalTransform

    rng = np.random.default_rng(0)
    glocal = GlocalTransform(rng.normal(size=(tiny.base_dim, 8)).astype(np.float32), mean=0.0, std=1.0)
    aligned = AlignedEmbedder(tiny.backbone, alignment=glocal, device="cpu")
    task = retrieval_task(read_deepfashion2(df2_root, max_pairs=3), instance_field="instances")
    report = evaluate_records(task, aligned, ks=(1, 2))
    queries = aligned.embed_both([r.uri for r in task.queries])
    gallery = aligned.embed_both([r.uri for r in task.gallery])
    for space in ("base", "aligned"):
        want = recall_at_k(
            getattr(queries, space), getattr(gallery, space), task.query_instances, task.gallery_instances, ks=(1, 2)
        )
        assert getattr(report, space) == want
    assert queries.aligned.shape[1] == 8 and queries.base.shape[1] == tiny.base_dim


# --------------------------------------------------------------------------- CLI end to end


def test_cli_eval_deepfashion2_in_memory_and_through_a_store(capsys, df2_root, tmp_path):
    out = tmp_path / "report.json"
    args = ["eval", "deepfashion2", str(df2_root), "-b", "tiny-vit-random", "--no-progress"]
    code, stdout, err = run_cli(capsys, *args, "--json", str(out))
    assert code == 0, err
    assert "DeepFashion2 validation" in stdout and "RANDOM" in stdout
    assert "8 queries scored, 1 skipped" in stdout and "gallery of 12 images" in stdout
    report = json.loads(out.read_text())
    assert set(report["aligned"]["recall"]) == {"1", "3", "5"} and report["n_queries"] == 8
    store = f"edge:{tmp_path / 'store'}"
    code, stdout, err = run_cli(capsys, *args, "--collection", "df2", "--store", store)
    assert code == 0, err
    assert "21 new points" in stdout and "8 queries scored, 1 skipped" in stdout


def test_cli_eval_retrieval_on_a_manifest(capsys, tmp_path):
    rows = []
    for n in range(6):
        Image.fromarray(np.full((24, 24, 3), 40 * n, np.uint8)).save(tmp_path / f"{n}.png")
        role = "query" if n < 2 else "gallery"
        rows.append({"path": f"{n}.png", "role": role, "instance_id": f"i{n % 2};shared" if n == 2 else f"i{n % 2}"})
    rows.append({"path": "broken.png", "role": "gallery", "instance_id": "i0"})
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    manifest = tmp_path / "eval.csv"
    lines = [f"{r['path']},{r['role']},{r['instance_id']}" for r in rows]
    manifest.write_text("\n".join(["path,role,instance_id", *lines]) + "\n")
    code, stdout, err = run_cli(
        capsys, "eval", "retrieval", str(manifest), "-b", "tiny-vit-random", "--ks", "1,2", "--no-progress"
    )
    assert code == 0, err
    lines = stdout.splitlines()
    assert lines[1].split() == ["k", "base", "aligned", "change"]
    assert lines[2].split()[0] == "1" and lines[3].split()[0] == "2"
    assert "2 queries scored, 0 skipped" in stdout and "gallery of 4 images" in stdout
    assert "broken.png" in err
    # No role column and no DF2 'source': a clear error, exit 1.
    plain = tmp_path / "plain.csv"
    plain.write_text("path,instance_id\n0.png,i0\n")
    code, _, err = run_cli(capsys, "eval", "retrieval", str(plain), "-b", "tiny-vit-random")
    assert code == 1 and "source=None is not a role" in err


def test_cli_index_then_search_with_table_filter_and_grid(capsys, image_folder, tmp_path):
    store = f"edge:{tmp_path / 'store'}"
    (image_folder / "circle" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 nope")
    index_args = ["index", str(image_folder), "-c", "shapes", "--store", store, "-b", "tiny-vit-random"]
    code, stdout, err = run_cli(capsys, *index_args, "--no-progress", "--dataset", "shapes")
    assert code == 0, err
    assert "12 new points for 13 records" in stdout and "1 failed" in stdout and "holds 12 points" in stdout
    assert "skipped" in err and "corrupt.jpg" in err
    query = image_folder / "square" / "1.jpg"
    grid = tmp_path / "grid.png"
    code, stdout, err = run_cli(
        capsys, "search", str(query), "-c", "shapes", "--store", store, "-b", "tiny-vit-random",
        "-k", "3", "--filter", "label=square,triangle", "--filter", "dataset=shapes", "--grid", str(grid),
    )  # fmt: skip
    assert code == 0, err
    assert "base top-3" in stdout and "aligned top-3" in stdout
    rows = [line.split() for line in stdout.splitlines() if line[:1].isdigit()]
    assert len(rows) == 6 and [row[0] for row in rows] == ["1", "2", "3"] * 2
    assert {row[2] for row in rows} <= {"square", "triangle"}
    assert all(not row[3].endswith("square/1.jpg") for row in rows)  # never the query itself
    assert Image.open(grid).size == GridLayout(title=True).size(1, 3)  # the figure names its embedder
    code, stdout, _ = run_cli(
        capsys, "search", str(query), "-c", "shapes", "--store", store, "-b", "tiny-vit-random", "--using", "base"
    )
    assert code == 0 and "base top-5" in stdout and "aligned" not in stdout
    code, _, err = run_cli(capsys, "search", str(query), "-c", "shapes", "--store", store, "-b", "tiny-clip-random")
    assert code == 1 and "another embedder" in err
    code, _, err = run_cli(capsys, "search", str(query), "-c", "nope", "--store", store, "-b", "tiny-vit-random")
    assert code == 1 and "'nope'" in err


def test_cli_show_draws_a_row_per_query(capsys, image_folder, tmp_path):
    store = f"edge:{tmp_path / 'store'}"
    index_args = ["index", str(image_folder), "-c", "shapes", "--store", store, "-b", "tiny-vit-random"]
    code, _, err = run_cli(capsys, *index_args, "--no-progress")
    assert code == 0, err
    queries = [str(image_folder / "square" / "1.jpg"), str(image_folder / "circle" / "1.jpg")]
    out = tmp_path / "show.png"
    args = ["show", *queries, "-c", "shapes", "--store", store, "-b", "tiny-vit-random", "-k", "2", "-o", str(out)]
    code, stdout, err = run_cli(capsys, *args)
    assert code == 0, err
    assert "grid written" in stdout
    assert Image.open(out).size == GridLayout(title=True).size(2, 2)
    code, _, err = run_cli(capsys, "show", str(tmp_path / "nope.png"), "-c", "shapes", "--store", store)
    assert code == 2 and "nope.png" in err
