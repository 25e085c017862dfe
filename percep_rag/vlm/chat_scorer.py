"""Few-shot classification with a transformers chat VLM by rank classification: one scorer, every family.

A class's score is the log-probability of its answer (``answer_prefix + name`` and the
family's end-of-turn token) after the prompt (:mod:`percep_rag.vlm.chat_prompt`), averaged over
its tokens (``normalize_length=True``, as OpenFlamingo's evaluation) or summed.
:meth:`ChatVlmClassifier.score_classes` runs the prompt (images included) once with a KV
cache; the answers then run as one batch, each row on its own copy of that cache, at the
positions a full forward gives them (:meth:`~percep_rag.vlm.architectures.base.ChatArchitecture.positions`:
Qwen-VL's rope deltas). :meth:`ChatVlmClassifier.naive_scores` runs one plain full forward
per class, positions computed by the model itself, and is the reference the cached path must equal.

What differs between SmolVLM / Idefics3, Qwen-VL and Gemma 3 is one
:class:`~percep_rag.vlm.architectures.base.ChatArchitecture` each (:mod:`percep_rag.vlm.architectures`).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from percep_rag.io.images import ImageSource, decode_image
from percep_rag.vlm.answers import answer_batch
from percep_rag.vlm.architectures import ChatArchitecture, ImageBudget, PromptPositions, architecture_for_model_type
from percep_rag.vlm.base import Example
from percep_rag.vlm.chat_prompt import ChatPromptTemplate, continuation_ids
from percep_rag.vlm.errors import PromptError

__all__ = ["ChatVlmClassifier", "EncodedPrompt"]


@dataclass
class EncodedPrompt:
    """A prompt as the model takes it: its text (images unexpanded), ids ``(1, P)``, the processor's
    other outputs (``inputs``: pixels, image grids, token types) and its positions when they are not ``0..P-1``.
    """

    text: str
    input_ids: torch.Tensor
    inputs: dict[str, torch.Tensor] = field(default_factory=dict)
    positions: PromptPositions | None = None

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[1])

    @property
    def pixel_values(self) -> torch.Tensor | None:
        return self.inputs.get("pixel_values")

    @property
    def pixel_attention_mask(self) -> torch.Tensor | None:
        return self.inputs.get("pixel_attention_mask")


class ChatVlmClassifier:
    """Classify a query image from labelled examples with a transformers chat VLM.

    ``model`` is what ``AutoModelForImageTextToText`` loads (``Idefics3ForConditionalGeneration``,
    ``Qwen2_5_VLForConditionalGeneration``, ``Qwen3VLForConditionalGeneration``,
    ``Gemma3ForConditionalGeneration``, ...), ``processor`` its processor; ``architecture`` is
    its family (by default the one registered for ``model.config.model_type``). ``image_budget``
    bounds what one image costs where the family resizes images (Qwen-VL), so a prompt of 8+
    shots stays short. ``class_batch_size`` bounds how many answers share one forward
    (``None``: all at once). Calls never change the model (each builds its own cache and
    positions), so one classifier can serve concurrent calls. Build one with
    :func:`percep_rag.vlm.load_vlm` (``smolvlm:<dir>``, ``qwen-vl:<dir>``, ``gemma3:<dir>``).

    >>> from percep_rag.vlm import load_vlm
    >>> from percep_rag.vlm.tiny_smolvlm import make_test_image
    >>> clf = load_vlm("tiny-smolvlm-random", precision="fp32")
    >>> shots = [(make_test_image(1), "cat"), (make_test_image(2), "dog")]
    >>> scores = clf.score_classes(shots, make_test_image(3), ["cat", "dog", "bird"])
    >>> scores.shape, bool(np.allclose(scores, clf.naive_scores(shots, make_test_image(3), ["cat", "dog", "bird"])))
    ((3,), True)
    """

    def __init__(
        self,
        model: Any,
        processor: Any,
        template: ChatPromptTemplate | None = None,
        *,
        architecture: ChatArchitecture | None = None,
        image_budget: ImageBudget | None = None,
        class_batch_size: int | None = None,
        normalize_length: bool = True,
        name: str = "",
        random_weights: bool = False,
    ):
        if class_batch_size is not None and class_batch_size < 1:
            raise PromptError(f"class_batch_size must be >= 1 or None, got {class_batch_size}")
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.architecture = architecture or architecture_for_model_type(model.config.model_type)
        self.template = template or ChatPromptTemplate(answer_prefix=self.architecture.answer_prefix)
        self.image_budget = image_budget or ImageBudget()
        self.class_batch_size = class_batch_size
        self.normalize_length = normalize_length
        self.name = name
        self.random_weights = random_weights
        self.end_of_turn = self.architecture.end_of_turn_token(processor)
        self.end_of_turn_id = self._single_token(self.end_of_turn)
        self._reserved = self.architecture.reserved_texts(processor)

    # Older names (SmolVLM's end of utterance is its end of turn).
    @property
    def end_of_utterance(self) -> str:
        return self.end_of_turn

    @property
    def end_of_utterance_id(self) -> int:
        return self.end_of_turn_id

    # ------------------------------------------------------------------ inputs

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _single_token(self, token: str) -> int:
        ids = self.tokenizer(token, add_special_tokens=False).input_ids
        if len(ids) != 1 or ids[0] == self.tokenizer.unk_token_id:
            raise PromptError(
                f"the tokenizer has no single token {token!r}; is this a {self.architecture.family} processor?"
            )
        return ids[0]

    def _check_text(self, text: str, what: str) -> None:
        if not isinstance(text, str) or not text.strip():
            raise PromptError(f"{what} must be a non-empty string, got {text!r}")
        for token in self._reserved:
            if token and token in text:
                raise PromptError(f"{what} {text!r} contains the special token {token!r}")

    def prompt_text(self, examples: Sequence[Example]) -> str:
        """The chat-template prompt for ``examples`` (in this order) and the query, images unexpanded."""
        for _, label in examples:
            self._check_text(label, "label")
        return self.template.render(self.processor, examples)

    def encode_prompt(self, examples: Sequence[Example], query_image: ImageSource) -> EncodedPrompt:
        """The prompt's ids, pixels and positions: every example image that is not ``None``, then the query.

        The chat template writes every special token itself (a BOS included), so the processor adds none.
        """
        text = self.prompt_text(examples)
        images = [decode_image(image) for image, _ in examples if image is not None]
        images.append(decode_image(query_image))
        encoded = self.processor(
            text=text,
            images=images,
            return_tensors="pt",
            add_special_tokens=False,
            **self.architecture.processor_kwargs(self.processor, self.image_budget),
        )
        device, dtype = self.device, self.model.dtype
        inputs = {"input_ids": encoded["input_ids"].to(device)}
        for key in (*self.architecture.prompt_inputs, *self.architecture.token_inputs):
            value = encoded.get(key)
            if value is not None:
                inputs[key] = value.to(device=device, dtype=dtype) if value.is_floating_point() else value.to(device)
        positions = self.architecture.positions(self.model, inputs)
        input_ids = inputs.pop("input_ids")
        return EncodedPrompt(text=text, input_ids=input_ids, inputs=inputs, positions=positions)

    def class_token_ids(self, prompt: str, class_names: Sequence[str]) -> list[list[int]]:
        """Each class's answer ids after ``prompt``: the name's tokens, then the end of turn.

        The boundary is checked (:func:`~percep_rag.vlm.chat_prompt.continuation_ids`).
        """
        if len(class_names) == 0:
            raise PromptError("need at least one class name")
        out = []
        for name in class_names:
            self._check_text(name, "class name")
            ids, _ = continuation_ids(self.tokenizer, prompt, self.template.answer_prefix + name)
            if not ids:
                raise PromptError(f"class name {name!r} tokenizes to nothing")
            out.append([*ids, self.end_of_turn_id])
        return out

    def _check_length(self, prompt_len: int, reserve: int) -> None:
        config = self.model.config.get_text_config()
        limit = getattr(config, "max_position_embeddings", None)
        if limit is not None and prompt_len + reserve > limit:
            raise PromptError(
                f"prompt ({prompt_len} tokens) + answer ({reserve}) exceeds the LM's {limit} positions; "
                "use fewer shots or a smaller image budget"
            )

    def _prepare(self, examples, query_image, class_names) -> tuple[EncodedPrompt, list[list[int]]]:
        prompt = self.encode_prompt(examples, query_image)
        classes = self.class_token_ids(prompt.text, class_names)
        self._check_length(prompt.length, max(map(len, classes)))
        return prompt, classes

    def _scores(self, totals: torch.Tensor, classes: list[list[int]]) -> np.ndarray:
        totals = totals.double().cpu()
        if self.normalize_length:
            totals = totals / torch.tensor([len(tokens) for tokens in classes], dtype=torch.float64)
        return totals.numpy()

    # ------------------------------------------------------------------ scoring

    @torch.inference_mode()
    def score_classes(
        self, examples: Sequence[Example], query_image: ImageSource, class_names: Sequence[str]
    ) -> np.ndarray:
        """Log-probability of each class's answer after the prompt (mean per token by default), ``(n_classes,)``.

        The prompt (images included) runs once with a KV cache; the answers then run
        batched, each row on its own copy of it, so the scores equal :meth:`naive_scores`.
        """
        prompt, classes = self._prepare(examples, query_image, class_names)
        prefix = self.model(
            input_ids=prompt.input_ids,
            attention_mask=torch.ones_like(prompt.input_ids),
            position_ids=None if prompt.positions is None else prompt.positions.prompt,
            use_cache=True,
            logits_to_keep=1,
            **prompt.inputs,
        )
        # The prompt's last position predicts every answer's first token.
        first = F.log_softmax(prefix.logits[0, -1].float(), dim=-1)
        totals = first[torch.tensor([tokens[0] for tokens in classes], device=first.device)]
        step = self.class_batch_size or len(classes)
        for start in range(0, len(classes), step):
            chunk = list(range(start, min(start + step, len(classes))))
            rest = self._continuation_logprobs(prefix.cache, prompt, [classes[i] for i in chunk])
            totals[torch.tensor(chunk, device=totals.device)] += rest
        return self._scores(totals, classes)

    def _continuation_logprobs(self, cache: Any, prompt: EncodedPrompt, classes: list[list[int]]) -> torch.Tensor:
        """Sum of log p(token_j | prompt, tokens_<j) over j >= 1 for each answer, in one forward.

        Row i feeds tokens[:-1], right-padded: with causal attention, padding after a row's
        real tokens cannot change them. Every answer has >= 2 tokens (name + end of turn).
        """
        n, device = len(classes), self.device
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.end_of_turn_id
        feed, targets, mask = answer_batch(classes, pad, device)
        full_mask = torch.cat([torch.ones((n, prompt.length), dtype=torch.long, device=device), mask], dim=1)
        positions = None if prompt.positions is None else prompt.positions.after(prompt.length, feed.shape[1], n)
        rows = copy.deepcopy(cache)  # the prompt's cache stays intact for the next chunk
        rows.batch_repeat_interleave(n)
        out = self.model(input_ids=feed, attention_mask=full_mask, position_ids=positions, cache=rows, use_cache=True)
        logprobs = F.log_softmax(out.logits.float(), dim=-1).gather(-1, targets[..., None])[..., 0]
        return (logprobs * mask).sum(dim=1)

    @torch.inference_mode()
    def naive_scores(
        self, examples: Sequence[Example], query_image: ImageSource, class_names: Sequence[str]
    ) -> np.ndarray:
        """The reference for :meth:`score_classes`: one plain full forward (images included) per class.

        The model computes every position itself, from the whole sequence.
        """
        prompt, classes = self._prepare(examples, query_image, class_names)
        totals = []
        for tokens in classes:
            target = torch.tensor(tokens, device=self.device)
            full = torch.cat([prompt.input_ids[0], target])[None]
            logits = self.model(
                input_ids=full,
                attention_mask=torch.ones_like(full),
                use_cache=False,
                logits_to_keep=len(tokens) + 1,
                **self._full_inputs(prompt, len(tokens)),
            ).logits
            # The last len+1 positions: [P-1, P+L-1) predict the answer's tokens.
            logprobs = F.log_softmax(logits[0, :-1].float(), dim=-1)
            totals.append(logprobs.gather(-1, target[:, None]).sum())
        return self._scores(torch.stack(totals), classes)

    def _full_inputs(self, prompt: EncodedPrompt, answer_len: int) -> dict[str, torch.Tensor]:
        """The prompt's inputs for a forward over prompt + answer: per-token ones extended as text (0)."""
        inputs = dict(prompt.inputs)
        for key in self.architecture.token_inputs:
            if key in inputs:
                value = inputs[key]
                inputs[key] = torch.cat([value, value.new_zeros((value.shape[0], answer_len))], dim=1)
        return inputs

    def predict(self, examples: Sequence[Example], query_image: ImageSource, class_names: Sequence[str]) -> str:
        """The class name with the highest :meth:`score_classes` score (first one on ties)."""
        scores = self.score_classes(examples, query_image, class_names)
        return class_names[int(np.argmax(scores))]
