"""SmolVLM / Idefics3: ``<image>`` expanded to one tile's tokens, answers after ``Assistant:`` and a space.

SmolVLM(-Instruct, 256M-2.2B) and Idefics3 checkpoints are ``idefics3``; SmolVLM2's are
``smolvlm`` (their processor also takes videos). Every image is ONE tile
(``do_image_splitting=False``): a split image costs (rows x cols + 1) tiles of tokens, and 8+
shots must fit; the tile's token count is fixed, so the :class:`~.base.ImageBudget` is unused.
"""

from __future__ import annotations

from typing import Any

from percep_rag.vlm.architectures.base import ChatArchitecture, ImageBudget

__all__ = ["Idefics3Architecture"]


class Idefics3Architecture(ChatArchitecture):
    """SmolVLM and Idefics3 (``Idefics3ForConditionalGeneration``, ``SmolVLMForConditionalGeneration``).

    >>> Idefics3Architecture().processor_kwargs(None, ImageBudget())
    {'do_image_splitting': False}
    """

    family = "smolvlm"
    model_types = ("idefics3", "smolvlm")
    end_of_turn = "<end_of_utterance>"
    answer_prefix = " "
    prompt_inputs = ("pixel_values", "pixel_attention_mask")
    model_classes = "Idefics3ForConditionalGeneration, SmolVLMForConditionalGeneration"
    tiny_model = "tiny-smolvlm-random"

    def end_of_turn_token(self, processor: Any) -> str:
        return getattr(processor, "end_of_utterance_token", None) or self.end_of_turn

    def configure(self, processor: Any) -> None:
        processor.image_processor.do_image_splitting = False

    def processor_kwargs(self, processor: Any, budget: ImageBudget) -> dict[str, Any]:
        return {"do_image_splitting": False}
