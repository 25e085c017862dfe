"""Loading SmolVLM / Idefics3 offline: :func:`load_smolvlm` is :func:`~percep_rag.vlm.chat_loading.load_chat_vlm`
for that family (its older entry point; the folder lookup and the random-weights marker live there).
"""

from __future__ import annotations

from typing import Any

from percep_rag.config import Precision
from percep_rag.vlm.architectures.idefics3 import Idefics3Architecture
from percep_rag.vlm.chat_loading import RANDOM_WEIGHTS_MARKER, find_model_folder, load_chat_vlm, without_progress_bars
from percep_rag.vlm.chat_scorer import ChatVlmClassifier

__all__ = [
    "RANDOM_WEIGHTS_MARKER",
    "SUPPORTED_MODEL_TYPES",
    "find_model_folder",
    "load_smolvlm",
    "without_progress_bars",
]

#: transformers ``model_type``s this family speaks (same prompt layout and processor tokens).
SUPPORTED_MODEL_TYPES = Idefics3Architecture.model_types


def load_smolvlm(
    target: str,
    *,
    kind: str = "smolvlm",
    device: str = "cpu",
    precision: Precision = "auto",
    class_batch_size: int | None = None,
    normalize_length: bool = True,
    template: Any = None,
) -> ChatVlmClassifier:
    """A classifier for the SmolVLM / Idefics3 checkpoint ``target`` (folder or hub id, offline).

    >>> import tempfile
    >>> from percep_rag.vlm.tiny_smolvlm import build_tiny_smolvlm
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     load_smolvlm(str(build_tiny_smolvlm(folder)), precision="fp32").model.config.model_type
    'idefics3'
    """
    return load_chat_vlm(
        target, family="smolvlm", spec_name=kind, device=device, precision=precision,
        class_batch_size=class_batch_size, normalize_length=normalize_length, template=template,
    )  # fmt: skip
