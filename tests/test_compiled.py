"""torch.compile in the embedder: on CPU only for large jobs, equal vectors, and a way back."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from percep_rag import AlignedEmbedder, EmbedderSpec
from percep_rag.compiled import CompileFallbackWarning, Forward


def tiny_embedder(compile: str, *, min_images: int = 6) -> AlignedEmbedder:
    embedder = AlignedEmbedder.from_spec(
        EmbedderSpec(backbone="tiny-vit-random", device="cpu", batch_size=4, precision="fp32", compile=compile)
    )
    embedder.cpu_compile_min_images = min_images
    return embedder


def pixels(count: int) -> torch.Tensor:
    return torch.randint(0, 256, (count, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_cpu_auto_compiles_for_large_jobs_only_and_keeps_the_vectors():
    eager = tiny_embedder("never").embed_tensors(pixels(10))
    auto = tiny_embedder("auto")
    small = auto.embed_tensors(pixels(3))
    assert not auto.compiled  # a query or two stays eager: compiling would cost more than it saves
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileFallbackWarning)  # this machine compiles (CI has g++)
        large = auto.embed_tensors(pixels(10))  # 10 images: 2 full batches and a padded one
    assert auto.compiled
    np.testing.assert_allclose(large.aligned, eager.aligned, atol=1e-5)
    np.testing.assert_allclose(small.aligned, eager.aligned[:3], atol=1e-5)


def test_never_stays_eager_on_large_jobs():
    embedder = tiny_embedder("never", min_images=1)
    embedder.embed_tensors(pixels(5))
    assert not embedder.compiled


def test_a_failing_compile_warns_once_and_runs_eagerly(monkeypatch):
    from torch._dynamo.exc import TorchDynamoException

    def broken_compile(module, **kwargs):
        def run(*args):
            raise TorchDynamoException("InductorError: no working C++ compiler")

        return run

    expected = tiny_embedder("never").embed_tensors(pixels(7)).aligned
    monkeypatch.setattr(torch, "compile", broken_compile)
    embedder = tiny_embedder("auto")
    with pytest.warns(CompileFallbackWarning, match="running eagerly") as caught:
        got = embedder.embed_tensors(pixels(7)).aligned
    assert len(caught) == 1 and not embedder.compiled
    np.testing.assert_allclose(got, expected, atol=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        embedder.embed_tensors(pixels(7))  # eager from now on: no second warning


def test_errors_of_the_model_itself_are_not_taken_for_compile_failures(monkeypatch):
    def compile_passthrough(module, **kwargs):
        return module

    monkeypatch.setattr(torch, "compile", compile_passthrough)

    def model(x):
        raise ValueError("bad input shape")

    forward = Forward(model, compile=True)
    with pytest.raises(ValueError, match="bad input shape"):
        forward(torch.ones(1))
    assert forward.compiled


def test_indexing_in_chunks_compiles_for_the_whole_job(image_folder):
    from percep_rag.datasets.records import scan_folder
    from percep_rag.indexing import index_records
    from percep_rag.store import StoreSpec, open_store

    records = scan_folder(image_folder)  # 12 images, indexed 4 at a time
    embedder = tiny_embedder("auto", min_images=len(records))
    with open_store(StoreSpec(kind="memory")) as store:
        report = index_records(records, embedder=embedder, store=store, collection="c", chunk_size=4, progress=False)
    assert report.indexed == len(records)
    assert embedder.compiled  # no single chunk is large, the job is


def test_a_frozen_forward_folds_the_weights_into_the_graph():
    from torch._inductor.utils import run_and_get_code

    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.Linear(32, 8)).eval()
    x = torch.rand(4, 16)
    with torch.no_grad():
        expected = model(x)
        frozen, code = run_and_get_code(Forward(model, compile=True, freeze=True), x)
        _, plain = run_and_get_code(Forward(model, compile=True), x)
    torch.testing.assert_close(frozen, expected, atol=1e-5, rtol=1e-4)
    assert "_frozen_param" in "".join(code)  # constants of the graph, not its inputs
    assert "_frozen_param" not in "".join(plain)


# A CUDA build of torch on a machine without a GPU, with a CUDA_HOME: what makes torch's C++
# extension module warn "No CUDA runtime is found" when inductor first imports it.
_CPU_MACHINE_WITH_CUDA_TORCH = """
import os, sys, tempfile
os.environ["CUDA_HOME"] = tempfile.mkdtemp()
import torch
torch.cuda._is_compiled = lambda: True
torch.version.cuda = torch.version.cuda or "13.0"
torch.cuda.is_available = lambda: False
if sys.argv[1] == "compile":
    from percep_rag.compiled import Forward
    Forward(torch.nn.Identity()).compile()
import torch.utils.cpp_extension  # what inductor's first CPU compile imports
print("imported", flush=True)
"""


@pytest.mark.parametrize("how", ["bare", "compile"])
def test_no_cuda_runtime_warning_never_reaches_the_user(how):
    """The bare import shows the setting reproduces the warning; compiling through Forward drops it."""
    import subprocess
    import sys
    from pathlib import Path

    done = subprocess.run(
        [sys.executable, "-c", _CPU_MACHINE_WITH_CUDA_TORCH, how],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0 and "imported" in done.stdout, done.stderr
    warned = "No CUDA runtime is found" in done.stdout + done.stderr
    assert warned == (how == "bare"), done.stderr
