"""AlignedEmbedder: shapes, determinism, normalisation, pooling, inputs, bad images."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from percep_rag import AlignedEmbedder, EmbedderSpec, ImageDecodeError, create_backbone
from percep_rag.io.device_decode import decode_jpegs
from percep_rag.io.loader import preprocess_image
from percep_rag.pooling import normalize, pool

from .conftest import make_image


@pytest.fixture(scope="module")
def tiny() -> AlignedEmbedder:
    return AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random", batch_size=4))


@pytest.mark.parametrize(
    ("backbone", "pooling", "dim"),
    [
        ("tiny-vit-random", "cls", 64),
        ("tiny-vit-random", "cls+patchmean", 128),
        ("tiny-clip-random", "cls", 32),
        ("tiny-ensemble-random", "cls", 128),
        ("tiny-ensemble-random", "cls+patchmean", 256),
    ],
)
def test_output_shape_dtype_and_unit_norm(backbone, pooling, dim):
    embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone=backbone, pooling=pooling))
    vectors = embedder.embed([make_image(i) for i in range(3)])
    assert vectors.shape == (3, dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embedder.dim == embedder.base_dim == dim


def test_ensemble_is_centred_then_l2_normalised():
    embedder = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-ensemble-random"))
    vectors = embedder.embed([make_image(1), make_image(2)])
    np.testing.assert_allclose(vectors.mean(axis=1), 0.0, atol=1e-6)
    assert embedder.fingerprint.normalization == "center+l2"


def test_pooling_matches_manual_computation(tiny):
    # fp32 exactness: pinned, since "auto" is bf16 on AMX CPUs.
    embedder = AlignedEmbedder(create_backbone("tiny-vit-random"), pooling="cls+patchmean", precision="fp32")
    pixels = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        tokens = embedder.backbone(pixels.float() / 255)
    expected = normalize(torch.cat([tokens.cls, tokens.patches.mean(1)], dim=1), "l2").numpy()
    np.testing.assert_allclose(embedder.embed_tensors(pixels).base, expected, atol=1e-6)
    np.testing.assert_allclose(pool(tokens, "cls").numpy(), tokens.cls.numpy())


@pytest.mark.parametrize("cpu_bf16", ["0", "1"])
def test_default_precision_pools_like_the_manual_computation_on_either_cpu_kind(monkeypatch, cpu_bf16):
    """The default ("auto") on an AVX2 CPU (fp32: exact) and on an AMX CPU (bf16: cosine >= 0.999)."""
    monkeypatch.setenv("PERCEP_RAG_CPU_BF16", cpu_bf16)
    embedder = AlignedEmbedder(create_backbone("tiny-vit-random"), pooling="cls+patchmean")
    pixels = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        tokens = embedder.backbone(pixels.float() / 255)
    expected = normalize(torch.cat([tokens.cls, tokens.patches.mean(1)], dim=1), "l2").numpy()
    base = embedder.embed_tensors(pixels).base
    if cpu_bf16 == "0":
        assert embedder.compute_dtype == torch.float32
        np.testing.assert_allclose(base, expected, atol=1e-6)
    else:
        assert embedder.compute_dtype == torch.bfloat16 and not np.allclose(base, expected, atol=1e-6)
        assert (base * expected).sum(axis=1).min() >= 0.999


def test_deterministic_across_calls_and_instances(tiny):
    images = [make_image(i) for i in range(5)]
    first = tiny.embed(images)
    np.testing.assert_array_equal(first, tiny.embed(images))
    other = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random", batch_size=2))
    np.testing.assert_allclose(first, other.embed(images), atol=1e-6)
    assert tiny.fingerprint == other.fingerprint


def test_different_seed_changes_fingerprint(tiny):
    other = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random", seed=5))
    assert "weights_digest" in " ".join(tiny.fingerprint.differences(other.fingerprint))
    assert tiny.fingerprint.random_weights


def test_every_input_kind_gives_the_same_vector(tiny, tmp_path):
    image = make_image(7, size=(32, 32))
    path = tmp_path / "x.png"
    image.save(path)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    array = np.array(image)  # writable: torch.from_numpy warns on a read-only array
    tensor = torch.from_numpy(array).permute(2, 0, 1).contiguous()
    inputs = [image, str(path), path, buffer.getvalue(), tensor, tensor.float() / 255, array]
    vectors = np.stack([tiny.embed(item)[0] for item in inputs])
    np.testing.assert_allclose(vectors, np.repeat(vectors[:1], len(inputs), axis=0), atol=1e-6)


def test_identity_alignment_gives_base_equal_aligned(tiny):
    both = tiny.embed_both([make_image(3)])
    np.testing.assert_array_equal(both.base, both.aligned)


def test_bad_image_raises_a_precise_error(tiny, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"definitely not a jpeg")
    with pytest.raises(ImageDecodeError, match="broken.jpg"):
        tiny.embed([make_image(0), str(bad)])


@pytest.mark.parametrize("workers", [0, 2])
def test_embed_many_reports_bad_files_and_keeps_the_good_ones(tiny, tmp_path, workers):
    sources = []
    for i in range(9):
        path = tmp_path / f"{i}.png"
        make_image(i).save(path)
        sources.append(str(path))
    (tmp_path / "empty.png").write_bytes(b"")
    sources.insert(4, str(tmp_path / "empty.png"))
    sources.append(str(tmp_path / "missing.png"))
    result = tiny.__class__(tiny.backbone, num_workers=workers, batch_size=4).embed_many(sources)
    assert result.indices == [i for i in range(len(sources)) if i not in (4, 10)]
    assert [(f.index, "empty" in f.source or "missing" in f.source) for f in result.failures] == [(4, True), (10, True)]
    good = [sources[i] for i in result.indices]
    np.testing.assert_allclose(result.aligned, tiny.embed(good), atol=1e-6)


def test_embed_many_calls_back_per_batch_in_order(tiny):
    seen = []
    images = [make_image(i) for i in range(10)]
    result = tiny.embed_many(images, on_batch=lambda part: seen.extend(part.indices))
    assert seen == result.indices == list(range(10))


def test_device_jpeg_decode_matches_the_pil_path_on_cpu():
    spec = create_backbone("tiny-vit-random").preprocess
    datas, expected = [], []
    for i in range(3):
        buffer = io.BytesIO()
        make_image(i, size=(90, 70)).save(buffer, format="JPEG", quality=95)
        datas.append(buffer.getvalue())
        expected.append(preprocess_image(Image.open(io.BytesIO(datas[-1])).convert("RGB"), spec))
    datas.insert(1, b"\xff\xd8\xff garbage")
    pixels, ok = decode_jpegs(datas, spec, "cpu")
    assert ok == [0, 2, 3]
    difference = (pixels.float() - torch.stack(expected).float()).abs()
    assert pixels.shape == (3, 3, 32, 32) and difference.mean() < 4.0


def test_tensor_input_of_other_size_is_resized(tiny):
    vectors = tiny.embed(torch.rand(2, 3, 50, 70))
    assert vectors.shape == (2, 64)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the error path exists only on CPU-only machines")
def test_cuda_request_without_gpu_is_a_clear_error():
    from percep_rag.errors import ConfigError

    with pytest.raises(ConfigError, match="CUDA is not available"):
        AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random", device="cuda"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_path_matches_cpu_path():
    images = [make_image(i, size=(64, 64)) for i in range(6)]
    cpu = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random", device="cpu")).embed(images)
    gpu = AlignedEmbedder.from_spec(EmbedderSpec(backbone="tiny-vit-random", device="cuda")).embed(images)
    assert np.abs(cpu - gpu).max() < 0.05  # bf16 autocast
