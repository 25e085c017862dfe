"""CLIP-family text towers: the text half of the very open_clip model a backbone's image tower came from.

A CLIP or OpenCLIP backbone keeps only its image tower (the fingerprint, LoRA targets and bf16
copies see that alone). Its text tower is built when a text query first needs it, from the
same recipe the image tower was built with (open_clip model name, checkpoint file or random
seed, model arguments), and checked against it: the rebuilt image tower must hash to the
image tower in use, so a text vector always comes from the same checkpoint as the image
vectors it is compared with. open_clip's own tokenizer (its BPE vocabulary ships inside
``open_clip_torch``) turns text into tokens; nothing is downloaded.

>>> from percep_rag.backbones import create_backbone
>>> tower = create_backbone("tiny-clip-random").text_tower()
>>> tower(tower.tokenize(["a red square"])).shape   # encode_text: projected, not normalised
torch.Size([1, 32])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from percep_rag.backbones._seed import build_seeded
from percep_rag.errors import TextQueryError
from percep_rag.quiet import without_log_records

__all__ = ["TextSource", "TextTower", "build_clip_model", "check_texts"]

#: Longest text accepted before tokenising (characters): a query, not a document.
MAX_TEXT_CHARS = 2_000


@dataclass(frozen=True)
class TextSource:
    """How the open_clip model behind an image tower was built: enough to build its text tower again."""

    model_name: str
    checkpoint: Path | None
    seed: int = 0
    model_args: Mapping[str, Any] = field(default_factory=dict)


def check_texts(texts: object) -> list[str]:
    """``texts`` as a list of usable query strings, else :class:`TextQueryError` saying which one and why.

    >>> check_texts(["a red dress"])
    ['a red dress']
    >>> check_texts(["  "])
    Traceback (most recent call last):
    ...
    percep_rag.errors.TextQueryError: text query 1 is empty
    """
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TextQueryError(f"text queries come as a list of strings, got {type(texts).__name__}")
    checked = []
    for position, text in enumerate(texts, start=1):
        if not isinstance(text, str):
            raise TextQueryError(f"text query {position} is a {type(text).__name__}, not a string")
        if not text.strip():
            raise TextQueryError(f"text query {position} is empty")
        if len(text) > MAX_TEXT_CHARS:
            raise TextQueryError(f"text query {position} is {len(text)} characters long, over {MAX_TEXT_CHARS}")
        checked.append(text)
    return checked


class TextTower(nn.Module):
    """An open_clip model without its image tower: ``tokenize`` then ``forward`` is ``encode_text``."""

    def __init__(self, model: nn.Module, tokenizer: Any, backbone: str):
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.backbone = backbone
        self.context_length = int(tokenizer.context_length)

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        """Token ids ``(N, context_length)`` exactly as open_clip's tokenizer gives them; a text that
        does not fit the context (open_clip would silently cut it) is a :class:`TextQueryError`."""
        texts = check_texts(texts)
        room = self.context_length - 2  # the start and end tokens
        for position, text in enumerate(texts, start=1):
            length = len(self.tokenizer.encode(text))
            if length == 0:
                raise TextQueryError(f"text query {position} has no tokens")
            if length > room:
                raise TextQueryError(
                    f"text query {position} is {length} tokens long, over the {room} that {self.backbone}'s text "
                    f"tower takes (context length {self.context_length} with its start and end tokens)"
                )
        return self.tokenizer(list(texts))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(tokens.to(self.device))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


def build_clip_model(source: TextSource) -> nn.Module:
    """The whole open_clip model ``source`` describes (image and text towers), built again."""
    import open_clip

    checkpoint = str(source.checkpoint) if source.checkpoint else None

    def build() -> nn.Module:
        return open_clip.create_model(source.model_name, pretrained=checkpoint, **source.model_args)

    with without_log_records("No pretrained weights loaded"):
        return build_seeded(build, source.seed)
