"""Retrieval-augmented few-shot classification with OpenFlamingo.

Retrieved examples (most similar last) become an interleaved prompt
``<image>Output:{label}<|endofchunk|>`` x k + ``<image>Output:``, and the class names are
ranked by their mean token log-probability, the prompt computed once per query.

Importing this package needs ``open-flamingo`` (install it with ``pip install --no-deps
open-flamingo==2.0.1 einops einops-exts``); see :mod:`percep_rag.fewshot.compat`.
"""

from percep_rag.fewshot.classify import FewShotClassifier
from percep_rag.fewshot.compat import apply_compat, cached_media, check_checkpoint_keys, is_compat
from percep_rag.fewshot.errors import CheckpointMismatchError, MediaStateError, PromptError
from percep_rag.fewshot.flamingo import FlamingoBundle, load_openflamingo
from percep_rag.fewshot.prompt import PromptTemplate, build_prompt, build_vision_x
from percep_rag.fewshot.releases import (
    DEFAULT_RELEASE,
    RELEASES,
    FlamingoRelease,
    get_release,
    list_releases,
    register_release,
)
from percep_rag.fewshot.tiny import build_tiny_flamingo

__all__ = [
    "DEFAULT_RELEASE",
    "RELEASES",
    "CheckpointMismatchError",
    "FewShotClassifier",
    "FlamingoBundle",
    "FlamingoRelease",
    "MediaStateError",
    "PromptError",
    "PromptTemplate",
    "apply_compat",
    "build_prompt",
    "build_tiny_flamingo",
    "build_vision_x",
    "cached_media",
    "get_release",
    "list_releases",
    "register_release",
    "check_checkpoint_keys",
    "is_compat",
    "load_openflamingo",
]
