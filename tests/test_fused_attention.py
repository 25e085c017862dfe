"""The SDPA self-attention wrapper (issue 40): same result as nn.MultiheadAttention, eager and compiled."""

import torch
from torch import nn

from percep_rag import AlignedEmbedder, EmbedderSpec
from percep_rag.fused_attention import SdpaSelfAttention, use_sdpa_attention


def test_wrapped_attention_matches_multihead_attention_eager_and_compiled():
    torch.manual_seed(0)
    reference = nn.MultiheadAttention(16, 4, batch_first=True).eval()
    holder = nn.Sequential(nn.MultiheadAttention(16, 4, batch_first=True).eval())
    holder[0].load_state_dict(reference.state_dict())
    assert use_sdpa_attention(holder) == 1 and isinstance(holder[0], SdpaSelfAttention)
    x = torch.rand(2, 5, 16)
    expected = reference(x, x, x, need_weights=False)[0]

    def attend(tokens):
        return holder[0](tokens, tokens, tokens, need_weights=False)[0]

    with torch.no_grad():
        torch.testing.assert_close(attend(x), expected)
        torch.testing.assert_close(torch.compile(attend, dynamic=False)(x), expected, atol=1e-5, rtol=1e-4)


def test_bf16_cpu_embedder_compiles_with_sdpa_and_reports_compile_time():
    spec = dict(backbone="tiny-clip-random", precision="bf16", batch_size=4, device="cpu")
    eager = AlignedEmbedder.from_spec(EmbedderSpec(**spec, compile="never"))
    compiled = AlignedEmbedder.from_spec(EmbedderSpec(**spec, compile="always"))
    pixels = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    a, b = eager.embed_tensors(pixels).aligned, compiled.embed_tensors(pixels).aligned
    assert compiled.compiled and compiled.compile_seconds is not None and compiled.compile_seconds > 0
    assert eager.compile_seconds is None
    assert float((a * b).sum(1).min()) > 0.999
    assert any(isinstance(m, SdpaSelfAttention) for m in compiled._base_forward.eager.modules())
