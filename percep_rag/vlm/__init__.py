"""Few-shot VLMs behind one interface: OpenFlamingo and SmolVLM / Idefics3 (transformers).

:func:`load_vlm` turns a spec (``openflamingo:<release>``, ``smolvlm:<dir or hub id>``,
``idefics3:<dir or hub id>``, or a bare name: a released OpenFlamingo, ``tiny-flamingo-random``,
``tiny-smolvlm-random``) into a :class:`FewShotVLM`: ``score_classes``, ``naive_scores``,
``predict``, ``prompt_text``, ``name``, ``random_weights``. The OpenFlamingo backend needs
``open-flamingo`` installed (see :mod:`percep_rag.fewshot`); it is imported only when loaded.
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
