"""SmolVLM / Idefics3's classifier under its first name: the shared chat-VLM scorer.

:class:`SmolVlmClassifier` is :class:`~percep_rag.vlm.chat_scorer.ChatVlmClassifier`, which
serves every transformers chat family (:mod:`percep_rag.vlm.architectures`); SmolVLM's own
parts are :class:`~percep_rag.vlm.architectures.idefics3.Idefics3Architecture`.
"""

from percep_rag.vlm.chat_scorer import ChatVlmClassifier, EncodedPrompt

__all__ = ["EncodedPrompt", "SmolVlmClassifier"]

#: The older name of :class:`~percep_rag.vlm.chat_scorer.ChatVlmClassifier` (SmolVLM was its first family).
SmolVlmClassifier = ChatVlmClassifier
