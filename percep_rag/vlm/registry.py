"""The VLM backends, one registry of them (name -> :class:`VlmBackend`), and :func:`load_vlm`.

A backend's loader imports its heavy dependencies only when called, so listing or parsing
specs needs neither open-flamingo nor a model.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from percep_rag.config import Precision
from percep_rag.registry import Registry
from percep_rag.vlm.base import FewShotVLM, VlmSpec
from percep_rag.vlm.errors import VlmSpecError

__all__ = ["VLM_BACKENDS", "VlmBackend", "list_vlm_backends", "load_vlm", "parse_vlm_spec", "register_vlm_backend"]


@dataclass(frozen=True)
class VlmBackend:
    """One way to load a few-shot VLM.

    ``load(target, device=..., precision=..., **options)`` returns a :class:`FewShotVLM`;
    ``claims(name)`` says whether a bare ``--vlm NAME`` (no ``backend:``) is this backend's.
    """

    name: str
    load: Callable[..., FewShotVLM]
    default_target: str
    description: str
    claims: Callable[[str], bool] = field(default=lambda name: False)

    def options(self) -> list[str]:
        """The backend-specific keyword options its loader takes."""
        skip = {"target", "device", "precision"}
        return [p.name for p in inspect.signature(self.load).parameters.values() if p.name not in skip]


#: Backend name -> :class:`VlmBackend` (add one with :func:`register_vlm_backend`).
VLM_BACKENDS: Registry[VlmBackend] = Registry("VLM backend")


def register_vlm_backend(backend: VlmBackend) -> VlmBackend:
    """Make ``backend`` loadable as ``--vlm <name>:<target>`` and by :func:`load_vlm`."""
    VLM_BACKENDS.register(backend.name, backend)
    return backend


def list_vlm_backends() -> list[str]:
    """Names of the registered VLM backends.

    >>> list_vlm_backends()
    ['openflamingo', 'smolvlm', 'idefics3', 'qwen-vl', 'gemma3', 'hf']
    """
    return VLM_BACKENDS.names()


def parse_vlm_spec(text: str) -> VlmSpec:
    """The backend and target a ``--vlm`` value names.

    >>> parse_vlm_spec("OpenFlamingo-4B-vitl-rpj3b")  # today's bare release names stay OpenFlamingo
    VlmSpec(backend='openflamingo', target='OpenFlamingo-4B-vitl-rpj3b')
    >>> parse_vlm_spec("idefics3:HuggingFaceM4/Idefics3-8B-Llama3").backend
    'idefics3'
    >>> parse_vlm_spec("smolvlm")
    VlmSpec(backend='smolvlm', target=None)
    >>> parse_vlm_spec("gpt-5")
    Traceback (most recent call last):
    ...
    percep_rag.vlm.errors.VlmSpecError: unknown VLM 'gpt-5': use <backend>:<model> with a backend of openflamingo, ...
    """
    text = text.strip() if isinstance(text, str) else text
    if not isinstance(text, str) or not text:
        raise VlmSpecError(f"a VLM spec must be a non-empty string, got {text!r}")
    backend, colon, target = text.partition(":")
    if colon and backend in VLM_BACKENDS:
        if not target.strip():
            raise VlmSpecError(f"VLM spec {text!r} names no model after {backend + ':'!r}")
        return VlmSpec(backend=backend, target=target.strip())
    if not colon and text in VLM_BACKENDS:
        return VlmSpec(backend=text)
    claimed = [backend.name for backend in VLM_BACKENDS.values() if backend.claims(text)]
    if claimed:
        return VlmSpec(backend=claimed[0], target=text)
    examples = "; ".join(f"{b.name}:<{b.description}>" for b in VLM_BACKENDS.values())
    raise VlmSpecError(
        f"unknown VLM {text!r}: use <backend>:<model> with a backend of {', '.join(VLM_BACKENDS.names())} "
        f"({examples}), "
        f"a released OpenFlamingo name, or a test model (tiny-flamingo-random, {', '.join(TINY_CHAT_MODELS)})"
    )


def load_vlm(spec: str | VlmSpec, *, device: str = "cpu", precision: Precision = "auto", **options: Any) -> FewShotVLM:
    """The few-shot VLM ``spec`` names, on ``device``, computing in ``precision``.

    ``precision="auto"`` is bf16 on CUDA and on CPUs with native bf16, fp32 elsewhere
    (:func:`percep_rag.precision.resolve_precision`). ``options`` go to the backend
    (openflamingo: ``checkpoint``, ``lang``, ``vision_weights``; smolvlm/idefics3/gemma3:
    ``class_batch_size``, ``normalize_length``, ``template``; qwen-vl and hf also
    ``max_image_tokens``, ``min_image_tokens``: the per-image budget of Qwen-VL's dynamic
    resolution); options set to ``None`` are ignored, so one caller can pass every backend's options.

    >>> vlm = load_vlm("tiny-smolvlm-random", precision="fp32")
    >>> vlm.name, vlm.random_weights
    ('tiny-smolvlm-random', True)
    >>> load_vlm("tiny-smolvlm-random", checkpoint="of.pt")
    Traceback (most recent call last):
    ...
    percep_rag.vlm.errors.VlmSpecError: VLM backend 'smolvlm' takes no option 'checkpoint' (it takes: ...)
    """
    parsed = spec if isinstance(spec, VlmSpec) else parse_vlm_spec(spec)
    backend = VLM_BACKENDS.get(parsed.backend)
    given = {name: value for name, value in options.items() if value is not None}
    known = backend.options()
    for name in given:
        if name not in known:
            raise VlmSpecError(
                f"VLM backend {backend.name!r} takes no option {name!r} (it takes: {', '.join(known) or 'none'})"
            )
    return backend.load(parsed.target or backend.default_target, device=device, precision=precision, **given)


#: The tiny random-weight chat VLMs (bare ``--vlm`` names) -> the family that claims them.
TINY_CHAT_MODELS = {
    "tiny-smolvlm-random": "smolvlm",
    "tiny-qwen2.5-vl-random": "qwen-vl",
    "tiny-qwen3-vl-random": "qwen-vl",
    "tiny-gemma3-random": "gemma3",
}


def _build_tiny_chat_model(name: str, folder: str) -> None:
    if name == "tiny-smolvlm-random":
        from percep_rag.vlm.tiny_smolvlm import build_tiny_smolvlm

        build_tiny_smolvlm(folder)
    elif name == "tiny-gemma3-random":
        from percep_rag.vlm.tiny_gemma3 import build_tiny_gemma3

        build_tiny_gemma3(folder)
    else:
        from percep_rag.vlm.tiny_qwen_vl import TINY_QWEN_VL_NAMES, build_tiny_qwen_vl

        build_tiny_qwen_vl(folder, architecture=TINY_QWEN_VL_NAMES[name])


def _chat_vlm(target: str, *, family: str | None, spec_name: str, **options: Any) -> FewShotVLM:
    import tempfile

    from percep_rag.vlm.chat_loading import load_chat_vlm

    if target not in TINY_CHAT_MODELS:
        return load_chat_vlm(target, family=family, spec_name=spec_name, **options)
    # The tiny test models go through the real path too: saved to a folder, loaded from it.
    with tempfile.TemporaryDirectory(prefix=f"{target}-") as folder:
        _build_tiny_chat_model(target, folder)
        vlm = load_chat_vlm(folder, family=family, spec_name=spec_name, **options)
    vlm.name = target
    return vlm


def _load_transformers(kind: str, family: str | None) -> Callable[..., FewShotVLM]:
    def load(
        target: str,
        *,
        device: str = "cpu",
        precision: Precision = "auto",
        class_batch_size: int | None = None,
        normalize_length: bool | None = None,
        template: Any = None,
    ) -> FewShotVLM:
        return _chat_vlm(
            target, family=family, spec_name=kind, device=device, precision=precision,
            class_batch_size=class_batch_size, normalize_length=True if normalize_length is None else normalize_length,
            template=template,
        )  # fmt: skip

    return load


def _load_with_image_budget(kind: str, family: str | None) -> Callable[..., FewShotVLM]:
    def load(
        target: str,
        *,
        device: str = "cpu",
        precision: Precision = "auto",
        class_batch_size: int | None = None,
        normalize_length: bool | None = None,
        template: Any = None,
        max_image_tokens: int | None = None,
        min_image_tokens: int | None = None,
    ) -> FewShotVLM:
        from percep_rag.vlm.architectures import ImageBudget

        budget = {"max_tokens": max_image_tokens, "min_tokens": min_image_tokens}
        try:
            image_budget = ImageBudget(**{key: value for key, value in budget.items() if value is not None})
        except ValueError as error:  # pydantic's bounds
            raise VlmSpecError(f"image budget: {error}") from None
        return _chat_vlm(
            target, family=family, spec_name=kind, device=device, precision=precision,
            class_batch_size=class_batch_size, normalize_length=True if normalize_length is None else normalize_length,
            template=template, image_budget=image_budget,
        )  # fmt: skip

    return load


def _openflamingo_name(name: str) -> bool:
    # By name, not by the release registry: parsing a spec imports no backend.
    # An unknown "OpenFlamingo-..." release is refused at load time, listing the known ones.
    return name.startswith("OpenFlamingo-") or name == "tiny-flamingo-random"


def _openflamingo_options(
    target: str,
    *,
    device: str = "cpu",
    precision: Precision = "auto",
    checkpoint: str | None = None,
    lang: str | None = None,
    vision_weights: str | None = None,
) -> FewShotVLM:
    from percep_rag.vlm.openflamingo.backend import load_openflamingo_vlm

    return load_openflamingo_vlm(
        target, device=device, precision=precision, checkpoint=checkpoint, lang=lang, vision_weights=vision_weights
    )


register_vlm_backend(
    VlmBackend(
        "openflamingo",
        _openflamingo_options,
        default_target="OpenFlamingo-4B-vitl-rpj3b",
        description="release",
        claims=_openflamingo_name,
    )
)
register_vlm_backend(
    VlmBackend(
        "smolvlm",
        _load_transformers("smolvlm", "smolvlm"),
        default_target="HuggingFaceTB/SmolVLM-256M-Instruct",
        description="folder or hub id",
        claims=lambda name: TINY_CHAT_MODELS.get(name) == "smolvlm",
    )
)
register_vlm_backend(
    VlmBackend(
        "idefics3",
        _load_transformers("idefics3", "smolvlm"),
        default_target="HuggingFaceM4/Idefics3-8B-Llama3",
        description="folder or hub id",
    )
)
register_vlm_backend(
    VlmBackend(
        "qwen-vl",
        _load_with_image_budget("qwen-vl", "qwen-vl"),
        default_target="Qwen/Qwen2.5-VL-3B-Instruct",
        description="folder or hub id",
        claims=lambda name: TINY_CHAT_MODELS.get(name) == "qwen-vl",
    )
)
register_vlm_backend(
    VlmBackend(
        "gemma3",
        _load_transformers("gemma3", "gemma3"),
        default_target="google/gemma-3-4b-it",
        description="folder or hub id",
        claims=lambda name: TINY_CHAT_MODELS.get(name) == "gemma3",
    )
)
register_vlm_backend(
    VlmBackend(
        "hf",
        _load_with_image_budget("hf", None),
        default_target="HuggingFaceTB/SmolVLM-256M-Instruct",
        description="folder or hub id, any chat-VLM family",
    )
)
