"""Qwen-VL (Qwen2.5-VL, Qwen3-VL): dynamic resolution and multimodal rotary positions.

Each image is resized to a whole number of ``(patch x merge)``-pixel cells within the
:class:`~.base.ImageBudget` (the image processor's ``min_pixels``/``max_pixels``, as
``size={"shortest_edge", "longest_edge"}``), so its token count follows its size and shape
(``image_grid_thw``). Positions are 3-D (time, height, width): an image's tokens take their
grid's coordinates and the text after it resumes at the grid's largest coordinate + 1, so a
prompt of P tokens ends at a position below P. A token after the prompt sits at
``P + j + delta`` on all three axes, ``delta`` being the prompt's rope delta
(``get_rope_index``). transformers' models keep that delta on the module between calls
(``model.rope_deltas``) to continue generation; here every forward gets its ``position_ids``
instead, computed from the call's own prompt, so nothing is kept and concurrent calls are safe.
"""

from __future__ import annotations

from typing import Any

import torch

from percep_rag.vlm.architectures.base import ChatArchitecture, ImageBudget, PromptPositions

__all__ = ["QwenVlArchitecture"]


class QwenVlArchitecture(ChatArchitecture):
    """Qwen2.5-VL and Qwen3-VL (``Qwen2_5_VLForConditionalGeneration``, ``Qwen3VLForConditionalGeneration``).

    >>> from types import SimpleNamespace
    >>> processor = SimpleNamespace(image_processor=SimpleNamespace(patch_size=14, merge_size=2))
    >>> QwenVlArchitecture().processor_kwargs(processor, ImageBudget(min_tokens=4, max_tokens=256))
    {'images_kwargs': {'size': {'shortest_edge': 3136, 'longest_edge': 200704}}}
    """

    family = "qwen-vl"
    model_types = ("qwen2_5_vl", "qwen3_vl")
    end_of_turn = "<|im_end|>"
    prompt_inputs = ("pixel_values", "image_grid_thw")
    token_inputs = ("mm_token_type_ids",)
    model_classes = "Qwen2_5_VLForConditionalGeneration, Qwen3VLForConditionalGeneration"
    tiny_model = "tiny-qwen2.5-vl-random"

    def processor_kwargs(self, processor: Any, budget: ImageBudget) -> dict[str, Any]:
        images = processor.image_processor
        cell = int(images.patch_size) * int(images.merge_size)  # one LM token covers cell x cell pixels
        size = {"shortest_edge": budget.min_tokens * cell**2, "longest_edge": budget.max_tokens * cell**2}
        return {"images_kwargs": {"size": size}}

    def positions(self, model: Any, inputs: dict[str, torch.Tensor]) -> PromptPositions:
        inner = getattr(model, "model", model)  # ...ForConditionalGeneration holds the ...Model that has get_rope_index
        position_ids, delta = inner.get_rope_index(
            inputs["input_ids"], inputs["mm_token_type_ids"], image_grid_thw=inputs.get("image_grid_thw")
        )
        return PromptPositions(position_ids, delta)
