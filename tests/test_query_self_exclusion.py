"""The query itself, two rules. A search (Retriever: CLI search/show, HTTP, LangChain) never
returns the query's own point (same content id) but returns other points of the same image,
marked ``copy_of_query`` (exact: the same pixels); few-shot retrieval (ExampleRetriever, RICES) drops every copy."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from percep_rag import AlignedEmbedder, EmbedderSpec
from percep_rag.datasets.records import ImageRecord
from percep_rag.errors import ConfigError
from percep_rag.indexing import index_records
from percep_rag.retrieval import ExampleRetriever, Retriever
from percep_rag.store import content_hash, open_store, point_id


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    records = []
    for i in range(6):
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")
        records.append(ImageRecord(id=str(i), uri=str(folder / f"{i}.png"), label=str(i)))
    with Image.open(folder / "2.png") as opened:
        opened.convert("RGB").save(folder / "2-copy.bmp")  # other bytes, same pixels: another point
    records.append(ImageRecord(id="2-copy", uri=str(folder / "2-copy.bmp"), label="2-copy"))
    embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random", precision="fp32"))
    store = open_store(":memory:")
    index_records(records, embedder=embedder, store=store, collection="self", progress=False)
    assert store.count("self") == 7
    return folder, store, embedder


def _forms(path):
    with Image.open(path) as opened:
        image = opened.convert("RGB")
    return {"path": str(path), "bytes": path.read_bytes(), "pil": image.copy(), "array": np.asarray(image).copy()}


def test_a_search_never_returns_its_own_point_but_returns_its_copies_marked(indexed):
    folder, store, embedder = indexed
    own = point_id(content_hash((folder / "2.png").read_bytes()), "self")
    retriever = Retriever(store, "self", embedder)
    for name, query in _forms(folder / "2.png").items():
        for using in ("aligned", "base"):
            hits = retriever.search(query, k=7, using=using)
            labels = [hit.payload["label"] for hit in hits]
            marked = {hit.payload["label"] for hit in hits if hit.duplicate_of_query}
            if name in ("path", "bytes"):  # a content id: its own point is left out
                assert own not in {hit.id for hit in hits} and len(hits) == 6, (name, using)
                assert labels[0] == "2-copy" and marked == {"2-copy"}, (name, using, labels, marked)
            else:  # no content id to recognise: the stored original is a copy like any other
                assert set(labels[:2]) == {"2", "2-copy"} and marked == {"2", "2-copy"}, (name, using)
            assert all(hit.score >= 0.9999 for hit in hits if hit.duplicate_of_query)
            assert all(hit.score < 0.9999 and hit.vectors is None for hit in hits if not hit.duplicate_of_query)
    # By stored point: that point is left out, its copy is found and marked.
    hits = retriever.search(point=own, k=3)
    assert own not in {hit.id for hit in hits} and hits[0].payload["label"] == "2-copy" and hits[0].duplicate_of_query
    # Exact means the same pixels: no threshold is involved, and without one nothing is near.
    plain = retriever.search(str(folder / "2.png"), k=6)
    assert [hit.copy_of_query for hit in plain] == ["exact"] + [None] * 5
    # A near threshold asked for marks the rest near, distinct from the exact copy.
    loose = retriever.search(str(folder / "2.png"), k=6, duplicate_threshold=-1.0)
    assert [hit.copy_of_query for hit in loose] == ["exact"] + ["near"] * 5
    with pytest.raises(ConfigError, match="cosine similarity in"):
        retriever.search(str(folder / "2.png"), k=3, duplicate_threshold=1.1)


def test_few_shot_examples_never_hold_any_copy_of_the_query(indexed):
    folder, store, embedder = indexed
    examples = ExampleRetriever(store, "self", embedder)
    for name, query in _forms(folder / "2.png").items():
        for diversity in (0.0, 0.5):
            found = examples.examples(query, k=4, diversity=diversity)
            labels = [example.label for example in found]
            assert len(found) == 4 and not {"2", "2-copy"} & set(labels), (name, diversity, labels)
    # Asking for every point: all the others come back, no copy of the query.
    labels = sorted(example.label for example in examples.examples(str(folder / "2-copy.bmp"), k=10))
    assert labels == ["0", "1", "3", "4", "5"]
