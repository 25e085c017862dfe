"""The LangChain vector store, search conventions, MMR, batching and the example selector.

LangChain's own ``VectorStoreIntegrationTests`` run on Qdrant Edge and in memory (sync and
async, every test). Then, on a tiny RANDOM-weight backbone: the retriever's
``search_type`` / ``search_kwargs`` against LangChain's ``VectorStoreRetriever`` (and
``InMemoryVectorStore``) on the same data, MMR at both ends of ``lambda_mult``, one forward
pass for ``batch``, and the example selector inside LangChain's few-shot prompt templates.
(The README's examples run in ``test_langchain.py``.)
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_tests")

from langchain_core.callbacks import BaseCallbackHandler  # noqa: E402
from langchain_core.embeddings import DeterministicFakeEmbedding  # noqa: E402
from langchain_core.example_selectors import (  # noqa: E402
    MaxMarginalRelevanceExampleSelector,
    SemanticSimilarityExampleSelector,
)
from langchain_core.messages import AIMessage, HumanMessage  # noqa: E402
from langchain_core.prompts import (  # noqa: E402
    ChatPromptTemplate,
    FewShotChatMessagePromptTemplate,
    FewShotPromptTemplate,
    PromptTemplate,
)
from langchain_core.vectorstores import InMemoryVectorStore, VectorStoreRetriever  # noqa: E402
from langchain_core.vectorstores.utils import maximal_marginal_relevance as langchain_mmr  # noqa: E402
from langchain_tests.integration_tests import VectorStoreIntegrationTests  # noqa: E402
from PIL import Image  # noqa: E402
from pydantic import ValidationError  # noqa: E402
from qdrant_client import models  # noqa: E402

from langchain_percep_rag import (  # noqa: E402
    PerceptualExampleSelector,
    PerceptualImageEmbeddings,
    PerceptualImageRetriever,
    PerceptualImageVectorStore,
    image_data_uri,
)
from percep_rag import AlignedEmbedder, EmbedderSpec  # noqa: E402
from percep_rag.datasets.records import ImageRecord  # noqa: E402
from percep_rag.errors import ConfigError, FingerprintMismatchError, ImageDecodeError  # noqa: E402
from percep_rag.indexing import index_records  # noqa: E402
from percep_rag.mmr import maximal_marginal_relevance  # noqa: E402
from percep_rag.retrieval import ExampleRetriever  # noqa: E402
from percep_rag.store import FilterError, InvalidPointError, StoreError, VectorStore, open_store  # noqa: E402

from .conftest import make_image  # noqa: E402

GROUPS = ("circle", "square", "triangle", "star")


# --------------------------------------------------------------------------- LangChain's standard tests


@pytest.fixture(scope="module")
def memory_store() -> Iterator[VectorStore]:
    with open_store(":memory:") as store:
        yield store


@pytest.fixture(scope="module")
def edge_store(tmp_path_factory) -> Iterator[VectorStore]:
    with open_store(f"edge:{tmp_path_factory.mktemp('edge') / 'store'}") as store:
        yield store


class _StandardOnStore(VectorStoreIntegrationTests):
    """An empty collection per test, on the store the subclass names, dropped afterwards."""

    store_fixture: str

    @pytest.fixture
    def vectorstore(self, request: pytest.FixtureRequest) -> Iterator[PerceptualImageVectorStore]:  # type: ignore[override]
        store = request.getfixturevalue(self.store_fixture)
        vectorstore = PerceptualImageVectorStore(
            self.get_embeddings(), collection=f"standard-{uuid.uuid4().hex[:12]}", store=store
        )
        try:
            yield vectorstore
        finally:
            vectorstore.delete_collection()


class TestStandardVectorStoreInMemory(_StandardOnStore):
    store_fixture = "memory_store"


class TestStandardVectorStoreOnEdge(_StandardOnStore):
    store_fixture = "edge_store"


# --------------------------------------------------------------------------- image data


@dataclass(frozen=True)
class Images:
    """4 groups of 3 near-duplicate images each, indexed through the vector store."""

    store: VectorStore
    embedder: AlignedEmbedder
    vectorstore: PerceptualImageVectorStore
    uris: list[str]
    groups: dict[str, str]  # uri -> group
    query: str  # a near-duplicate of the first group, not in the collection


def _near_duplicates(folder: Path) -> tuple[list[str], dict[str, str], str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    uris, groups = [], {}
    query = ""
    for number, group in enumerate(GROUPS):
        pixels = np.asarray(make_image(200 + number, size=(40, 36)), dtype=np.int16)
        for copy in range(4 if number == 0 else 3):
            noisy = np.clip(pixels + rng.integers(-6, 7, pixels.shape), 0, 255).astype(np.uint8)
            path = folder / f"{group}-{copy}.png"
            Image.fromarray(noisy).save(path)
            if number == 0 and copy == 3:
                query = str(path)
            else:
                uris.append(str(path))
                groups[str(path)] = group
    return uris, groups, query


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Iterator[Images]:
    folder = tmp_path_factory.mktemp("images")
    uris, groups, query = _near_duplicates(folder / "images")
    embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random", device="cpu", batch_size=8))
    with open_store(":memory:") as store:
        vectorstore = PerceptualImageVectorStore.from_images(
            uris,
            PerceptualImageEmbeddings(embedder=embedder),
            metadatas=[{"label": groups[uri], "shade": index % 3} for index, uri in enumerate(uris)],
            store=store,
            collection="shapes",
        )
        yield Images(store, embedder, vectorstore, uris, groups, query)


def _retriever(images: Images, **fields: Any) -> PerceptualImageRetriever:
    return PerceptualImageRetriever(store=images.store, collection="shapes", embedder=images.embedder, **fields)


def _ids(documents) -> list[str]:
    return [document.id for document in documents]


# --------------------------------------------------------------------------- search_type / search_kwargs

SEARCHES = [
    ("similarity", {}),
    ("similarity", {"k": 2}),
    ("similarity", {"k": 5, "filter": {"label": ["square", "star"]}}),
    ("mmr", {}),
    ("mmr", {"k": 3, "fetch_k": 6, "lambda_mult": 0.25}),
    ("mmr", {"k": 4, "lambda_mult": 0.0, "filter": {"shade": {"lte": 1}}}),
    ("similarity_score_threshold", {"score_threshold": 0.0}),
    ("similarity_score_threshold", {"k": 6, "score_threshold": "MEDIAN"}),
]


@pytest.mark.parametrize(("search_type", "search_kwargs"), SEARCHES)
def test_search_type_and_kwargs_equal_langchains_vector_store_retriever(images, search_type, search_kwargs):
    if search_kwargs.get("score_threshold") == "MEDIAN":  # a threshold that really cuts the 6 nearest
        scores = [s for _, s in images.vectorstore.similarity_search_with_relevance_scores(images.query, k=6)]
        search_kwargs = {**search_kwargs, "score_threshold": float(np.median(scores))}
    ours = _retriever(images, search_type=search_type, search_kwargs=search_kwargs).invoke(images.query)
    langchains = images.vectorstore.as_retriever(search_type=search_type, search_kwargs=search_kwargs)
    assert isinstance(langchains, VectorStoreRetriever)
    expected = langchains.invoke(images.query)
    assert _ids(ours) == _ids(expected) and ours
    assert [d.metadata["label"] for d in ours] == [d.metadata["label"] for d in expected]
    if search_type == "similarity_score_threshold" and search_kwargs["score_threshold"] > 0:
        assert 0 < len(ours) < 6


def test_per_call_options_equal_langchains_too(images):
    ours = _retriever(images, search_type="mmr", search_kwargs={"k": 2})
    theirs = images.vectorstore.as_retriever(search_type="mmr", search_kwargs={"k": 2})
    options = {"k": 3, "fetch_k": 5, "lambda_mult": 0.1}
    assert _ids(ours.invoke(images.query, **options)) == _ids(theirs.invoke(images.query, **options))
    assert [_ids(found) for found in ours.batch([images.query], **options)] == [
        _ids(theirs.invoke(images.query, **options))
    ]


def test_similarity_and_mmr_equal_langchains_in_memory_store(images):
    embeddings = PerceptualImageEmbeddings(embedder=images.embedder)
    reference = InMemoryVectorStore(embeddings)
    reference.add_texts(images.uris, ids=_ids(images.vectorstore.get_by_ids(_all_ids(images))))
    for search_type, kwargs in [("similarity", {"k": 5}), ("mmr", {"k": 4, "fetch_k": 8, "lambda_mult": 0.3})]:
        expected = reference.as_retriever(search_type=search_type, search_kwargs=kwargs).invoke(images.query)
        ours = _retriever(images, search_type=search_type, search_kwargs=kwargs).invoke(images.query)
        assert _ids(ours) == _ids(expected), search_type


def _all_ids(images: Images) -> list[str]:
    points = list(images.store.iterate("shapes"))
    by_uri = {point.payload["uri"]: point.id for point in points}
    return [by_uri[uri] for uri in images.uris]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"search_type": "mmr", "search_kwargs": {"score_threshold": 0.5}}, "score_threshold.*does not apply"),
        ({"search_kwargs": {"fetch_k": 5}}, "fetch_k.*does not apply"),
        ({"search_kwargs": {"top_k": 5}}, "top_k"),
        ({"search_type": "similarity_score_threshold"}, "needs a number score_threshold"),
        ({"search_type": "mmr", "search_kwargs": {"lambda_mult": 1.5}}, "lambda_mult must be"),
        ({"search_kwargs": {"k": 0}}, "k must be a positive int"),
        ({"k": 3, "search_kwargs": {"k": 2}}, "give it once"),
        ({"filter": {"label": 1.5}}, "floats cannot be matched"),
    ],
)
def test_bad_search_options_are_refused_at_construction(images, fields, message):
    with pytest.raises((ConfigError, FilterError), match=message):
        _retriever(images, **fields)


def test_unknown_fields_and_search_types_are_refused(images):
    with pytest.raises(ValidationError, match="top_k"):
        _retriever(images, top_k=2)
    with pytest.raises(ValidationError, match="search_type"):
        _retriever(images, search_type="nearest")
    with pytest.raises(ConfigError, match="fetch_k.*does not apply"):
        _retriever(images).invoke(images.query, fetch_k=3)


def test_qdrant_filter_equals_the_dict_filter(images):
    retriever = _retriever(images, k=6)
    as_dict = retriever.invoke(images.query, filter={"label": ["square", "star"], "shade": {"not": 2}})
    as_qdrant = retriever.invoke(
        images.query,
        filter=models.Filter(
            must=[models.FieldCondition(key="label", match=models.MatchAny(any=["square", "star"]))],
            must_not=[models.FieldCondition(key="shade", match=models.MatchValue(value=2))],
        ),
    )
    assert _ids(as_qdrant) == _ids(as_dict) and as_dict
    no_condition = _retriever(images, k=6, filter=models.Filter(must=[]))
    assert _ids(no_condition.invoke(images.query)) == _ids(retriever.invoke(images.query))
    with pytest.raises(FilterError, match="should"):
        _retriever(
            images, filter=models.Filter(should=[models.FieldCondition(key="a", match=models.MatchValue(value=1))])
        )
    store_hits = images.vectorstore.similarity_search(
        images.query,
        k=6,
        filter=models.Filter(must=[models.FieldCondition(key="label", match=models.MatchValue(value="star"))]),
    )
    assert {d.metadata["label"] for d in store_hits} == {"star"}


# --------------------------------------------------------------------------- MMR


def _duplicate_pairs(uris: list[str], groups: dict[str, str]) -> int:
    labels = [groups[uri] for uri in uris]
    return len(labels) - len(set(labels))


def test_mmr_lambda_one_is_similarity_and_zero_avoids_near_duplicates(images):
    plain = _retriever(images, k=4).invoke(images.query)
    one = _retriever(images, search_type="mmr", search_kwargs={"k": 4, "lambda_mult": 1.0}).invoke(images.query)
    zero = _retriever(images, search_type="mmr", search_kwargs={"k": 4, "lambda_mult": 0.0}).invoke(images.query)
    assert _ids(one) == _ids(plain)
    uris = lambda documents: [d.metadata["image_uri"] for d in documents]  # noqa: E731
    assert _duplicate_pairs(uris(plain), images.groups) > 0  # the near-duplicates crowd plain similarity
    assert _duplicate_pairs(uris(zero), images.groups) == 0  # 4 groups exist: MMR takes one of each
    assert zero[0].id == plain[0].id  # the first pick is always the most similar
    # The vector store's own MMR agrees, and so does core retrieval's diversity knob.
    store = images.vectorstore
    assert _ids(store.max_marginal_relevance_search(images.query, k=4, lambda_mult=1.0)) == _ids(
        store.similarity_search(images.query, k=4)
    )
    assert _ids(store.max_marginal_relevance_search(images.query, k=4, lambda_mult=0.0)) == _ids(zero)
    examples = ExampleRetriever(images.store, "shapes", images.embedder)
    diverse = examples.examples(images.query, k=4, diversity=1.0)
    assert [e.id for e in diverse] == _ids(zero)[::-1]  # most similar last
    assert [e.id for e in examples.examples(images.query, k=4, diversity=0.0)] == _ids(plain)[::-1]


def test_core_mmr_picks_what_langchains_picks():
    rng = np.random.default_rng(1)
    for trial in range(20):
        candidates = rng.normal(size=(12, 5)).astype(np.float32)
        query = rng.normal(size=5).astype(np.float32)
        for lambda_mult in (0.0, 0.3, 0.5, 1.0):
            expected = langchain_mmr(query, candidates.tolist(), lambda_mult=lambda_mult, k=6)
            assert maximal_marginal_relevance(query, candidates, k=6, lambda_mult=lambda_mult) == expected, trial


@pytest.mark.parametrize("bad", [-0.1, 1.1, True, "0.5"])
def test_bad_diversity_is_a_config_error(images, bad):
    with pytest.raises(ConfigError, match="diversity"):
        ExampleRetriever(images.store, "shapes", images.embedder).examples(images.query, diversity=bad)


# --------------------------------------------------------------------------- batch


class _Runs(BaseCallbackHandler):
    def __init__(self) -> None:
        self.started: list[Any] = []
        self.metadata: list[dict[str, Any]] = []
        self.ended = 0
        self.errors: list[BaseException] = []

    def on_retriever_start(self, serialized, query, *, metadata=None, **kwargs) -> None:
        self.started.append(query)
        self.metadata.append(metadata or {})

    def on_retriever_end(self, documents, **kwargs) -> None:
        self.ended += 1

    def on_retriever_error(self, error, **kwargs) -> None:
        self.errors.append(error)


def _count_forwards(monkeypatch, embedder: AlignedEmbedder) -> list[int]:
    calls: list[int] = []
    original = embedder._embed_pixels

    def counted(pixels, *args, **kwargs):
        calls.append(len(pixels))
        return original(pixels, *args, **kwargs)

    monkeypatch.setattr(embedder, "_embed_pixels", counted)
    return calls


def test_batch_embeds_every_query_in_one_forward(images, monkeypatch):
    retriever = _retriever(images, k=2)
    queries = [images.query, images.uris[3], images.uris[7]]
    expected = [_ids(retriever.invoke(query)) for query in queries]
    forwards = _count_forwards(monkeypatch, images.embedder)
    runs = _Runs()
    results = retriever.batch(queries, config={"callbacks": [runs]})
    assert forwards == [3]  # one forward pass for the three queries
    assert [_ids(documents) for documents in results] == expected
    assert runs.started == queries and runs.ended == 3 and not runs.errors
    assert runs.metadata[0]["ls_vector_store_provider"] == "QdrantClientStore"
    assert runs.metadata[0]["ls_embedding_provider"] == "AlignedEmbedder"
    forwards.clear()
    assert [_ids(documents) for documents in asyncio.run(retriever.abatch(queries, k=2))] == expected
    assert forwards == [3]


def test_batch_puts_an_unreadable_query_s_error_on_its_own_run(images):
    retriever = _retriever(images, k=2)
    runs = _Runs()
    results = retriever.batch(
        [images.query, "/no/such/image.png"], config={"callbacks": [runs]}, return_exceptions=True
    )
    assert len(results[0]) == 2 and isinstance(results[1], ImageDecodeError)
    assert runs.ended == 1 and len(runs.errors) == 1
    with pytest.raises(ImageDecodeError, match="file not found"):
        retriever.batch([images.query, "/no/such/image.png"])
    assert retriever.batch([]) == []


def test_retriever_is_a_context_manager_that_closes_the_store(images, tmp_path):
    location = f"edge:{tmp_path / 'store'}"
    with open_store(location) as store:
        index_records(
            [ImageRecord(id="q", uri=images.query, label="circle")],
            embedder=images.embedder, store=store, collection="c", progress=False,
        )  # fmt: skip
    with PerceptualImageRetriever.from_specs(location, "c", images.embedder) as retriever:
        assert retriever.invoke(images.uris[0])[0].metadata["label"] == "circle"
    with pytest.raises(StoreError, match="closed"):
        retriever.invoke(images.uris[0])
    open_store(location).close()  # the lock was released


# --------------------------------------------------------------------------- the vector store itself


def test_image_documents_round_trip(images):
    documents = images.vectorstore.get_by_ids(_all_ids(images)[:2])
    assert [d.page_content for d in documents] == images.uris[:2]
    assert documents[0].metadata["label"] == "circle" and documents[0].metadata["uri"] == images.uris[0]
    scored = images.vectorstore.similarity_search_by_image_with_score(images.query, k=3)
    assert [d.id for d, _ in scored] == _ids(images.vectorstore.similarity_search(images.query, k=3))
    assert all(-1 <= score <= 1 for _, score in scored)
    by_image = asyncio.run(images.vectorstore.asimilarity_search_by_image(images.query, k=3))
    assert _ids(by_image) == [d.id for d, _ in scored]
    relevance = images.vectorstore.similarity_search_with_relevance_scores(images.query, k=12)
    assert all(0 <= score <= 1 for _, score in relevance)


def test_adding_an_image_again_keeps_one_point_and_index_records_collections_are_readable(images, tmp_path):
    embeddings = PerceptualImageEmbeddings(embedder=images.embedder)
    with open_store(":memory:") as store:
        records = [ImageRecord(id=f"r{i}", uri=uri, label=images.groups[uri]) for i, uri in enumerate(images.uris)]
        index_records(records, embedder=images.embedder, store=store, collection="indexed", progress=False)
        vectorstore = PerceptualImageVectorStore(embeddings, collection="indexed", store=store)
        found = vectorstore.similarity_search(images.query, k=1)[0]
        assert found.page_content == found.metadata["uri"] and found.metadata["record_id"].startswith("r")
        ids = vectorstore.add_images(images.uris[:2])  # already indexed: the same points
        assert store.count("indexed") == len(images.uris) and ids == _ids(vectorstore.get_by_ids(ids))


def test_the_collection_refuses_another_embedding(images):
    with open_store(":memory:") as store:
        PerceptualImageVectorStore.from_texts(
            ["a", "b"], DeterministicFakeEmbedding(size=6), store=store, collection="t"
        )
        with pytest.raises(FingerprintMismatchError, match="weights_digest: size=6 != size=8"):
            PerceptualImageVectorStore(DeterministicFakeEmbedding(size=8), collection="t", store=store)
        with pytest.raises(FingerprintMismatchError, match="backbone"):
            PerceptualImageVectorStore(PerceptualImageEmbeddings(embedder=images.embedder), collection="t", store=store)
    with pytest.raises(FingerprintMismatchError, match="backbone"):
        PerceptualImageVectorStore(DeterministicFakeEmbedding(size=64), collection="shapes", store=images.store)


def test_ids_metadata_and_delete_rules(memory_store):
    vectorstore = PerceptualImageVectorStore(DeterministicFakeEmbedding(size=6), collection="rules", store=memory_store)
    uid = "A1D23F32-1B22-4CF3-B607-9968E1E128F3"
    assert vectorstore.add_texts(["x", "y"], ids=[uid, "plain id"]) == [uid, "plain id"]
    assert sorted(_ids(vectorstore.get_by_ids(["plain id", uid, "missing"]))) == sorted([uid, "plain id"])
    with pytest.raises(InvalidPointError, match="reserved"):
        vectorstore.add_texts(["z"], metadatas=[{"page_content": "sneaky"}])
    with pytest.raises(InvalidPointError, match="JSON"):
        vectorstore.add_texts(["z"], metadatas=[{"when": object()}])
    with pytest.raises(ConfigError, match="2 documents but 1 ids"):
        vectorstore.add_texts(["z", "w"], ids=["1"])
    with pytest.raises(ConfigError, match="delete_collection"):
        vectorstore.delete()
    vectorstore.delete_collection()
    assert vectorstore.similarity_search("x") == [] and vectorstore.get_by_ids([uid]) == []


def test_an_edge_collection_survives_reopening(tmp_path):
    location = f"edge:{tmp_path / 'store'}"
    embedding = DeterministicFakeEmbedding(size=6)
    with PerceptualImageVectorStore.from_texts(
        ["foo", "bar"], embedding, ids=["1", "2"], store=location, collection="c"
    ):
        pass
    with PerceptualImageVectorStore(embedding, collection="c", store=location) as reopened:
        assert [d.page_content for d in reopened.get_by_ids(["2", "1"])] == ["bar", "foo"]


# --------------------------------------------------------------------------- example selectors


def test_example_selector_builds_the_expected_chat_messages(images):
    selector = PerceptualExampleSelector(retriever=_retriever(images, k=3))
    shot = ChatPromptTemplate.from_messages(
        [("human", [{"type": "image_url", "image_url": {"url": "{image_url}"}}]), ("ai", "{label}")]
    )
    few_shot = FewShotChatMessagePromptTemplate(
        example_selector=selector, example_prompt=shot, input_variables=["image"]
    )
    prompt = ChatPromptTemplate.from_messages(
        [
            ("system", "Name the shape of the last image."),
            few_shot,
            ("human", [{"type": "image_url", "image_url": {"url": "{image_url}"}}]),
        ]
    )
    messages = prompt.invoke({"image": images.query, "image_url": image_data_uri(images.query)}).to_messages()
    nearest = _retriever(images, k=3).invoke(images.query)[::-1]  # prompt order: most similar last
    expected = []
    for document in nearest:
        block = {"type": "image_url", "image_url": {"url": image_data_uri(document.metadata["image_uri"])}}
        expected += [HumanMessage(content=[block]), AIMessage(content=document.metadata["label"])]
    assert messages[1:-1] == expected
    assert messages[-1].content[0]["image_url"]["url"] == image_data_uri(images.query)
    assert selector.select_examples({"image": images.query})[-1]["image"] == nearest[-1].metadata["image_uri"]


def test_example_selector_with_mmr_a_filter_and_a_string_template(images):
    retriever = _retriever(
        images, search_type="mmr", search_kwargs={"k": 3, "lambda_mult": 0.0, "filter": {"shade": {"not": 2}}}
    )
    selector = PerceptualExampleSelector(retriever=retriever, image_url_key=None, label_key="shape")
    examples = selector.select_examples({"image": images.query})
    assert _duplicate_pairs([e["image"] for e in examples], images.groups) == 0
    # the selector's own keys, and every payload field of the example (issue 35: nothing dropped)
    assert all({"image", "shape", "shade"} <= set(example) and "image_url" not in example for example in examples)
    template = FewShotPromptTemplate(
        example_selector=selector,
        example_prompt=PromptTemplate.from_template("{image} is a {shape}"),
        suffix="{image} is a",
        input_variables=["image"],
    )
    text = template.format(image=images.query)
    assert text.count(" is a") == 4 and text.endswith(f"{images.query} is a")
    with pytest.raises(ConfigError, match="no query image"):
        selector.select_examples({"picture": images.query})


def test_example_selector_add_example(images, tmp_path):
    with open_store(":memory:") as store:
        index_records([ImageRecord(id="0", uri=images.uris[0], label="circle")], embedder=images.embedder,
                      store=store, collection="pool", progress=False)  # fmt: skip
        retriever = PerceptualImageRetriever(store=store, collection="pool", embedder=images.embedder, k=2)
        selector = PerceptualExampleSelector(retriever=retriever)
        selector.add_example({"image": images.uris[5], "label": "square"})
        assert {e["label"] for e in selector.select_examples({"image": images.query})} == {"circle", "square"}
        with pytest.raises(ImageDecodeError):
            selector.add_example({"image": str(tmp_path / "missing.png"), "label": "x"})


def test_langchains_own_example_selectors_on_our_vector_store(images):
    embeddings = PerceptualImageEmbeddings(embedder=images.embedder)
    examples = [{"image": uri, "label": images.groups[uri]} for uri in images.uris]
    with open_store(":memory:") as store:
        similar = SemanticSimilarityExampleSelector.from_examples(
            examples, embeddings, PerceptualImageVectorStore, k=3, input_keys=["image"],
            example_keys=["image", "label"], store=store, collection="examples",
        )  # fmt: skip
        picked = similar.select_examples({"image": images.query})
        nearest = images.vectorstore.similarity_search(images.query, k=3)
        assert [e["image"] for e in picked] == [d.page_content for d in nearest]
        diverse = MaxMarginalRelevanceExampleSelector(
            vectorstore=similar.vectorstore, k=4, fetch_k=11, input_keys=["image"], example_keys=["label"]
        )
        assert len({e["label"] for e in diverse.select_examples({"image": images.query})}) > 1
