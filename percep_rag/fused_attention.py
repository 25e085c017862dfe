"""Self-attention through ``scaled_dot_product_attention`` inside compiled graphs.

open_clip's towers use ``nn.MultiheadAttention``. Eagerly its fused inference path is the
fastest torch has on CPU, but ``torch.compile`` lowers it to ``bmm`` + ``softmax`` + ``bmm``;
written as ``F.scaled_dot_product_attention`` instead, inductor calls the flash-attention
kernel for CPU (bf16 on AMX), and with freezing the projections become prepacked oneDNN
linears (benchmarks/RESULTS.md, issue 40). :class:`SdpaSelfAttention` keeps the eager path
as it was and takes the SDPA form only while being compiled, so swapping it in costs an
eager caller nothing.

>>> block = torch.nn.Sequential(torch.nn.MultiheadAttention(8, 2, batch_first=True))
>>> use_sdpa_attention(block)
1
>>> x = torch.rand(1, 3, 8)
>>> block[0](x, x, x, need_weights=False)[0].shape
torch.Size([1, 3, 8])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SdpaSelfAttention", "use_sdpa_attention"]


class SdpaSelfAttention(nn.Module):
    """Wraps a batch-first ``nn.MultiheadAttention``; its self-attention calls without a mask,
    when compiled, run as one ``scaled_dot_product_attention`` (same weights, same result).
    Every other call (eager, cross-attention, masks, attention weights) goes to the wrapped module."""

    def __init__(self, attention: nn.MultiheadAttention):
        super().__init__()
        if not (attention.batch_first and attention._qkv_same_embed_dim and attention.in_proj_weight is not None):
            raise ValueError("only batch-first self-attention with one fused input projection can be wrapped")
        self.attention = attention

    def forward(self, query, key=None, value=None, need_weights=True, attn_mask=None, **kwargs):
        attention = self.attention
        plain = key is query and value is query and attn_mask is None and not need_weights and not kwargs
        if not (plain and torch.compiler.is_compiling()) or attention.dropout and self.training:
            return attention(query, key, value, need_weights=need_weights, attn_mask=attn_mask, **kwargs)
        batch, length, width = query.shape
        heads = attention.num_heads
        qkv = F.linear(query, attention.in_proj_weight, attention.in_proj_bias)
        q, k, v = qkv.view(batch, length, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, length, width)
        return F.linear(out, attention.out_proj.weight, attention.out_proj.bias), None


def use_sdpa_attention(module: nn.Module) -> int:
    """Wrap every batch-first self-attention ``nn.MultiheadAttention`` under ``module`` in place
    (for an inference copy: parameter names change); returns how many were wrapped."""
    swapped = 0
    for name, child in module.named_children():
        if type(child) is nn.MultiheadAttention and child.batch_first and child._qkv_same_embed_dim:
            setattr(module, name, SdpaSelfAttention(child))
            swapped += 1
        elif not isinstance(child, SdpaSelfAttention):
            swapped += use_sdpa_attention(child)
    return swapped
