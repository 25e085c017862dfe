"""Byte-level BPE tokenizers trained here, on a few lines of text: the tiny test models' tokenizers.

Nothing is downloaded. Any text still tokenizes (byte fallback); words outside the corpus
just take more tokens, which gives class names of different token lengths for free.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["train_byte_bpe"]


def train_byte_bpe(corpus: str, special_tokens: Sequence[str], *, vocab_size: int = 400, **named: Any) -> Any:
    """A ``PreTrainedTokenizerFast`` (byte-level BPE) trained on ``corpus``.

    ``special_tokens`` get the first ids, in order; ``named`` maps tokenizer roles
    (``unk_token=``, ``pad_token=``, ...) to some of them.

    >>> tok = train_byte_bpe("a cat\\na dog", ["<unk>", "<pad>"], unk_token="<unk>", pad_token="<pad>")
    >>> tok.pad_token_id, tok.decode(tok("a cat").input_ids)
    (1, 'a cat')
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token=named.get("unk_token")))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator([corpus] * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, **named)
