"""A tiny Qwen2.5-VL or Qwen3-VL with RANDOM weights, built offline in code, for tests and demos.

Built from the architecture's own config classes: a 2-layer vision tower on 4 px patches
merged 2 x 2 (one LM token per 8 x 8 px cell, images of any size), a 2-layer text model with
3-D multimodal rotary positions, a byte-level BPE tokenizer trained here with Qwen's special
tokens, and the family's chat template. :func:`build_tiny_qwen_vl` writes it with
``save_pretrained`` so that it loads through the real path
(:func:`~percep_rag.vlm.chat_loading.load_chat_vlm`). Its outputs mean nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal, get_args

from percep_rag.backbones._seed import build_seeded
from percep_rag.errors import ConfigError
from percep_rag.vlm.bpe import train_byte_bpe
from percep_rag.vlm.chat_loading import save_random_model

__all__ = [
    "QWEN2_5_VL_CHAT_TEMPLATE",
    "QWEN3_VL_CHAT_TEMPLATE",
    "TINY_QWEN_VL_NAMES",
    "build_tiny_qwen_vl",
    "make_qwen_processor",
    "tiny_qwen_tokenizer",
]

#: ``model_type``s a tiny Qwen-VL can have.
QwenArchitecture = Literal["qwen2_5_vl", "qwen3_vl"]
#: The bare ``--vlm`` names of the tiny models -> their architecture.
TINY_QWEN_VL_NAMES: dict[str, QwenArchitecture] = {
    "tiny-qwen2.5-vl-random": "qwen2_5_vl",
    "tiny-qwen3-vl-random": "qwen3_vl",
}

#: Qwen2-VL / Qwen2.5-VL-Instruct's chat template (as published with the checkpoints).
QWEN2_5_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
#: Qwen3-VL-Instruct's chat template without its tool-calling branches: no default system turn.
QWEN3_VL_CHAT_TEMPLATE = (
    "{%- set image_count = namespace(value=0) %}{%- set video_count = namespace(value=0) %}"
    "{%- for message in messages %}{{- '<|im_start|>' + message.role + '\n' }}"
    "{%- if message.content is string %}{{- message.content }}{%- else %}{%- for content in message.content %}"
    "{%- if content.type == 'image' or 'image' in content or 'image_url' in content %}"
    "{%- set image_count.value = image_count.value + 1 %}"
    "{%- if add_vision_id %}Picture {{ image_count.value }}: {% endif -%}<|vision_start|><|image_pad|><|vision_end|>"
    "{%- elif content.type == 'video' or 'video' in content %}{%- set video_count.value = video_count.value + 1 %}"
    "{%- if add_vision_id %}Video {{ video_count.value }}: {% endif -%}<|vision_start|><|video_pad|><|vision_end|>"
    "{%- elif 'text' in content %}{{- content.text }}{%- endif %}{%- endfor %}{%- endif %}"
    "{{- '<|im_end|>\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
)
_TEMPLATES = {"qwen2_5_vl": QWEN2_5_VL_CHAT_TEMPLATE, "qwen3_vl": QWEN3_VL_CHAT_TEMPLATE}
#: Qwen's special tokens (the processor finds the image and vision tokens by these texts).
_SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
_LABELS = "airplane bird cat deer dog frog horse ship truck apple car yes no".split()
_CORPUS = "\n".join(
    [f"assistant\n{label}" for label in _LABELS]
    + ["system\nYou are a helpful assistant.", "user\nEach image is followed by its label. Answer with the label."]
)
#: Vision patches of 4 px, merged 2 x 2: one LM token per 8 x 8 px cell.
_PATCH, _MERGE = 4, 2
#: Weights 5x the release init's spread: scores far enough from uniform that a wrong position or mask shows.
_INIT = 0.1


def tiny_qwen_tokenizer() -> Any:
    """A byte-level BPE tokenizer with Qwen's special tokens, trained here.

    >>> tok = tiny_qwen_tokenizer()
    >>> tok.convert_ids_to_tokens(tok("<|vision_start|><|image_pad|><|im_end|>").input_ids)
    ['<|vision_start|>', '<|image_pad|>', '<|im_end|>']
    """
    return train_byte_bpe(
        _CORPUS, _SPECIAL_TOKENS, vocab_size=320, pad_token="<|endoftext|>", eos_token="<|im_end|>",
        extra_special_tokens=_SPECIAL_TOKENS[1:],
    )  # fmt: skip


def _classes(architecture: QwenArchitecture) -> tuple[Any, Any, Any, Any]:
    if architecture == "qwen3_vl":
        from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor
        from transformers.models.qwen3_vl.video_processing_qwen3_vl import Qwen3VLVideoProcessor

        return Qwen3VLConfig, Qwen3VLForConditionalGeneration, Qwen3VLProcessor, Qwen3VLVideoProcessor
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLVideoProcessor,
    )

    return Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor, Qwen2VLVideoProcessor


def _configs(architecture: QwenArchitecture, tokenizer: Any) -> tuple[dict, dict]:
    vision = dict(
        depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=32,
        patch_size=_PATCH, spatial_merge_size=_MERGE, temporal_patch_size=2,
    )  # fmt: skip
    # head_dim 8: 4 rotary frequencies, split (2, 1, 1) over time, height and width.
    rope = {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 1, 1]}
    text = dict(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=None, eos_token_id=tokenizer.eos_token_id,
        initializer_range=_INIT,
    )  # fmt: skip
    if architecture == "qwen3_vl":
        vision.update(num_position_embeddings=16, deepstack_visual_indexes=[0])
        text.update(head_dim=8, rope_parameters={**rope, "mrope_interleaved": True})
    else:
        vision.update(window_size=16, fullatt_block_indexes=[1])
        text.update(rope_parameters=rope)
    return vision, text


def build_tiny_qwen_vl(
    folder: str | os.PathLike, *, seed: int = 0, architecture: QwenArchitecture = "qwen2_5_vl"
) -> Path:
    """Write a tiny random-weight Qwen2.5-VL (or Qwen3-VL) with its processor and chat template to ``folder``.

    The folder gets the :data:`~percep_rag.vlm.chat_loading.RANDOM_WEIGHTS_MARKER` file, so
    whatever loads it labels its predictions as random. Deterministic in ``seed``.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     sorted(p.name for p in build_tiny_qwen_vl(folder, architecture="qwen3_vl").iterdir())[:3]
    ['RANDOM_WEIGHTS', 'chat_template.jinja', 'config.json']
    """
    if architecture not in get_args(QwenArchitecture):
        raise ConfigError(f"architecture must be one of {', '.join(get_args(QwenArchitecture))}, got {architecture!r}")
    config_class, model_class, _, _ = _classes(architecture)
    tokenizer = tiny_qwen_tokenizer()
    vision, text = _configs(architecture, tokenizer)
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in _SPECIAL_TOKENS}
    config = config_class(
        vision_config=vision, text_config=text, image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
    )  # fmt: skip
    model = build_seeded(lambda: model_class(config).eval(), seed)
    processor = make_qwen_processor(tokenizer, architecture=architecture, patch_size=_PATCH, merge_size=_MERGE)
    return save_random_model(folder, model, processor)


def make_qwen_processor(tokenizer: Any, *, architecture: QwenArchitecture, patch_size: int, merge_size: int = 2) -> Any:
    """The architecture's processor (images, videos, chat template) for ``patch_size`` px patches, merged.

    Images are resized to between 4 and 256 LM tokens by default (a call's budget overrides it).
    """
    from transformers import Qwen2VLImageProcessor

    _, _, processor_class, video_class = _classes(architecture)
    grid = dict(patch_size=patch_size, temporal_patch_size=2, merge_size=merge_size)
    cell = (patch_size * merge_size) ** 2
    size = {"shortest_edge": 4 * cell, "longest_edge": 256 * cell}
    return processor_class(
        Qwen2VLImageProcessor(**grid, size=size), tokenizer, video_class(**grid, size=size),
        chat_template=_TEMPLATES[architecture],
    )  # fmt: skip
