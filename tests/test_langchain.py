"""The LangChain integration (``langchain_percep_rag``), on a tiny RANDOM-weight backbone.

LangChain's own ``RetrieversIntegrationTests`` run twice, on a qdrant-client ``:memory:``
store and on Qdrant Edge; then error paths, per-call options, query forms, the embeddings
adapter, the README's chain example and the modules' doctests.
"""

from __future__ import annotations

import asyncio
import base64
import doctest
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_tests")

from langchain_core.callbacks import BaseCallbackHandler  # noqa: E402
from langchain_core.documents import Document  # noqa: E402
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage  # noqa: E402
from langchain_tests.integration_tests import RetrieversIntegrationTests  # noqa: E402
from PIL import Image  # noqa: E402
from pydantic import ValidationError  # noqa: E402

import langchain_percep_rag  # noqa: E402
from langchain_percep_rag import PerceptualImageEmbeddings, PerceptualImageRetriever  # noqa: E402
from langchain_percep_rag import embeddings as embeddings_module  # noqa: E402
from langchain_percep_rag import example_selector as example_selector_module  # noqa: E402
from langchain_percep_rag import retriever as retriever_module  # noqa: E402
from langchain_percep_rag import vectorstore as vectorstore_module  # noqa: E402
from percep_rag import AlignedEmbedder, EmbedderSpec, create_backbone  # noqa: E402
from percep_rag.alignment.glocal import GlocalTransform  # noqa: E402
from percep_rag.datasets.records import ImageRecord  # noqa: E402
from percep_rag.errors import ConfigError, FingerprintMismatchError, ImageDecodeError  # noqa: E402
from percep_rag.indexing import index_records  # noqa: E402
from percep_rag.store import CollectionNotFoundError, VectorStore, content_hash, open_store, point_id  # noqa: E402

from .conftest import make_image  # noqa: E402

COLLECTION = "shots"
LABELS = ("circle", "square", "triangle", "star")
README = Path(langchain_percep_rag.__file__).with_name("README.md")


@dataclass(frozen=True)
class Filled:
    """A store with ``COLLECTION`` indexed from ``records`` by ``embedder``."""

    store: VectorStore
    embedder: AlignedEmbedder
    records: list[ImageRecord]
    query: Path  # an image that is not in the collection


def _embedder(seed: int = 0) -> AlignedEmbedder:
    # A random gLocal map makes the base and aligned vectors differ, so `using` matters.
    backbone = create_backbone("tiny-vit-random", None, device=torch.device("cpu"), seed=seed)
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(backbone.dim, backbone.dim)).astype(np.float32)
    alignment = GlocalTransform(weights, bias=np.zeros(backbone.dim, np.float32), mean=0.0, std=1.0)
    return AlignedEmbedder(backbone, alignment=alignment, device="cpu", batch_size=4)


def _records(folder: Path) -> list[ImageRecord]:
    """8 images, 2 per label: the first of each has a prompt and split "train", the second "val"."""
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for index in range(8):
        label = LABELS[index % 4]
        path = folder / f"{label}-{index}.png"
        make_image(100 + index, size=(40, 36)).save(path)
        prompt = f"A {label}." if index < 4 else None
        split = "train" if index < 4 else "val"
        records.append(ImageRecord(id=path.stem, uri=str(path), label=label, prompt=prompt, split=split))
    return records


def _fill(store: VectorStore, folder: Path) -> Filled:
    embedder = _embedder()
    records = _records(folder / "images")
    report = index_records(records, embedder=embedder, store=store, collection=COLLECTION, progress=False)
    assert report.indexed == len(records) and not report.failures
    query = folder / "query.png"
    make_image(999, size=(44, 38)).save(query)
    return Filled(store, embedder, records, query)


@pytest.fixture(scope="module")
def memory(tmp_path_factory) -> Iterator[Filled]:
    store = open_store(":memory:")
    yield _fill(store, tmp_path_factory.mktemp("memory"))
    store.close()


@pytest.fixture(scope="module")
def edge(tmp_path_factory) -> Iterator[Filled]:
    folder = tmp_path_factory.mktemp("edge")
    store = open_store(f"edge:{folder / 'store'}")
    yield _fill(store, folder)
    store.close()


def _retriever(filled: Filled, **fields: Any) -> PerceptualImageRetriever:
    return PerceptualImageRetriever(store=filled.store, collection=COLLECTION, embedder=filled.embedder, **fields)


def _png_bytes(path: Path) -> bytes:
    return path.read_bytes()


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


# --------------------------------------------------------------------------- standard tests


class _StandardOnFilledStore(RetrieversIntegrationTests):
    """LangChain's standard retriever tests; subclasses name the filled-store fixture.

    The standard suite builds the retriever from properties, which cannot take fixtures,
    so an autouse fixture hands the filled store to the test instance first.
    """

    filled_fixture: str

    @pytest.fixture(autouse=True)
    def _use_filled_store(self, request: pytest.FixtureRequest) -> None:
        self.filled: Filled = request.getfixturevalue(self.filled_fixture)

    @property
    def retriever_constructor(self) -> type[PerceptualImageRetriever]:
        return PerceptualImageRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"store": self.filled.store, "collection": COLLECTION, "embedder": self.filled.embedder, "k": 2}

    @property
    def retriever_query_example(self) -> str:
        return str(self.filled.query)


class TestStandardMemoryStore(_StandardOnFilledStore):
    filled_fixture = "memory"


class TestStandardEdgeStore(_StandardOnFilledStore):
    filled_fixture = "edge"

    @property
    def retriever_query_example(self) -> str:
        # An indexed image: k results must still come back without the query itself.
        return self.filled.records[0].uri


# --------------------------------------------------------------------------- documents


def test_documents_carry_point_id_text_and_metadata(memory):
    documents = _retriever(memory, k=8).invoke(str(memory.query))
    assert len(documents) == 8 and all(isinstance(d, Document) for d in documents)
    by_uri = {record.uri: record for record in memory.records}
    for document in documents:
        record = by_uri[document.metadata["image_uri"]]
        digest = content_hash(Path(record.uri).read_bytes())
        assert document.id == point_id(digest, COLLECTION)
        assert document.page_content == (record.prompt or record.label)
        assert document.metadata["label"] == record.label
        assert document.metadata["record_id"] == record.id
        assert document.metadata["split"] == record.split
        assert document.metadata["uri"] == record.uri
        assert document.metadata["content_hash"] == digest
        assert document.metadata["using"] == "aligned"
        assert document.metadata["collection"] == COLLECTION
        assert isinstance(document.metadata["score"], float)
    scores = [d.metadata["score"] for d in documents]
    assert scores == sorted(scores, reverse=True)


def test_most_similar_last_gives_rices_order(memory):
    first = _retriever(memory, k=4).invoke(str(memory.query))
    last = _retriever(memory, k=4, most_similar_last=True).invoke(str(memory.query))
    assert [d.id for d in last] == [d.id for d in reversed(first)]


# --------------------------------------------------------------------------- k, filter, using


def test_k_filter_using_at_construction(memory):
    retriever = _retriever(memory, k=3, filter={"split": "train"}, using="base")
    documents = retriever.invoke(str(memory.query))
    assert len(documents) == 3
    assert {d.metadata["split"] for d in documents} == {"train"}
    assert {d.metadata["using"] for d in documents} == {"base"}


def test_per_call_k_filter_using_replace_the_constructor_values(memory):
    retriever = _retriever(memory, k=1, filter={"split": "train"})
    query = str(memory.query)
    documents = retriever.invoke(query, k=5, filter={"label": "square"})
    assert {d.metadata["label"] for d in documents} == {"square"} and len(documents) == 2
    assert {d.metadata["split"] for d in documents} == {"train", "val"}  # constructor filter replaced
    assert len(retriever.invoke(query)) == 1  # per-call values do not stick


def test_train_filter_caps_results_at_matching_points(memory):
    # 4 of the 8 points are "train": asking for 5 gives the 4 that match.
    documents = _retriever(memory, filter={"split": "train"}).invoke(str(memory.query), k=5)
    assert len(documents) == 4


def test_using_selects_the_vector_space(memory):
    retriever = _retriever(memory, k=8)
    query = str(memory.query)
    for using in ("aligned", "base"):
        documents = retriever.invoke(query, using=using)
        both = memory.embedder.embed_both([query])
        query_vector = both.aligned[0] if using == "aligned" else both.base[0]
        points = memory.store.retrieve(COLLECTION, [d.id for d in documents], with_vectors=True)
        stored = {point.id: point.vectors[using] for point in points}
        for document in documents:
            assert document.metadata["using"] == using
            assert document.metadata["score"] == pytest.approx(float(query_vector @ stored[document.id]), abs=1e-4)
    aligned = [d.id for d in retriever.invoke(query)]
    base = [d.id for d in retriever.invoke(query, using="base")]
    assert aligned != base  # the random gLocal map reorders neighbours


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "3"])
def test_bad_per_call_k_is_a_config_error(memory, bad):
    with pytest.raises(ConfigError, match="k must be a positive int"):
        _retriever(memory).invoke(str(memory.query), k=bad)


def test_bad_per_call_using_and_unknown_keyword(memory):
    retriever = _retriever(memory)
    with pytest.raises(ConfigError, match="using must be"):
        retriever.invoke(str(memory.query), using="raw")
    with pytest.raises(TypeError, match="top_k"):
        retriever.invoke(str(memory.query), top_k=2)


def test_constructor_fields_are_validated(memory):
    with pytest.raises(ValidationError, match="k"):
        _retriever(memory, k=0)
    with pytest.raises(ValidationError, match="using"):
        _retriever(memory, using="raw")
    with pytest.raises(ValidationError, match="store"):
        PerceptualImageRetriever(store="not a store", collection=COLLECTION, embedder=memory.embedder)


# --------------------------------------------------------------------------- query forms


def test_path_uri_data_uri_and_bytes_queries_agree(memory):
    retriever = _retriever(memory, k=4)
    query = memory.query
    expected = [d.id for d in retriever.invoke(str(query))]
    forms = [query, query.as_uri(), _data_uri(query), _png_bytes(query)]
    for form in forms:
        assert [d.id for d in retriever.invoke(form)] == expected, type(form)


@pytest.mark.parametrize("form", ["path", "bytes", "data_uri"])
def test_an_indexed_query_never_retrieves_itself(memory, form):
    own = Path(memory.records[0].uri)
    query = {"path": str(own), "bytes": _png_bytes(own), "data_uri": _data_uri(own)}[form]
    documents = _retriever(memory, k=7).invoke(query)
    own_id = point_id(content_hash(own.read_bytes()), COLLECTION)
    assert len(documents) == 7 and own_id not in {d.id for d in documents}


def test_copies_of_the_query_come_back_marked_and_the_example_selector_drops_them(tmp_path):
    from langchain_percep_rag import PerceptualExampleSelector

    store = open_store(":memory:")
    filled = _fill(store, tmp_path)
    own = Path(filled.records[0].uri)
    copy = tmp_path / "copy.bmp"
    with Image.open(own) as opened:
        opened.convert("RGB").save(copy)  # other bytes, same pixels: another point
    index_records([ImageRecord(id="copy", uri=str(copy), label="copy")], embedder=filled.embedder, store=store,
                  collection=COLLECTION, progress=False)  # fmt: skip
    documents = _retriever(filled, k=3).invoke(str(own))
    assert documents[0].metadata["image_uri"] == str(copy) and documents[0].metadata["duplicate_of_query"]
    assert documents[0].metadata["copy_of_query"] == "exact" and documents[0].metadata["files"] == 1
    assert not any(d.metadata["duplicate_of_query"] or d.metadata["copy_of_query"] for d in documents[1:])
    strict = _retriever(filled, k=3, exclude_query_copies=True).invoke(str(own))
    assert str(copy) not in {d.metadata["image_uri"] for d in strict} and len(strict) == 3
    selector = PerceptualExampleSelector(retriever=_retriever(filled, k=3))
    examples = selector.select_examples({"image": str(own)})
    assert len(examples) == 3 and str(copy) not in {str(e) for example in examples for e in example.values()}
    store.close()


# --------------------------------------------------------------------------- async


async def test_ainvoke_matches_invoke_with_per_call_options(memory):
    retriever = _retriever(memory, k=2)
    query = str(memory.query)
    options = {"k": 3, "filter": {"split": "val"}, "using": "base"}
    synchronous = retriever.invoke(query, **options)
    asynchronous = await retriever.ainvoke(query, **options)
    assert [d.id for d in asynchronous] == [d.id for d in synchronous]
    assert {d.metadata["split"] for d in asynchronous} == {"val"}
    assert {d.metadata["using"] for d in asynchronous} == {"base"}


async def test_concurrent_ainvoke(memory):
    retriever = _retriever(memory, k=2)
    queries = [str(memory.query), memory.records[1].uri, _png_bytes(Path(memory.records[2].uri))]
    results = await asyncio.gather(*(retriever.ainvoke(q) for q in queries))
    assert [[d.id for d in r] for r in results] == [[d.id for d in retriever.invoke(q)] for q in queries]


async def test_abatch(memory):
    retriever = _retriever(memory, k=2)
    results = await retriever.abatch([str(memory.query), memory.records[3].uri])
    assert [len(r) for r in results] == [2, 2]


# --------------------------------------------------------------------------- error paths


class _ErrorRecorder(BaseCallbackHandler):
    def __init__(self) -> None:
        self.errors: list[BaseException] = []

    def on_retriever_error(self, error: BaseException, **kwargs: Any) -> None:
        self.errors.append(error)


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("/no/such/image.png", "file not found"),
        ("a photo of a cat", "file not found"),
        (b"not an image at all", "not an image"),
        ("data:image/png;base64,aGVsbG8=", "not an image"),
        ("https://example.com/cat.jpg", "unsupported URI scheme"),
    ],
)
def test_unreadable_query_image_raises_image_decode_error(memory, query, reason):
    recorder = _ErrorRecorder()
    with pytest.raises(ImageDecodeError, match=reason):
        _retriever(memory).invoke(query, config={"callbacks": [recorder]})
    assert len(recorder.errors) == 1 and isinstance(recorder.errors[0], ImageDecodeError)


def test_unreadable_query_file_raises_image_decode_error(memory, tmp_path):
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(_png_bytes(memory.query)[:60])
    with pytest.raises(ImageDecodeError, match="corrupt.png"):
        _retriever(memory).invoke(str(corrupt))


async def test_unreadable_query_image_async(memory):
    with pytest.raises(ImageDecodeError, match="file not found"):
        await _retriever(memory).ainvoke("/no/such/image.png")


async def test_empty_collection_returns_no_documents(memory):
    store = open_store(":memory:")
    store.ensure_collection("empty", memory.embedder.fingerprint)
    retriever = PerceptualImageRetriever(store=store, collection="empty", embedder=memory.embedder)
    assert retriever.invoke(str(memory.query)) == []
    assert await retriever.ainvoke(str(memory.query), k=3) == []
    store.close()


def test_filter_matching_nothing_returns_no_documents(memory):
    assert _retriever(memory).invoke(str(memory.query), filter={"label": "hexagon"}) == []


def test_missing_collection_raises_at_construction(memory):
    with pytest.raises(CollectionNotFoundError, match="nowhere"):
        PerceptualImageRetriever(store=memory.store, collection="nowhere", embedder=memory.embedder)


def test_fingerprint_mismatch_raises_at_construction(memory):
    other = _embedder(seed=1)  # same architecture, other weights
    with pytest.raises(FingerprintMismatchError, match="weights_digest"):
        PerceptualImageRetriever(store=memory.store, collection=COLLECTION, embedder=other)


def test_fingerprint_mismatch_for_another_pooling(memory):
    other = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random", pooling="cls+patchmean"))
    with pytest.raises(FingerprintMismatchError, match="pooling"):
        PerceptualImageRetriever(store=memory.store, collection=COLLECTION, embedder=other)


def test_retriever_built_without_init_checks_on_first_use(memory):
    other = _embedder(seed=1)
    lazy = PerceptualImageRetriever.model_construct(store=memory.store, collection=COLLECTION, embedder=other)
    with pytest.raises(FingerprintMismatchError):
        lazy.invoke(str(memory.query))


# --------------------------------------------------------------------------- from_specs


def test_from_specs_opens_an_edge_store(tmp_path):
    spec = EmbedderSpec(backbone="tiny-vit-random", device="cpu")
    location = f"edge:{tmp_path / 'store'}"
    records = _records(tmp_path / "images")
    with open_store(location) as store:
        embedder = AlignedEmbedder.from_spec(spec)
        index_records(records, embedder=embedder, store=store, collection=COLLECTION, progress=False)
    retriever = PerceptualImageRetriever.from_specs(location, COLLECTION, spec, k=3)
    try:
        assert len(retriever.invoke(records[0].uri)) == 3
    finally:
        retriever.store.close()


def test_from_specs_closes_the_store_when_construction_fails(tmp_path):
    location = f"edge:{tmp_path / 'store'}"
    spec = EmbedderSpec(backbone="tiny-vit-random", device="cpu")
    with pytest.raises(CollectionNotFoundError):
        PerceptualImageRetriever.from_specs(location, "missing", spec)
    open_store(location).close()  # the failed attempt released the store's lock


# --------------------------------------------------------------------------- embeddings


def test_embed_image_matches_the_embedder(memory):
    embeddings = PerceptualImageEmbeddings(embedder=memory.embedder)
    uris = [record.uri for record in memory.records[:5]]  # 5 > batch_size 4: two chunks
    vectors = embeddings.embed_image(uris)
    assert len(vectors) == 5 and all(len(v) == memory.embedder.dim == embeddings.dim for v in vectors)
    assert all(isinstance(x, float) for x in vectors[0])
    np.testing.assert_allclose(np.array(vectors), memory.embedder.embed(uris), atol=1e-6)
    assert embeddings.embed_documents(uris) == vectors
    assert embeddings.embed_image([]) == []


def test_embed_query_equals_embed_image_of_one(memory):
    embeddings = PerceptualImageEmbeddings(embedder=memory.embedder)
    query = memory.query
    single = embeddings.embed_image([str(query)])[0]
    for form in (str(query), query.as_uri(), _data_uri(query), _png_bytes(query)):
        assert embeddings.embed_query(form) == pytest.approx(single, abs=1e-6)


def test_base_embeddings_are_the_unaligned_vectors(memory):
    embeddings = PerceptualImageEmbeddings(embedder=memory.embedder, using="base")
    uris = [record.uri for record in memory.records[:2]]
    np.testing.assert_allclose(np.array(embeddings.embed_image(uris)), memory.embedder.embed_both(uris).base, atol=1e-6)
    assert embeddings.dim == memory.embedder.base_dim


async def test_async_embeddings(memory):
    embeddings = PerceptualImageEmbeddings(embedder=memory.embedder)
    query = str(memory.query)
    assert await embeddings.aembed_query(query) == embeddings.embed_query(query)
    assert await embeddings.aembed_documents([query]) == embeddings.embed_documents([query])


@pytest.mark.parametrize("bad", ["dummy_text", b"\x89PNG but not really"])
def test_embeddings_refuse_what_is_not_an_image(memory, bad):
    embeddings = PerceptualImageEmbeddings(embedder=memory.embedder)
    with pytest.raises(ImageDecodeError):
        embeddings.embed_query(bad)
    with pytest.raises(ImageDecodeError):
        embeddings.embed_image([memory.records[0].uri, bad])


def test_embed_image_refuses_a_lone_string(memory):
    with pytest.raises(TypeError, match="embed_query"):
        PerceptualImageEmbeddings(embedder=memory.embedder).embed_image(memory.records[0].uri)


def test_embeddings_from_spec():
    spec = EmbedderSpec(backbone="tiny-vit-random", device="cpu")
    embeddings = PerceptualImageEmbeddings.from_spec(spec, using="base")
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "teal").save(buffer, format="PNG")
    assert len(embeddings.embed_query(buffer.getvalue())) == embeddings.dim == 64


# --------------------------------------------------------------------------- docs


def _readme_blocks(after_heading: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(after_heading)
    return "\n".join(re.findall(r"```python\n(.*?)```", text[start:], flags=re.DOTALL))


def test_readme_examples_run(tmp_path, monkeypatch):
    """Every ``python`` block of the README, in order, from the example data to the end."""
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    exec(compile(_readme_blocks("## Example data"), str(README), "exec"), namespace)  # noqa: S102

    # The vector store: images by image, texts by any Embeddings, MMR, filters, as_retriever.
    assert [d.page_content for d in namespace["nearest"]][0] == "fruit/plum-1.png"
    assert {d.metadata["label"] for d in namespace["nearest"]} == {"plum"}
    assert all(d.metadata["shade"] >= 1 for d, _ in namespace["scored"])
    assert len({d.metadata["label"] for d in namespace["diverse"]}) > 1  # MMR reaches past the other plums
    assert len(namespace["documents"]) == 2 and {d.metadata["label"] for d in namespace["documents"]} <= {
        "lime",
        "plum",
    }
    plum_note = namespace["plum_note"]
    assert (plum_note.id, plum_note.page_content, plum_note.metadata) == (
        "plum",
        "sweet and dark",
        {"season": "autumn"},
    )

    # The retriever: MMR search kwargs, batch.
    assert len(namespace["shots"]) == 3 and [len(r) for r in namespace["batched"]] == [3, 3]
    # One forward pass of two images vs one of one: the same hits, scores equal to float rounding
    # (a batched GEMM may round differently, e.g. on one thread with AVX-512).
    def without_score(docs):
        return [(d.id, d.page_content, {k: v for k, v in d.metadata.items() if k != "score"}) for d in docs]

    assert without_score(namespace["batched"][0]) == without_score(namespace["shots"])
    assert [d.metadata["score"] for d in namespace["batched"][0]] == pytest.approx(
        [d.metadata["score"] for d in namespace["shots"]], abs=1e-5
    )

    # The example selector in a few-shot chat prompt: system, 3 x (image, label), query image.
    few_shot = namespace["few_shot_messages"]
    assert isinstance(few_shot[0], SystemMessage) and len(few_shot) == 1 + 2 * 3 + 1
    lime_shots = namespace["selector"].retriever.invoke("fruit/lime-1.png")[::-1]
    assert [m.content for m in few_shot[2:-1:2]] == [d.page_content for d in lime_shots]
    assert few_shot[-1].content[0]["image_url"]["url"].startswith("data:image/png;base64,")

    # The chain.
    assert namespace["answer"] in ("tomato", "lime", "plum")
    messages = namespace["messages"]
    assert isinstance(messages[0], SystemMessage) and len(messages) == 1 + 2 * 3
    shots = namespace["retriever"].invoke(namespace["query"])  # most_similar_last=True
    for (image_turn, label_turn), shot in zip(zip(messages[1::2], messages[2::2], strict=True), shots, strict=True):
        assert isinstance(image_turn, HumanMessage) and image_turn.content[0]["type"] == "image_url"
        assert isinstance(label_turn, AIMessage) and label_turn.content == shot.page_content
    assert namespace["answer"] == shots[-1].page_content  # the stand-in VLM echoes the nearest label

    # A local few-shot VLM on the retrieved examples, in the retriever's order.
    assert namespace["local_shots"] == [(shot.metadata["image_uri"], shot.page_content) for shot in shots]
    assert namespace["local_answer"] in ("lime", "plum", "tomato") and namespace["local_vlm"].random_weights
    assert "fruit/plum-1.png" not in {d.metadata["image_uri"] for d in shots}
    assert namespace["query_vector"] == namespace["vectors"][0]
    namespace["store"].close()


@pytest.mark.parametrize(
    "module",
    [retriever_module, embeddings_module, vectorstore_module, example_selector_module],
    ids=lambda m: m.__name__,
)
def test_module_doctests(module):
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(module, optionflags=flags, verbose=False)
    assert result.attempted > 0 and result.failed == 0
