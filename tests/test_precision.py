"""bf16 on CPUs with native bf16: detection, the fp32 fallback, and vectors that agree with fp32."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from percep_rag import AlignedEmbedder, EmbedderSpec, create_backbone
from percep_rag import precision as precision_module
from percep_rag.alignment.glocal import GlocalFitConfig, fit_glocal
from percep_rag.alignment.lora import LoraFitConfig, fit_lora, path_resolver
from percep_rag.alignment.metrics import two_afc_from_embeddings
from percep_rag.cli import main
from percep_rag.config import Fingerprint
from percep_rag.errors import ConfigError
from percep_rag.fewshot.evaluate import load_vlm
from percep_rag.precision import BF16_ENV, cpu_has_fast_bf16, resolve_precision
from percep_rag.vlm.openflamingo import tiny
from percep_rag.vlm.openflamingo.tiny import build_tiny_flamingo, make_test_image

from .test_glocal import make_world, two_afc_judgments
from .test_lora import N_IMAGES, tint_world  # noqa: F401  (tint_world is a fixture)

PIXELS = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def _forward_dtype(embedder: AlignedEmbedder, aligned: bool = False) -> torch.dtype:
    module = embedder._aligned_forward if aligned else embedder._base_forward
    return next(module.eager.parameters()).dtype


@pytest.fixture
def unforced(monkeypatch):
    monkeypatch.delenv(BF16_ENV, raising=False)


@pytest.mark.parametrize(
    ("flags", "capability", "fast"),
    [
        ({"avx", "avx2", "fma"}, "AVX2", False),  # this kind of machine (AMD EPYC, AVX2 only)
        ({"avx2", "avx512f", "avx512_bf16"}, "AVX512", True),
        ({"avx2", "avx512f", "amx_bf16", "amx_tile"}, "AVX512", True),
        ({"amx_bf16"}, "NO AVX", False),
    ],
)
def test_detection_reads_the_cpu_flags(monkeypatch, unforced, flags, capability, fast):
    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    assert cpu_has_fast_bf16() is fast
    assert resolve_precision("auto", "cpu") == (torch.bfloat16 if fast else torch.float32)
    assert resolve_precision("fp32", "cpu") == torch.float32 and resolve_precision("bf16", "cpu") == torch.bfloat16


@pytest.mark.parametrize(("flags", "auto"), [({"avx2"}, "fp32"), ({"avx2", "avx512f", "amx_bf16", "amx_tile"}, "bf16")])
def test_the_ci_line_names_the_bf16_flags_and_what_auto_resolves_to(monkeypatch, unforced, flags, auto):
    from percep_rag.precision import cpu_precision_summary

    monkeypatch.setattr(precision_module, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX512")
    line = cpu_precision_summary()
    assert f"precision auto -> {auto} (detected)" in line and "\n" not in line
    assert ("bf16 flags: amx_bf16 " in line) is (auto == "bf16")
    monkeypatch.setenv(BF16_ENV, "0")
    assert "precision auto -> fp32 (forced by $PERCEP_RAG_CPU_BF16=0)" in cpu_precision_summary()


def test_environment_forces_the_detection(monkeypatch):
    monkeypatch.setenv(BF16_ENV, "1")
    assert resolve_precision("auto", "cpu") == torch.bfloat16
    monkeypatch.setenv(BF16_ENV, "0")
    assert resolve_precision("auto", "cpu") == torch.float32
    monkeypatch.setenv(BF16_ENV, "yes")
    with pytest.raises(ConfigError, match=BF16_ENV):
        cpu_has_fast_bf16()
    with pytest.raises(ConfigError, match="precision must be one of"):
        resolve_precision("fp16", "cpu")  # type: ignore[arg-type]


def test_auto_falls_back_to_fp32_where_bf16_is_not_fast(monkeypatch):
    monkeypatch.setenv(BF16_ENV, "0")
    auto = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random"))
    fp32 = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random", precision="fp32"))
    assert auto.compute_dtype == _forward_dtype(auto) == torch.float32
    np.testing.assert_array_equal(auto.embed_tensors(PIXELS).aligned, fp32.embed_tensors(PIXELS).aligned)
    monkeypatch.setenv(BF16_ENV, "1")
    fast = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random"))
    assert fast.compute_dtype == _forward_dtype(fast) == torch.bfloat16
    assert _forward_dtype(fast) != next(fast.backbone.parameters()).dtype  # the original stays fp32


@pytest.mark.parametrize("pooling", ["cls", "cls+patchmean"])
@pytest.mark.parametrize(
    "backbone", ["tiny-vit-random", "tiny-clip-random", "tiny-openclip-random", "tiny-ensemble-random"]
)
def test_bf16_vectors_agree_with_fp32_and_keep_the_fingerprint(backbone, pooling):
    fp32 = AlignedEmbedder.from_spec(EmbedderSpec(backbone=backbone, pooling=pooling, precision="fp32"))
    bf16 = AlignedEmbedder.from_spec(EmbedderSpec(backbone=backbone, pooling=pooling, precision="bf16"))
    assert _forward_dtype(bf16) == torch.bfloat16
    exact, fast = fp32.embed_tensors(PIXELS), bf16.embed_tensors(PIXELS)
    assert fast.aligned.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(fast.aligned, axis=1), 1.0, atol=1e-5)  # normalised in fp32
    assert not np.array_equal(exact.base, fast.base)  # bf16 really ran
    assert _cosines(exact.base, fast.base).min() >= 0.999
    assert _cosines(exact.aligned, fast.aligned).min() >= 0.999
    assert fp32.fingerprint == bf16.fingerprint
    assert "precision" not in Fingerprint.model_fields


@pytest.fixture(scope="module")
def lora_runs(tint_world, tmp_path_factory):  # noqa: F811
    """The same short LoRA fit in fp32 and under forced bf16 autocast."""
    root, train, val, _ = tint_world
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    runs = {}
    try:
        for precision in ("fp32", "bf16"):
            run = tmp_path_factory.mktemp(f"lora_{precision}")
            config = LoraFitConfig(epochs=2, lr=1e-3, device="cpu", precision=precision)
            fit_lora(
                create_backbone("tiny-vit-random"),
                train.subset(np.arange(200)),
                val,
                run,
                config=config,
                resolve=path_resolver(root),
            )
            runs[precision] = run
    finally:
        torch.set_num_threads(threads)
    return runs


def test_forced_bf16_lora_training_matches_fp32_2afc(tint_world, lora_runs):  # noqa: F811
    root, _, _, test = tint_world
    weights = [load_file(next((run / "adapter").glob("*.safetensors"))) for run in lora_runs.values()]
    assert any(not torch.equal(weights[0][key], weights[1][key]) for key in weights[0])  # autocast changed numbers
    scores = {}
    for precision, run in lora_runs.items():
        spec = EmbedderSpec(backbone="tiny-vit-random", alignment=f"lora:{run}", precision="fp32")
        vectors = AlignedEmbedder.from_spec(spec).embed([str(root / f"{i}.png") for i in range(N_IMAGES)])
        rows = [[int(ref.removesuffix(".png")) for ref in refs] for refs in (test.anchor, test.left, test.right)]
        scores[precision] = two_afc_from_embeddings(*(vectors[r] for r in rows), test.target)
    # 300 held-out triplets: one standard error of a 2AFC near 0.7 is about 0.026.
    assert abs(scores["bf16"] - scores["fp32"]) <= 0.05, scores


def test_lora_merged_copy_takes_the_bf16_path(lora_runs):
    spec = EmbedderSpec(backbone="tiny-vit-random", alignment=f"lora:{lora_runs['fp32']}", pooling="cls")
    fp32 = AlignedEmbedder.from_spec(spec.model_copy(update={"precision": "fp32"}))
    bf16 = AlignedEmbedder.from_spec(spec.model_copy(update={"precision": "bf16"}))
    assert _forward_dtype(bf16, aligned=True) == torch.bfloat16
    exact, fast = fp32.embed_tensors(PIXELS), bf16.embed_tensors(PIXELS)
    assert not np.array_equal(exact.aligned, fast.aligned)
    assert _cosines(exact.aligned, fast.aligned).min() >= 0.999
    assert fp32.fingerprint == bf16.fingerprint


def test_forced_bf16_glocal_fit_matches_fp32_2afc():
    features, human = make_world()
    objects = np.random.default_rng(1).permutation(len(features))
    train = two_afc_judgments(human, objects[:210], 1000, seed=4)
    val = two_afc_judgments(human, objects[210:], 1000, seed=5)
    rows = val.indices()
    scores, maps = {}, {}
    for precision in ("fp32", "bf16"):
        config = GlocalFitConfig(
            epochs=20, device="cpu", triplet_batch_size=None, local_batch_size=None, lr=1e-2, precision=precision
        )
        transform, _ = fit_glocal((features, train), config=config, progress=False)
        aligned = transform.apply_numpy(features)
        maps[precision] = aligned
        scores[precision] = two_afc_from_embeddings(*(aligned[rows[:, i]] for i in range(3)), val.target)
    assert not np.array_equal(maps["fp32"], maps["bf16"])
    # 1000 held-out triplets: one standard error is about 0.014.
    assert abs(scores["bf16"] - scores["fp32"]) <= 0.03, scores


def test_fewshot_ranking_in_bf16_matches_fp32(monkeypatch):
    bundle = build_tiny_flamingo()
    monkeypatch.setattr(tiny, "build_tiny_flamingo", lambda: copy.deepcopy(bundle))
    fp32 = load_vlm("tiny-flamingo-random", precision="fp32")
    bf16 = load_vlm("tiny-flamingo-random", precision="bf16")
    assert next(bf16.model.parameters()).dtype == torch.bfloat16
    names = ["cat", "dog", "red car", "blue boat"]
    examples = [(make_test_image(i), names[i % len(names)]) for i in range(2)]
    for seed in range(2):
        exact = fp32.score_classes(examples, make_test_image(10 + seed), names)
        fast = bf16.score_classes(examples, make_test_image(10 + seed), names)
        assert not np.array_equal(exact, fast)
        assert np.array_equal(np.argsort(-exact), np.argsort(-fast)), (exact, fast)
        assert np.abs(exact - fast).max() < 0.05


def run_cli(*args: str) -> int:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    return done.value.code or 0


def test_cli_precision_option(capsys, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    make_test_image(0).save(folder / "a.png")
    out = tmp_path / "v.npy"
    assert (
        run_cli("embed", str(folder), "-b", "tiny-vit-random", "--precision", "bf16", "-o", str(out), "--no-progress")
        == 0
    )
    assert np.load(out).shape == (1, 64)
    capsys.readouterr()
    assert run_cli("embed", str(folder), "-b", "tiny-vit-random", "--precision", "fp16", "-o", str(out)) == 2
    assert "fp16" in capsys.readouterr().err
