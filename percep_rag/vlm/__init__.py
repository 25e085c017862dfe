"""Few-shot VLMs behind one interface: every backend percep-rag can prompt lives here.

:func:`load_vlm` turns a spec (``openflamingo:<release>``, ``smolvlm:<dir or hub id>``,
``idefics3:<dir or hub id>``, or a bare name: a released OpenFlamingo, ``tiny-flamingo-random``,
``tiny-smolvlm-random``) into a :class:`FewShotVLM`: ``score_classes``, ``naive_scores``,
``predict``, ``prompt_text``, ``name``, ``random_weights``.

The backends: :mod:`percep_rag.vlm.openflamingo` (the model, its compat layer, the releases,
the tiny test model; it needs ``open-flamingo`` and is imported only when loaded) and the
transformers chat VLMs, which share one prompt builder (:mod:`.chat_prompt`) and one cached
scorer (:mod:`.chat_scorer`). :mod:`percep_rag.fewshot` (the retrieval-augmented protocol)
uses this package; nothing here imports it.
"""

from percep_rag.vlm.base import Example, FewShotVLM, VlmSpec
from percep_rag.vlm.chat_prompt import ChatPromptTemplate, continuation_ids
from percep_rag.vlm.errors import PromptError, VlmNotFoundError, VlmSpecError
from percep_rag.vlm.registry import (
    VLM_BACKENDS,
    VlmBackend,
    list_vlm_backends,
    load_vlm,
    parse_vlm_spec,
    register_vlm_backend,
)
from percep_rag.vlm.smolvlm import SmolVlmClassifier
from percep_rag.vlm.smolvlm_loading import find_model_folder, load_smolvlm
from percep_rag.vlm.tiny_smolvlm import TINY_SMOLVLM_NAME, build_tiny_smolvlm

__all__ = [
    "TINY_SMOLVLM_NAME",
    "VLM_BACKENDS",
    "ChatPromptTemplate",
    "Example",
    "FewShotVLM",
    "PromptError",
    "SmolVlmClassifier",
    "VlmBackend",
    "VlmNotFoundError",
    "VlmSpec",
    "VlmSpecError",
    "build_tiny_smolvlm",
    "continuation_ids",
    "find_model_folder",
    "list_vlm_backends",
    "load_smolvlm",
    "load_vlm",
    "parse_vlm_spec",
    "register_vlm_backend",
]
