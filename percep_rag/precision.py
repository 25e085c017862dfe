"""Which floating-point type a model computes in, per device: the ONE place that decides it.

bf16 pays off on a CPU only with native bf16 matrix units (Intel AMX, or AVX-512 BF16);
elsewhere (AVX2, most AMD and ARM servers) it is emulated and slower than fp32, so
``"auto"`` picks bf16 on such CPUs and on CUDA, fp32 otherwise. ``$PERCEP_RAG_CPU_BF16``
(``1``/``0``) overrides the detection, e.g. to test both paths on any machine.

>>> resolve_precision("fp32", "cpu")
torch.float32
>>> resolve_precision("auto", "cpu", cpu_bf16=False)
torch.float32
>>> resolve_precision("auto", "cpu", cpu_bf16=True)
torch.bfloat16
>>> resolve_precision("auto", "cuda")
torch.bfloat16
"""

from __future__ import annotations

import contextlib
import copy
import functools
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from percep_rag.config import PRECISIONS, Precision
from percep_rag.errors import ConfigError
from percep_rag.fused_attention import use_sdpa_attention
from percep_rag.fused_mlp import fold_quick_gelu

__all__ = [
    "BF16_ENV",
    "FAST_BF16_CPU_FLAGS",
    "autocast",
    "compute_copy",
    "cpu_compute_copy",
    "cpu_flags",
    "cpu_has_fast_bf16",
    "cpu_precision_summary",
    "resolve_precision",
]

#: ``/proc/cpuinfo`` flags of native bf16 matrix/vector units (Intel AMX, AVX-512 BF16 on Intel and AMD Zen 4+).
FAST_BF16_CPU_FLAGS: tuple[str, ...] = ("amx_bf16", "avx512_bf16")
#: Environment variable that forces the CPU detection: ``1`` (bf16 is fast) or ``0`` (it is not).
BF16_ENV = "PERCEP_RAG_CPU_BF16"
_CPUINFO = Path("/proc/cpuinfo")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags Linux reports (empty elsewhere: then no CPU counts as bf16-fast).

    >>> isinstance(cpu_flags(), frozenset)
    True
    """
    try:
        text = _CPUINFO.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def cpu_has_fast_bf16() -> bool:
    """True when this CPU computes bf16 natively (AMX or AVX-512 BF16), or ``$PERCEP_RAG_CPU_BF16=1``.

    torch's own capability (``torch.backends.cpu.get_cpu_capability()``) stops at ``AVX512``
    and says nothing about bf16 units, so the kernel's flags decide.

    >>> isinstance(cpu_has_fast_bf16(), bool)
    True
    """
    forced = os.environ.get(BF16_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if forced:
        raise ConfigError(f"${BF16_ENV} must be 0 or 1, not {forced!r}")
    if torch.backends.cpu.get_cpu_capability() in ("DEFAULT", "NO AVX"):
        return False
    return any(flag in cpu_flags() for flag in FAST_BF16_CPU_FLAGS)


def cpu_precision_summary() -> str:
    """One line: the CPU, its bf16 feature flags and what ``precision="auto"`` resolves to on it.

    CI prints it, so every test log says which kind of CPU it ran on.

    >>> line = cpu_precision_summary()
    >>> line.startswith("cpu: ") and "precision auto -> " in line
    True
    """
    model = "unknown"
    try:
        for line in _CPUINFO.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    present = [flag for flag in FAST_BF16_CPU_FLAGS if flag in cpu_flags()]
    forced = os.environ.get(BF16_ENV, "").strip()
    source = f"forced by ${BF16_ENV}={forced}" if forced else "detected"
    auto = "bf16" if resolve_precision("auto", "cpu") == torch.bfloat16 else "fp32"
    return (
        f"cpu: {model}; bf16 flags: {', '.join(present) or 'none'} (of {', '.join(FAST_BF16_CPU_FLAGS)}); "
        f"torch capability {torch.backends.cpu.get_cpu_capability()}; precision auto -> {auto} ({source})"
    )


def resolve_precision(precision: Precision, device: str | torch.device, *, cpu_bf16: bool | None = None) -> torch.dtype:
    """The dtype to compute in on ``device``: ``"auto"`` is bf16 on CUDA and on bf16-fast CPUs.

    ``cpu_bf16`` replaces the CPU detection (``None``: :func:`cpu_has_fast_bf16`).
    Other devices (``mps``) compute in fp32 unless ``"bf16"`` is asked for.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision != "auto":
        return torch.bfloat16 if precision == "bf16" else torch.float32
    kind = torch.device(device).type
    if kind == "cuda":
        return torch.bfloat16
    if kind == "cpu":
        fast = cpu_has_fast_bf16() if cpu_bf16 is None else cpu_bf16
        return torch.bfloat16 if fast else torch.float32
    return torch.float32


def autocast(device: torch.device, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """bf16 autocast on ``device`` when ``dtype`` is bf16, else nothing (training and fitting use this).

    >>> with autocast(torch.device("cpu"), torch.bfloat16):
    ...     (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
    torch.bfloat16
    """
    if dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def compute_copy(
    module: nn.Module, dtype: torch.dtype, *, prepare: Callable[[nn.Module], object] | None = None
) -> nn.Module:
    """``module`` itself for fp32, else a copy whose weights are ``dtype`` for inference.

    Weights in bf16 beat autocast on CPUs (no per-call casts of every weight); the fp32
    original stays untouched, so weight digests (the fingerprint) and training see fp32.
    Buffers named ``pixel_mean``/``pixel_std`` stay fp32: pixel normalisation is exact.
    ``prepare`` rewrites the copy in place while it is still fp32 (weights rescaled there round
    once, in the cast), e.g. :func:`percep_rag.fused_mlp.fold_quick_gelu`; fp32 returns the module as it is.

    >>> from percep_rag.backbones import create_backbone
    >>> fast = compute_copy(create_backbone("tiny-vit-random"), torch.bfloat16)
    >>> fast(torch.rand(1, 3, 32, 32)).cls.dtype, fast.branches[0].pixel_mean.dtype
    (torch.bfloat16, torch.float32)
    """
    if dtype == torch.float32:
        return module
    converted = copy.deepcopy(module)
    if prepare is not None:
        prepare(converted)
    converted = converted.to(dtype)
    for name, buffer in module.named_buffers():
        if name.rsplit(".", 1)[-1] in ("pixel_mean", "pixel_std"):
            holder = converted.get_submodule(name.rpartition(".")[0]) if "." in name else converted
            setattr(holder, name.rsplit(".", 1)[-1], buffer.detach().clone())
    return converted.eval()


def cpu_compute_copy(module: nn.Module, dtype: torch.dtype) -> nn.Module:
    """:func:`compute_copy` for a CPU forward: a bf16 copy also runs attention as SDPA and QuickGELU
    as a fused SiLU, what inductor's oneDNN kernels run fastest (issue 40), compiled and eager alike.

    >>> from percep_rag.backbones import create_backbone
    >>> fast = cpu_compute_copy(create_backbone("tiny-clip-random"), torch.bfloat16)
    >>> any(type(m).__name__ == "QuickGELU" for m in fast.modules())
    False
    """
    def rewrite(copy_: nn.Module) -> None:
        use_sdpa_attention(copy_)
        fold_quick_gelu(copy_)

    return compute_copy(module, dtype, prepare=rewrite)
