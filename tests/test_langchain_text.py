"""Issue 35 in LangChain: text questions over image collections (the multimodal recipe), the
indexing API, opaque ids, embeddings without embed_image, and example selectors that keep every key."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("langchain_core")

from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings import DeterministicFakeEmbedding  # noqa: E402
from langchain_core.indexing import InMemoryRecordManager, aindex, index  # noqa: E402
from langchain_core.prompts import ChatPromptTemplate, FewShotPromptTemplate, PromptTemplate  # noqa: E402
from langchain_core.runnables import RunnableLambda  # noqa: E402

from langchain_percep_rag import (  # noqa: E402
    PerceptualExampleSelector,
    PerceptualImageEmbeddings,
    PerceptualImageRetriever,
    PerceptualImageVectorStore,
)
from percep_rag import AlignedEmbedder, EmbedderSpec  # noqa: E402
from percep_rag.errors import ConfigError, TextQueryError  # noqa: E402
from percep_rag.store import open_store  # noqa: E402

from .conftest import make_image  # noqa: E402


@pytest.fixture(scope="module")
def clip() -> AlignedEmbedder:
    return AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-clip-random", precision="fp32", batch_size=8))


@pytest.fixture(scope="module")
def dino() -> AlignedEmbedder:
    return AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random", precision="fp32", batch_size=8))


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("photos")
    paths = []
    for seed in range(12):
        path = folder / f"{seed}.png"
        make_image(300 + seed, size=(40, 36)).save(path)
        paths.append(str(path))
    return paths


# --------------------------------------------------------------------------- embeddings: the queries rule


def test_clip_embeddings_take_text_as_open_clip_embeddings_do(clip, photos):
    embeddings = PerceptualImageEmbeddings(embedder=clip)
    assert embeddings.takes_text and embeddings.query_vector == "base"
    np.testing.assert_allclose(embeddings.embed_query("a red dress"), clip.embed_text(["a red dress"])[0], atol=1e-6)
    np.testing.assert_allclose(embeddings.embed_documents(["a", "b"]), clip.embed_text(["a", "b"]), atol=1e-6)
    np.testing.assert_allclose(embeddings.embed_image(photos[:1])[0], clip.embed(photos[:1])[0], atol=1e-6)


def test_queries_images_keeps_the_image_only_behaviour(clip, photos):
    embeddings = PerceptualImageEmbeddings(embedder=clip, queries="images")
    assert not embeddings.takes_text and embeddings.query_vector == "aligned"
    assert embeddings.embed_query(photos[0]) == embeddings.embed_image(photos[:1])[0]


def test_a_backbone_without_a_text_tower_keeps_image_queries_and_refuses_text_mode(dino, photos):
    assert not PerceptualImageEmbeddings(embedder=dino).takes_text
    with pytest.raises(TextQueryError, match="backbone 'tiny-vit-random' has no text tower"):
        PerceptualImageEmbeddings(embedder=dino, queries="text")


@pytest.mark.parametrize(("text", "why"), [("", "empty"), ("red " * 40, "tokens long"), (3, "not a string")])
def test_bad_text_is_a_clear_error(clip, text, why):
    with pytest.raises(TextQueryError, match=why):
        PerceptualImageEmbeddings(embedder=clip).embed_query(text)


# ------------------------------------------------------------- the vector store: add_images, search by text


@pytest.fixture
def clip_store(clip, photos):
    with open_store(":memory:") as store:
        vectorstore = PerceptualImageVectorStore(PerceptualImageEmbeddings(embedder=clip), collection="c", store=store)
        vectorstore.add_images(photos, metadatas=[{"n": i} for i in range(len(photos))])
        yield vectorstore, store


def test_similarity_search_by_text_ranks_as_brute_force_over_base(clip, clip_store, photos):
    vectorstore, store = clip_store
    found = vectorstore.similarity_search_with_score("a bright photo", k=5)
    text = clip.embed_text(["a bright photo"])[0]
    base = clip.embed_both(photos).base
    order = np.argsort(-(base @ text), kind="stable")[:5]
    assert [document.page_content for document, _ in found] == [photos[i] for i in order]
    np.testing.assert_allclose([score for _, score in found], (base @ text)[order], atol=1e-5)


def test_similarity_search_by_image_searches_aligned(clip, clip_store, photos):
    vectorstore, _ = clip_store
    found = vectorstore.similarity_search_by_image(photos[3], k=1)
    assert found[0].page_content == photos[3]


def test_the_multimodal_recipe_end_to_end(clip_store, photos):
    """LangChain's multimodal RAG shape: add_images, as_retriever().invoke(question), image URIs into a prompt."""
    vectorstore, _ = clip_store
    retriever = vectorstore.as_retriever(search_kwargs={"k": 3})
    prompt = ChatPromptTemplate.from_messages(
        [("human", [{"type": "text", "text": "{question}"}, {"type": "image_url", "image_url": {"url": "{image}"}}])]
    )

    def to_prompt(inputs: dict) -> dict:
        return {"question": inputs["question"], "image": inputs["documents"][0].page_content}

    chain = {"documents": retriever, "question": RunnableLambda(lambda q: q)} | RunnableLambda(to_prompt) | prompt
    value = chain.invoke("which photo shows a red dress?")
    [message] = value.to_messages()
    assert message.content[0]["text"] == "which photo shows a red dress?"
    assert message.content[1]["image_url"]["url"] in photos
    assert len(retriever.invoke("a red dress")) == 3


def test_the_percep_rag_retriever_takes_a_text_question(clip, clip_store):
    _, store = clip_store
    retriever = PerceptualImageRetriever(store=store, collection="c", embedder=clip, queries="text", k=4)
    documents = retriever.invoke("a red dress")
    assert len(documents) == 4 and {d.metadata["using"] for d in documents} == {"base"}
    scores = [d.metadata["score"] for d in documents]
    assert scores == sorted(scores, reverse=True)


def test_the_percep_rag_retriever_refuses_text_on_a_dino_collection(dino, photos):
    with open_store(":memory:") as store:
        PerceptualImageVectorStore(PerceptualImageEmbeddings(embedder=dino), collection="d", store=store).add_images(
            photos[:3]
        )
        with pytest.raises(TextQueryError, match="collection 'd' takes no text query"):
            PerceptualImageRetriever(store=store, collection="d", embedder=dino, queries="text")


# --------------------------------------------------------------------------- embeddings without embed_image


def test_image_methods_refuse_an_embedding_without_embed_image(photos):
    with PerceptualImageVectorStore(DeterministicFakeEmbedding(size=8), collection="t", store=":memory:") as store:
        store.add_texts(["tomato"])
        with pytest.raises(ConfigError, match="add_images needs an embedding with embed_image"):
            store.add_images(photos[:1])
        with pytest.raises(ConfigError, match="similarity_search_by_image needs an embedding with embed_image"):
            store.similarity_search_by_image(photos[0])


# --------------------------------------------------------------------------- LangChain's indexing API


def _docs(*pairs: tuple[str, str]) -> list[Document]:
    return [Document(page_content=content, metadata={"source": source}) for content, source in pairs]


@pytest.mark.parametrize("cleanup", [None, "incremental", "full", "scoped_full"])
def test_langchain_index_runs_with_every_cleanup_mode(cleanup):
    manager = InMemoryRecordManager(namespace=f"test/{cleanup}")
    manager.create_schema()
    with PerceptualImageVectorStore(DeterministicFakeEmbedding(size=8), collection="i", store=":memory:") as store:
        first = index(_docs(("a", "s1"), ("b", "s1"), ("c", "s2")), manager, store, cleanup=cleanup,
                      source_id_key="source", batch_size=2)  # fmt: skip
        assert first["num_added"] == 3 and store.store.count("i") == 3
        again = index(_docs(("a", "s1"), ("b2", "s1")), manager, store, cleanup=cleanup, source_id_key="source")
        assert again["num_added"] == 1 and again["num_skipped"] == 1
        expected_deleted = {None: 0, "incremental": 1, "scoped_full": 1, "full": 2}[cleanup]
        assert again["num_deleted"] == expected_deleted
        assert store.store.count("i") == 4 - expected_deleted


@pytest.mark.parametrize("cleanup", [None, "incremental", "full", "scoped_full"])
def test_langchain_aindex_runs_with_every_cleanup_mode(cleanup):
    async def run() -> tuple[dict, dict, int]:
        manager = InMemoryRecordManager(namespace=f"atest/{cleanup}")
        await manager.acreate_schema()
        with PerceptualImageVectorStore(DeterministicFakeEmbedding(size=8), collection="i", store=":memory:") as store:
            first = await aindex(
                _docs(("a", "s1"), ("b", "s2")), manager, store, cleanup=cleanup, source_id_key="source"
            )
            again = await aindex(_docs(("a2", "s1")), manager, store, cleanup=cleanup, source_id_key="source")
            return first, again, store.store.count("i")

    first, again, count = asyncio.run(run())
    expected_deleted = {None: 0, "incremental": 1, "scoped_full": 1, "full": 2}[cleanup]
    assert first["num_added"] == 2 and again["num_added"] == 1 and again["num_deleted"] == expected_deleted
    assert count == 3 - expected_deleted


def test_index_of_images_through_perceptual_embeddings(dino, photos):
    manager = InMemoryRecordManager(namespace="images")
    manager.create_schema()
    with PerceptualImageVectorStore(
        PerceptualImageEmbeddings(embedder=dino), collection="p", store=":memory:"
    ) as store:
        docs = [Document(page_content=path, metadata={"source": "folder"}) for path in photos[:4]]
        assert index(docs, manager, store, cleanup="full", source_id_key="source")["num_added"] == 4
        assert index(docs[:2], manager, store, cleanup="full", source_id_key="source")["num_deleted"] == 2
        assert store.store.count("p") == 2


def test_add_texts_refuses_keywords_it_does_not_use():
    with PerceptualImageVectorStore(DeterministicFakeEmbedding(size=8), collection="k", store=":memory:") as store:
        with pytest.raises(TypeError, match="unexpected keyword arguments \\['colour'\\]"):
            store.add_texts(["a"], colour="red")
        with pytest.raises(ConfigError, match="batch_size"):
            store.add_texts(["a"], batch_size=0)


# --------------------------------------------------------------------------- opaque ids


def test_five_spellings_of_one_uuid_are_five_documents_each_coming_back_as_given():
    u = str(uuid.uuid4())
    spellings = [u, u.upper(), u.replace("-", ""), "{" + u + "}", "urn:uuid:" + u]
    with PerceptualImageVectorStore(DeterministicFakeEmbedding(size=8), collection="ids", store=":memory:") as store:
        store.add_texts([f"doc {i}" for i in range(5)], ids=spellings)
        assert store.store.count("ids") == 5
        for i, spelling in enumerate(spellings):
            [document] = store.get_by_ids([spelling])
            assert document.id == spelling and document.page_content == f"doc {i}"
        store.delete([u.upper()])
        assert [d.id for d in store.get_by_ids(spellings)] == [s for s in spellings if s != u.upper()]


def test_documents_written_by_the_earlier_id_rule_are_still_found_and_deleted():
    from langchain_percep_rag.documents import document_payload
    from langchain_percep_rag.fingerprints import embedding_fingerprint

    u = str(uuid.uuid4())
    embedding = DeterministicFakeEmbedding(size=8)
    with PerceptualImageVectorStore(embedding, collection="old", store=":memory:") as store:
        percep = store.store
        percep.ensure_collection("old", embedding_fingerprint(embedding, 8), vectors={"embedding": 8})
        vector = np.asarray([embedding.embed_query("old")], dtype=np.float32)
        percep.upsert_arrays("old", [u], {"embedding": vector}, [document_payload("old", {}, u.upper())])  # old rule
        assert [d.id for d in store.get_by_ids([u.upper()])] == [u.upper()]
        assert store.get_by_ids([u]) == []  # another spelling: another document
        store.delete([u.upper()])
        assert percep.count("old") == 0


# --------------------------------------------------------------------------- the example selector


def test_selector_examples_keep_every_key_and_re_adding_replaces_the_label(dino, photos, tmp_path):
    with open_store(":memory:") as store:
        store.ensure_collection("shots", dino.fingerprint)
        selector = PerceptualExampleSelector(
            retriever=PerceptualImageRetriever(store=store, collection="shots", embedder=dino, k=3)
        )
        for number, path in enumerate(photos[1:4]):
            selector.add_example({"image": path, "label": f"class {number}", "reason": f"because {number}"})
        template = FewShotPromptTemplate(
            example_selector=selector,
            example_prompt=PromptTemplate.from_template("{label}: {reason}"),
            suffix="query",
            input_variables=["image"],
        )
        text = template.format(image=photos[5])
        assert all(f"class {n}: because {n}" in text for n in range(3))
        # The same image again (another file name) with a new label: the new example wins.
        copy = Path(tmp_path) / "copy.png"
        copy.write_bytes(Path(photos[1]).read_bytes())
        selector.add_example({"image": str(copy), "label": "relabelled", "reason": "new"})
        text = template.format(image=photos[5])
        assert "relabelled: new" in text and "class 0" not in text
        assert store.count("shots") == 3
