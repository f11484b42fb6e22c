"""The two tokenizers of an encoder-decoder: the encoder's reads the source, the decoder's writes
the target. Warm-started from two checkpoints with different vocabularies (bert2gpt2), the saved
folder holds the encoder's tokenizer and the decoder's in ``decoder_tokenizer/``; ``encdec demo``,
``encdec train`` and ``encdec generate`` share that layout and the special-token rules below."""

from __future__ import annotations

import os
from typing import Optional, Tuple

from encdec.tokenizer import AutoTokenizer

DECODER_TOKENIZER = "decoder_tokenizer"  # subfolder for the decoder's tokenizer when it differs


def decoder_special_ids(tokenizer) -> Tuple[int, Optional[int], int]:
    """(decoder_start, eos, pad) of a warm start from the decoder's tokenizer: [CLS]/[SEP] for a
    BERT-like vocabulary, BOS/EOS otherwise; a tokenizer without a pad token (GPT-2) pads with EOS."""
    start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    eos = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    if start is None or pad is None:
        raise ValueError("the decoder's tokenizer names no start token ([CLS] or BOS) "
                         "or no pad/end token; set decoder_start_token_id and pad_token_id in the model's config")
    return start, eos, pad


def load_pair(encoder: str, decoder: str):
    """(encoder tokenizer, decoder tokenizer, distinct) of a warm start from two checkpoints."""
    encoder_tokenizer = AutoTokenizer.from_pretrained(encoder)
    if os.path.abspath(decoder) == os.path.abspath(encoder) or decoder == encoder:
        return encoder_tokenizer, encoder_tokenizer, False
    return encoder_tokenizer, AutoTokenizer.from_pretrained(decoder), True


def load_saved(folder: str, tokenizer: Optional[str] = None):
    """(encoder tokenizer, decoder tokenizer, distinct) of a saved model folder (or ``tokenizer``)."""
    source = tokenizer or folder
    encoder_tokenizer = AutoTokenizer.from_pretrained(source)
    sub = os.path.join(source, DECODER_TOKENIZER)
    if os.path.isdir(sub):
        return encoder_tokenizer, AutoTokenizer.from_pretrained(sub), True
    return encoder_tokenizer, encoder_tokenizer, False


def save_pair(folder: str, encoder_tokenizer, decoder_tokenizer, distinct: bool) -> None:
    encoder_tokenizer.save_pretrained(folder)
    if distinct:
        decoder_tokenizer.save_pretrained(os.path.join(folder, DECODER_TOKENIZER))
