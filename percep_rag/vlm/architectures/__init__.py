"""The transformers chat-VLM families, one small module each, and their registry.

:data:`CHAT_ARCHITECTURES` maps a family (the ``--vlm`` backend name) to its
:class:`~percep_rag.vlm.architectures.base.ChatArchitecture`; :func:`architecture_for_model_type`
finds the family of a checkpoint from its ``config.model_type``. Nothing here imports
``transformers``.

>>> architecture_for_model_type("qwen2_5_vl").family, architecture_for_model_type("gemma3").end_of_turn
('qwen-vl', '<end_of_turn>')
"""

from __future__ import annotations

from percep_rag.registry import Registry
from percep_rag.vlm.architectures.base import ChatArchitecture, ImageBudget, PromptPositions
from percep_rag.vlm.architectures.gemma3 import Gemma3Architecture
from percep_rag.vlm.architectures.idefics3 import Idefics3Architecture
from percep_rag.vlm.architectures.qwen_vl import QwenVlArchitecture
from percep_rag.vlm.errors import VlmSpecError

__all__ = [
    "CHAT_ARCHITECTURES",
    "ChatArchitecture",
    "ImageBudget",
    "PromptPositions",
    "architecture_for_model_type",
    "register_chat_architecture",
]

#: Family name -> :class:`ChatArchitecture` (add one with :func:`register_chat_architecture`).
CHAT_ARCHITECTURES: Registry[ChatArchitecture] = Registry("chat-VLM family")


def register_chat_architecture(architecture: ChatArchitecture) -> ChatArchitecture:
    """Make ``architecture`` the family of its ``model_types`` (for :func:`architecture_for_model_type`)."""
    CHAT_ARCHITECTURES.register(architecture.family, architecture)
    return architecture


def architecture_for_model_type(model_type: str) -> ChatArchitecture:
    """The registered family whose checkpoints have this ``config.model_type``."""
    for architecture in CHAT_ARCHITECTURES.values():
        if model_type in architecture.model_types:
            return architecture
    known = sorted(t for a in CHAT_ARCHITECTURES.values() for t in a.model_types)
    raise VlmSpecError(f"no chat-VLM family loads {model_type!r} models (known: {', '.join(known)})")


for _architecture in (Idefics3Architecture(), QwenVlArchitecture(), Gemma3Architecture()):
    register_chat_architecture(_architecture)
