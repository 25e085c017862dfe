"""A tiny Gemma 3 (vision) with RANDOM weights, built offline in code, for tests and demos.

Built from Gemma 3's own config classes: a 2-layer SigLIP vision tower on 16 px images in
4 px patches pooled to 4 tokens per image, a 3-layer Gemma 3 text model whose sliding-window
layers (window 24) are shorter than any few-shot prompt, a byte-level BPE tokenizer trained
here with Gemma's special tokens, and Gemma 3's chat template. :func:`build_tiny_gemma3`
writes it with ``save_pretrained`` so that it loads through the real path
(:func:`~percep_rag.vlm.chat_loading.load_chat_vlm`). Its outputs mean nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from percep_rag.backbones._seed import build_seeded
from percep_rag.vlm.bpe import train_byte_bpe
from percep_rag.vlm.chat_loading import save_random_model

__all__ = [
    "GEMMA3_CHAT_TEMPLATE",
    "TINY_GEMMA3_NAME",
    "build_tiny_gemma3",
    "make_gemma3_processor",
    "tiny_gemma3_tokenizer",
]

TINY_GEMMA3_NAME = "tiny-gemma3-random"
#: Gemma 3 (google/gemma-3-4b-it)'s chat template, as published with the checkpoints.
GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}\n"
    "{%- if messages[0]['role'] == 'system' -%}\n"
    "    {%- if messages[0]['content'] is string -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'] + '\n"
    "\n"
    "' -%}\n"
    "    {%- else -%}\n"
    "        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n"
    "\n"
    "' -%}\n"
    "    {%- endif -%}\n"
    "    {%- set loop_messages = messages[1:] -%}\n"
    "{%- else -%}\n"
    '    {%- set first_user_prefix = "" -%}\n'
    "    {%- set loop_messages = messages -%}\n"
    "{%- endif -%}\n"
    "{%- for message in loop_messages -%}\n"
    "    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n"
    '        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}\n'
    "    {%- endif -%}\n"
    "    {%- if (message['role'] == 'assistant') -%}\n"
    '        {%- set role = "model" -%}\n'
    "    {%- else -%}\n"
    "        {%- set role = message['role'] -%}\n"
    "    {%- endif -%}\n"
    "    {{ '<start_of_turn>' + role + '\n"
    '\' + (first_user_prefix if loop.first else "") }}\n'
    "    {%- if message['content'] is string -%}\n"
    "        {{ message['content'] | trim }}\n"
    "    {%- elif message['content'] is iterable -%}\n"
    "        {%- for item in message['content'] -%}\n"
    "            {%- if item['type'] == 'image' -%}\n"
    "                {{ '<start_of_image>' }}\n"
    "            {%- elif item['type'] == 'text' -%}\n"
    "                {{ item['text'] | trim }}\n"
    "            {%- endif -%}\n"
    "        {%- endfor -%}\n"
    "    {%- else -%}\n"
    '        {{ raise_exception("Invalid content type") }}\n'
    "    {%- endif -%}\n"
    "    {{ '<end_of_turn>\n"
    "' }}\n"
    "{%- endfor -%}\n"
    "{%- if add_generation_prompt -%}\n"
    "    {{'<start_of_turn>model\n"
    "'}}\n"
    "{%- endif -%}\n"
)
#: Gemma's special tokens; the processor reads the image ones from the tokenizer by role.
_SPECIAL_TOKENS = [
    "<pad>",
    "<eos>",
    "<bos>",
    "<unk>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<start_of_image>",
    "<end_of_image>",
    "<image_soft_token>",
]
_LABELS = "airplane bird cat deer dog frog horse ship truck apple car yes no".split()
_CORPUS = "\n".join(
    [f"model\n{label}" for label in _LABELS] + ["user\nEach image is followed by its label. Answer with the label."]
)
#: 16 px images in 4 px patches (16 patches), pooled 2 x 2: 4 tokens per image.
_IMAGE_SIZE, _PATCH, _TOKENS_PER_IMAGE = 16, 4, 4
#: Weights 5x the release init's spread: scores far enough from uniform that a wrong position or mask shows.
_INIT = 0.1


def tiny_gemma3_tokenizer() -> Any:
    """A byte-level BPE tokenizer with Gemma 3's special tokens (and their roles), trained here.

    >>> tok = tiny_gemma3_tokenizer()
    >>> tok.boi_token, tok.convert_ids_to_tokens(tok("<start_of_turn>model<end_of_turn>").input_ids)[::2]
    ('<start_of_image>', ['<start_of_turn>', '<end_of_turn>'])
    """
    roles = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
    return train_byte_bpe(
        _CORPUS, _SPECIAL_TOKENS, vocab_size=320, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
        unk_token="<unk>", extra_special_tokens={**roles, "start_of_turn": "<start_of_turn>",
                                                 "end_of_turn": "<end_of_turn>"},
    )  # fmt: skip


def build_tiny_gemma3(folder: str | os.PathLike, *, seed: int = 0) -> Path:
    """Write a tiny random-weight Gemma 3 with its processor and chat template to ``folder``.

    The folder gets the :data:`~percep_rag.vlm.chat_loading.RANDOM_WEIGHTS_MARKER` file, so
    whatever loads it labels its predictions as random. Deterministic in ``seed``.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     sorted(p.name for p in build_tiny_gemma3(folder).iterdir())[:3]
    ['RANDOM_WEIGHTS', 'chat_template.jinja', 'config.json']
    """
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3TextConfig,
        SiglipVisionConfig,
    )

    tokenizer = tiny_gemma3_tokenizer()
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in _SPECIAL_TOKENS}
    vision = SiglipVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        image_size=_IMAGE_SIZE, patch_size=_PATCH, vision_use_head=False,
    )  # fmt: skip
    text = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, query_pre_attn_scalar=8,
        sliding_window=24, layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        max_position_embeddings=4096, pad_token_id=ids["<pad>"], bos_token_id=ids["<bos>"],
        eos_token_id=ids["<eos>"], initializer_range=_INIT,
    )  # fmt: skip
    config = Gemma3Config(
        vision_config=vision.to_dict(), text_config=text.to_dict(), mm_tokens_per_image=_TOKENS_PER_IMAGE,
        boi_token_index=ids["<start_of_image>"], eoi_token_index=ids["<end_of_image>"],
        image_token_index=ids["<image_soft_token>"], initializer_range=_INIT,
    )  # fmt: skip
    model = build_seeded(lambda: Gemma3ForConditionalGeneration(config).eval(), seed)
    processor = make_gemma3_processor(tokenizer, image_size=_IMAGE_SIZE, tokens_per_image=_TOKENS_PER_IMAGE)
    return save_random_model(folder, model, processor)


def make_gemma3_processor(tokenizer: Any, *, image_size: int, tokens_per_image: int) -> Any:
    """Gemma 3's processor for ``image_size`` px square images of ``tokens_per_image`` tokens, pan-and-scan off."""
    from transformers import Gemma3ImageProcessor, Gemma3Processor

    images = Gemma3ImageProcessor(size={"height": image_size, "width": image_size}, do_pan_and_scan=False)
    return Gemma3Processor(images, tokenizer, chat_template=GEMMA3_CHAT_TEMPLATE, image_seq_length=tokens_per_image)
