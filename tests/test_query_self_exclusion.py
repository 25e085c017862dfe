"""A query never retrieves itself, whatever its form (path, bytes, PIL image, array)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from percep_rag import AlignedEmbedder, EmbedderSpec
from percep_rag.datasets.records import ImageRecord
from percep_rag.indexing import index_records
from percep_rag.retrieval import ExampleRetriever, Retriever
from percep_rag.store import open_store


@pytest.fixture(scope="module")
def indexed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    records = []
    for i in range(6):
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.png")
        records.append(ImageRecord(id=str(i), uri=str(folder / f"{i}.png"), label=str(i)))
    embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random"))
    store = open_store(":memory:")
    index_records(records, embedder=embedder, store=store, collection="self", progress=False)
    return folder, store, embedder


def test_every_form_of_an_indexed_image_excludes_it(indexed):
    folder, store, embedder = indexed
    path = folder / "2.png"
    with Image.open(path) as opened:
        image = opened.convert("RGB")
    forms = {"path": str(path), "bytes": path.read_bytes(), "pil": image.copy(), "array": np.asarray(image).copy()}
    retriever = Retriever(store, "self", embedder)
    for name, query in forms.items():
        for using in ("aligned", "base"):
            hits = retriever.search(query, k=3, using=using)
            assert len(hits) == 3 and "2" not in [hit.payload["label"] for hit in hits], (name, using)
            assert all(hit.score < 0.9999 and hit.vectors is None for hit in hits), (name, using)
    # Asking for every point: all the others come back, the query never.
    labels = [hit.payload["label"] for hit in retriever.search(image, k=10)]
    assert sorted(labels) == ["0", "1", "3", "4", "5"]
    examples = ExampleRetriever(store, "self", embedder).examples(np.array(image), k=2, diversity=0.5)
    assert len(examples) == 2 and "2" not in [example.label for example in examples]


def test_a_re_encoded_copy_is_excluded_too(indexed, tmp_path):
    folder, store, embedder = indexed
    with Image.open(folder / "4.png") as opened:
        opened.convert("RGB").save(tmp_path / "copy.bmp")  # other bytes, same pixels
    hits = Retriever(store, "self", embedder).search(str(tmp_path / "copy.bmp"), k=5)
    assert "4" not in [hit.payload["label"] for hit in hits] and len(hits) == 5
