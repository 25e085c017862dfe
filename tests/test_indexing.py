"""Indexing and retrieval against Qdrant Edge (on disk) and qdrant-client (in memory):
idempotence, duplicates, bad files, fingerprints, filters, never returning the query,
RICES order, vector / point-id queries, batching, and a kill -9 in the middle of a run."""

from __future__ import annotations

import shutil
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest

from percep_rag import AlignedEmbedder, EmbedderSpec, FingerprintMismatchError
from percep_rag.datasets.records import scan_folder
from percep_rag.errors import ConfigError
from percep_rag.indexing import index_records
from percep_rag.retrieval import ExampleRetriever, Retriever
from percep_rag.store import StoreSpec, content_hash, open_store, point_id

from .conftest import kill_after_acks, make_crash_folder, make_image, start_script

COLLECTION = "shapes"


@pytest.fixture(scope="module")
def embedder() -> AlignedEmbedder:
    return AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random", device="cpu", batch_size=8))


@pytest.fixture(params=["edge", "memory"])
def store(request, tmp_path):
    spec = StoreSpec(kind="edge", path=tmp_path / "store") if request.param == "edge" else StoreSpec(kind="memory")
    with open_store(spec) as opened:
        yield opened


@pytest.fixture
def indexed(store, image_folder, embedder):
    records = scan_folder(image_folder)
    report = index_records(records, embedder=embedder, store=store, collection=COLLECTION, progress=False)
    assert report.indexed == 12
    return store, records


def expected_ids(paths) -> set[str]:
    return {point_id(content_hash(Path(p).read_bytes()), COLLECTION) for p in paths}


def test_reindexing_is_idempotent(indexed, embedder):
    store, records = indexed
    again = index_records(records, embedder=embedder, store=store, collection=COLLECTION, progress=False)
    assert (again.indexed, again.already_present, again.duplicates, again.failures) == (0, 12, 0, [])
    assert store.count(COLLECTION) == 12
    assert store.existing_ids(COLLECTION, list(expected_ids(r.uri for r in records))) == expected_ids(
        r.uri for r in records
    )


def test_duplicate_bytes_become_one_point_and_bad_files_are_reported(store, image_folder, embedder):
    shutil.copy(image_folder / "circle" / "0.png", image_folder / "square" / "copy.png")
    (image_folder / "circle" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (image_folder / "triangle" / "text.png").write_text("not an image")
    records = scan_folder(image_folder)
    report = index_records(records, embedder=embedder, store=store, collection=COLLECTION, progress=False)
    assert (report.records, report.indexed, report.duplicates) == (15, 12, 1)
    assert sorted(Path(f.source).name for f in report.failures) == ["corrupt.jpg", "text.png"]
    assert {f.record_id for f in report.failures} == {"circle/corrupt.jpg", "triangle/text.png"}
    assert store.count(COLLECTION) == 12
    good = [r.uri for r in records if not r.uri.endswith(("corrupt.jpg", "text.png"))]
    assert len(expected_ids(good)) == 12


def test_another_embedder_is_refused_for_writing_and_reading(indexed, image_folder):
    store, records = indexed
    other = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-clip-random", device="cpu"))
    with pytest.raises(FingerprintMismatchError, match="backbone: tiny-vit-random != tiny-clip-random"):
        index_records(records, embedder=other, store=store, collection=COLLECTION, progress=False)
    with pytest.raises(FingerprintMismatchError):
        Retriever(store, COLLECTION, other)
    assert store.count(COLLECTION) == 12


def test_filters_restrict_hits(indexed, embedder, image_folder):
    store, _ = indexed
    retriever = Retriever(store, COLLECTION, embedder)
    query = str(image_folder / "circle" / "0.png")
    squares = retriever.search(query, k=10, filter={"label": "square"})
    assert len(squares) == 4 and {h.payload["label"] for h in squares} == {"square"}
    some = retriever.search(query, k=10, using="base", filter={"label": ["square", "triangle"]})
    assert len(some) == 8 and {h.payload["label"] for h in some} == {"square", "triangle"}


def test_the_query_is_never_returned(indexed, embedder, image_folder, tmp_path):
    store, _ = indexed
    retriever = Retriever(store, COLLECTION, embedder)
    path = image_folder / "circle" / "1.jpg"
    own = point_id(content_hash(path.read_bytes()), COLLECTION)
    copy = tmp_path / "elsewhere.jpg"
    shutil.copy(path, copy)
    for query in (str(path), path, path.read_bytes(), str(copy)):
        for using in ("base", "aligned"):
            hits = retriever.search(query, k=12, using=using)
            assert len(hits) == 11 and own not in {h.id for h in hits}
    batch = retriever.search_batch([str(path), path.read_bytes()], k=12)
    assert all(own not in {h.id for h in hits} for hits in batch)


def test_examples_are_in_rices_order_most_similar_last(indexed, embedder, image_folder):
    store, _ = indexed
    query = str(image_folder / "triangle" / "2.png")
    retriever = ExampleRetriever(store, COLLECTION, embedder)
    examples = retriever.examples(query, k=4)
    scores = [e.score for e in examples]
    assert scores == sorted(scores) and len(examples) == 4
    top = retriever.search(query, k=4)
    assert [e.id for e in examples] == [h.id for h in reversed(top)]
    assert examples[-1].label == top[0].payload["label"] and examples[-1].uri == top[0].payload["uri"]


def test_query_by_vector_and_by_point_id(indexed, embedder, image_folder):
    store, _ = indexed
    retriever = Retriever(store, COLLECTION, embedder)
    path = image_folder / "square" / "3.jpg"
    own = point_id(content_hash(path.read_bytes()), COLLECTION)
    vector = retriever.vectors_for([str(path)], "aligned")[0]
    by_vector = retriever.search(vector=vector, k=4)  # a bare vector has no "self" to leave out
    assert by_vector[0].id == own and by_vector[0].score == pytest.approx(1.0, abs=1e-4)
    by_point = retriever.search(point=own, k=3)
    by_image = retriever.search(str(path), k=3)
    assert own not in {h.id for h in by_point}
    assert [h.id for h in by_point] == [h.id for h in by_image] == [h.id for h in by_vector[1:]]
    with pytest.raises(ConfigError, match="exactly one"):
        retriever.search(str(path), vector=vector)
    with pytest.raises(ConfigError, match="no point"):
        retriever.search(point=point_id(content_hash(b"absent"), COLLECTION))


def test_batched_queries_equal_single_ones(indexed, embedder, image_folder, tmp_path):
    store, _ = indexed
    retriever = ExampleRetriever(store, COLLECTION, embedder)
    make_image(99).save(tmp_path / "new.png")
    queries = [str(image_folder / "circle" / "2.png"), str(tmp_path / "new.png"), (tmp_path / "new.png").read_bytes()]
    for using in ("base", "aligned"):
        batch = retriever.search_batch(queries, k=5, using=using, filter={"label": ["circle", "square"]})
        singles = [retriever.search(q, k=5, using=using, filter={"label": ["circle", "square"]}) for q in queries]
        assert [[h.id for h in hits] for hits in batch] == [[h.id for h in hits] for hits in singles]
        for got, want in zip(batch, singles, strict=True):
            np.testing.assert_allclose([h.score for h in got], [h.score for h in want], atol=1e-5)
    examples = retriever.examples_batch(queries, k=3)
    assert [[e.id for e in row] for row in examples] == [[e.id for e in retriever.examples(q, k=3)] for q in queries]


# --------------------------------------------------------------------------- kill -9 mid-run

_INDEXER = textwrap.dedent(
    """
    import sys, time
    from percep_rag import AlignedEmbedder, EmbedderSpec
    from percep_rag.datasets.records import scan_folder
    from percep_rag.indexing import index_records
    from percep_rag.store import open_store

    folder, store_spec, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])
    spec = EmbedderSpec(backbone="tiny-vit-random", device="cpu", batch_size=4, num_workers=0)
    embedder = AlignedEmbedder.from_spec(spec)

    def acknowledged(n):
        print(n, flush=True)  # printed only after the upsert returned (durable)
        time.sleep(pause)  # keeps the run long enough to be killed in the middle

    with open_store(store_spec) as store:
        index_records(scan_folder(folder), embedder=embedder, store=store, collection="shapes",
                      chunk_size=8, progress=False, on_upsert=acknowledged)
    print("done", flush=True)
    """
)


def _run_indexer(folder: Path, spec: str, pause: float) -> subprocess.Popen:
    return start_script(_INDEXER, str(folder), spec, str(pause))


def test_indexing_killed_mid_run_resumes_to_exactly_the_good_images(tmp_path, embedder):
    folder = tmp_path / "images"
    good = make_crash_folder(folder, first_seed=500)
    wanted = expected_ids(good)
    assert len(wanted) == 40
    spec = f"edge:{tmp_path / 'store'}"

    proc = _run_indexer(folder, spec, pause=0.2)
    acknowledged = kill_after_acks(proc, 3)
    assert acknowledged >= 3, proc.stderr.read()
    with open_store(spec) as store:
        partial = store.count("shapes")
    assert acknowledged <= partial < len(wanted)  # killed in the middle, nothing acknowledged lost

    # The second run is in this process (the same embedder spec): it adds exactly what is missing.
    with open_store(spec) as store:
        report = index_records(
            scan_folder(folder), embedder=embedder, store=store, collection="shapes", chunk_size=8, progress=False
        )
        assert (report.indexed, report.already_present) == (len(wanted) - partial, partial)
        assert store.count("shapes") == len(wanted)
        assert {p.id for p in store.iterate("shapes")} == wanted
