"""QuickGELU MLPs rewritten so that oneDNN fuses the activation into the first linear.

OpenAI's CLIP towers (and DreamSim's CLIP branch) use QuickGELU, ``x * sigmoid(1.702 x)``.
Inductor's oneDNN fusion knows GELU and SiLU as a linear's epilogue, not QuickGELU, so a
frozen bf16 graph ran it as a separate kernel over the widest activation of every block
(6304 x 3072 for ViT-B/16 at batch 32: about half of the time outside the matmuls;
benchmarks/RESULTS.md, issue 40). The identity

    quick_gelu(h) = silu(1.702 h) / 1.702

lets the 1.702 go into ``fc1``'s weight and bias and the 1 / 1.702 into ``fc2``'s weight, and
the activation become :class:`torch.nn.SiLU`, which oneDNN fuses. Exact in real arithmetic;
in bf16 the scaled weights round once, as the unscaled ones did.

>>> from collections import OrderedDict
>>> from open_clip.transformer import QuickGELU
>>> mlp = torch.nn.Sequential(OrderedDict(c_fc=torch.nn.Linear(4, 8), gelu=QuickGELU(), c_proj=torch.nn.Linear(8, 4)))
>>> x = torch.rand(2, 4); expected = mlp(x)
>>> fold_quick_gelu(mlp), type(mlp.gelu).__name__
(1, 'SiLU')
>>> torch.allclose(mlp(x), expected, atol=1e-6)
True
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["QUICK_GELU_ALPHA", "fold_quick_gelu"]

#: QuickGELU's ``sigmoid(alpha * x)`` factor (OpenAI CLIP; open_clip and timm use the same).
QUICK_GELU_ALPHA = 1.702

# (first linear, activation, second linear, layers between them that must be identities at inference)
_OPEN_CLIP_MLP = ("c_fc", "gelu", "c_proj", ("ln",))
_TIMM_MLP = ("fc1", "act", "fc2", ("norm",))


def fold_quick_gelu(module: nn.Module) -> int:
    """Rewrite, in place, every QuickGELU MLP under ``module`` (open_clip's ``mlp`` blocks and
    timm's ``Mlp``) as SiLU between rescaled linears; returns how many were rewritten.

    For an inference copy only: the weights change (their digest too), the function does not.
    MLPs whose layers are not plain ``nn.Linear`` (LoRA wrappers) or that normalise between the
    two linears are left as they are."""
    rewritten = 0
    for block in module.modules():
        layout = _quick_gelu_layout(block)
        if layout is None:
            continue
        first, activation, second = (getattr(block, name) for name in layout)
        with torch.no_grad():
            _scale_(first.weight, QUICK_GELU_ALPHA)
            if first.bias is not None:
                _scale_(first.bias, QUICK_GELU_ALPHA)
            _scale_(second.weight, 1.0 / QUICK_GELU_ALPHA)
        setattr(block, layout[1], nn.SiLU())
        rewritten += 1
    return rewritten


def _quick_gelu_layout(block: nn.Module) -> tuple[str, str, str] | None:
    """The (fc1, activation, fc2) attribute names of a QuickGELU MLP, or ``None`` if ``block`` is not one."""
    if isinstance(block, nn.Sequential):
        layout = _OPEN_CLIP_MLP
        if set(block._modules) - {*layout[:3], *layout[3]}:
            return None
    elif type(block).__name__ == "Mlp" and type(block).__module__.startswith("timm."):
        layout = _TIMM_MLP  # timm's plain Mlp (GluMlp, SwiGLU gate fc1's output: not these)
    else:
        return None
    first, activation, second, between = layout
    if not all(hasattr(block, name) for name in (first, activation, second)):
        return None
    if type(getattr(block, activation)).__name__ != "QuickGELU":
        return None
    if type(getattr(block, first)) is not nn.Linear or type(getattr(block, second)) is not nn.Linear:
        return None
    if any(not isinstance(getattr(block, name, nn.Identity()), nn.Identity) for name in between):
        return None
    return first, activation, second


def _scale_(parameter: torch.Tensor, factor: float) -> None:
    """Multiply in fp32 and round once to the parameter's dtype."""
    parameter.copy_((parameter.float() * factor).to(parameter.dtype))
