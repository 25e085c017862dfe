"""A tiny SmolVLM (Idefics3 architecture) with RANDOM weights, built offline in code, for tests and demos.

Built the way transformers' own tests build theirs (a small :class:`~transformers.Idefics3Config`):
a 2-layer SigLIP-style vision tower on 16 px images, a 3-layer Llama, a byte-level BPE
tokenizer trained here with the processor's special tokens, and SmolVLM's chat template.
:func:`build_tiny_smolvlm` writes it with ``save_pretrained`` so it loads through the real
path (:func:`~percep_rag.vlm.chat_loading.load_chat_vlm`). Its outputs mean nothing.
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
    "SMOLVLM_CHAT_TEMPLATE",
    "TINY_SMOLVLM_NAME",
    "build_tiny_smolvlm",
    "make_processor",
    "make_test_image",
    "tiny_tokenizer",
]

TINY_SMOLVLM_NAME = "tiny-smolvlm-random"
#: SmolVLM-Instruct's chat template (transformers' SmolVLM DEFAULT_CHAT_TEMPLATE without its video branch).
SMOLVLM_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)
#: The processor's tokens (Idefics3Processor looks them up by text), then padding.
_SPECIAL_TOKENS = [
    "<unk>",
    "<|im_start|>",
    "<end_of_utterance>",
    "<image>",
    "<fake_token_around_image>",
    "<global-img>",
]
_LABELS = "airplane bird cat deer dog frog horse ship truck apple car yes no".split()
_CORPUS = "\n".join(
    [f"User: Assistant: {label}" for label in _LABELS]
    + ["Each image is followed by its label. Answer with the label of the last image."]
)


def tiny_tokenizer() -> Any:
    """A byte-level BPE tokenizer with the Idefics3 processor's special tokens, trained here.

    >>> tok = tiny_tokenizer()
    >>> tok.convert_ids_to_tokens(tok("<image><end_of_utterance>").input_ids)
    ['<image>', '<end_of_utterance>']
    """
    return train_byte_bpe(
        _CORPUS, [*_SPECIAL_TOKENS, "<pad>"], vocab_size=320, unk_token="<unk>", pad_token="<pad>",
        bos_token="<|im_start|>", eos_token="<end_of_utterance>", extra_special_tokens=_SPECIAL_TOKENS[1:],
    )  # fmt: skip


#: What a tiny model can be: SmolVLM(-Instruct, 256M-2.2B) and Idefics3 checkpoints are ``idefics3``;
#: SmolVLM2 checkpoints are ``smolvlm`` (their processor also takes videos and needs num2words).
Architecture = Literal["idefics3", "smolvlm"]


def make_processor(tokenizer: Any, *, image_size: int, image_seq_len: int, architecture: Architecture = "idefics3"):
    """The architecture's processor for one-tile images of ``image_size`` px, with SmolVLM's chat template."""
    edge = {"longest_edge": image_size}
    if architecture == "smolvlm":
        from transformers import SmolVLMImageProcessor, SmolVLMProcessor, SmolVLMVideoProcessor

        images = SmolVLMImageProcessor(do_image_splitting=False, size=edge, max_image_size=edge)
        videos = SmolVLMVideoProcessor(size=edge, max_image_size=edge)
        return SmolVLMProcessor(
            images, tokenizer, videos, image_seq_len=image_seq_len, chat_template=SMOLVLM_CHAT_TEMPLATE
        )
    from transformers import Idefics3Processor
    from transformers.models.idefics3.image_processing_idefics3 import Idefics3ImageProcessor

    images = Idefics3ImageProcessor(do_image_splitting=False, size=edge, max_image_size=edge)
    return Idefics3Processor(images, tokenizer, image_seq_len=image_seq_len, chat_template=SMOLVLM_CHAT_TEMPLATE)


def _classes(architecture: Architecture) -> tuple[Any, Any, Any]:
    if architecture == "smolvlm":
        from transformers import SmolVLMConfig, SmolVLMForConditionalGeneration
        from transformers.models.smolvlm.configuration_smolvlm import SmolVLMVisionConfig

        return SmolVLMConfig, SmolVLMVisionConfig, SmolVLMForConditionalGeneration
    from transformers import Idefics3Config, Idefics3ForConditionalGeneration
    from transformers.models.idefics3.configuration_idefics3 import Idefics3VisionConfig

    return Idefics3Config, Idefics3VisionConfig, Idefics3ForConditionalGeneration


def build_tiny_smolvlm(folder: str | os.PathLike, *, seed: int = 0, architecture: Architecture = "idefics3") -> Path:
    """Write a tiny random-weight SmolVLM (model, processor, chat template) to ``folder``.

    16 px images in 4 px patches, pixel-shuffled by 2: 4 image tokens per image. The folder
    gets the :data:`~percep_rag.vlm.chat_loading.RANDOM_WEIGHTS_MARKER` file, so whatever
    loads it labels its predictions as random. Deterministic in ``seed``. ``architecture``:
    ``idefics3`` (what SmolVLM-256M/500M/2.2B-Instruct are) or ``smolvlm`` (SmolVLM2's classes).

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     sorted(p.name for p in build_tiny_smolvlm(folder).iterdir())[:3]
    ['RANDOM_WEIGHTS', 'chat_template.jinja', 'config.json']
    """
    from transformers import LlamaConfig

    if architecture not in get_args(Architecture):
        raise ConfigError(f"architecture must be one of {', '.join(get_args(Architecture))}, got {architecture!r}")
    config_class, vision_class, model_class = _classes(architecture)
    tokenizer = tiny_tokenizer()
    image_size, patch_size, scale_factor = 16, 4, 2
    vision = vision_class(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        image_size=image_size, patch_size=patch_size,
    )  # fmt: skip
    text = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )  # fmt: skip
    config = config_class(
        vision_config=vision.to_dict(), text_config=text.to_dict(), scale_factor=scale_factor,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"), pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    model = build_seeded(lambda: model_class(config).eval(), seed)
    image_seq_len = (image_size // patch_size) ** 2 // scale_factor**2
    processor = make_processor(tokenizer, image_size=image_size, image_seq_len=image_seq_len, architecture=architecture)
    return save_random_model(folder, model, processor)


def make_test_image(seed: int = 0, size: tuple[int, int] = (40, 36)):
    """A reproducible random RGB PIL image (for examples and tests)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
