"""Few-shot image classification with OpenFlamingo by rank classification over class names.

A class's score is the mean log-probability of its name's tokens after the prompt
(``normalize_length=True``, as open_flamingo's evaluation). :meth:`FewShotClassifier.score_classes`
computes the shared prefix once per query: the images are encoded once, the prompt runs
once with a KV cache, and the class names then run as one batch, each row on its own copy
of that cache. :meth:`FewShotClassifier.naive_scores` recomputes everything per class and
is the reference the cached path must equal.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from open_flamingo.src.flamingo import Flamingo

from percep_rag.io.images import ImageSource
from percep_rag.vlm.answers import answer_batch
from percep_rag.vlm.openflamingo.compat import (
    apply_compat,
    cached_media,
    condition_media_batch,
    current_media,
    media_is_cached,
    output_cache,
    repeat_cache,
)
from percep_rag.vlm.openflamingo.errors import MediaStateError, PromptError
from percep_rag.vlm.openflamingo.model import FlamingoBundle
from percep_rag.vlm.openflamingo.prompt import Example, PromptTemplate, build_prompt, build_vision_x

__all__ = ["FewShotClassifier"]


class FewShotClassifier:
    """Classify a query image from labelled examples with an OpenFlamingo model.

    ``examples`` are ``(image, label)`` pairs in prompt order; pass them most-similar-LAST
    (RICES order), they are never reordered. ``class_batch_size`` bounds how many class
    names share one forward (``None``: all at once). The model is made compatible in place
    (:func:`~percep_rag.vlm.openflamingo.compat.apply_compat`); calls condition its layers on media,
    so one model serves one call at a time (not thread-safe).

    >>> from percep_rag.vlm.openflamingo.tiny import build_tiny_flamingo, make_test_image
    >>> clf = FewShotClassifier.from_bundle(build_tiny_flamingo(seed=0))
    >>> shots = [(make_test_image(1), "cat"), (make_test_image(2), "dog")]
    >>> clf.score_classes(shots, make_test_image(3), ["cat", "dog", "bird"]).shape
    (3,)
    >>> clf.predict(shots, make_test_image(3), ["cat", "dog"]) in ("cat", "dog")
    True

    0-shot as open_flamingo's evaluation: the demonstrations' text without their images
    (``None`` images); only the query image is fed.

    >>> ids, vision_x = clf.encode_prompt([(None, label) for _, label in shots], make_test_image(3))
    >>> int((ids == clf.model.media_token_id).sum()), vision_x.shape[1]
    (1, 1)
    """

    def __init__(
        self,
        model: Flamingo,
        tokenizer: Any,
        image_processor: Any,
        template: PromptTemplate | None = None,
        *,
        class_batch_size: int | None = None,
    ):
        if class_batch_size is not None and class_batch_size < 1:
            raise PromptError(f"class_batch_size must be >= 1 or None, got {class_batch_size}")
        self.model = apply_compat(model)
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.template = template or PromptTemplate()
        self.class_batch_size = class_batch_size
        self._check_template_tokens()

    @classmethod
    def from_bundle(cls, bundle: FlamingoBundle, template: PromptTemplate | None = None, **kwargs) -> FewShotClassifier:
        """A classifier for a :class:`~percep_rag.vlm.openflamingo.model.FlamingoBundle`."""
        return cls(bundle.model, bundle.tokenizer, bundle.image_processor, template, **kwargs)

    # ------------------------------------------------------------------ inputs

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _check_template_tokens(self) -> None:
        media_id = self.model.media_token_id
        if self.tokenizer.convert_tokens_to_ids(self.template.media_token) != media_id:
            raise PromptError(
                f"the template's media token {self.template.media_token!r} is not the model's <image> token"
            )

    def encode_prompt(
        self, examples: Sequence[Example], query_image: ImageSource, *, reserve: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids (1, P), vision_x (1, T_img, 1, C, H, W))`` for the examples and the query.

        ``reserve``: tokens that will follow the prompt; the total must fit the LM's positions
        (checked before any image is decoded).

        >>> from percep_rag.vlm.openflamingo.tiny import build_tiny_flamingo, make_test_image
        >>> clf = FewShotClassifier.from_bundle(build_tiny_flamingo())
        >>> ids, vision_x = clf.encode_prompt([(make_test_image(1), "cat")], make_test_image(2))
        >>> int((ids == clf.model.media_token_id).sum()), tuple(vision_x.shape[:3])
        (2, (1, 2, 1))
        """
        text, images = build_prompt(examples, self.template)
        ids = self.tokenizer(text, return_tensors="pt").input_ids
        n_media = int((ids == self.model.media_token_id).sum())
        if n_media != len(images) + 1:
            raise PromptError(f"prompt has {n_media} media tokens for {len(images) + 1} images: {text!r}")
        self._check_length(ids.shape[1], reserve)
        vision_dtype = next(self.model.vision_encoder.parameters()).dtype
        vision_x = build_vision_x([*images, query_image], self.image_processor, device=self.device, dtype=vision_dtype)
        return ids.to(self.device), vision_x

    def class_token_ids(self, class_names: Sequence[str]) -> list[list[int]]:
        """Token ids of each class name as a continuation (no special tokens), as open_flamingo's eval."""
        if len(class_names) == 0:
            raise PromptError("need at least one class name")
        out = []
        for name in class_names:
            self.template.check_class_name(name)
            ids = self.tokenizer(name, add_special_tokens=False).input_ids
            if not ids:
                raise PromptError(f"class name {name!r} tokenizes to nothing")
            out.append(ids)
        return out

    def _check_length(self, prompt_len: int, reserve: int) -> None:
        config = self.model.lang_encoder.config
        limit = getattr(config, "max_position_embeddings", None) or getattr(config, "max_seq_len", None)
        if limit is not None and prompt_len + reserve > limit:
            # open_flamingo's eval truncated on the right, silently dropping the query; we refuse.
            raise PromptError(
                f"prompt ({prompt_len} tokens) + continuation ({reserve}) exceeds the LM's {limit} positions; "
                "use fewer shots"
            )

    # ------------------------------------------------------------------ scoring

    @torch.inference_mode()
    def score_classes(
        self, examples: Sequence[Example], query_image: ImageSource, class_names: Sequence[str]
    ) -> np.ndarray:
        """Mean token log-probability of each class name after the prompt, shape ``(n_classes,)``.

        The prefix (images + prompt) is computed once; the class names then run batched,
        each on its own copy of the prefix KV cache, so the scores equal :meth:`naive_scores`.
        """
        classes = self.class_token_ids(class_names)
        ids, vision_x = self.encode_prompt(examples, query_image, reserve=max(map(len, classes)))
        model = self.model
        with cached_media(model, ids, vision_x):
            prefix = model(
                vision_x=None,
                lang_x=ids,
                attention_mask=torch.ones_like(ids),
                clear_conditioned_layers=False,
                use_cache=True,
            )
            first = F.log_softmax(prefix.logits[0, -1].float(), dim=-1)
            # The prefix's last position predicts every class's first token.
            totals = first[torch.tensor([tokens[0] for tokens in classes], device=first.device)]
            media, locations = current_media(model)
            longer = [index for index, tokens in enumerate(classes) if len(tokens) > 1]
            step = self.class_batch_size or max(len(longer), 1)
            for start in range(0, len(longer), step):
                chunk = longer[start : start + step]
                rest = self._continuation_logprobs(output_cache(prefix), media, locations, [classes[i] for i in chunk])
                totals[torch.tensor(chunk, device=totals.device)] += rest
        lengths = torch.tensor([len(tokens) for tokens in classes], dtype=torch.float32)
        return (totals.cpu() / lengths).double().numpy()

    def _continuation_logprobs(
        self, cache: Any, media: torch.Tensor, locations: torch.Tensor, classes: list[list[int]]
    ) -> torch.Tensor:
        """Sum of log p(token_j | prompt, tokens_<j) over j >= 1, for each class, in one forward.

        Row i feeds tokens[:-1] (the last token's prediction is not needed), right-padded:
        with causal attention, padding after a row's real tokens cannot change them.
        """
        n, device = len(classes), self.device
        feed, targets, mask = answer_batch(classes, self.tokenizer.pad_token_id, device)
        full_mask = torch.cat([torch.ones((n, locations.shape[1]), dtype=torch.long, device=device), mask], dim=1)
        condition_media_batch(self.model, media, locations, n)
        out = self.model(
            vision_x=None,
            lang_x=feed,
            attention_mask=full_mask,
            past_key_values=repeat_cache(cache, n),
            clear_conditioned_layers=False,
            use_cache=True,
        )
        logprobs = F.log_softmax(out.logits.float(), dim=-1).gather(-1, targets[..., None])[..., 0]
        return (logprobs * mask).sum(dim=1)

    @torch.inference_mode()
    def naive_scores(
        self, examples: Sequence[Example], query_image: ImageSource, class_names: Sequence[str]
    ) -> np.ndarray:
        """The reference for :meth:`score_classes`: one full forward (images included) per class."""
        classes = self.class_token_ids(class_names)
        ids, vision_x = self.encode_prompt(examples, query_image, reserve=max(map(len, classes)))
        if media_is_cached(self.model):
            raise MediaStateError("media are cached on this model; a plain forward needs them uncached")
        scores = []
        prompt_len = ids.shape[1]
        for tokens in classes:
            target = torch.tensor(tokens, device=ids.device)
            full = torch.cat([ids[0], target])[None]
            logits = self.model(vision_x=vision_x, lang_x=full, attention_mask=torch.ones_like(full)).logits
            # Position p predicts token p+1: the class tokens are predicted by [P-1, P+L-1).
            logprobs = F.log_softmax(logits[0, prompt_len - 1 : -1].float(), dim=-1)
            scores.append(float(logprobs.gather(-1, target[:, None]).mean()))
        return np.array(scores)

    def predict(self, examples: Sequence[Example], query_image: ImageSource, class_names: Sequence[str]) -> str:
        """The class name with the highest :meth:`score_classes` score (first one on ties)."""
        scores = self.score_classes(examples, query_image, class_names)
        return class_names[int(np.argmax(scores))]

    # ------------------------------------------------------------------ generation

    @torch.inference_mode()
    def generate(
        self, examples: Sequence[Example], query_image: ImageSource, max_new_tokens: int = 10, **generate_kwargs
    ) -> str:
        """Free-form continuation of the prompt (greedy by default), cut at ``<|endofchunk|>``.

        Extra keyword arguments go to HF ``generate`` (``num_beams``, ``do_sample``, ...). The
        media are uncached afterwards even if generation fails.

        >>> from percep_rag.vlm.openflamingo.tiny import build_tiny_flamingo, make_test_image
        >>> clf = FewShotClassifier.from_bundle(build_tiny_flamingo())
        >>> isinstance(clf.generate([(make_test_image(1), "cat")], make_test_image(2), max_new_tokens=3), str)
        True
        """
        ids, vision_x = self.encode_prompt(examples, query_image, reserve=max_new_tokens)
        generate_kwargs.setdefault("do_sample", False)
        output = self.model.generate(
            vision_x=vision_x,
            lang_x=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            pad_token_id=self.tokenizer.pad_token_id,
            **generate_kwargs,
        )
        new_tokens = output[0, ids.shape[1] :].tolist()
        if self.model.eoc_token_id in new_tokens:
            new_tokens = new_tokens[: new_tokens.index(self.model.eoc_token_id)]
        return self.tokenizer.decode(new_tokens, skip_special_tokens=True)
