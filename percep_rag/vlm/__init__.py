"""Few-shot VLMs behind one interface: every backend percep-rag can prompt lives here.

:func:`load_vlm` turns a spec (``openflamingo:<release>``, ``smolvlm:<dir or hub id>``,
``idefics3:<dir or hub id>``, ``qwen-vl:<dir or hub id>``, ``gemma3:<dir or hub id>``,
``hf:<dir or hub id>`` (the family read from the checkpoint's config), or a bare name: a released
OpenFlamingo or a tiny random test model, ``tiny-flamingo-random``, ``tiny-smolvlm-random``,
``tiny-qwen2.5-vl-random``, ``tiny-qwen3-vl-random``, ``tiny-gemma3-random``) into a
:class:`FewShotVLM`: ``score_classes``, ``naive_scores``, ``predict``, ``prompt_text``, ``name``,
``random_weights``.

The backends: :mod:`percep_rag.vlm.openflamingo` (the model, its compat layer, the releases,
the tiny test model; it needs ``open-flamingo`` and is imported only when loaded) and the
transformers chat VLMs (SmolVLM / Idefics3, Qwen2.5-VL / Qwen3-VL, Gemma 3), which share one
prompt builder (:mod:`.chat_prompt`), one loader (:mod:`.chat_loading`) and one cached scorer
(:mod:`.chat_scorer`), with one small module per family (:mod:`.architectures`).
:mod:`percep_rag.fewshot` (the retrieval-augmented protocol) uses this package; nothing here imports it.
"""

from percep_rag.vlm.architectures import (
    CHAT_ARCHITECTURES,
    ChatArchitecture,
    ImageBudget,
    architecture_for_model_type,
    register_chat_architecture,
)
from percep_rag.vlm.base import Example, FewShotVLM, VlmSpec
from percep_rag.vlm.chat_loading import find_model_folder, load_chat_vlm
from percep_rag.vlm.chat_prompt import ChatPromptTemplate, continuation_ids
from percep_rag.vlm.chat_scorer import ChatVlmClassifier
from percep_rag.vlm.errors import PromptError, VlmNotFoundError, VlmSpecError
from percep_rag.vlm.registry import (
    TINY_CHAT_MODELS,
    VLM_BACKENDS,
    VlmBackend,
    list_vlm_backends,
    load_vlm,
    parse_vlm_spec,
    register_vlm_backend,
)
from percep_rag.vlm.smolvlm import SmolVlmClassifier
from percep_rag.vlm.smolvlm_loading import load_smolvlm
from percep_rag.vlm.tiny_gemma3 import TINY_GEMMA3_NAME, build_tiny_gemma3
from percep_rag.vlm.tiny_qwen_vl import TINY_QWEN_VL_NAMES, build_tiny_qwen_vl
from percep_rag.vlm.tiny_smolvlm import TINY_SMOLVLM_NAME, build_tiny_smolvlm

__all__ = [
    "CHAT_ARCHITECTURES",
    "TINY_CHAT_MODELS",
    "TINY_GEMMA3_NAME",
    "TINY_QWEN_VL_NAMES",
    "TINY_SMOLVLM_NAME",
    "VLM_BACKENDS",
    "ChatArchitecture",
    "ChatPromptTemplate",
    "ChatVlmClassifier",
    "Example",
    "FewShotVLM",
    "ImageBudget",
    "PromptError",
    "SmolVlmClassifier",
    "VlmBackend",
    "VlmNotFoundError",
    "VlmSpec",
    "VlmSpecError",
    "architecture_for_model_type",
    "build_tiny_gemma3",
    "build_tiny_qwen_vl",
    "build_tiny_smolvlm",
    "continuation_ids",
    "find_model_folder",
    "list_vlm_backends",
    "load_chat_vlm",
    "load_smolvlm",
    "load_vlm",
    "parse_vlm_spec",
    "register_chat_architecture",
    "register_vlm_backend",
]
