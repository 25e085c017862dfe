"""The SmolVLM / Idefics3 backend on a tiny random-weight model saved and loaded like a real one.

Parity: the cached scores (prompt once, its KV cache shared by every class) equal a plain
full forward over prompt + answer, in fp32, for every class, with 0, 1 and 4 shots.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from percep_rag.vlm import (
    FewShotVLM,
    PromptError,
    SmolVlmClassifier,
    VlmNotFoundError,
    VlmSpecError,
    build_tiny_smolvlm,
    continuation_ids,
    load_vlm,
)
from percep_rag.vlm.smolvlm_loading import RANDOM_WEIGHTS_MARKER
from percep_rag.vlm.tiny_smolvlm import make_test_image

# Names of different token lengths; "cat" is a prefix of "catfish" and "cat food".
CLASS_NAMES = ["cat", "dog", "bird", "catfish", "cat food", "golden retriever", "zebra crossing"]


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return build_tiny_smolvlm(tmp_path_factory.mktemp("tiny-smolvlm"))


@pytest.fixture(scope="module")
def vlm(tiny_folder) -> SmolVlmClassifier:
    return load_vlm(f"smolvlm:{tiny_folder}", precision="fp32")


def shots(k: int) -> list[tuple[object, str]]:
    return [(make_test_image(10 + i), CLASS_NAMES[i % 3]) for i in range(k)]


def test_loaded_through_the_real_path_and_labelled_random(vlm, tiny_folder):
    assert isinstance(vlm, SmolVlmClassifier) and isinstance(vlm, FewShotVLM)
    assert vlm.random_weights and vlm.name == str(tiny_folder)
    assert vlm.model.config.model_type == "idefics3" and vlm.model.dtype == torch.float32
    assert vlm.processor.image_processor.do_image_splitting is False


@pytest.mark.parametrize("k", [0, 1, 4])
def test_cached_scores_equal_a_plain_full_forward(vlm, k):
    query = make_test_image(99)
    cached = vlm.score_classes(shots(k), query, CLASS_NAMES)
    naive = vlm.naive_scores(shots(k), query, CLASS_NAMES)
    assert cached.shape == (len(CLASS_NAMES),)
    np.testing.assert_allclose(cached, naive, rtol=0, atol=1e-5)
    assert vlm.predict(shots(k), query, CLASS_NAMES) == CLASS_NAMES[int(np.argmax(cached))]


def test_class_batches_and_sum_scores_keep_parity(tiny_folder):
    chunked = load_vlm(f"smolvlm:{tiny_folder}", precision="fp32", class_batch_size=2, normalize_length=False)
    query = make_test_image(7)
    cached = chunked.score_classes(shots(2), query, CLASS_NAMES)
    np.testing.assert_allclose(cached, chunked.naive_scores(shots(2), query, CLASS_NAMES), rtol=0, atol=1e-5)
    # Summed log-probabilities: longer answers score lower than their mean would.
    tokens = chunked.class_token_ids(chunked.prompt_text(shots(2)), CLASS_NAMES)
    mean = load_vlm(f"smolvlm:{tiny_folder}", precision="fp32").score_classes(shots(2), query, CLASS_NAMES)
    np.testing.assert_allclose(cached / [len(t) for t in tokens], mean, rtol=0, atol=1e-5)


def test_the_images_change_the_scores(vlm):
    names = ["cat", "dog"]
    a = vlm.score_classes(shots(1), make_test_image(1), names)
    b = vlm.score_classes(shots(1), make_test_image(2), names)
    assert not np.allclose(a, b, rtol=0, atol=1e-7)


def test_prompt_keeps_the_retrievers_order_and_follows_the_chat_template(vlm):
    examples = [(make_test_image(1), "bird"), (make_test_image(2), "dog"), (make_test_image(3), "cat")]
    text = vlm.prompt_text(examples)
    assert text.startswith("<|im_start|>User: ") and text.endswith("<image><end_of_utterance>\nAssistant:")
    assert text.index("<image>bird\n") < text.index("<image>dog\n") < text.index("<image>cat\n")
    assert text.count("<image>") == 4
    # The pixels follow the same order, the query last: each matches that image processed alone.
    prompt = vlm.encode_prompt(examples, make_test_image(4))
    for position, image in enumerate([*(im for im, _ in examples), make_test_image(4)]):
        alone = vlm.processor.image_processor(image, return_tensors="pt")["pixel_values"][0, 0]
        torch.testing.assert_close(prompt.pixel_values[0, position], alone)
    # One tile per image: 1 + 4 tiles of 4 image tokens each, nothing split.
    image_id = vlm.processor.image_token_id
    assert int((prompt.input_ids == image_id).sum()) == 4 * vlm.processor.image_seq_len


def test_text_only_demonstrations_feed_only_the_query_image(vlm):
    examples = [(None, "cat"), (None, "dog")]
    prompt = vlm.encode_prompt(examples, make_test_image(4))
    assert prompt.pixel_values.shape[1] == 1 and vlm.prompt_text(examples).count("<image>") == 1
    cached = vlm.score_classes(examples, make_test_image(4), CLASS_NAMES)
    np.testing.assert_allclose(cached, vlm.naive_scores(examples, make_test_image(4), CLASS_NAMES), atol=1e-5)


def test_every_answer_ends_with_end_of_utterance(vlm):
    prompt = vlm.prompt_text(shots(1))
    tokens = vlm.class_token_ids(prompt, ["cat", "catfish"])
    eou = vlm.tokenizer.convert_tokens_to_ids("<end_of_utterance>")
    assert all(t[-1] == eou for t in tokens)
    # "cat" is a prefix of "catfish" in text; with the end token their answers diverge before the end.
    assert tokens[0] != tokens[1][: len(tokens[0])]
    assert vlm.tokenizer.decode(tokens[1][:-1]) == " catfish"


def test_class_names_and_labels_with_special_tokens_are_refused(vlm):
    with pytest.raises(PromptError, match="special token"):
        vlm.score_classes([], make_test_image(1), ["cat<end_of_utterance>"])
    with pytest.raises(PromptError, match="special token"):
        vlm.score_classes([(make_test_image(2), "a <image> b")], make_test_image(1), ["cat"])
    with pytest.raises(PromptError, match="at least one class"):
        vlm.score_classes([], make_test_image(1), [])
    with pytest.raises(PromptError, match="non-empty"):
        vlm.score_classes([], make_test_image(1), [" "])


def _merging_tokenizer():
    """A BPE without pre-tokenizer whose merge ': ' crosses the prompt/answer boundary."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    letters = sorted(set("Answer: cat"))
    vocab = {"<unk>": 0, **{c: i + 1 for i, c in enumerate(letters)}}
    vocab[": "] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[(":", " ")], unk_token="<unk>"))
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>")


def test_token_boundary_that_merges_falls_back_to_separate_tokens():
    tok = _merging_tokenizer()
    prompt_ids = tok("Answer:", add_special_tokens=False).input_ids
    joined = tok("Answer: cat", add_special_tokens=False).input_ids
    assert joined[: len(prompt_ids)] != prompt_ids  # the merge changed the prompt's last token
    ids, held = continuation_ids(tok, "Answer:", " cat")
    assert not held and ids == tok(" cat", add_special_tokens=False).input_ids
    assert "".join(tok.convert_ids_to_tokens(prompt_ids + ids)) == "Answer: cat"


def test_token_boundary_held_on_the_tiny_tokenizer(vlm):
    prompt = vlm.prompt_text(shots(2))
    for name in CLASS_NAMES:
        ids, held = continuation_ids(vlm.tokenizer, prompt, " " + name)
        assert held and vlm.tokenizer.decode(ids) == " " + name


def test_bf16_forced_and_auto_follows_the_cpu(tiny_folder, monkeypatch):
    bf16 = load_vlm(f"smolvlm:{tiny_folder}", precision="bf16")
    assert bf16.model.dtype == torch.bfloat16
    query = make_test_image(5)
    low = bf16.score_classes(shots(1), query, CLASS_NAMES)
    fp32 = load_vlm(f"smolvlm:{tiny_folder}", precision="fp32").score_classes(shots(1), query, CLASS_NAMES)
    assert low.dtype == np.float64 and np.isfinite(low).all()
    np.testing.assert_allclose(low, fp32, rtol=0, atol=0.05)
    monkeypatch.setenv("PERCEP_RAG_CPU_BF16", "1")
    assert load_vlm(f"smolvlm:{tiny_folder}").model.dtype == torch.bfloat16
    monkeypatch.setenv("PERCEP_RAG_CPU_BF16", "0")
    assert load_vlm(f"smolvlm:{tiny_folder}").model.dtype == torch.float32


def test_hub_id_is_found_in_the_local_cache_offline(tiny_folder, tmp_path, monkeypatch):
    import shutil

    from huggingface_hub import constants

    repo = tmp_path / "hub" / "models--someone--tiny-smol"
    snapshot = repo / "snapshots" / ("0" * 40)
    shutil.copytree(tiny_folder, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    loaded = load_vlm("idefics3:someone/tiny-smol", precision="fp32")
    assert loaded.name == "someone/tiny-smol" and loaded.random_weights
    assert loaded.predict([], make_test_image(1), ["cat", "dog"]) in ("cat", "dog")


def test_a_missing_model_says_where_to_put_it(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(VlmNotFoundError) as missing:
        load_vlm("smolvlm")  # the default: SmolVLM-256M-Instruct
    message = str(missing.value)
    assert "hf download HuggingFaceTB/SmolVLM-256M-Instruct" in message
    assert "--vlm smolvlm:/path/to/folder" in message and str(tmp_path / "empty-cache") in message
    with pytest.raises(VlmNotFoundError, match="does not exist"):
        load_vlm(f"smolvlm:{tmp_path / 'nowhere'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(VlmNotFoundError, match="no config.json"):
        load_vlm(f"smolvlm:{tmp_path / 'empty'}")


def test_folder_of_another_architecture_and_a_real_folder_are_told_apart(tiny_folder, tmp_path):
    from transformers import LlamaConfig

    LlamaConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, vocab_size=10).save_pretrained(tmp_path)
    with pytest.raises(VlmSpecError, match="holds a 'llama' model"):
        load_vlm(f"smolvlm:{tmp_path}")
    import shutil

    trained = tmp_path / "trained"
    shutil.copytree(tiny_folder, trained)
    (trained / RANDOM_WEIGHTS_MARKER).unlink()
    assert load_vlm(f"smolvlm:{trained}", precision="fp32").random_weights is False


def test_smolvlm2_classes_load_and_keep_parity(tmp_path):
    pytest.importorskip("num2words", reason="SmolVLMProcessor needs num2words (percep-rag[smolvlm])")
    vlm = load_vlm(f"smolvlm:{build_tiny_smolvlm(tmp_path, architecture='smolvlm')}", precision="fp32")
    assert type(vlm.model).__name__ == "SmolVLMForConditionalGeneration" and vlm.model.config.model_type == "smolvlm"
    query = make_test_image(8)
    cached = vlm.score_classes(shots(2), query, CLASS_NAMES)
    np.testing.assert_allclose(cached, vlm.naive_scores(shots(2), query, CLASS_NAMES), rtol=0, atol=1e-5)
