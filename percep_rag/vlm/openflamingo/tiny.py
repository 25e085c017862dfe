"""A tiny OpenFlamingo with RANDOM weights, built offline in code, for tests and demos.

Nothing is downloaded: the vision tower and the LM are built from configs, and the
tokenizer is trained here on a few lines of text. The model is never trained, so its
outputs mean nothing; only the wiring (prompts, media, caches) is real.
"""

from __future__ import annotations

from typing import Any

from open_flamingo.src.flamingo import Flamingo
from torch import nn

from percep_rag.errors import ConfigError
from percep_rag.vlm.openflamingo.model import FlamingoBundle, assemble_flamingo, open_gates, prepare_tokenizer
from percep_rag.vlm.tiny_smolvlm import make_test_image

__all__ = ["TINY_NAME", "build_tiny_flamingo", "make_test_image", "train_tiny_tokenizer"]

TINY_NAME = "tiny-flamingo-random"
# Labels seen in "Output:{label}" position become whole tokens; longer or unseen names split
# into several, which is what the tests want (class names of different token lengths).
_TINY_LABELS = "airplane bird cat deer dog frog horse ship truck apple car yes no".split()
_TINY_CORPUS = "\n".join(
    [f"Output:{label}" for label in _TINY_LABELS]
    + [
        "Question: what is in the image? Short answer: an animal, a vehicle, a plant, a building.",
        "a photo of a caterpillar, a dogfish, a golden retriever, a camel, a castle, a dolphin, an elephant.",
    ]
)


def train_tiny_tokenizer(corpus: str = _TINY_CORPUS, vocab_size: int = 400) -> Any:
    """A byte-level BPE tokenizer trained here, on ``corpus``, with Flamingo's special tokens.

    Any text still tokenizes (byte fallback); words outside the corpus just take more tokens.

    >>> tok = train_tiny_tokenizer()
    >>> tok.convert_ids_to_tokens(tok("<image>Output:cat<|endofchunk|>").input_ids)[:2]
    ['<image>', 'Output']
    """
    from percep_rag.vlm.bpe import train_byte_bpe

    tokenizer = train_byte_bpe(
        corpus, ["<unk>", "<s>", "</s>"], vocab_size=vocab_size, unk_token="<unk>", bos_token="<s>", eos_token="</s>"
    )
    return prepare_tokenizer(tokenizer)


def _tiny_lm(kind: str, vocab_size: int, pad_id: int) -> nn.Module:
    if kind == "gpt-neox":
        from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

        config = GPTNeoXConfig(
            vocab_size=vocab_size,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=512,
            pad_token_id=pad_id,
            tie_word_embeddings=False,
        )
        return GPTNeoXForCausalLM(config)
    if kind == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        config = LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            pad_token_id=pad_id,
        )
        return LlamaForCausalLM(config)
    raise ConfigError(f"unknown tiny LM {kind!r}; use 'gpt-neox' or 'llama'")


_TINY_LAYERS_ATTR = {"gpt-neox": "gpt_neox.layers", "llama": "model.layers"}


def build_tiny_flamingo(
    seed: int = 0,
    *,
    lm: str = "gpt-neox",
    cross_attn_every_n_layers: int = 1,
    image_size: int = 32,
    gate: float = 1.0,
) -> FlamingoBundle:
    """A tiny OpenFlamingo with RANDOM weights, built offline in well under a second.

    A 2-layer open_clip ViT (QuickGELU, 64 wide, 8 px patches), a 2-layer GPT-NeoX (or
    Llama) LM of width 64, a BPE tokenizer trained locally, and the tanh gates set to
    ``gate`` so that the images change the output (at 0, the release init, they do not).
    Deterministic in ``seed``; the global RNG is left alone.

    >>> tiny = build_tiny_flamingo(seed=0)
    >>> tiny.name, tiny.random_weights, tuple(tiny.image_processor(make_test_image()).shape)
    ('tiny-flamingo-random', True, (3, 32, 32))
    """
    from open_clip.model import _build_vision_tower
    from open_clip.transform import image_transform

    from percep_rag.backbones._seed import build_seeded
    from percep_rag.backbones.openclip import OPENAI_MEAN, OPENAI_STD

    if lm not in _TINY_LAYERS_ATTR:
        raise ConfigError(f"unknown tiny LM {lm!r}; use one of {sorted(_TINY_LAYERS_ATTR)}")
    tokenizer = train_tiny_tokenizer()
    vision_cfg = dict(image_size=image_size, patch_size=8, width=64, layers=2, head_width=32, mlp_ratio=2.0)

    def build() -> Flamingo:
        tower = _build_vision_tower(32, vision_cfg, quick_gelu=True)
        language = _tiny_lm(lm, len(tokenizer), tokenizer.pad_token_id)
        model = assemble_flamingo(
            tower,
            vision_cfg["width"],
            language,
            tokenizer,
            decoder_layers_attr=_TINY_LAYERS_ATTR[lm],
            cross_attn_every_n_layers=cross_attn_every_n_layers,
        )
        open_gates(model, gate)
        return model

    model = build_seeded(build, seed)
    processor = image_transform(image_size, is_train=False, mean=OPENAI_MEAN, std=OPENAI_STD)
    return FlamingoBundle(model, tokenizer, processor, TINY_NAME, random_weights=True)
