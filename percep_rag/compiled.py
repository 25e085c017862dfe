"""A model's forward that may run through ``torch.compile``, with eager as the way back.

Compiling needs a working toolchain (a C++ compiler for inductor on CPU, Triton on CUDA).
Where that fails, the first call warns once and the forward stays eager: slower, never broken.
Errors from the model itself are not swallowed (the eager retry raises them again).

>>> forward = Forward(torch.nn.Identity())
>>> forward.compiled, forward(torch.ones(2)).tolist()
(False, [1.0, 1.0])
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import torch

from percep_rag.quiet import import_compiler_quietly

__all__ = ["CompileFallbackWarning", "Forward"]


class CompileFallbackWarning(RuntimeWarning):
    """``torch.compile`` failed on this machine; the model runs eagerly instead."""


class Forward:
    """Calls ``module`` eagerly, or its ``torch.compile`` d form once :meth:`compile` was called.

    The compiled form is specialised to one input shape (``dynamic=False``): callers pad the
    last, smaller batch rather than compile a second graph. ``freeze=True`` (for inference
    only, on CPU) lets inductor fold the weights into the graph as constants
    (``torch._inductor.config.freezing``): the linears become prepacked oneDNN kernels with
    their bias and activation fused; the weights must not change afterwards. The setting is
    patched in around each compiled call: ``torch.compile(options={"freezing": True})`` is
    silently ignored (torch 2.14: the weights stay graph inputs).
    :attr:`compile_seconds` is the wall time of the first compiled call (the compile and one forward).
    """

    def __init__(self, module: Callable[..., Any], *, compile: bool = False, freeze: bool = False):
        self.eager = module
        self.freeze = freeze
        self.compile_seconds: float | None = None
        self._compiled: Callable[..., Any] | None = None
        self._proven = False  # the compiled form has run once: its errors are the model's now
        if compile:
            self.compile()

    @property
    def compiled(self) -> bool:
        """Whether calls go through the compiled form."""
        return self._compiled is not None

    def compile(self) -> None:
        """Compile on the next call (idempotent; the eager module stays the way back)."""
        if self._compiled is None:
            import_compiler_quietly()  # before inductor imports it, mid-run, with a CUDA warning
            self._compiled = torch.compile(self.eager, dynamic=False)

    def _run_compiled(self, *args: Any) -> Any:
        if not self.freeze:
            return self._compiled(*args)
        from torch._inductor import config as inductor_config

        with inductor_config.patch(freezing=True):  # read when a graph is compiled (first call, any recompile)
            return self._compiled(*args)

    def __call__(self, *args: Any) -> Any:
        if self._compiled is None:
            return self.eager(*args)
        if self._proven:
            return self._run_compiled(*args)
        start = time.perf_counter()
        try:
            out = self._run_compiled(*args)
        except Exception as error:
            if not _is_compile_failure(error):
                raise
            self._compiled = None
            reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
            warnings.warn(
                f"torch.compile failed ({reason}); running eagerly (slower). "
                "On CPU it needs a C++ compiler (g++); pass compile='never' to skip it.",
                CompileFallbackWarning,
                stacklevel=2,
            )
            return self.eager(*args)
        self._proven = True
        self.compile_seconds = time.perf_counter() - start
        return out


def _is_compile_failure(error: Exception) -> bool:
    """Errors raised by dynamo/inductor while compiling (imported here: compiling loaded them already)."""
    from torch._dynamo.exc import TorchDynamoException
    from torch._inductor.exc import CppCompileError

    return isinstance(error, (TorchDynamoException, CppCompileError))
