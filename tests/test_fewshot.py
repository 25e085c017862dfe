"""Few-shot OpenFlamingo classification on a tiny RANDOM-weight Flamingo (offline, CPU, fast)."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("open_flamingo")

from open_flamingo.src.flamingo import Flamingo  # noqa: E402
from open_flamingo.src.flamingo_lm import FlamingoLMMixin  # noqa: E402
from open_flamingo.src.utils import extend_instance  # noqa: E402

from percep_rag.errors import ConfigError, PercepRagError, WeightsNotFoundError  # noqa: E402
from percep_rag.vlm.openflamingo import (  # noqa: E402
    CheckpointMismatchError,
    FewShotClassifier,
    PromptError,
    PromptTemplate,
    apply_compat,
    build_prompt,
    build_tiny_flamingo,
    check_checkpoint_keys,
    is_compat,
    load_openflamingo,
)
from percep_rag.vlm.openflamingo import classify as classify_module  # noqa: E402
from percep_rag.vlm.openflamingo.compat import (  # noqa: E402
    CompatFlamingoLMMixin,
    media_is_cached,
    remap_legacy_keys,
    uncache_media,
)
from percep_rag.vlm.openflamingo.model import _VisualHolder, load_flamingo_checkpoint, open_gates  # noqa: E402
from percep_rag.vlm.openflamingo.tiny import make_test_image, train_tiny_tokenizer  # noqa: E402

# Token lengths 1..5 (tiny tokenizer), shared token prefixes ("cat"/"cat food", "golden ..."),
# and a name the tokenizer never saw.
CLASS_NAMES = ["cat", "cat food", "caterpillar", "dog", "golden retriever", "golden eagle", "zebra"]
SHOTS = [(make_test_image(1), "dog"), (make_test_image(2), "cat"), (make_test_image(3), "golden retriever")]


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_flamingo(seed=0)


@pytest.fixture(scope="module")
def clf(tiny):
    return FewShotClassifier.from_bundle(tiny)


def test_class_names_cover_lengths_and_shared_prefixes(clf):
    ids = clf.class_token_ids(CLASS_NAMES)
    assert len({len(tokens) for tokens in ids}) >= 3 and min(map(len, ids)) == 1
    assert ids[1][: len(ids[0])] == ids[0]  # "cat food" starts with the tokens of "cat"
    assert ids[4][:2] == ids[5][:2]  # "golden retriever" / "golden eagle"


@pytest.mark.parametrize("lm", ["gpt-neox", "llama"])
def test_cached_scores_equal_naive(lm):
    clf = FewShotClassifier.from_bundle(
        build_tiny_flamingo(seed=1, lm=lm, cross_attn_every_n_layers=2 if lm == "llama" else 1)
    )
    for query in range(3):
        cached = clf.score_classes(SHOTS, make_test_image(100 + query), CLASS_NAMES)
        naive = clf.naive_scores(SHOTS, make_test_image(100 + query), CLASS_NAMES)
        np.testing.assert_allclose(cached, naive, atol=1e-5, rtol=0)
        assert not media_is_cached(clf.model)


@pytest.mark.parametrize("lm", ["gpt-neox", "llama"])
def test_the_lm_gets_its_cache_as_cache(lm):
    # transformers 5.25 warns that `past_key_values` (OpenFlamingo's keyword) "will be removed in version 5.40.0",
    # and our pin lets 5.40 in: the compat layer must already speak `cache`, on every path that runs the LM.
    clf = FewShotClassifier.from_bundle(build_tiny_flamingo(seed=1, lm=lm))
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        cached = clf.score_classes(SHOTS, make_test_image(100), CLASS_NAMES)
        naive = clf.naive_scores(SHOTS, make_test_image(100), CLASS_NAMES)
        clf.generate(SHOTS, make_test_image(100), max_new_tokens=2)
    np.testing.assert_allclose(cached, naive, atol=1e-5, rtol=0)


def test_class_batch_size_does_not_change_scores(tiny, clf):
    query = make_test_image(7)
    small_batches = FewShotClassifier.from_bundle(tiny, class_batch_size=2)
    np.testing.assert_allclose(
        small_batches.score_classes(SHOTS, query, CLASS_NAMES), clf.score_classes(SHOTS, query, CLASS_NAMES), atol=1e-6
    )


def test_shared_cache_across_classes_is_wrong(tiny, clf, monkeypatch):
    """Sensitivity check: open_flamingo's eval recipe (one cache reused for all classes) is detected."""
    query = make_test_image(8)
    reference = clf.naive_scores(SHOTS, query, CLASS_NAMES)
    monkeypatch.setattr(classify_module, "repeat_cache", lambda cache, n: cache)  # no copy: in-place growth
    shared = FewShotClassifier.from_bundle(tiny, class_batch_size=1).score_classes(SHOTS, query, CLASS_NAMES)
    assert np.abs(shared - reference).max() > 1e-4


def test_prompt_layout_exact(clf):
    text, images = build_prompt(SHOTS)
    assert text == (
        "<image>Output:dog<|endofchunk|><image>Output:cat<|endofchunk|>"
        "<image>Output:golden retriever<|endofchunk|><image>Output:"
    )
    assert images == [image for image, _ in SHOTS]
    ids, vision_x = clf.encode_prompt(SHOTS, make_test_image(9))
    tokens = clf.tokenizer.convert_ids_to_tokens(ids[0].tolist())
    media = [i for i, token in enumerate(tokens) if token == "<image>"]
    golden = len(clf.class_token_ids(["golden retriever"])[0])
    assert media == [0, 5, 10, 14 + golden]
    assert tokens[:5] == ["<image>", "Output", ":", "dog", "<|endofchunk|>"]
    assert tokens[-3:] == ["<image>", "Output", ":"]
    assert tokens.count("<|endofchunk|>") == 3
    assert vision_x.shape == (1, 4, 1, 3, 32, 32)


def test_examples_order_preserved(clf):
    query = make_test_image(9)
    _, vision_x = clf.encode_prompt(SHOTS, query)
    expected = [clf.image_processor(image) for image, _ in SHOTS] + [clf.image_processor(query)]
    for position, pixels in enumerate(expected):
        torch.testing.assert_close(vision_x[0, position, 0], pixels)
    reversed_text, _ = build_prompt(SHOTS[::-1])
    assert reversed_text.index("golden retriever") < reversed_text.index("dog")  # caller's order, kept
    swapped = clf.score_classes(SHOTS[::-1], query, CLASS_NAMES)
    assert np.abs(swapped - clf.score_classes(SHOTS, query, CLASS_NAMES)).max() > 1e-5


def test_template_configurable_and_validated(clf):
    template = PromptTemplate(example="<image>Label: {label}.<|endofchunk|>", query="<image>Label:")
    assert build_prompt(SHOTS[:1], template)[0] == "<image>Label: dog.<|endofchunk|><image>Label:"
    custom = FewShotClassifier(clf.model, clf.tokenizer, clf.image_processor, template)
    assert custom.score_classes(SHOTS, make_test_image(4), ["cat", "dog"]).shape == (2,)
    with pytest.raises(ValueError, match="exactly once"):
        PromptTemplate(query="Output:")
    with pytest.raises(PromptError, match="special token"):
        clf.score_classes(SHOTS, make_test_image(4), ["cat", "<image>dog"])
    with pytest.raises(PromptError, match="special token"):
        build_prompt([(make_test_image(1), "a<|endofchunk|>")])


def test_media_matter(clf):
    a = clf.score_classes(SHOTS, make_test_image(20), CLASS_NAMES)
    b = clf.score_classes(SHOTS, make_test_image(21), CLASS_NAMES)
    assert np.abs(a - b).max() > 1e-4
    assert clf.predict(SHOTS, make_test_image(20), CLASS_NAMES) == CLASS_NAMES[int(np.argmax(a))]


def test_closed_gates_ignore_images():
    clf = FewShotClassifier.from_bundle(build_tiny_flamingo(seed=2, gate=0.0))
    a = clf.score_classes(SHOTS, make_test_image(20), CLASS_NAMES)
    np.testing.assert_allclose(a, clf.score_classes(SHOTS, make_test_image(21), CLASS_NAMES), atol=1e-6)


def test_prompt_too_long_is_refused(clf):
    shots = [(make_test_image(0, (8, 8)), "dog")] * 110  # 5 tokens each > 512 positions
    with pytest.raises(PromptError, match="positions"):
        clf.score_classes(shots, make_test_image(1), ["cat"])


# --------------------------------------------------------------------------- generation


def test_generate_first_token_is_forward_argmax(clf):
    query = make_test_image(5)
    ids, vision_x = clf.encode_prompt(SHOTS, query)
    with torch.inference_mode():
        expected = int(clf.model(vision_x=vision_x, lang_x=ids).logits[0, -1].argmax())
        out = clf.model.generate(
            vision_x=vision_x, lang_x=ids, max_new_tokens=1, pad_token_id=clf.tokenizer.pad_token_id
        )
    assert int(out[0, -1]) == expected
    assert not media_is_cached(clf.model)
    assert isinstance(clf.generate(SHOTS, query, max_new_tokens=4), str)
    assert not media_is_cached(clf.model)


def test_generate_uncaches_media_on_error(clf, monkeypatch):
    def boom(*args, **kwargs):
        assert media_is_cached(clf.model)  # the failure happens while media are cached
        raise RuntimeError("injected failure")

    monkeypatch.setattr(clf.model.lang_encoder, "generate", boom)
    with pytest.raises(RuntimeError, match="injected"):
        clf.generate(SHOTS, make_test_image(5))
    assert not media_is_cached(clf.model)
    # open_flamingo's own generate leaves them cached: the bug the compat layer fixes.
    with pytest.raises(RuntimeError, match="injected"):
        Flamingo.generate(clf.model, *clf.encode_prompt(SHOTS, make_test_image(5))[::-1], max_new_tokens=1)
    assert media_is_cached(clf.model)
    uncache_media(clf.model)
    monkeypatch.undo()
    assert clf.score_classes(SHOTS, make_test_image(5), ["cat"]).shape == (1,)


# --------------------------------------------------------------------------- compat layer


def _plain_open_flamingo(seed: int = 0) -> tuple[Flamingo, object]:
    """A tiny model built the way open_flamingo's factory does it, without our compat layer."""
    from open_clip.model import _build_vision_tower
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(seed)
    tokenizer = train_tiny_tokenizer()
    lm = GPTNeoXForCausalLM(
        GPTNeoXConfig(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=512,
        )
    )
    extend_instance(lm, FlamingoLMMixin)
    lm.set_decoder_layers_attr_name("gpt_neox.layers")
    tower = _build_vision_tower(
        32, dict(image_size=32, patch_size=8, width=64, layers=2, head_width=32), quick_gelu=True
    )
    tower.output_tokens = True
    model = Flamingo(
        _VisualHolder(tower), lm, tokenizer.encode("<|endofchunk|>")[-1], tokenizer.encode("<image>")[-1], vis_dim=64
    ).eval()
    open_gates(model)
    return model, tokenizer


def test_apply_compat_fixes_plain_model_and_is_idempotent():
    original_forward = FlamingoLMMixin.forward
    model, tokenizer = _plain_open_flamingo()
    ids = tokenizer("<image>Output:", return_tensors="pt").input_ids
    vision_x = torch.zeros(1, 1, 1, 3, 32, 32)
    with pytest.raises(TypeError, match="attention_mask"):  # transformers 5 drops an all-ones mask
        model.generate(vision_x=vision_x, lang_x=ids, max_new_tokens=2, pad_token_id=tokenizer.pad_token_id)
    uncache_media(model)

    assert apply_compat(model) is model and is_compat(model)
    classes = (type(model), type(model.lang_encoder))
    apply_compat(apply_compat(model))
    assert (type(model), type(model.lang_encoder)) == classes  # idempotent: no nesting
    assert sum(klass is CompatFlamingoLMMixin for klass in type(model.lang_encoder).__mro__) == 1
    assert "position_ids" in inspect.signature(model.lang_encoder.forward).parameters  # generate builds them
    out = model.generate(vision_x=vision_x, lang_x=ids, max_new_tokens=2, pad_token_id=tokenizer.pad_token_id)
    assert out.shape == (1, ids.shape[1] + 2) and not media_is_cached(model)
    # Instances only: the class open_flamingo ships is untouched, other models keep its behaviour.
    assert FlamingoLMMixin.forward is original_forward
    other, _ = _plain_open_flamingo()
    assert not is_compat(other)


def test_batched_left_padded_generate_gets_position_ids():
    """generate sees the LM's signature, so it builds position_ids from the mask for padded rows.

    (With RoPE LMs a constant position shift is harmless, so equality of outputs alone would
    not show this; models with absolute positions, such as OPT, need it.)
    """
    tiny = build_tiny_flamingo(seed=3)
    tok, model = tiny.tokenizer, tiny.model
    short, long_ = "<image>Output:", "<image>Output:cat<|endofchunk|><image>Output:"
    batch = tok([short, long_], return_tensors="pt", padding=True)
    pixels = torch.stack([tiny.image_processor(make_test_image(i)) for i in range(3)])
    vision_x = torch.zeros(2, 2, 1, 3, 32, 32)
    vision_x[0, 0, 0], vision_x[1, :, 0] = pixels[2], pixels[:2]  # row 0's single image first
    seen = []
    hook = model.lang_encoder.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs.get("position_ids")), with_kwargs=True
    )
    kwargs = dict(max_new_tokens=3, pad_token_id=tok.pad_token_id, do_sample=False)
    try:
        with torch.inference_mode():
            together = model.generate(
                vision_x=vision_x, lang_x=batch.input_ids, attention_mask=batch.attention_mask, **kwargs
            )
            alone = model.generate(
                vision_x=vision_x[:1, :1], lang_x=tok(short, return_tensors="pt").input_ids, **kwargs
            )
    finally:
        hook.remove()
    pads = int((batch.attention_mask[0] == 0).sum())
    assert seen[0] is not None and seen[0][0].tolist() == [0] * pads + list(range(batch.input_ids.shape[1] - pads))
    assert together[0, -3:].tolist() == alone[0, -3:].tolist()


# --------------------------------------------------------------------------- checkpoints and loading


def _release_style_checkpoint(model: Flamingo) -> dict[str, torch.Tensor]:
    """What open_flamingo's training saved: perceiver, per-layer gated xattn and embeddings only,
    with transformers-4 names (GPT-NeoX's output embedding was ``embed_out``, now ``lm_head``)."""
    state = {
        key.replace("lang_encoder.lm_head.", "lang_encoder.embed_out."): value
        for key, value in model.state_dict().items()
    }
    return {
        key: value
        for key, value in state.items()
        if key.startswith("perceiver.") or ".gated_cross_attn_layer." in key or "embed" in key
        if "gated_cross_attn_layers." not in key and "old_decoder_blocks" not in key
    }


def test_checkpoint_key_check(tiny):
    model = tiny.model
    legacy = _release_style_checkpoint(model)
    with pytest.raises(CheckpointMismatchError) as error:  # transformers-4 names do not fit as they are
        check_checkpoint_keys(model, legacy)
    assert error.value.unexpected == ["lang_encoder.embed_out.weight"]
    state = remap_legacy_keys(model, legacy)
    assert "lang_encoder.lm_head.weight" in state
    check_checkpoint_keys(model, state)  # a release-style checkpoint passes once renamed
    check_checkpoint_keys(model, model.state_dict())  # so does a full one
    without = {k: v for k, v in state.items() if k != "perceiver.layers.0.0.to_q.weight"}
    with pytest.raises(CheckpointMismatchError) as error:
        check_checkpoint_keys(model, without)
    assert error.value.missing == ["perceiver.layers.0.0.to_q.weight"]
    assert "perceiver.layers.0.0.to_q.weight" in str(error.value)
    xattn = next(k for k in state if ".gated_cross_attn_layer.attn_gate" in k)
    with pytest.raises(CheckpointMismatchError, match="attn_gate"):
        check_checkpoint_keys(model, {k: v for k, v in state.items() if k != xattn})
    with pytest.raises(CheckpointMismatchError) as error:
        check_checkpoint_keys(
            model, {**state, "lang_encoder.transformer.blocks.0.gated_cross_attn_layer.x": state[xattn]}
        )
    assert error.value.unexpected == ["lang_encoder.transformer.blocks.0.gated_cross_attn_layer.x"]
    assert isinstance(error.value, PercepRagError)


def test_checkpoint_roundtrip(tiny, clf, tmp_path):
    path = tmp_path / "checkpoint.pt"
    torch.save(_release_style_checkpoint(tiny.model), path)
    other = build_tiny_flamingo(seed=5)
    other.model.vision_encoder.load_state_dict(tiny.model.vision_encoder.state_dict())  # releases omit the tower
    pairs = zip(other.model.lang_encoder.old_decoder_blocks, tiny.model.lang_encoder.old_decoder_blocks, strict=True)
    for mine, theirs in pairs:
        mine.load_state_dict(theirs.state_dict())  # ... and the frozen LM blocks
    other.model.lang_encoder.gpt_neox.final_layer_norm.load_state_dict(
        tiny.model.lang_encoder.gpt_neox.final_layer_norm.state_dict()
    )
    load_flamingo_checkpoint(other.model, path)
    loaded = FewShotClassifier.from_bundle(other)
    query = make_test_image(6)
    np.testing.assert_allclose(
        loaded.score_classes(SHOTS, query, CLASS_NAMES), clf.score_classes(SHOTS, query, CLASS_NAMES), atol=1e-6
    )


def test_loader_names_every_missing_file(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "clip").mkdir()
    (tmp_path / "lm").mkdir()
    with pytest.raises(WeightsNotFoundError) as error:
        load_openflamingo(
            tmp_path / "ckpt" / "checkpoint.pt", vision_weights=tmp_path / "clip" / "clip.bin", lang=tmp_path / "lm"
        )
    message = str(error.value)
    for expected in (
        "3 part(s) missing",
        "ckpt/checkpoint.pt",
        "clip/clip.bin",
        "lm/config.json",
        "lm/tokenizer.json",
        "lm/model.safetensors",
    ):
        assert expected in message, expected
    with pytest.raises(WeightsNotFoundError) as error:  # nothing given: names the lookup places
        load_openflamingo()
    message = str(error.value)
    for expected in (
        "openflamingo/OpenFlamingo-4B-vitl-rpj3b",
        "checkpoint.pt",
        "OpenFlamingo-4B-vitl-rpj3b.pt",
        "timm/vit_large_patch14_clip_224.openai",
        "togethercomputer/RedPajama-INCITE-Base-3B-v1",
    ):
        assert expected in message, expected


def test_loader_refuses_known_traps():
    with pytest.raises(ConfigError, match="quickgelu"):
        load_openflamingo(vision="ViT-L-14")
    with pytest.raises(ConfigError, match="remote-code"):
        load_openflamingo(release="OpenFlamingo-9B-vitl-mpt7b")
    with pytest.raises(ConfigError, match="unknown OpenFlamingo release"):
        load_openflamingo(release="OpenFlamingo-1T")
