"""``percep-rag search --text``: text queries from the command line, and their refusals (exit 2, one line)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from percep_rag.store import open_store

from .conftest import run_cli


@pytest.fixture
def indexed(capsys, image_folder, tmp_path):
    store = str(tmp_path / "store")
    for name, backbone in (("clip", "tiny-clip-random"), ("dino", "tiny-vit-random")):
        code, _, err = run_cli(capsys, "index", str(image_folder), "-c", name, "--store", store, "--backbone", backbone)
        assert code == 0, err
    return store


def test_search_by_several_texts_gives_a_table_each_in_the_base_space(capsys, indexed):
    code, out, err = run_cli(capsys, "search", "--text", "a red square", "--text", "circle", "-c", "clip",
                             "--store", indexed, "-k", "3")  # fmt: skip
    assert code == 0, err
    assert "base top-3 for text 'a red square'" in out and "base top-3 for text 'circle'" in out
    assert "aligned top" not in out


def test_search_by_text_json_ranks_as_the_stored_base_vectors_say(capsys, indexed):
    from percep_rag import AlignedEmbedder, EmbedderSpec

    code, out, err = run_cli(capsys, "search", "--text", "a square", "-c", "clip", "--store", indexed, "-k", "12",
                             "--json", "--precision", "fp32")  # fmt: skip
    assert code == 0, err
    answer = json.loads(out)
    assert answer["query_text"] == "a square" and list(answer["hits"]) == ["base"]
    embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-clip-random", weights="random", precision="fp32"))
    with open_store(f"edge:{indexed}") as store:
        ids = [hit["id"] for hit in answer["hits"]["base"]]
        stored = store.retrieve("clip", ids, with_vectors=True)
    vectors = {point.id: point.vectors["base"] for point in stored}
    scores = [float(vectors[i] @ embedder.embed_text(["a square"])[0]) for i in ids]
    assert scores == sorted(scores, reverse=True)
    np.testing.assert_allclose([hit["score"] for hit in answer["hits"]["base"]], scores, atol=1e-4)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--text", "a red square", "-c", "dino"], "collection 'dino' takes no text query: backbone 'tiny-vit-random'"),
        (["--text", "", "-c", "clip"], "text query 1 is empty"),
        (["--text", "red " * 40, "-c", "clip"], "tokens long, over the 14"),
        (["--text", "red", "-c", "clip", "--grid", "x.png"], "--grid draws image queries"),
        (["-c", "clip"], "give a query image or --text"),
    ],
)
def test_text_queries_that_cannot_be_answered_are_usage_errors_in_one_line(capsys, indexed, args, message):
    code, out, err = run_cli(capsys, "search", *args, "--store", indexed)
    assert code == 2
    assert err.startswith("error: ") and message in err.splitlines()[0]
    assert len(err.strip().splitlines()) <= 2 and "Traceback" not in err


def test_info_says_what_text_queries_search(capsys, indexed):
    code, out, _ = run_cli(capsys, "info", "clip", "--store", indexed)
    assert code == 0 and "text queries: base (default) or aligned" in out
    code, out, _ = run_cli(capsys, "info", "dino", "--store", indexed)
    assert code == 0 and "text queries: none (backbone 'tiny-vit-random' has no text tower" in out
