"""Gemma 3 (4B/12B/27B): fixed-size images whose tokens attend to each other both ways.

Every image is resized to the vision tower's square (896 px) and pooled to
``mm_tokens_per_image`` (256) tokens between ``<start_of_image>``/``<end_of_image>``; with
pan-and-scan off (always, here) that is its whole cost, so the :class:`~.base.ImageBudget` is
unused. The prompt's forward takes ``token_type_ids`` (1 on image tokens), which makes each
image's tokens attend to one another bidirectionally; the answer's tokens are text and causal,
so they continue the cached prompt with the model's default positions. The chat template
trims every text part, and the answer starts right after ``<start_of_turn>model\\n``.
"""

from __future__ import annotations

from typing import Any

from percep_rag.vlm.architectures.base import ChatArchitecture, ImageBudget

__all__ = ["Gemma3Architecture"]


class Gemma3Architecture(ChatArchitecture):
    """Gemma 3 with vision (``Gemma3ForConditionalGeneration``).

    >>> Gemma3Architecture().processor_kwargs(None, ImageBudget())
    {'do_pan_and_scan': False}
    """

    family = "gemma3"
    model_types = ("gemma3",)
    end_of_turn = "<end_of_turn>"
    prompt_inputs = ("pixel_values",)
    token_inputs = ("token_type_ids",)
    model_classes = "Gemma3ForConditionalGeneration"
    tiny_model = "tiny-gemma3-random"

    def configure(self, processor: Any) -> None:
        processor.image_processor.do_pan_and_scan = False

    def processor_kwargs(self, processor: Any, budget: ImageBudget) -> dict[str, Any]:
        return {"do_pan_and_scan": False}
