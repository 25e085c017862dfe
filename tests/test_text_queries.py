"""Text queries over image collections: the CLIP-family text tower, the space rule, retrieval by text."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from percep_rag import AlignedEmbedder, EmbedderSpec, create_backbone
from percep_rag.alignment.glocal.transform import GlocalTransform
from percep_rag.backbones._seed import build_seeded
from percep_rag.backbones.openclip import TINY_CLIP, TINY_OPENCLIP, register_model_configs
from percep_rag.config import Fingerprint
from percep_rag.errors import TextQueryError
from percep_rag.retrieval import Retriever
from percep_rag.store import open_store, point_id
from percep_rag.store.describe import describe_collection
from percep_rag.text_space import describe_text_queries, text_queries_of, with_text_queries

TEXTS = ["a red square", "a photo of a blue circle", "green"]
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]


def fp32(backbone: str, **spec) -> AlignedEmbedder:
    return AlignedEmbedder.from_spec(EmbedderSpec(backbone=backbone, precision="fp32", compile="never", **spec))


def open_clip_model(name: str):
    import open_clip

    register_model_configs()
    return build_seeded(lambda: open_clip.create_model(name, pretrained=None, force_image_size=32), 0).eval()


@pytest.mark.parametrize(
    ("backbone", "model_name"), [("tiny-clip-random", TINY_CLIP), ("tiny-openclip-random", TINY_OPENCLIP)]
)
def test_text_vectors_equal_open_clip_encode_text_of_the_same_model(backbone, model_name):
    import open_clip

    embedder = fp32(backbone)
    model = open_clip_model(model_name)
    tokens = open_clip.get_tokenizer(model_name)(TEXTS)
    with torch.no_grad():
        expected = model.encode_text(tokens, normalize=True).numpy()
        # the same model: its image tower gives the embedder's image vectors
        pixels = torch.rand(2, 3, 32, 32)
        mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
        images = model.encode_image((pixels - mean) / std, normalize=True).numpy()
    np.testing.assert_allclose(embedder.embed_text(TEXTS), expected, atol=1e-6, rtol=0)
    np.testing.assert_allclose(embedder.embed_both(pixels).base, images, atol=1e-5, rtol=0)
    assert np.allclose(np.linalg.norm(embedder.embed_text(TEXTS), axis=1), 1.0, atol=1e-6)


def test_text_tower_is_built_on_first_text_query_only_and_leaves_the_fingerprint_alone():
    embedder = fp32("tiny-clip-random")
    before = embedder.backbone.weights_digest()
    assert embedder._text_tower is None
    embedder.embed_text(["red"])
    assert embedder._text_tower is not None
    assert embedder.backbone.weights_digest() == before  # the image tower alone identifies the vectors
    assert not any("token_embedding" in name for name, _ in embedder.backbone.named_parameters())


@pytest.mark.parametrize("backbone", ["tiny-vit-random", "tiny-ensemble-random"])
def test_backbones_without_a_text_tower_refuse_text_naming_the_backbone(backbone):
    embedder = fp32(backbone)
    assert embedder.fingerprint.text_queries == "none"
    with pytest.raises(TextQueryError, match=f"backbone '{backbone}' has no text tower"):
        embedder.embed_text(["red"])


def test_cls_patchmean_is_not_the_image_text_space():
    embedder = fp32("tiny-clip-random", pooling="cls+patchmean")
    assert embedder.fingerprint.text_queries == "none"
    with pytest.raises(TextQueryError, match="cls\\+patchmean vectors are not CLIP's image-text space"):
        embedder.embed_text(["red"])


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "text query 1 is empty"),
        ("   ", "text query 1 is empty"),
        ("red " * 40, "tokens long, over the 14 that tiny-clip-random's text tower takes"),
        (7, "text query 1 is a int, not a string"),
        (None, "text query 1 is a NoneType"),
    ],
)
def test_bad_text_is_refused_with_the_reason(text, why):
    with pytest.raises(TextQueryError, match=why):
        fp32("tiny-clip-random").embed_text([text])


def test_a_lone_string_is_not_read_as_a_list_of_characters():
    with pytest.raises(TextQueryError, match="list of strings"):
        fp32("tiny-clip-random").embed_text("red")


def test_glocal_maps_text_as_it_maps_images():
    rng = np.random.default_rng(0)
    transform = GlocalTransform(
        rng.normal(size=(32, 32)).astype(np.float32), bias=np.ones(32, np.float32), mean=0.1, std=2.0
    )
    backbone = create_backbone("tiny-clip-random")
    embedder = AlignedEmbedder(backbone, alignment=transform, precision="fp32", compile="never")
    assert embedder.fingerprint.text_queries == "base+aligned"
    raw = fp32("tiny-clip-random")._loaded_text_tower()
    with torch.no_grad():
        features = raw(raw.tokenize(TEXTS)).float()
        expected = torch.nn.functional.normalize(transform.transform(features), dim=-1).numpy()
    np.testing.assert_allclose(embedder.embed_text(TEXTS, using="aligned"), expected, atol=1e-5)
    np.testing.assert_allclose(embedder.embed_text(TEXTS), fp32("tiny-clip-random").embed_text(TEXTS), atol=1e-6)


class _ImageTowerAdapter:
    """Stands for a LoRA adapter: kind ``lora``, image tower unchanged (the rule reads the kind)."""

    kind = "lora"
    digest = "lora-test"

    def adapt_backbone(self, backbone):
        return None

    def transform(self, pooled):
        return pooled

    def check_compatible(self, backbone, pooled_dim):
        return None


def test_lora_alignment_refuses_aligned_text_with_the_reason():
    embedder = AlignedEmbedder(create_backbone("tiny-clip-random"), alignment=_ImageTowerAdapter(), precision="fp32")
    assert embedder.fingerprint.text_queries == "base"
    assert embedder.embed_text(["red"]).shape == (1, 32)
    with pytest.raises(TextQueryError, match="LoRA adapter changed the image tower, not the text tower"):
        embedder.embed_text(["red"], using="aligned")


@pytest.fixture(scope="module")
def colour_collection():
    embedder = fp32("tiny-clip-random")
    store = open_store(":memory:")
    store.ensure_collection("colours", embedder.fingerprint)
    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(40)]
    both = embedder.embed_both(images)
    ids = [point_id(str(i), "colours") for i in range(len(images))]
    store.upsert_arrays("colours", ids, {"base": both.base, "aligned": both.aligned}, [{"n": i} for i in range(40)])
    yield store, embedder, ids
    store.close()


def test_text_search_ranks_as_brute_force_cosine_over_the_stored_base_vectors(colour_collection):
    store, embedder, ids = colour_collection
    stored = {point.id: point.vectors["base"] for point in store.retrieve("colours", ids, with_vectors=True)}
    matrix = np.stack([stored[i] for i in ids])
    retriever = Retriever(store, "colours", embedder)
    queries = ["a red square", "blue", "a small green dog"]
    rows = retriever.search_texts(queries, k=10)
    for query, hits, text_vector in zip(queries, rows, embedder.embed_text(queries), strict=True):
        scores = matrix @ text_vector
        expected = [ids[i] for i in np.argsort(-scores, kind="stable")[:10]]
        assert [hit.id for hit in hits] == expected, query
        np.testing.assert_allclose([hit.score for hit in hits], np.sort(scores)[::-1][:10], atol=1e-5)
    assert [hit.id for hit in retriever.search(text="blue", k=10)] == [hit.id for hit in rows[1]]
    filtered = retriever.search(text="blue", k=5, filter={"n": {"gte": 20}})
    assert filtered and all(hit.payload["n"] >= 20 for hit in filtered)


def test_text_search_of_aligned_follows_the_rule(colour_collection):
    store, embedder, _ = colour_collection
    hits = Retriever(store, "colours", embedder).search(text="red", k=3, using="aligned")
    assert [h.id for h in hits] == [h.id for h in Retriever(store, "colours", embedder).search(text="red", k=3)]


def test_fingerprints_written_before_text_queries_was_recorded_stay_readable_and_equal():
    embedder = fp32("tiny-clip-random")
    old = Fingerprint.model_validate(embedder.fingerprint.model_dump(exclude={"text_queries"}))
    assert old.text_queries is None and old.differences(embedder.fingerprint) == []
    assert text_queries_of(old) == "base+aligned"
    dino = old.model_copy(update={"backbone": "tiny-vit-random"})
    assert text_queries_of(dino) == "none"
    assert describe_text_queries(dino).startswith("none (backbone 'tiny-vit-random' has no text tower")


def test_info_shows_what_text_queries_mean(colour_collection):
    store, _, _ = colour_collection
    described = with_text_queries(describe_collection(store, "colours"))
    assert described["fingerprint"]["text_queries"] == "base+aligned"
    assert described["text_queries"].startswith("base (default) or aligned")
