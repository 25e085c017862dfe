"""OpenFlamingo's interleaved few-shot prompt: the text, its images and the image tensor.

The layout is open_flamingo's classification protocol: one
``<image>Output:{label}<|endofchunk|>`` per example, in the order given, then the query
``<image>Output:`` (no space after the colon). Examples are never reordered: retrieval
hands them over most-similar-LAST (RICES), so the best match sits next to the query. A
demonstration whose image is ``None`` adds its text only (open_flamingo's 0-shot prompts,
which the few-shot protocol makes for 0 shots).

Importing this module does not need open-flamingo.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, model_validator

from percep_rag.io.images import ImageSource, decode_image
from percep_rag.vlm.base import Example
from percep_rag.vlm.errors import PromptError

__all__ = ["EOC_TOKEN", "MEDIA_TOKEN", "PromptTemplate", "build_prompt", "build_vision_x"]

#: OpenFlamingo's special tokens: an image's place in the text, and the end of one demonstration.
MEDIA_TOKEN = "<image>"
EOC_TOKEN = "<|endofchunk|>"


class PromptTemplate(BaseModel):
    """Format strings for the demonstrations and the query.

    ``example`` is formatted with ``label=``; both must contain the media token exactly
    once, and ``query`` must end where the answer starts.

    >>> t = PromptTemplate()
    >>> t.render(["cat", "dog"])
    '<image>Output:cat<|endofchunk|><image>Output:dog<|endofchunk|><image>Output:'
    >>> PromptTemplate(example="<image>Output:<|endofchunk|>")
    Traceback (most recent call last):
    ...
    pydantic_core._pydantic_core.ValidationError: 1 validation error for PromptTemplate
    ...
    """

    model_config = ConfigDict(frozen=True)

    example: str = f"{MEDIA_TOKEN}Output:{{label}}{EOC_TOKEN}"
    query: str = f"{MEDIA_TOKEN}Output:"
    media_token: str = MEDIA_TOKEN
    end_of_chunk: str = EOC_TOKEN

    @model_validator(mode="after")
    def _check(self) -> PromptTemplate:
        if "{label}" not in self.example:
            raise ValueError("example template must contain '{label}'")
        for name, text in (("example", self.example), ("query", self.query)):
            if text.count(self.media_token) != 1:
                raise ValueError(f"{name} template must contain {self.media_token!r} exactly once")
        try:
            self.example.format(label="x")
            self.query.format()
        except (KeyError, IndexError, ValueError) as error:
            raise ValueError(f"bad format string ({error}); write literal braces as '{{{{' and '}}}}'") from None
        return self

    def format_example(self, label: str, *, with_image: bool = True) -> str:
        """One demonstration's text; without its image the media token is left out.

        >>> PromptTemplate().format_example("cat", with_image=False)
        'Output:cat<|endofchunk|>'
        """
        self._check_text(label, "label")
        text = self.example.format(label=label)
        return text if with_image else text.replace(self.media_token, "")

    def format_query(self) -> str:
        """The query's text; the class name (or generated answer) continues it."""
        return self.query.format()

    def render(self, labels: Sequence[str], with_images: Sequence[bool] | None = None) -> str:
        """The whole prompt for demonstrations with ``labels`` (in this order) and the query."""
        shown = [True] * len(labels) if with_images is None else list(with_images)
        demos = "".join(
            self.format_example(label, with_image=image) for label, image in zip(labels, shown, strict=True)
        )
        return demos + self.format_query()

    def check_class_name(self, name: str) -> None:
        """Refuse class names that would inject special tokens or be empty."""
        self._check_text(name, "class name")

    def _check_text(self, text: str, what: str) -> None:
        if not isinstance(text, str) or not text:
            raise PromptError(f"{what} must be a non-empty string, got {text!r}")
        for token in (self.media_token, self.end_of_chunk):
            if token in text:
                raise PromptError(f"{what} {text!r} contains the special token {token!r}")


def build_prompt(examples: Sequence[Example], template: PromptTemplate | None = None) -> tuple[str, list[ImageSource]]:
    """The prompt text and its images (examples in the given order, then a slot for the query).

    Returns ``(text, example_images)``; the query image goes last in the vision tensor. A
    demonstration without an image (``None``) adds its text only (open_flamingo's 0-shot).

    >>> text, images = build_prompt([("a.png", "cat"), ("b.png", "dog")])
    >>> text, images
    ('<image>Output:cat<|endofchunk|><image>Output:dog<|endofchunk|><image>Output:', ['a.png', 'b.png'])
    >>> build_prompt([(None, "cat"), (None, "dog")])
    ('Output:cat<|endofchunk|>Output:dog<|endofchunk|><image>Output:', [])
    """
    template = template or PromptTemplate()
    labels = [label for _, label in examples]
    with_images = [image is not None for image, _ in examples]
    return template.render(labels, with_images), [image for image, _ in examples if image is not None]


def build_vision_x(
    images: Sequence[ImageSource],
    image_processor: Callable[[Any], torch.Tensor],
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Decode and preprocess ``images`` into Flamingo's ``(B=1, T_img, F=1, C, H, W)`` tensor.

    >>> from percep_rag.vlm.openflamingo.tiny import build_tiny_flamingo, make_test_image
    >>> tiny = build_tiny_flamingo()
    >>> build_vision_x([make_test_image(0), make_test_image(1)], tiny.image_processor).shape
    torch.Size([1, 2, 1, 3, 32, 32])
    """
    if not images:
        raise PromptError("a Flamingo prompt needs at least one image")
    pixels = torch.stack([image_processor(decode_image(image)) for image in images])
    return pixels[None, :, None].to(device=device, dtype=dtype)
