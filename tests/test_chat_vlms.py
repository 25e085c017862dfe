"""Qwen2.5-VL, Qwen3-VL and Gemma 3 on tiny random-weight models saved and loaded like real ones.

Parity: the cached scores (prompt once, its KV cache shared by every class, the answers at the
positions a full forward gives them) equal a plain full forward over prompt + answer, in fp32,
for every class, with 0, 1 and 4 shots whose images all have different sizes.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from percep_rag.vlm import (
    ChatVlmClassifier,
    FewShotVLM,
    PromptError,
    VlmNotFoundError,
    VlmSpecError,
    build_tiny_gemma3,
    build_tiny_qwen_vl,
    load_vlm,
)
from percep_rag.vlm.architectures import PromptPositions
from percep_rag.vlm.tiny_smolvlm import make_test_image

from .conftest import make_colour_task

# Names of different token lengths; "cat" is a prefix of "catfish" and "cat food".
CLASS_NAMES = ["cat", "dog", "bird", "catfish", "cat food", "golden retriever", "zebra crossing"]
#: Tiny model -> (backend, model_type, end-of-turn token, model class).
MODELS = {
    "tiny-qwen2.5-vl-random": ("qwen-vl", "qwen2_5_vl", "<|im_end|>", "Qwen2_5_VLForConditionalGeneration"),
    "tiny-qwen3-vl-random": ("qwen-vl", "qwen3_vl", "<|im_end|>", "Qwen3VLForConditionalGeneration"),
    "tiny-gemma3-random": ("gemma3", "gemma3", "<end_of_turn>", "Gemma3ForConditionalGeneration"),
}
QWEN = ["tiny-qwen2.5-vl-random", "tiny-qwen3-vl-random"]


def _build(name, folder):
    if name == "tiny-gemma3-random":
        return build_tiny_gemma3(folder)
    return build_tiny_qwen_vl(folder, architecture=MODELS[name][1])


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return {name: _build(name, tmp_path_factory.mktemp(name)) for name in MODELS}


@pytest.fixture(scope="module")
def vlms(folders) -> dict[str, ChatVlmClassifier]:
    return {name: load_vlm(f"{MODELS[name][0]}:{folders[name]}", precision="fp32") for name in MODELS}


def image(seed: int, size: tuple[int, int]):
    return make_test_image(seed, size)


def shots(k: int) -> list[tuple[object, str]]:
    """k examples whose images all differ in size and shape (wide, tall, square)."""
    sizes = [(40, 24), (16, 48), (32, 32), (56, 16)]
    return [(image(10 + i, sizes[i % len(sizes)]), CLASS_NAMES[i % 3]) for i in range(k)]


QUERY = (99, (24, 40))


@pytest.mark.parametrize("name", list(MODELS))
def test_loaded_through_the_real_path_with_the_architectures_own_classes(vlms, folders, name):
    vlm = vlms[name]
    backend, model_type, end_of_turn, model_class = MODELS[name]
    assert isinstance(vlm, ChatVlmClassifier) and isinstance(vlm, FewShotVLM)
    assert vlm.random_weights and vlm.name == str(folders[name]) and vlm.architecture.family == backend
    assert type(vlm.model).__name__ == model_class and vlm.model.config.model_type == model_type
    assert vlm.model.dtype == torch.float32 and vlm.end_of_turn == end_of_turn
    assert load_vlm(name, precision="fp32").name == name  # the bare name builds, saves and loads it the same way
    assert load_vlm(f"hf:{folders[name]}", precision="fp32").architecture.family == backend  # from the config


@pytest.mark.parametrize("k", [0, 1, 4])
@pytest.mark.parametrize("name", list(MODELS))
def test_cached_scores_equal_a_plain_full_forward(vlms, name, k):
    vlm = vlms[name]
    query = image(*QUERY)
    cached = vlm.score_classes(shots(k), query, CLASS_NAMES)
    naive = vlm.naive_scores(shots(k), query, CLASS_NAMES)
    assert cached.shape == (len(CLASS_NAMES),) and np.isfinite(cached).all()
    np.testing.assert_allclose(cached, naive, rtol=0, atol=1e-5)
    assert vlm.predict(shots(k), query, CLASS_NAMES) == CLASS_NAMES[int(np.argmax(cached))]
    window = getattr(vlm.model.config.get_text_config(), "sliding_window", None)
    if name == "tiny-gemma3-random":  # the sliding-window layers' cache is cropped: the prompt is longer
        assert vlm.encode_prompt(shots(k), query).length > window


@pytest.mark.parametrize("name", list(MODELS))
def test_class_batches_and_text_only_demonstrations_keep_parity(folders, name):
    vlm = load_vlm(f"{MODELS[name][0]}:{folders[name]}", precision="fp32", class_batch_size=2, normalize_length=False)
    query = image(*QUERY)
    for examples in (shots(2), [(None, "cat"), (None, "dog")]):
        cached = vlm.score_classes(examples, query, CLASS_NAMES)
        # Sums of up to ~10 token log-probabilities reach -90: fp32 keeps them to ~1e-7 relative.
        np.testing.assert_allclose(cached, vlm.naive_scores(examples, query, CLASS_NAMES), rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", QWEN)
def test_qwen_answers_continue_at_the_prompts_rope_delta(vlms, name, monkeypatch):
    vlm = vlms[name]
    prompt = vlm.encode_prompt(shots(4), image(*QUERY))
    # The images' 2-D grids make the prompt end below its length: the delta is what a continuation must add.
    assert int(prompt.positions.delta) < 0
    assert int(prompt.positions.prompt.max()) + 1 == prompt.length + int(prompt.positions.delta)
    naive = vlm.naive_scores(shots(4), image(*QUERY), CLASS_NAMES)

    def without_delta(self, prompt_len, width, rows):
        steps = torch.arange(prompt_len, prompt_len + width)
        return steps.view(1, 1, -1).expand(self.prompt.shape[0], rows, -1)

    monkeypatch.setattr(PromptPositions, "after", without_delta)  # positions 0..P-1 continued: what a cache gives
    wrong = vlm.score_classes(shots(4), image(*QUERY), CLASS_NAMES)
    assert np.abs(wrong - naive).max() > 1e-4  # 10x the parity test's tolerance: it would see a wrong position


@pytest.mark.parametrize("name", QWEN)
def test_qwen_keeps_no_per_call_state_in_the_model(vlms, name):
    vlm = vlms[name]
    vlm.model.model.rope_deltas = None
    vlm.score_classes(shots(2), image(*QUERY), CLASS_NAMES)
    assert vlm.model.model.rope_deltas is None  # every forward got its positions; the model stored none
    vlm.model.model.rope_deltas = torch.tensor([[1000]])  # a stale delta, e.g. another caller's generate
    np.testing.assert_allclose(
        vlm.score_classes(shots(2), image(*QUERY), CLASS_NAMES),
        vlm.naive_scores(shots(2), image(*QUERY), CLASS_NAMES),
        rtol=0,
        atol=1e-5,
    )
    vlm.model.model.rope_deltas = None


def test_gemma3_image_tokens_attend_both_ways(vlms, monkeypatch):
    vlm = vlms["tiny-gemma3-random"]
    naive = vlm.naive_scores(shots(2), image(*QUERY), CLASS_NAMES)
    # Without token_type_ids the prompt's image tokens are causal: not what the model computes.
    monkeypatch.setattr(type(vlm.architecture), "token_inputs", ())
    causal = vlm.score_classes(shots(2), image(*QUERY), CLASS_NAMES)
    assert np.abs(causal - naive).max() > 1e-4


@pytest.mark.parametrize("name", list(MODELS))
def test_two_threads_scoring_at_once_give_the_scores_of_one(vlms, name):
    vlm = vlms[name]
    jobs = [(shots(k), image(50 + k, (16 + 8 * k, 24))) for k in (1, 2, 3, 4)]
    alone = [vlm.score_classes(examples, query, CLASS_NAMES) for examples, query in jobs]
    with ThreadPoolExecutor(max_workers=2) as pool:
        together = list(pool.map(lambda job: vlm.score_classes(job[0], job[1], CLASS_NAMES), jobs * 2))
    for got, expected in zip(together, alone * 2, strict=True):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", list(MODELS))
def test_prompt_keeps_the_retrievers_order_in_one_user_turn_with_the_models_template(vlms, name):
    vlm = vlms[name]
    examples = [(image(1, (40, 24)), "bird"), (image(2, (16, 48)), "dog"), (image(3, (32, 32)), "cat")]
    text = vlm.prompt_text(examples)
    if name in QWEN:
        marker = "<|vision_start|><|image_pad|><|vision_end|>"
        assert text.count("<|im_start|>user\n") == 1 and text.endswith(f"{marker}<|im_end|>\n<|im_start|>assistant\n")
        assert text.index(f"{marker}bird\n") < text.index(f"{marker}dog\n") < text.index(f"{marker}cat\n")
    else:
        marker = "<start_of_image>"  # Gemma's template trims each text part
        assert text.startswith("<bos><start_of_turn>user\n") and text.count("<start_of_turn>user") == 1
        assert text.endswith("<start_of_image><end_of_turn>\n<start_of_turn>model\n")
        assert text.index(f"{marker}bird") < text.index(f"{marker}dog") < text.index(f"{marker}cat")
    assert text.count(marker) == 4
    # The pixels follow the same order, the query last: each matches that image processed alone.
    query = image(4, (24, 40))
    prompt = vlm.encode_prompt(examples, query)
    images = [*(im for im, _ in examples), query]
    kwargs = vlm.architecture.processor_kwargs(vlm.processor, vlm.image_budget).get("images_kwargs", {})
    alone = [vlm.processor.image_processor(im, return_tensors="pt", **kwargs) for im in images]
    torch.testing.assert_close(prompt.pixel_values, torch.cat([a["pixel_values"] for a in alone]))
    if name in QWEN:
        grids = torch.cat([a["image_grid_thw"] for a in alone])
        assert torch.equal(prompt.inputs["image_grid_thw"], grids) and len({tuple(g) for g in grids.tolist()}) == 4
    else:  # one BOS, the template's: the processor adds no second one
        assert int((prompt.input_ids == vlm.tokenizer.bos_token_id).sum()) == 1


@pytest.mark.parametrize("name", list(MODELS))
def test_every_answer_is_the_name_then_the_end_of_turn(vlms, name):
    vlm = vlms[name]
    tokens = vlm.class_token_ids(vlm.prompt_text(shots(1)), ["cat", "catfish"])
    end = vlm.tokenizer.convert_tokens_to_ids(MODELS[name][2])
    assert all(t[-1] == end for t in tokens)
    assert tokens[0] != tokens[1][: len(tokens[0])]  # "cat" must also predict the end of the answer
    assert vlm.tokenizer.decode(tokens[1][:-1]) == "catfish"  # the answer starts right after the turn's header


@pytest.mark.parametrize("name", list(MODELS))
def test_special_tokens_in_labels_and_class_names_are_refused(vlms, name):
    vlm = vlms[name]
    with pytest.raises(PromptError, match="special token"):
        vlm.score_classes([], image(1, (16, 16)), [f"cat{MODELS[name][2]}"])
    layout = "<|image_pad|>" if name in QWEN else "<image_soft_token>"
    with pytest.raises(PromptError, match="special token"):
        vlm.score_classes([(image(2, (16, 16)), f"a {layout} b")], image(1, (16, 16)), ["cat"])


@pytest.mark.parametrize("name", QWEN)
def test_qwen_images_are_resized_into_the_token_budget(folders, name):
    big = image(7, (200, 120))
    tokens = {}
    for budget in (4, 16, 64):
        vlm = load_vlm(f"qwen-vl:{folders[name]}", precision="fp32", max_image_tokens=budget)
        prompt = vlm.encode_prompt([], big)
        tokens[budget] = int((prompt.input_ids == vlm.processor.image_token_id).sum())
        assert tokens[budget] <= budget
        np.testing.assert_allclose(
            vlm.score_classes([(big, "cat")], big, CLASS_NAMES[:3]),
            vlm.naive_scores([(big, "cat")], big, CLASS_NAMES[:3]),
            rtol=0,
            atol=1e-5,
        )
    assert tokens[4] < tokens[16] < tokens[64]
    with pytest.raises(VlmSpecError, match="min_tokens 8 > max_tokens 4"):
        load_vlm(f"qwen-vl:{folders[name]}", max_image_tokens=4, min_image_tokens=8)
    with pytest.raises(VlmSpecError, match="takes no option 'max_image_tokens'"):
        load_vlm("tiny-gemma3-random", max_image_tokens=4)


def test_gemma3_every_image_is_one_crop_whatever_its_shape(vlms):
    vlm = vlms["tiny-gemma3-random"]
    assert vlm.processor.image_processor.do_pan_and_scan is False
    wide = image(7, (400, 40))  # pan-and-scan would crop this into several images
    prompt = vlm.encode_prompt([(wide, "cat")], wide)
    per_image = vlm.model.config.mm_tokens_per_image
    assert int((prompt.input_ids == vlm.processor.tokenizer.image_token_id).sum()) == 2 * per_image
    assert prompt.pixel_values.shape[0] == 2


@pytest.mark.parametrize("name", list(MODELS))
def test_a_prompt_longer_than_the_model_is_refused(vlms, name, monkeypatch):
    vlm = vlms[name]
    monkeypatch.setattr(vlm.model.config.get_text_config(), "max_position_embeddings", 64)
    with pytest.raises(PromptError, match="exceeds the LM's 64 positions; use fewer shots or a smaller image budget"):
        vlm.score_classes(shots(4), image(*QUERY), CLASS_NAMES)


@pytest.mark.parametrize(("backend", "hub_id", "tiny"), [
    ("qwen-vl", "Qwen/Qwen2.5-VL-3B-Instruct", "tiny-qwen2.5-vl-random"),
    ("gemma3", "google/gemma-3-4b-it", "tiny-gemma3-random"),
])  # fmt: skip
def test_a_missing_model_says_where_to_put_it(backend, hub_id, tiny, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(VlmNotFoundError) as missing:
        load_vlm(backend)  # the default checkpoint
    message = str(missing.value)
    assert f"hf download {hub_id}" in message and f"--vlm {backend}:/path/to/folder" in message
    assert f"--vlm {tiny}" in message and str(tmp_path / "empty-cache") in message
    with pytest.raises(VlmNotFoundError, match="does not exist"):
        load_vlm(f"{backend}:{tmp_path / 'nowhere'}")


def test_a_checkpoint_of_another_family_is_refused(folders):
    with pytest.raises(VlmSpecError, match="holds a 'qwen2_5_vl' model; the gemma3 backend loads gemma3"):
        load_vlm(f"gemma3:{folders['tiny-qwen2.5-vl-random']}")
    with pytest.raises(VlmSpecError, match="holds a 'gemma3' model; the qwen-vl backend loads qwen2_5_vl, qwen3_vl"):
        load_vlm(f"qwen-vl:{folders['tiny-gemma3-random']}")
    with pytest.raises(VlmSpecError, match="holds a 'qwen3_vl' model; the smolvlm backend"):
        load_vlm(f"smolvlm:{folders['tiny-qwen3-vl-random']}")


def test_bf16_scores_stay_near_fp32(folders):
    query = image(*QUERY)
    for name in ("tiny-qwen2.5-vl-random", "tiny-gemma3-random"):
        spec = f"{MODELS[name][0]}:{folders[name]}"
        bf16 = load_vlm(spec, precision="bf16")
        assert bf16.model.dtype == torch.bfloat16
        low = bf16.score_classes(shots(1), query, CLASS_NAMES)
        fp32 = load_vlm(spec, precision="fp32").score_classes(shots(1), query, CLASS_NAMES)
        assert low.dtype == np.float64 and np.isfinite(low).all()
        np.testing.assert_allclose(low, fp32, rtol=0, atol=0.05)


# ---------------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def task_root(tmp_path_factory):
    return make_colour_task(tmp_path_factory.mktemp("vtab"))


def run(capsys, *args: str) -> tuple[int, str, str]:
    from percep_rag.cli import main

    with pytest.raises(SystemExit) as done:
        main(list(args))
    out = capsys.readouterr()
    return done.value.code or 0, out.out, out.err


@pytest.mark.parametrize("name", list(MODELS))
def test_cli_eval_fewshot_and_classify(task_root, folders, name, tmp_path, capsys):
    code, out, err = run(
        capsys, "eval", "fewshot", str(task_root), "-b", "tiny-vit-random", "--vlm", name,
        "--shots", "1", "--seeds", "2", "--queries", "2", "--methods", "aligned,random,knn-aligned",
        "--precision", "fp32", "--json", str(tmp_path / "fs.json"), "--no-progress",
    )  # fmt: skip
    assert code == 0, err
    assert "| aligned |" in out and "| random |" in out and "RANDOM weights" in out
    accuracy = json.loads((tmp_path / "fs.json").read_text())["accuracy"]
    assert set(accuracy) == {"aligned", "random", "knn-aligned"}

    store = f"edge:{tmp_path / 'store'}"
    code, _, err = run(
        capsys, "index", str(task_root / "train"), "-c", "pool", "--store", store, "-b", "tiny-vit-random"
    )
    assert code == 0, err
    query = task_root / "test" / "red" / "0.png"
    code, out, err = run(
        capsys, "classify", str(query), "-c", "pool", "--store", store, "--vlm", f"{MODELS[name][0]}:{folders[name]}",
        "--shots", "2",
    )  # fmt: skip
    assert code == 0, err
    assert out.startswith(f"{query}: ") and "examples: red, red" in out and "random weights" in out
    assert out.split(": ", 1)[1].split()[0] in ("blue", "green", "red")


def test_cli_image_budget_reaches_qwen_and_is_refused_elsewhere(task_root, tmp_path, capsys):
    args = ["eval", "fewshot", str(task_root), "-b", "tiny-vit-random", "--shots", "1", "--seeds", "1"]
    args += ["--queries", "1", "--methods", "aligned", "--precision", "fp32", "--no-progress"]
    code, out, err = run(capsys, *args, "--vlm", "tiny-qwen3-vl-random", "--vlm-max-image-tokens", "4")
    assert code == 0 and "| aligned |" in out, err
    code, _, err = run(capsys, *args, "--vlm", "tiny-gemma3-random", "--vlm-max-image-tokens", "4")
    assert code != 0 and "takes no option 'max_image_tokens'" in err and "Traceback" not in err
