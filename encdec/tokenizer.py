"""A tokenizer on the ``tokenizers`` library that reads and writes Hugging Face tokenizer folders.

``Tokenizer.from_pretrained`` takes ``tokenizer.json`` when present, otherwise builds the
tokenizer from ``vocab.txt`` (BERT WordPiece) or ``vocab.json`` + ``merges.txt`` (GPT-2
byte-level BPE), reading special tokens from ``tokenizer_config.json`` /
``special_tokens_map.json``. ``__call__`` follows the ``transformers`` call: ``padding``,
``truncation``, ``max_length``, ``return_tensors`` in ``"np"``, ``"pt"``, ``"tf"``, ``"jax"``.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from encdec.checkpoint import atomic_write_text

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")

# transformers' `clean_up_tokenization`: glue punctuation and English contractions back on.
_CLEANUPS = [(" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
             (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")]


class BatchEncoding(dict):
    """A dict of model inputs that also allows attribute access (``enc.input_ids``)."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None


class Tokenizer:
    """Text <-> token ids.

    Args:
        backend: a ``tokenizers.Tokenizer``.
        special_tokens: ``{"pad_token": "[PAD]", ...}``.
        model_max_length: longest input the model takes (truncation default).
        clean_up_tokenization_spaces: undo the spaces WordPiece decoding puts before punctuation.
        model_input_names: which of ``input_ids``, ``token_type_ids``, ``attention_mask`` to return.
    """

    def __init__(self, backend: Any, special_tokens: Optional[Dict[str, str]] = None,
                 model_max_length: int = 512, clean_up_tokenization_spaces: bool = False,
                 model_input_names: Sequence[str] = ("input_ids", "token_type_ids", "attention_mask"),
                 extra_config: Optional[Dict[str, Any]] = None):
        self._tokenizer = backend
        # Calls decide padding and truncation; a tokenizer.json may carry fixed settings.
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        self.special_tokens = {k: v for k, v in (special_tokens or {}).items() if v is not None}
        self.model_max_length = int(model_max_length) if model_max_length and model_max_length < 10**9 else 10**9
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        self.model_input_names = list(model_input_names)
        self.extra_config = dict(extra_config or {})

    # --- loading -------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path_or_id: str, **hub_kwargs: Any) -> "Tokenizer":
        from tokenizers import Tokenizer as Backend

        from encdec.hub import resolve_file_optional

        def find(name: str) -> Optional[str]:
            return resolve_file_optional(path_or_id, name, **hub_kwargs)

        config: Dict[str, Any] = {}
        for name in (TOKENIZER_CONFIG_FILE, SPECIAL_TOKENS_MAP_FILE):
            file = find(name)
            if file:
                with open(file, "r", encoding="utf-8") as f:
                    for key, value in json.load(f).items():
                        config.setdefault(key, value)
        specials = {k: _token_content(config.get(k)) for k in SPECIAL_TOKEN_NAMES}

        tokenizer_file, vocab_txt = find(TOKENIZER_FILE), find("vocab.txt")
        vocab_json, merges = find("vocab.json"), find("merges.txt")
        if tokenizer_file:
            try:
                backend = Backend.from_file(tokenizer_file)
            except Exception as e:  # the tokenizers library raises a bare Exception
                raise ValueError(f"{tokenizer_file} is not a readable tokenizer file: {e}") from None
            kind = "bert" if "[CLS]" in backend.get_vocab() else "gpt2"
        elif vocab_txt:
            backend, kind = _wordpiece(vocab_txt, config), "bert"
        elif vocab_json and merges:
            backend, kind = _byte_level_bpe(vocab_json, merges), "gpt2"
        else:
            raise OSError(
                f"{str(path_or_id)!r} has no tokenizer: looked for {TOKENIZER_FILE}, vocab.txt, vocab.json + merges.txt"
            )
        if kind == "bert":
            defaults = {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                        "mask_token": "[MASK]"}
            names = ("input_ids", "token_type_ids", "attention_mask")
        else:
            defaults = {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>"}
            names = ("input_ids", "attention_mask")
        vocab = backend.get_vocab()
        for key, value in defaults.items():
            if specials.get(key) is None and value in vocab:
                specials[key] = value
        return cls(
            backend, specials,
            model_max_length=config.get("model_max_length", 512),
            clean_up_tokenization_spaces=config.get("clean_up_tokenization_spaces", False),
            model_input_names=config.get("model_input_names", names),
            extra_config={k: v for k, v in config.items() if k in ("do_lower_case", "tokenizer_class")},
        )

    # --- special tokens ------------------------------------------------------------------------
    def _special_id(self, name: str) -> Optional[int]:
        token = self.special_tokens.get(name)
        return None if token is None else self._tokenizer.token_to_id(token)

    pad_token_id = property(lambda self: self._special_id("pad_token"))
    bos_token_id = property(lambda self: self._special_id("bos_token"))
    eos_token_id = property(lambda self: self._special_id("eos_token"))
    unk_token_id = property(lambda self: self._special_id("unk_token"))
    sep_token_id = property(lambda self: self._special_id("sep_token"))
    cls_token_id = property(lambda self: self._special_id("cls_token"))
    mask_token_id = property(lambda self: self._special_id("mask_token"))
    pad_token = property(lambda self: self.special_tokens.get("pad_token"))

    @property
    def all_special_ids(self) -> List[int]:
        ids = {self._tokenizer.token_to_id(t) for t in self.special_tokens.values()}
        return sorted(i for i in ids if i is not None)

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=False)

    def __len__(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> Dict[str, int]:
        return self._tokenizer.get_vocab()

    def convert_tokens_to_ids(self, tokens: Union[str, List[str]]) -> Union[Optional[int], List[Optional[int]]]:
        if isinstance(tokens, str):
            found = self._tokenizer.token_to_id(tokens)
            return self.unk_token_id if found is None else found
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: Union[int, List[int]]) -> Union[Optional[str], List[Optional[str]]]:
        if isinstance(ids, (int, np.integer)):
            return self._tokenizer.id_to_token(int(ids))
        return [self._tokenizer.id_to_token(int(i)) for i in ids]

    def tokenize(self, text: str) -> List[str]:
        return self._tokenizer.encode(text, add_special_tokens=False).tokens

    # --- encoding ------------------------------------------------------------------------------
    def __call__(self, text: Union[str, Sequence[str]], padding: Union[bool, str] = False,
                 truncation: Union[bool, str] = False, max_length: Optional[int] = None,
                 return_tensors: Optional[str] = None, add_special_tokens: bool = True,
                 return_attention_mask: Optional[bool] = None,
                 return_token_type_ids: Optional[bool] = None) -> BatchEncoding:
        single = isinstance(text, str)
        texts = [text] if single else list(text)
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("text must be a string or a list of strings")
        if padding not in (False, True, "longest", "max_length", "do_not_pad"):
            raise ValueError(f"padding must be True/False, 'longest' or 'max_length', got {padding!r}")
        if truncation not in (False, True, "longest_first", "only_first", "do_not_truncate"):
            raise ValueError(f"truncation must be True/False or 'longest_first', got {truncation!r}")
        truncate = truncation not in (False, "do_not_truncate")
        limit = max_length if max_length is not None else self.model_max_length
        if truncate:
            self._tokenizer.enable_truncation(limit)
        pad_to_max = padding == "max_length"
        pad = padding not in (False, "do_not_pad")
        if pad:
            if self.pad_token_id is None:
                raise ValueError("padding needs a pad token, and this tokenizer has none (set special_tokens['pad_token'])")
            if pad_to_max and max_length is None:
                raise ValueError("padding='max_length' needs max_length")
            self._tokenizer.enable_padding(pad_id=self.pad_token_id, pad_token=self.pad_token,
                                           length=max_length if pad_to_max else None)
        try:
            encodings = self._tokenizer.encode_batch(texts, add_special_tokens=add_special_tokens)
        finally:
            self._tokenizer.no_padding()
            self._tokenizer.no_truncation()

        want_mask = "attention_mask" in self.model_input_names if return_attention_mask is None else return_attention_mask
        want_types = "token_type_ids" in self.model_input_names if return_token_type_ids is None else return_token_type_ids
        out: Dict[str, Any] = {"input_ids": [e.ids for e in encodings]}
        if want_types:
            out["token_type_ids"] = [e.type_ids for e in encodings]
        if want_mask:
            out["attention_mask"] = [e.attention_mask for e in encodings]
        if return_tensors is not None:
            lengths = {len(ids) for ids in out["input_ids"]}
            if len(lengths) > 1:
                raise ValueError(
                    f"texts of different lengths {sorted(lengths)} cannot form one tensor: pass padding=True"
                )
            out = {k: _as_tensor(np.asarray(v, dtype=np.int64), return_tensors) for k, v in out.items()}
        elif single:
            out = {k: v[0] for k, v in out.items()}
        return BatchEncoding(out)

    def encode(self, text: str, add_special_tokens: bool = True, **kwargs: Any) -> List[int]:
        return self(text, add_special_tokens=add_special_tokens, **kwargs)["input_ids"]

    # --- decoding ------------------------------------------------------------------------------
    def decode(self, ids: Any, skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: Optional[bool] = None) -> str:
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        text = self._tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)
        clean = self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None else clean_up_tokenization_spaces
        if clean:
            for old, new in _CLEANUPS:
                text = text.replace(old, new)
        return text

    def batch_decode(self, sequences: Any, skip_special_tokens: bool = False, **kwargs: Any) -> List[str]:
        return [self.decode(s, skip_special_tokens=skip_special_tokens, **kwargs) for s in np.asarray(sequences)]

    # --- saving --------------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str) -> List[str]:
        os.makedirs(save_directory, exist_ok=True)
        config = dict(self.extra_config)
        config.update(self.special_tokens)
        config.update(model_max_length=self.model_max_length,
                      clean_up_tokenization_spaces=self.clean_up_tokenization_spaces,
                      model_input_names=self.model_input_names)
        files = {
            TOKENIZER_FILE: self._tokenizer.to_str(),
            TOKENIZER_CONFIG_FILE: json.dumps(config, indent=2, sort_keys=True) + "\n",
            SPECIAL_TOKENS_MAP_FILE: json.dumps(self.special_tokens, indent=2, sort_keys=True) + "\n",
        }
        for name, text in files.items():
            atomic_write_text(os.path.join(save_directory, name), text)
        return list(files)


AutoTokenizer = Tokenizer


def _token_content(value: Any) -> Optional[str]:
    if isinstance(value, dict):  # AddedToken serialised by transformers
        return value.get("content")
    return value


def _as_tensor(array: np.ndarray, kind: str) -> Any:
    if kind == "np":
        return array
    if kind == "pt":
        import torch

        return torch.from_numpy(array)
    if kind == "tf":
        import tensorflow as tf

        return tf.constant(array)
    if kind == "jax":
        import jax.numpy as jnp

        return jnp.asarray(array)
    raise ValueError(f"return_tensors must be 'np', 'pt', 'tf' or 'jax', got {kind!r}")


def _wordpiece(vocab_file: str, config: Dict[str, Any]) -> Any:
    from tokenizers import Tokenizer as Backend
    from tokenizers import decoders, models, normalizers, pre_tokenizers, processors

    unk = _token_content(config.get("unk_token")) or "[UNK]"
    cls_tok = _token_content(config.get("cls_token")) or "[CLS]"
    sep = _token_content(config.get("sep_token")) or "[SEP]"
    vocab = models.WordPiece.read_file(vocab_file)
    backend = Backend(models.WordPiece(vocab, unk_token=unk, max_input_chars_per_word=100))
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=config.get("tokenize_chinese_chars", True),
        strip_accents=config.get("strip_accents"), lowercase=config.get("do_lower_case", True))
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.post_processor = processors.TemplateProcessing(
        single=f"{cls_tok}:0 $A:0 {sep}:0", pair=f"{cls_tok}:0 $A:0 {sep}:0 $B:1 {sep}:1",
        special_tokens=[(cls_tok, vocab[cls_tok]), (sep, vocab[sep])])
    backend.decoder = decoders.WordPiece(prefix="##")
    specials = [t for t in (unk, cls_tok, sep, "[PAD]", "[MASK]") if t in vocab]
    backend.add_special_tokens(specials)
    return backend


def _byte_level_bpe(vocab_file: str, merges_file: str) -> Any:
    from tokenizers import Tokenizer as Backend
    from tokenizers import decoders, models, pre_tokenizers, processors

    backend = Backend(models.BPE.from_file(vocab_file, merges_file))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    if "<|endoftext|>" in backend.get_vocab():
        backend.add_special_tokens(["<|endoftext|>"])
    return backend
