"""What differs between transformers chat VLMs, as one small class per family.

The prompt builder (:mod:`percep_rag.vlm.chat_prompt`) and the cached scorer
(:mod:`percep_rag.vlm.chat_scorer`) are shared; a :class:`ChatArchitecture` says only what a
family does its own way: which token ends an answer, what sits between the generation prompt
and a class name, which processor outputs a forward takes, how many pixels or tokens an image
may cost (:class:`ImageBudget`), and, for models whose positions depend on where the images
sit (Qwen-VL's multimodal rotary positions), the positions of the tokens that follow a cached
prompt. Every method reads the model or the processor and returns values: no per-call state is
kept anywhere, so one classifier serves concurrent calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from pydantic import BaseModel, ConfigDict, Field

from percep_rag.vlm.errors import VlmSpecError

__all__ = ["ChatArchitecture", "ImageBudget", "PromptPositions"]

#: Processor attributes naming image-layout tokens, over all families (absent ones are skipped).
_LAYOUT_TOKEN_ATTRIBUTES = (
    "image_token",
    "fake_image_token",
    "global_image_tag",
    "global_image_token",
    "boi_token",
    "eoi_token",
    "video_token",
    "vision_start_token",
    "vision_end_token",
)


class ImageBudget(BaseModel):
    """How many LM tokens one image may cost, so that 8+ shots fit the context.

    Families with dynamic resolution (Qwen-VL) resize each image to between ``min_tokens`` and
    ``max_tokens`` tokens (their ``min_pixels``/``max_pixels``); families with a fixed cost per
    image (SmolVLM in one tile, Gemma 3 without pan-and-scan) ignore it.

    >>> ImageBudget().max_tokens, ImageBudget(max_tokens=64).min_tokens
    (256, 4)
    """

    model_config = ConfigDict(frozen=True)

    min_tokens: int = Field(4, ge=1)
    max_tokens: int = Field(256, ge=1)

    def model_post_init(self, context: Any) -> None:
        if self.min_tokens > self.max_tokens:
            raise VlmSpecError(f"image budget: min_tokens {self.min_tokens} > max_tokens {self.max_tokens}")


@dataclass(frozen=True)
class PromptPositions:
    """A prompt's position ids as a full forward computes them, and how to continue them.

    ``prompt`` has the shape the model's ``position_ids`` take (Qwen-VL: ``(3, 1, P)``);
    the token at index ``P + j`` after it sits at position ``P + j + delta`` on every axis.
    """

    prompt: torch.Tensor
    delta: torch.Tensor

    def after(self, prompt_len: int, width: int, rows: int) -> torch.Tensor:
        """Position ids ``(axes, rows, width)`` of ``width`` tokens that continue the prompt in ``rows`` rows."""
        steps = torch.arange(prompt_len, prompt_len + width, device=self.delta.device) + self.delta.reshape(-1)[0]
        return steps.view(1, 1, -1).expand(self.prompt.shape[0], rows, -1)


class ChatArchitecture:
    """One transformers chat-VLM family: the parts of prompting and scoring that are its own.

    Subclasses set the class attributes and override the hooks they need; an instance is
    registered under :attr:`family` with :func:`~percep_rag.vlm.architectures.register_chat_architecture`.
    """

    #: The ``--vlm`` backend name (``smolvlm``, ``qwen-vl``, ``gemma3``).
    family: ClassVar[str]
    #: transformers ``model_type``s of the checkpoints this family loads.
    model_types: ClassVar[tuple[str, ...]]
    #: The token that ends an assistant turn (every answer is scored up to and including it).
    end_of_turn: ClassVar[str]
    #: Text between the generation prompt and the class name (SmolVLM answers after "Assistant:" and a space).
    answer_prefix: ClassVar[str] = ""
    #: Processor outputs besides ``input_ids``/``attention_mask`` that the prompt's forward takes.
    prompt_inputs: ClassVar[tuple[str, ...]] = ("pixel_values",)
    #: Per-token processor outputs (``(1, P)``) that a full forward needs over the answer too (0: text).
    token_inputs: ClassVar[tuple[str, ...]] = ()
    #: ``transformers`` classes, for error messages and the README's table.
    model_classes: ClassVar[str] = ""
    #: The tiny random-weight test model of this family (a bare ``--vlm`` name).
    tiny_model: ClassVar[str] = ""

    def end_of_turn_token(self, processor: Any) -> str:
        """The end-of-turn token's text for this processor."""
        return self.end_of_turn

    def reserved_texts(self, processor: Any) -> set[str]:
        """Texts a label or class name may not contain: special and image-layout tokens."""
        texts = set(getattr(processor.tokenizer, "all_special_tokens", []))
        for attribute in _LAYOUT_TOKEN_ATTRIBUTES:
            for owner in (processor, processor.tokenizer):
                value = getattr(owner, attribute, None)
                if isinstance(value, str) and value:
                    texts.add(value)
        return texts | {self.end_of_turn_token(processor)}

    def configure(self, processor: Any) -> None:
        """Set the processor up once, at load time (e.g. one tile per image)."""

    def processor_kwargs(self, processor: Any, budget: ImageBudget) -> dict[str, Any]:
        """Keyword arguments of every processor call (the per-image budget)."""
        return {}

    def positions(self, model: Any, inputs: dict[str, torch.Tensor]) -> PromptPositions | None:
        """The prompt's positions when they are not ``0..P-1`` (``None``: the model's default is right)."""
        return None

    def check_model(self, config: Any, where: str, backend: str | None = None) -> None:
        """Refuse a checkpoint of another family, naming what this one loads."""
        if config.model_type not in self.model_types:
            raise VlmSpecError(
                f"{where} holds a {config.model_type!r} model; the {backend or self.family} backend loads "
                f"{', '.join(self.model_types)}"
            )
