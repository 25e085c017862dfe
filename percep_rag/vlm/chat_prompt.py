"""Few-shot prompts in a chat VLM's own template, and the token ids of each candidate answer.

The prompt is ONE user turn rendered by the processor's chat template
(``processor.apply_chat_template``, ``add_generation_prompt=True``): an instruction, then
every example as its image followed by its label, in the order given (the retriever's, most
similar last), then the query image; the assistant's answer is the class name. We use the
chat template rather than a plain interleaved string because the instruction-tuned
checkpoints (SmolVLM-*-Instruct, Idefics3-8B-Llama3) were trained on exactly this layout;
one user turn (not one turn per shot) keeps every shot's label in the same position
relative to its image. For SmolVLM's template it reads::

    <|im_start|>User: {instruction}
    <image>cat
    <image>dog
    <image><end_of_utterance>
    Assistant: {class name}<end_of_utterance>

Each candidate answer is ``answer_prefix + name`` followed by the end-of-utterance token, so
a name that is a prefix of another ("cat" / "catfish") is not favoured: "cat" must also
predict the end of the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from percep_rag.vlm.base import Example
from percep_rag.vlm.errors import PromptError

__all__ = ["ChatPromptTemplate", "continuation_ids"]


class ChatPromptTemplate(BaseModel):
    """The few-shot user turn's texts; the chat template adds the roles and the image tokens.

    >>> t = ChatPromptTemplate()
    >>> [part["type"] for part in t.conversation([("a.png", "cat"), (None, "dog")])[0]["content"]]
    ['text', 'image', 'text', 'text', 'image']
    """

    model_config = ConfigDict(frozen=True)

    instruction: str = "Each image is followed by its label. Answer with the label of the last image.\n"
    #: The text after an example's image (formatted with ``label=``).
    example: str = "{label}\n"
    #: Between the generation prompt (``Assistant:``) and the class name: the models answer after a space.
    answer_prefix: str = " "

    def conversation(self, examples: Sequence[Example]) -> list[dict[str, Any]]:
        """The one user message, as ``apply_chat_template`` takes it (images as placeholders)."""
        content: list[dict[str, Any]] = [{"type": "text", "text": self.instruction}] if self.instruction else []
        for image, label in examples:
            if not isinstance(label, str) or not label:
                raise PromptError(f"label must be a non-empty string, got {label!r}")
            if image is not None:
                content.append({"type": "image"})
            content.append({"type": "text", "text": self.example.format(label=label)})
        content.append({"type": "image"})
        return [{"role": "user", "content": content}]

    def render(self, processor: Any, examples: Sequence[Example]) -> str:
        """The prompt text, ending where the answer starts (each image one image token, unexpanded)."""
        return processor.apply_chat_template(self.conversation(examples), add_generation_prompt=True, tokenize=False)


def continuation_ids(tokenizer: Any, prompt: str, continuation: str) -> tuple[list[int], bool]:
    """The token ids ``continuation`` adds after ``prompt``, and whether the boundary held.

    Tokenized together, prompt + continuation must start with the prompt's own tokens; then
    the continuation's ids are the rest (``True``). When a merge crosses the boundary (the
    last prompt token changes), the continuation is tokenized on its own and appended to the
    prompt's unchanged ids (``False``): the model is then scored on the prompt it was given.

    >>> from percep_rag.vlm.bpe import train_byte_bpe
    >>> tok = train_byte_bpe("Answer: cat", ["<unk>"], unk_token="<unk>")
    >>> ids, held = continuation_ids(tok, "Answer:", " cat")
    >>> tok.decode(ids), held
    (' cat', True)
    """
    prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    joined = tokenizer(prompt + continuation, add_special_tokens=False).input_ids
    if joined[: len(prompt_ids)] == prompt_ids and len(joined) > len(prompt_ids):
        return joined[len(prompt_ids) :], True
    return tokenizer(continuation, add_special_tokens=False).input_ids, False
