"""QuickGELU folded into SiLU (issue 40): the same function, fused by oneDNN when compiled; and the
CPU forward batch (a decoded batch runs through the network 16 images at a time)."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
import torch
from open_clip.transformer import QuickGELU
from torch import nn

from percep_rag import AlignedEmbedder, EmbedderSpec
from percep_rag.backbones import create_backbone
from percep_rag.fused_mlp import fold_quick_gelu


def test_open_clip_quick_gelu_tower_folds_every_block_and_keeps_its_output():
    tower = create_backbone("tiny-clip-random").eval()  # open_clip ViT with QuickGELU
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        expected = tower(x)
        folded = fold_quick_gelu(tower)
        got = tower(x)
    assert folded == sum(type(m).__name__ == "ResidualAttentionBlock" for m in tower.modules()) > 0
    assert not any(type(m).__name__ == "QuickGELU" for m in tower.modules())
    torch.testing.assert_close(got.cls, expected.cls, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got.patches, expected.patches, atol=1e-5, rtol=1e-4)


def test_timm_mlp_with_quick_gelu_folds_and_gelu_glu_and_lora_mlps_stay():
    from timm.layers import GluMlp, Mlp
    from timm.layers.activations import QuickGELU as TimmQuickGELU

    torch.manual_seed(0)
    quick = Mlp(8, 32, act_layer=TimmQuickGELU).eval()
    x = torch.randn(4, 8)
    expected = quick(x)
    assert fold_quick_gelu(quick) == 1 and isinstance(quick.act, nn.SiLU)
    torch.testing.assert_close(quick(x), expected, atol=1e-5, rtol=1e-4)

    gelu = Mlp(8, 32, act_layer=nn.GELU)
    glu = GluMlp(8, 32, act_layer=TimmQuickGELU)  # gates fc1's output: not x * sigmoid(1.702 x) of fc1
    normed = Mlp(8, 32, act_layer=TimmQuickGELU, norm_layer=nn.LayerNorm)  # 1.702 would not pass the norm
    assert [fold_quick_gelu(m) for m in (gelu, glu, normed)] == [0, 0, 0]

    class LoraLinear(nn.Module):  # a wrapper, as peft's: its weights are not fc1's to rescale
        def __init__(self, linear):
            super().__init__()
            self.base_layer = linear

        def forward(self, x):
            return self.base_layer(x)

    wrapped = nn.Sequential(OrderedDict(c_fc=LoraLinear(nn.Linear(8, 32)), gelu=QuickGELU(), c_proj=nn.Linear(32, 8)))
    assert fold_quick_gelu(wrapped) == 0 and isinstance(wrapped.gelu, QuickGELU)


def test_a_sequential_with_more_than_the_mlp_is_not_taken_for_one():
    block = nn.Sequential(
        OrderedDict(c_fc=nn.Linear(8, 32), gelu=QuickGELU(), c_proj=nn.Linear(32, 8), extra=nn.Linear(8, 8))
    )
    assert fold_quick_gelu(block) == 0


def test_the_bf16_embedder_fuses_the_folded_activation_into_the_linear():
    """Frozen and compiled, the activation is the linear's oneDNN epilogue where oneDNN has bf16
    kernels: no sigmoid kernel is left; on any CPU the vectors agree with fp32."""
    from torch._inductor.utils import run_and_get_code

    spec = dict(backbone="tiny-clip-random", precision="bf16", batch_size=4, device="cpu")
    eager = AlignedEmbedder.from_spec(EmbedderSpec(**spec, compile="never"))
    compiled = AlignedEmbedder.from_spec(EmbedderSpec(**spec, compile="always"))
    fp32 = AlignedEmbedder.from_spec(EmbedderSpec(**{**spec, "precision": "fp32"}, compile="never"))
    assert not any(type(m).__name__ == "QuickGELU" for m in compiled._base_forward.eager.modules())
    assert any(type(m).__name__ == "QuickGELU" for m in fp32.backbone.modules())  # the original is untouched
    pixels = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    got, code = run_and_get_code(compiled.embed_tensors, pixels)
    source = "".join(code)
    if torch.ops.mkldnn._is_mkldnn_bf16_supported():  # AVX-512 / AMX: oneDNN has bf16 linears to fuse into
        assert '"swish"' in source or "'swish'" in source
        assert "sigmoid" not in source and "exp(" not in source
    else:  # an AVX2-only CPU: inductor keeps the linears (and the SiLU) as its own kernels
        assert "swish" not in source
    reference = fp32.embed_tensors(pixels).aligned
    for vectors in (got.aligned, eager.embed_tensors(pixels).aligned):
        assert float((vectors * reference).sum(1).min()) > 0.999


@pytest.mark.parametrize("compile", ["never", "always"])
def test_a_decoded_batch_runs_through_the_network_in_forward_batches(compile):
    spec = dict(backbone="tiny-vit-random", precision="fp32", device="cpu")
    large = AlignedEmbedder.from_spec(EmbedderSpec(**spec, batch_size=40, compile=compile))
    small = AlignedEmbedder.from_spec(EmbedderSpec(**spec, batch_size=5, compile="never"))
    large.cpu_forward_batch = 16
    seen: list[int] = []

    class Spy:  # the Forward, counting the images of each call
        def __init__(self, forward):
            self.forward = forward

        def __getattr__(self, name):
            return getattr(self.forward, name)

        def __call__(self, pixels):
            seen.append(len(pixels))
            return self.forward(pixels)

    large._base_forward = Spy(large._base_forward)
    pixels = torch.randint(0, 256, (37, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    got = large.embed_tensors(pixels)
    # 37 = 16 + 16 + 5; compiled, the last one is padded: one graph shape, no recompile
    assert seen == ([16, 16, 16] if compile == "always" else [16, 16, 5])
    expected = small.embed_tensors(pixels)
    assert got.aligned.shape == (37, large.dim)
    np.testing.assert_allclose(got.aligned, expected.aligned, atol=1e-5)
    np.testing.assert_allclose(got.base, expected.base, atol=1e-5)
