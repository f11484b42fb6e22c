"""A tokenizer on the ``tokenizers`` library that reads and writes Hugging Face tokenizer folders.

``Tokenizer.from_pretrained`` takes ``tokenizer.json`` when present, otherwise builds the
tokenizer from ``vocab.txt`` (BERT WordPiece), ``vocab.json`` + ``merges.txt`` (byte-level BPE of
GPT-2, RoBERTa, BART) or a SentencePiece model (``sentencepiece.bpe.model`` of XLM-R / CamemBERT,
``spiece.model`` of BertGeneration), reading special tokens from ``tokenizer_config.json`` /
``special_tokens_map.json``; keyword arguments override the files as in ``transformers``
(special tokens absent from the vocabulary are added as new tokens). ``__call__`` follows the
``transformers`` call: pairs (``text_pair`` or a batch of ``(a, b)`` tuples), ``text_target``
(-> ``labels``), ``padding``, ``truncation``, ``max_length``, ``padding_side``,
``return_tensors`` in ``"np"``, ``"pt"``, ``"tf"``, ``"jax"``.

``BertTokenizer`` / ``BertTokenizerFast`` and ``GPT2Tokenizer`` / ``GPT2TokenizerFast`` are this
class bound to one tokenizer family: loading a folder of another family through them raises
(the reference only logs a warning and then tokenizes with the wrong defaults).
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from encdec.files import atomic_write_bytes, atomic_write_text
from encdec.hub import HUB_KWARGS
from encdec.registry import TokenizerFamily, records

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
SPIECE_FILE = "spiece.model"  # BertGeneration's (and T5's) SentencePiece model
SPM_BPE_FILE = "sentencepiece.bpe.model"  # XLM-R's and CamemBERT's
# The reference's SPECIAL_TOKENS_ATTRIBUTES order: it decides the ids of special tokens that
# from_pretrained adds, and the order of all_special_tokens.
SPECIAL_TOKEN_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")
# transformers' VERY_LARGE_INTEGER / LARGE_INTEGER: "no maximum length" and the bound above which
# a model_max_length means that.
NO_MAX_LENGTH = int(1e30)
_LARGE = int(1e20)

# transformers' `clean_up_tokenization`: glue punctuation and English contractions back on.
_CLEANUPS = [(" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
             (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")]
_SIDES = ("right", "left")
_PADDINGS = (False, True, "longest", "max_length", "do_not_pad")
_TRUNCATIONS = (None, False, True, "longest_first", "only_first", "only_second", "do_not_truncate")
# Settings from tokenizer_config.json / keyword arguments that are kept and saved again.
_KEPT_CONFIG = ("do_lower_case", "strip_accents", "tokenize_chinese_chars", "add_prefix_space", "add_bos_token",
                "tokenizer_class")


# The reference's PreTrainedTokenizerFast, for folders of a class no record names: no default special tokens.
GENERIC = TokenizerFamily("generic", None, {}, ("input_ids", "token_type_ids", "attention_mask"))


# The family of a folder whose tokenizer_config.json names no class, by the files it holds.
_FAMILY_OF_FILES = {"wordpiece": "wordpiece", "bpe": "byte_level_bpe", SPIECE_FILE: "sentencepiece",
                    SPM_BPE_FILE: "xlm_roberta_spm"}


def _families() -> Dict[str, TokenizerFamily]:
    """The tokenizer families of the registered architectures, by name, and the generic one."""
    families = {record.tokenizer.name: record.tokenizer for record in records()}
    families.setdefault(GENERIC.name, GENERIC)
    return families


def _tokenizer_family(tokenizer_class: Optional[str], files: str) -> TokenizerFamily:
    """The rules of a folder's tokenizer from its ``tokenizer_class``, else from its files
    (``files``: ``"wordpiece"`` for vocab.txt or a WordPiece tokenizer.json, ``"bpe"``). Unknown
    classes get the reference's generic fast tokenizer (no default special tokens). The families
    are the architecture records' (``Architecture.tokenizer``)."""
    families = _families()
    if tokenizer_class is not None:
        for family in families.values():
            if tokenizer_class in family.class_names:
                return family
        return GENERIC
    return families.get(_FAMILY_OF_FILES.get(files, ""), GENERIC)


class BatchEncoding(dict):
    """A dict of model inputs that also allows attribute access (``enc.input_ids``)."""

    def __getattr__(self, key: str) -> Any:
        try:
            return self[key]
        except KeyError:
            raise AttributeError(key) from None

    def to(self, device: Any) -> "BatchEncoding":
        """The reference's ``BatchEncoding.to``: moves PyTorch tensors to ``device`` (a torch device or
        its name); other values are kept. Returns self, as the reference does."""
        if not (isinstance(device, (str, int)) or type(device).__name__ == "device"):
            raise TypeError(f"BatchEncoding.to expects a device (a torch.device, a string or an int), got {device!r}")
        for key, value in self.items():
            if type(value).__module__.startswith("torch") and hasattr(value, "to"):
                self[key] = value.to(device=device)
        return self


def _special_property(name: str) -> property:
    def get(self: "Tokenizer") -> Optional[str]:
        return self._special[name]

    def set_(self: "Tokenizer", value: Any) -> None:
        self._special[name] = _token_text(value, name)

    return property(get, set_, doc=f"The {name.replace('_', ' ')} (a string, or None).")


def _special_id_property(name: str) -> property:
    def get(self: "Tokenizer") -> Optional[int]:
        token = self._special[name]
        return None if token is None else self.convert_tokens_to_ids(token)

    def set_(self: "Tokenizer", value: Optional[int]) -> None:
        self._special[name] = None if value is None else self.convert_ids_to_tokens(int(value))

    return property(get, set_, doc=f"The id of the {name.replace('_', ' ')} (None when it is not set).")


class Tokenizer:
    """Text <-> token ids.

    Args:
        backend: a ``tokenizers.Tokenizer``.
        special_tokens: ``{"pad_token": "[PAD]", ...}``; tokens absent from the backend are not added
            here (``from_pretrained`` and ``add_special_tokens`` add them).
        additional_special_tokens: further special tokens (skipped by ``skip_special_tokens``).
        model_max_length: longest input the model takes (truncation default).
        padding_side, truncation_side: ``"right"`` or ``"left"``.
        clean_up_tokenization_spaces: undo the spaces WordPiece decoding puts before punctuation.
        model_input_names: which of ``input_ids``, ``token_type_ids``, ``attention_mask`` to return.
        extra_config: other ``tokenizer_config.json`` settings kept for saving (``do_lower_case``, ...).
        sentencepiece_model: ``(file name, bytes)`` of the SentencePiece model the folder held, saved
            again beside tokenizer.json.
        slow_only: follow the reference's slow tokenizer (``TokenizerFamily.slow_only``) in pair
            truncation and decoding.
    """

    _family: Optional[str] = None  # set by the classes bound to one family (BertTokenizer)

    def __init__(self, backend: Any, special_tokens: Optional[Dict[str, Any]] = None,
                 model_max_length: Optional[int] = None, clean_up_tokenization_spaces: bool = False,
                 model_input_names: Sequence[str] = ("input_ids", "token_type_ids", "attention_mask"),
                 extra_config: Optional[Dict[str, Any]] = None,
                 additional_special_tokens: Sequence[Any] = (), padding_side: str = "right",
                 truncation_side: str = "right", sentencepiece_model: Optional[Tuple[str, bytes]] = None,
                 slow_only: bool = False):
        self._tokenizer = backend
        # Calls decide padding and truncation; a tokenizer.json may carry fixed settings.
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        unknown = set(special_tokens or {}) - set(SPECIAL_TOKEN_NAMES)
        if unknown:
            raise ValueError(f"unknown special tokens {sorted(unknown)}; the names are {list(SPECIAL_TOKEN_NAMES)}")
        self._special: Dict[str, Optional[str]] = {
            name: _token_text((special_tokens or {}).get(name), name) for name in SPECIAL_TOKEN_NAMES}
        self.additional_special_tokens = list(additional_special_tokens)
        self.model_max_length = NO_MAX_LENGTH if model_max_length is None else int(model_max_length)
        self.padding_side = padding_side
        self.truncation_side = truncation_side
        self.clean_up_tokenization_spaces = clean_up_tokenization_spaces
        self.model_input_names = list(model_input_names)
        self.extra_config = dict(extra_config or {})
        self._sentencepiece_model = sentencepiece_model
        self._sentencepiece_processor: Any = None  # loaded on the first slow decode
        self._slow_only = slow_only

    # --- loading -------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path_or_id: Union[str, os.PathLike], **kwargs: Any) -> "Tokenizer":
        """Load a tokenizer folder or hub repo.

        Keyword arguments: the hub's (``revision``, ``cache_dir``, ``token``, ``local_files_only``,
        ``subfolder``, ...), and settings that override the folder's: any ``*_token``,
        ``additional_special_tokens``, ``model_max_length``, ``padding_side``, ``truncation_side``,
        ``clean_up_tokenization_spaces``, ``model_input_names``; BERT's ``do_lower_case``,
        ``strip_accents``, ``tokenize_chinese_chars``; GPT-2's ``add_prefix_space``.
        """
        from tokenizers import Tokenizer as Backend

        from encdec.hub import resolve_file_optional

        hub_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in HUB_KWARGS}
        kwargs.pop("use_fast", None)  # this tokenizer is always the fast one
        settings = set(SPECIAL_TOKEN_NAMES) | {
            "additional_special_tokens", "model_max_length", "padding_side", "truncation_side",
            "clean_up_tokenization_spaces", "model_input_names"} | set(_KEPT_CONFIG) - {"tokenizer_class"}
        unknown = set(kwargs) - settings
        if unknown:
            raise TypeError(f"{cls.__name__}.from_pretrained got unknown arguments {sorted(unknown)}; "
                            f"accepted: {sorted(settings | HUB_KWARGS)}")

        def find(name: str) -> Optional[str]:
            return resolve_file_optional(path_or_id, name, **hub_kwargs)

        config = _read_json(find(TOKENIZER_CONFIG_FILE))
        # As the reference: special_tokens_map.json wins over tokenizer_config.json unless the latter
        # was saved with its added_tokens_decoder (transformers >= 4.34 writes both consistently).
        if "added_tokens_decoder" not in config:
            for key, value in _read_json(find(SPECIAL_TOKENS_MAP_FILE)).items():
                if key == "additional_special_tokens":
                    known = list(config.get(key) or [])
                    config[key] = known + [t for t in value if t not in known]
                else:
                    config[key] = value

        tokenizer_file, vocab_txt = find(TOKENIZER_FILE), find("vocab.txt")
        vocab_json, merges = find("vocab.json"), find("merges.txt")
        spm_model, spm_name = None, None
        if not (tokenizer_file or vocab_txt or vocab_json and merges):
            spm_name = next((n for n in (SPM_BPE_FILE, SPIECE_FILE) if find(n)), None)
            spm_model = find(spm_name) if spm_name else None
        if tokenizer_file:
            try:
                backend = Backend.from_file(tokenizer_file)
            except Exception as e:  # the tokenizers library raises a bare Exception
                raise ValueError(f"{tokenizer_file} is not a readable tokenizer file: {e}") from None
            files = type(backend.model).__name__.lower()
        elif vocab_txt:
            backend, files = None, "wordpiece"
        elif vocab_json and merges:
            backend, files = None, "bpe"
        elif spm_model:
            backend, files = None, spm_name
        else:
            raise OSError(
                f"{str(path_or_id)!r} has no tokenizer: looked for {TOKENIZER_FILE}, vocab.txt, "
                f"vocab.json + merges.txt, {SPM_BPE_FILE}, {SPIECE_FILE}"
            )
        family = _tokenizer_family(config.get("tokenizer_class"), files)
        if spm_model is None and family.sentencepiece_file:
            spm_name = family.sentencepiece_file
            spm_model = find(spm_name)
        spm_bytes = None
        if spm_model:
            with open(spm_model, "rb") as f:
                spm_bytes = f.read()
        if cls._family is not None and family.name != cls._family:
            raise ValueError(
                f"{str(path_or_id)!r} holds a {config.get('tokenizer_class') or family.name} tokenizer, not one of "
                f"{cls.__name__}'s family ({cls._family}); load it with AutoTokenizer.from_pretrained"
            )
        for key in set(kwargs) & set(_KEPT_CONFIG):
            normalizer_key = key in ("do_lower_case", "strip_accents", "tokenize_chinese_chars")
            # Byte-level BPE settings; a SentencePiece BPE tokenizer.json also has a BPE model.
            byte_level = files in ("bpe", "byte_level_bpe") and not family.sentencepiece_file
            if key in ("add_prefix_space", "add_bos_token") and not byte_level or (
                    normalizer_key and not family.normalizer_options):
                raise ValueError(f"{key}= does not apply to a {family.class_name or 'generic'} tokenizer")
        config.update(kwargs)
        built_here = backend is None
        if built_here:
            if files == "wordpiece":
                backend = _wordpiece(vocab_txt, config)
            elif files == "bpe":
                backend = _byte_level_bpe(vocab_json, merges, config, family)
            else:
                backend = _sentencepiece(spm_bytes, spm_model, family)

        # Sides a tokenizer.json fixes are the defaults (as the reference); then the config's.
        padding_side = (backend.padding or {}).get("direction", "right").lower()
        truncation_side = (backend.truncation or {}).get("direction", "right").lower()
        specials = {name: config.get(name, family.special_tokens.get(name)) for name in SPECIAL_TOKEN_NAMES}
        additional = config.get("additional_special_tokens") or []
        _rewrite_normalizer(backend, family, config)
        _rewrite_prefix_space(backend, config.get("add_prefix_space", False))
        tok = cls(
            backend, specials,
            model_max_length=config.get("model_max_length", config.get("max_len")),
            clean_up_tokenization_spaces=config.get("clean_up_tokenization_spaces", False),
            model_input_names=config.get("model_input_names") or family.model_input_names,
            extra_config={k: config[k] for k in _KEPT_CONFIG if k in config},
            additional_special_tokens=[_token_text(t, "additional_special_tokens") for t in additional],
            padding_side=config.get("padding_side", padding_side),
            truncation_side=config.get("truncation_side", truncation_side),
            sentencepiece_model=(spm_name, spm_bytes) if spm_bytes is not None else None,
            slow_only=family.slow_only,
        )
        tok.extra_config.setdefault("tokenizer_class", family.class_name)
        to_add = _tokens_to_add(backend, config, family, built_here)
        if to_add:
            backend.add_tokens(to_add)
        # After the additions: a [CLS] / [SEP] may be an added token (the reference's converter takes
        # their ids from the slow tokenizer, which has added them by then).
        if built_here and files == "wordpiece":
            backend.post_processor = _bert_post_processor(backend, tok.cls_token, tok.sep_token)
        elif built_here and family.template is not None:
            backend.post_processor = _template_processor(backend, family.template, tok._special)
        return tok

    # --- special tokens ------------------------------------------------------------------------
    bos_token = _special_property("bos_token")
    eos_token = _special_property("eos_token")
    unk_token = _special_property("unk_token")
    sep_token = _special_property("sep_token")
    pad_token = _special_property("pad_token")
    cls_token = _special_property("cls_token")
    mask_token = _special_property("mask_token")
    bos_token_id = _special_id_property("bos_token")
    eos_token_id = _special_id_property("eos_token")
    sep_token_id = _special_id_property("sep_token")
    pad_token_id = _special_id_property("pad_token")
    cls_token_id = _special_id_property("cls_token")
    mask_token_id = _special_id_property("mask_token")

    @property
    def unk_token_id(self) -> Optional[int]:
        # Straight from the vocabulary: convert_tokens_to_ids falls back to this id.
        token = self._special["unk_token"]
        return None if token is None else self._tokenizer.token_to_id(token)

    @unk_token_id.setter
    def unk_token_id(self, value: Optional[int]) -> None:
        self._special["unk_token"] = None if value is None else self.convert_ids_to_tokens(int(value))

    @property
    def additional_special_tokens(self) -> List[str]:
        return list(self._additional)

    @additional_special_tokens.setter
    def additional_special_tokens(self, tokens: Sequence[Any]) -> None:
        if isinstance(tokens, str) or not all(t is not None for t in tokens):
            raise ValueError(f"additional_special_tokens must be a list of tokens, got {tokens!r}")
        self._additional = [_token_text(t, "additional_special_tokens") for t in tokens]

    @property
    def additional_special_tokens_ids(self) -> List[int]:
        return self.convert_tokens_to_ids(self._additional)

    @property
    def special_tokens_map(self) -> Dict[str, Any]:
        """The set special tokens by name, as the reference (``additional_special_tokens`` a list)."""
        out: Dict[str, Any] = {k: v for k, v in self._special.items() if v is not None}
        if self._additional:
            out["additional_special_tokens"] = list(self._additional)
        return out

    @property
    def all_special_tokens(self) -> List[str]:
        tokens = [v for v in self._special.values() if v is not None] + self._additional
        return list(dict.fromkeys(tokens))

    @property
    def all_special_ids(self) -> List[int]:
        return self.convert_tokens_to_ids(self.all_special_tokens)

    @property
    def padding_side(self) -> str:
        return self._padding_side

    @padding_side.setter
    def padding_side(self, side: str) -> None:
        self._padding_side = _side(side, "padding_side")

    @property
    def truncation_side(self) -> str:
        return self._truncation_side

    @truncation_side.setter
    def truncation_side(self, side: str) -> None:
        self._truncation_side = _side(side, "truncation_side")

    def add_tokens(self, new_tokens: Any, special_tokens: bool = False) -> int:
        """Add tokens (strings or ``tokenizers.AddedToken``) to the vocabulary; returns how many were new."""
        if not new_tokens:
            return 0
        if not isinstance(new_tokens, (list, tuple)):
            new_tokens = [new_tokens]
        from tokenizers import AddedToken

        bad = [t for t in new_tokens if not isinstance(t, (str, AddedToken))]
        if bad:
            raise TypeError(f"tokens to add must be strings or tokenizers.AddedToken, got {bad!r}")
        tokens = list(new_tokens)  # the backend makes strings AddedTokens with the reference's flags
        if special_tokens:
            return self._tokenizer.add_special_tokens(tokens)
        return self._tokenizer.add_tokens(tokens)

    def add_special_tokens(self, special_tokens_dict: Mapping[str, Any],
                           replace_additional_special_tokens: bool = True) -> int:
        """Set special tokens (``{"pad_token": "<pad>", "additional_special_tokens": [...]}``) and add
        those absent from the vocabulary; returns how many were new."""
        if not special_tokens_dict:
            return 0
        to_add: List[Any] = []
        for key, value in special_tokens_dict.items():
            if key == "additional_special_tokens":
                if isinstance(value, str) or not isinstance(value, (list, tuple)):
                    raise ValueError(f"additional_special_tokens must be a list of tokens, got {value!r}")
                new = [_added_token(t, special=True) for t in value]
                if not replace_additional_special_tokens:
                    new = [t for t in new if t.content not in self._additional]
                if replace_additional_special_tokens and new:
                    self._additional = [t.content for t in new]
                else:
                    self._additional.extend(t.content for t in new)
                to_add += new
            elif key in SPECIAL_TOKEN_NAMES:
                token = _added_token(value, special=True, name=key)
                self._special[key] = token.content
                if token.content not in [t.content for t in to_add]:
                    to_add.append(token)
            else:
                raise ValueError(f"{key!r} is not a special token name; the names are "
                                 f"{list(SPECIAL_TOKEN_NAMES) + ['additional_special_tokens']}")
        return self._tokenizer.add_special_tokens(to_add)

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=False)

    def __len__(self) -> int:
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def get_vocab(self) -> Dict[str, int]:
        return self._tokenizer.get_vocab()

    def get_added_vocab(self) -> Dict[str, int]:
        decoder = self._tokenizer.get_added_tokens_decoder()
        return {decoder[i].content: i for i in sorted(decoder)}

    def convert_tokens_to_ids(self, tokens: Union[str, Sequence[str]]) -> Union[Optional[int], List[Optional[int]]]:
        """Ids of tokens; a token absent from the vocabulary gives the unknown token's id (as the reference)."""
        if isinstance(tokens, str):
            found = self._tokenizer.token_to_id(tokens)
            return self.unk_token_id if found is None else found
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: Union[int, Sequence[int]],
                              skip_special_tokens: bool = False) -> Union[Optional[str], List[Optional[str]]]:
        if isinstance(ids, (int, np.integer)):
            return self._tokenizer.id_to_token(int(ids))
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        return [self._tokenizer.id_to_token(int(i)) for i in _id_list(ids) if int(i) not in skip]

    def tokenize(self, text: str, pair: Optional[str] = None, add_special_tokens: bool = False) -> List[str]:
        return self._tokenizer.encode(text, pair, add_special_tokens=add_special_tokens).tokens

    # --- encoding ------------------------------------------------------------------------------
    def __call__(self, text: Any = None, text_pair: Any = None, text_target: Any = None,
                 text_pair_target: Any = None, add_special_tokens: bool = True,
                 padding: Union[bool, str] = False, truncation: Union[bool, str, None] = None,
                 max_length: Optional[int] = None, pad_to_multiple_of: Optional[int] = None,
                 padding_side: Optional[str] = None, return_tensors: Optional[str] = None,
                 return_token_type_ids: Optional[bool] = None,
                 return_attention_mask: Optional[bool] = None) -> BatchEncoding:
        """Encode text (a string, a list of strings, a list of ``(a, b)`` pairs) and, with
        ``text_target``, the targets of a sequence-to-sequence model as ``labels`` (their
        ``input_ids``, padded like the inputs with the pad id)."""
        if text is None and text_target is None:
            raise ValueError("give text, text_target or both")
        if return_tensors is not None and return_tensors not in ("np", "pt", "tf", "jax"):
            raise ValueError(f"return_tensors must be 'np', 'pt', 'tf' or 'jax', got {return_tensors!r}")
        options = dict(add_special_tokens=add_special_tokens, padding=padding, truncation=truncation,
                       max_length=max_length, pad_to_multiple_of=pad_to_multiple_of, padding_side=padding_side,
                       return_token_type_ids=return_token_type_ids, return_attention_mask=return_attention_mask)
        out, single = self._encode(text, text_pair, **options) if text is not None else (None, None)
        if text_target is not None:
            target, target_single = self._encode(text_target, text_pair_target, **options)
            if out is None:
                out, single = target, target_single
            elif single != target_single or not single and len(out["input_ids"]) != len(target["input_ids"]):
                raise ValueError("text and text_target must both be one text or batches of the same size")
            else:
                out["labels"] = target["input_ids"]
        if return_tensors is not None:
            tensors = {}
            for key, value in out.items():
                rows = [value] if single else value
                lengths = sorted({len(r) for r in rows})
                if len(lengths) > 1:
                    raise ValueError(f"{key} of different lengths {lengths} cannot form one tensor: pass padding=True")
                tensors[key] = _as_tensor(np.asarray(rows, dtype=np.int64).reshape(len(rows), -1), return_tensors)
            out = tensors
        return BatchEncoding(out)

    def _encode(self, text: Any, text_pair: Any, add_special_tokens: bool, padding: Union[bool, str],
                truncation: Union[bool, str, None], max_length: Optional[int], pad_to_multiple_of: Optional[int],
                padding_side: Optional[str], return_token_type_ids: Optional[bool],
                return_attention_mask: Optional[bool]) -> Tuple[Dict[str, Any], bool]:
        single = isinstance(text, str)
        if single:
            if text_pair is not None and not isinstance(text_pair, str):
                raise TypeError("text is one string, so text_pair must be one string too")
            # As the reference, an empty pair is no pair for one text (but is one in a batch).
            inputs: List[Any] = [(text, text_pair) if text_pair else text]
        elif isinstance(text, (list, tuple)):
            if text_pair is not None:
                if isinstance(text_pair, str) or len(text_pair) != len(text):
                    raise ValueError("text_pair must be a list as long as text")
                inputs = list(zip(text, text_pair))
            else:
                inputs = [tuple(t) if isinstance(t, (list, tuple)) else t for t in text]
        else:
            raise TypeError(
                f"text must be a string, a list of strings or of (text, pair) tuples, got {type(text).__name__}")
        for item in inputs:
            parts = item if isinstance(item, tuple) else (item,)
            if len(parts) > 2 or not all(isinstance(p, str) for p in parts):
                raise TypeError(f"each text must be a string or a (text, pair) of strings, got {item!r}")

        if padding not in _PADDINGS:
            raise ValueError(f"padding must be True/False, 'longest', 'max_length' or 'do_not_pad', got {padding!r}")
        if truncation not in _TRUNCATIONS:
            raise ValueError(f"truncation must be True/False, 'longest_first', 'only_first' or 'only_second', "
                             f"got {truncation!r}")
        side = self.padding_side if padding_side is None else _side(padding_side, "padding_side")
        # The reference's rules: max_length alone turns truncation on; with no max_length, padding
        # to max_length and truncation use model_max_length.
        if max_length is not None and padding is False and truncation is None:
            truncation = "longest_first"
        truncate = truncation not in (None, False, "do_not_truncate")
        pad = padding not in (False, "do_not_pad")
        pad_to_max = padding == "max_length"
        limit = max_length
        if limit is None and (truncate or pad_to_max):
            if self.model_max_length > _LARGE:
                if pad_to_max:
                    raise ValueError("padding='max_length' needs max_length: this tokenizer has no model_max_length")
                truncate = False
            limit = self.model_max_length
        if pad and self.pad_token is None:
            raise ValueError("padding needs a pad token, and this tokenizer has none: set tokenizer.pad_token "
                             "(e.g. = tokenizer.eos_token) or add one with add_special_tokens({'pad_token': ...})")
        if truncate and pad and pad_to_multiple_of and limit % pad_to_multiple_of:
            raise ValueError(f"truncation length {limit} is not a multiple of pad_to_multiple_of {pad_to_multiple_of}")
        strategy = "longest_first" if truncation is True else truncation
        if truncate and strategy == "longest_first" and self._slow_only and any(isinstance(i, tuple) for i in inputs):
            encodings = self._encode_slow_longest_first(inputs, limit, add_special_tokens)
            if pad:
                length = limit if pad_to_max else max(len(e) for e in encodings)
                if pad_to_multiple_of and length % pad_to_multiple_of:
                    length += pad_to_multiple_of - length % pad_to_multiple_of
                for encoding in encodings:
                    encoding.pad(length, direction=side, pad_id=self.pad_token_id, pad_token=self.pad_token)
        else:
            if truncate:
                self._tokenizer.enable_truncation(limit, strategy=strategy, direction=self.truncation_side)
            if pad:
                self._tokenizer.enable_padding(direction=side, pad_id=self.pad_token_id, pad_token=self.pad_token,
                                               length=limit if pad_to_max else None,
                                               pad_to_multiple_of=pad_to_multiple_of)
            try:
                encodings = self._tokenizer.encode_batch(inputs, add_special_tokens=add_special_tokens)
            except Exception as e:  # the tokenizers library raises a bare Exception (e.g. pairs too long)
                raise ValueError(f"cannot encode the text: {e}") from None
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
        if single:
            out = {k: v[0] for k, v in out.items()}
        return out, single

    def _encode_slow_longest_first(self, inputs: Sequence[Any], limit: int, add_special_tokens: bool) -> List[Any]:
        """Encodings truncated to ``limit`` as the reference's slow tokenizers truncate: one token at a
        time from the longer sequence of a pair, from the second when both are as long (``tokenizers``
        gives the odd token to the longer one, the second on a tie)."""
        encodings = []
        for item in inputs:
            parts = item if isinstance(item, tuple) else (item,)
            pieces = [self._tokenizer.encode(part, add_special_tokens=False) for part in parts]
            lengths = [len(p) for p in pieces]
            specials = self._tokenizer.num_special_tokens_to_add(len(parts) == 2) if add_special_tokens else 0
            budget = max(limit - specials, 0)
            while sum(lengths) > budget:
                longer_first = len(lengths) == 1 or lengths[0] > lengths[1]
                lengths[0 if longer_first else 1] -= 1
            for piece, length in zip(pieces, lengths):
                piece.truncate(length, direction=self.truncation_side)
            encodings.append(self._tokenizer.post_process(pieces[0], pieces[1] if len(pieces) == 2 else None,
                                                          add_special_tokens=add_special_tokens))
        return encodings

    def encode(self, text: Any, text_pair: Any = None, add_special_tokens: bool = True, **kwargs: Any) -> Any:
        return self(text, text_pair, add_special_tokens=add_special_tokens, **kwargs)["input_ids"]

    # --- decoding ------------------------------------------------------------------------------
    def decode(self, token_ids: Any, skip_special_tokens: bool = False,
               clean_up_tokenization_spaces: Optional[bool] = None) -> str:
        """Text of one sequence of ids (an int, a list, or a 1-D array or tensor of any framework)."""
        if self._slow_only:
            text = self._slow_decode(_id_list(token_ids), skip_special_tokens)
        else:
            text = self._tokenizer.decode(_id_list(token_ids), skip_special_tokens=skip_special_tokens)
        clean = self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None else clean_up_tokenization_spaces
        if clean:
            for old, new in _CLEANUPS:
                text = text.replace(old, new)
        return text

    def _slow_decode(self, ids: List[int], skip_special_tokens: bool) -> str:
        """The reference's slow ``_decode`` with ``BertGenerationTokenizer.convert_tokens_to_string``:
        added tokens beyond the model's vocabulary that are not special (and additional special tokens
        there) stand alone, joined to the rest by spaces; in between, SentencePiece decodes each
        stretch between special tokens on its own and the special tokens are kept as they are, so a
        stretch loses the space it starts with (``"a <unk> b"`` -> ``"a<unk>b"``)."""
        special = set(self.all_special_tokens)
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        tokens = [self._tokenizer.id_to_token(i) for i in ids if i not in skip]
        beyond = {t for t, i in self.get_added_vocab().items() if i >= self.vocab_size}
        alone = beyond - special | {t for t in self._additional if t in beyond}
        texts: List[str] = []
        stretch: List[str] = []
        for token in tokens:
            if token is None:
                raise ValueError(f"cannot decode: an id is outside the vocabulary of {len(self)} tokens")
            if skip_special_tokens and token in special:
                continue
            if token in alone:
                text = self._slow_tokens_to_string(stretch)
                if text:
                    texts.append(text)
                texts.append(token)
                stretch = []
            else:
                stretch.append(token)
        if stretch:
            texts.append(self._slow_tokens_to_string(stretch))
        return " ".join(texts)

    def _slow_tokens_to_string(self, tokens: List[str]) -> str:
        special = set(self.all_special_tokens)
        out, pieces = "", []
        for token in tokens:
            if token in special:
                out += self._decode_pieces(pieces) + token
                pieces = []
            else:
                pieces.append(token)
        return (out + self._decode_pieces(pieces)).strip()

    def _decode_pieces(self, pieces: List[str]) -> str:
        """SentencePiece's decoding of pieces (control pieces vanish, the unknown piece reads " \u2047 "),
        or the backend's Metaspace decoder when the folder held no SentencePiece model."""
        if not pieces:
            return ""
        if self._sentencepiece_model is None:
            return self._tokenizer.decoder.decode(pieces) if self._tokenizer.decoder else "".join(pieces)
        if self._sentencepiece_processor is None:
            import sentencepiece

            self._sentencepiece_processor = sentencepiece.SentencePieceProcessor(
                model_proto=self._sentencepiece_model[1])
        return self._sentencepiece_processor.decode(pieces)

    def batch_decode(self, sequences: Any, skip_special_tokens: bool = False,
                     clean_up_tokenization_spaces: Optional[bool] = None) -> List[str]:
        """Texts of a batch: a 2-D array or tensor, or a list of id lists of different lengths."""
        return [self.decode(s, skip_special_tokens=skip_special_tokens,
                            clean_up_tokenization_spaces=clean_up_tokenization_spaces) for s in sequences]

    # --- saving --------------------------------------------------------------------------------
    def save_pretrained(self, save_directory: Union[str, os.PathLike]) -> List[str]:
        """Write tokenizer.json, tokenizer_config.json, special_tokens_map.json and the SentencePiece
        model the tokenizer was loaded with, if any (atomically), in a layout the reference's
        ``AutoTokenizer`` reads."""
        os.makedirs(save_directory, exist_ok=True)
        config = {k: v for k, v in self.extra_config.items() if v is not None or k != "tokenizer_class"}
        config.update(self.special_tokens_map)
        decoder = self._tokenizer.get_added_tokens_decoder()
        config["added_tokens_decoder"] = {
            str(i): {"content": t.content, "lstrip": t.lstrip, "normalized": t.normalized, "rstrip": t.rstrip,
                     "single_word": t.single_word, "special": t.special} for i, t in sorted(decoder.items())}
        config.update(model_max_length=self.model_max_length, padding_side=self.padding_side,
                      truncation_side=self.truncation_side,
                      clean_up_tokenization_spaces=self.clean_up_tokenization_spaces,
                      model_input_names=self.model_input_names)
        files = {
            TOKENIZER_FILE: self._tokenizer.to_str(),
            TOKENIZER_CONFIG_FILE: json.dumps(config, indent=2, sort_keys=True, ensure_ascii=False) + "\n",
            SPECIAL_TOKENS_MAP_FILE: json.dumps(self.special_tokens_map, indent=2, sort_keys=True,
                                                ensure_ascii=False) + "\n",
        }
        for name, text in files.items():
            atomic_write_text(os.path.join(save_directory, name), text)
        if self._sentencepiece_model is not None:
            name, data = self._sentencepiece_model
            atomic_write_bytes(os.path.join(save_directory, name), data)
            return list(files) + [name]
        return list(files)


AutoTokenizer = Tokenizer


class BertTokenizer(Tokenizer):
    """``Tokenizer`` for BERT WordPiece folders only (the reference's ``BertTokenizer`` /
    ``BertTokenizerFast``; both names are this class)."""

    _family = "wordpiece"


class GPT2Tokenizer(Tokenizer):
    """``Tokenizer`` for GPT-2 byte-level BPE folders only (the reference's ``GPT2Tokenizer`` /
    ``GPT2TokenizerFast``; both names are this class)."""

    _family = "byte_level_bpe"


BertTokenizerFast = BertTokenizer
GPT2TokenizerFast = GPT2Tokenizer


def _read_json(file: Optional[str]) -> Dict[str, Any]:
    if not file:
        return {}
    with open(file, "r", encoding="utf-8") as f:
        return json.load(f)


def _token_text(value: Any, name: str) -> Optional[str]:
    """The string of a special token given as a string, a ``tokenizers.AddedToken`` or the dict
    transformers serialises an AddedToken to."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    content = getattr(value, "content", None)
    if isinstance(content, str):
        return content
    raise ValueError(f"{name} must be a string or an AddedToken, got {value!r}")


def _added_token(value: Any, special: bool, name: str = "token", normalized: Optional[bool] = None,
                 lstrip: bool = False) -> Any:
    """A ``tokenizers.AddedToken``; strings become the reference's special-token defaults (not
    normalized, no stripping)."""
    from tokenizers import AddedToken

    if isinstance(value, AddedToken):
        # Passed on as it is: an AddedToken resolves an unset `normalized` from `special` when the
        # backend adds it, and a copy would fix it early. The reference marks it special in place too.
        if special and not value.special:
            value.special = True
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        fields = {k: value[k] for k in ("single_word", "lstrip", "rstrip", "normalized") if k in value}
        return AddedToken(value["content"], special=special, **fields)
    if isinstance(value, str):
        return AddedToken(value, normalized=not special if normalized is None else normalized, special=special,
                          lstrip=lstrip)
    raise ValueError(f"{name} must be a string or an AddedToken, got {value!r}")


def _tokens_to_add(backend: Any, config: Mapping[str, Any], family: TokenizerFamily, built_here: bool) -> List[Any]:
    """As the reference: the tokens of the config's ``added_tokens_decoder`` the backend lacks (a
    folder without tokenizer.json), then every special token not yet an added token (bos, eos, ...,
    then the additional ones); each gets a new id at the end of the vocabulary when it is not in it."""
    present = list(backend.get_added_tokens_decoder().values())
    saved = sorted((int(i), _added_token(t, special=bool(t.get("special")) if isinstance(t, dict) else True))
                   for i, t in (config.get("added_tokens_decoder") or {}).items())
    present_exactly = {repr(t) for t in present}  # content and flags
    to_add = [t for _, t in saved if repr(t) not in present_exactly]
    contents = {t.content for t in present} | {t.content for t in to_add}
    named = [(name, config.get(name, family.special_tokens.get(name))) for name in SPECIAL_TOKEN_NAMES]
    additional = [("additional_special_tokens", t) for t in config.get("additional_special_tokens") or []]
    for name, token in named + additional:
        text = _token_text(token, name)
        if text is None or text in contents:
            continue
        contents.add(text)
        # The slow classes of some families wrap these as normalized AddedTokens, and the reference
        # converts a folder without tokenizer.json through them.
        normalized = built_here and isinstance(token, str) and name in family.slow_normalized
        added = _added_token(token, special=True, normalized=True if normalized else None)
        if isinstance(token, str) and name in family.lstrip:
            added = _added_token(token, special=True, normalized=False, lstrip=True)
        to_add.append(added)
    return to_add


def _side(side: Any, name: str) -> str:
    if side not in _SIDES:
        raise ValueError(f"{name} must be 'right' or 'left', got {side!r}")
    return side


def _host(x: Any) -> Any:
    """A framework tensor as something numpy reads (PyTorch tensors may sit on a GPU)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        return x.detach().cpu()
    return x


def _id_list(token_ids: Any) -> List[int]:
    if isinstance(token_ids, (int, np.integer)):
        return [int(token_ids)]
    array = np.asarray(_host(token_ids))
    if array.ndim == 0:
        return [int(array)]
    if array.ndim != 1:
        raise ValueError(f"decode takes one sequence of ids, got shape {array.shape}; use batch_decode for a batch")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"token ids must be integers, got {array.dtype}")
    return [int(i) for i in array]


def _rewrite_normalizer(backend: Any, family: TokenizerFamily, config: Mapping[str, Any]) -> None:
    """Make the backend's normalizer follow ``do_lower_case`` & co., as BertTokenizerFast does."""
    if not family.normalizer_options or backend.normalizer is None:
        return
    from tokenizers import normalizers

    state = json.loads(backend.normalizer.__getstate__())
    wanted = {field: config.get(key, default) for key, (field, default) in family.normalizer_options.items()}
    if all(state.get(field, value) == value for field, value in wanted.items()):
        return
    normalizer_class = getattr(normalizers, state.pop("type"))
    state.update(wanted)
    backend.normalizer = normalizer_class(**state)


def _rewrite_prefix_space(backend: Any, add_prefix_space: bool) -> None:
    """Make a byte-level pre-tokenizer follow ``add_prefix_space``, as the reference's fast tokenizers do."""
    if backend.pre_tokenizer is None:
        return
    from tokenizers import pre_tokenizers

    try:
        state = json.loads(backend.pre_tokenizer.__getstate__())
    except Exception:  # a pre-tokenizer that cannot be serialised has no such setting
        return
    if state.get("add_prefix_space", add_prefix_space) != add_prefix_space:
        pre_tokenizer_class = getattr(pre_tokenizers, state.pop("type"))
        state["add_prefix_space"] = add_prefix_space
        backend.pre_tokenizer = pre_tokenizer_class(**state)


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


def _wordpiece(vocab_file: str, config: Mapping[str, Any]) -> Any:
    from tokenizers import Tokenizer as Backend
    from tokenizers import decoders, models, normalizers, pre_tokenizers

    unk = _token_text(config.get("unk_token"), "unk_token") or "[UNK]"
    vocab = models.WordPiece.read_file(vocab_file)
    backend = Backend(models.WordPiece(vocab, unk_token=unk, max_input_chars_per_word=100))
    backend.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=config.get("tokenize_chinese_chars", True),
        strip_accents=config.get("strip_accents"), lowercase=config.get("do_lower_case", True))
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece(prefix="##")
    return backend


def _bert_post_processor(backend: Any, cls_tok: Optional[str], sep: Optional[str]) -> Any:
    from tokenizers import processors

    ids = {t: backend.token_to_id(t) for t in (cls_tok, sep) if t is not None}
    if cls_tok is None or sep is None or None in ids.values():
        raise ValueError(f"a BERT tokenizer needs its cls and sep tokens in the vocabulary, got {cls_tok!r}, {sep!r}")
    return processors.TemplateProcessing(
        single=f"{cls_tok}:0 $A:0 {sep}:0", pair=f"{cls_tok}:0 $A:0 {sep}:0 $B:1 {sep}:1",
        special_tokens=list(ids.items()))


def _byte_level_bpe(vocab_file: str, merges_file: str, config: Mapping[str, Any], family: TokenizerFamily) -> Any:
    from tokenizers import Tokenizer as Backend
    from tokenizers import decoders, models, pre_tokenizers, processors

    backend = Backend(models.BPE.from_file(vocab_file, merges_file))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=bool(config.get("add_prefix_space", False)))
    backend.decoder = decoders.ByteLevel()
    if family.template is not None:  # set once the special tokens are known
        return backend
    if config.get("add_bos_token"):  # as the reference's GPT2Converter
        bos = _token_text(config.get("bos_token", "<|endoftext|>"), "bos_token")
        bos_id = backend.token_to_id(bos)
        if bos_id is None:
            raise ValueError(f"add_bos_token=True needs the bos token {bos!r} in {vocab_file}")
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 $B:1", special_tokens=[(bos, bos_id)])
    else:
        backend.post_processor = processors.ByteLevel(trim_offsets=False)
    return backend


def _template_processor(backend: Any, template: Tuple[str, str], special: Mapping[str, Optional[str]]) -> Any:
    """A family's ``(single, pair)`` template with its ``{cls_token}`` fields filled from ``special``."""
    from tokenizers import processors

    try:
        single, pair = (t.format(**{k: v or "" for k, v in special.items()}) for t in template)
    except KeyError as e:
        raise ValueError(f"template {template} names {e}, which is not a special token name") from None
    tokens = dict.fromkeys(t for t in (single + " " + pair).split() if not t.startswith("$"))
    ids = {t: backend.token_to_id(t) for t in tokens}
    missing = [t for t, i in ids.items() if i is None]
    if missing:
        raise ValueError(f"the template {single!r} / {pair!r} needs {missing} in the vocabulary")
    return processors.TemplateProcessing(single=single, pair=pair, special_tokens=list(ids.items()))


def _read_sentencepiece(data: bytes, model_file: str) -> Dict[str, Any]:
    """What the reference's converters read from a SentencePiece ``ModelProto``, by the protobuf wire
    format (no protobuf dependency): pieces ``(piece, score, type)``, ``model_type`` (1 unigram, 2 BPE),
    ``unk_id``, ``unk_piece``, ``byte_fallback`` and the normalizer's ``precompiled_charsmap``."""
    import struct

    def fields(buf: bytes) -> List[Tuple[int, int, Any]]:
        out, pos = [], 0

        def varint() -> int:
            nonlocal pos
            value = shift = 0
            while True:
                if pos >= len(buf) or shift > 63:
                    raise ValueError("truncated varint")
                byte = buf[pos]
                pos += 1
                value |= (byte & 0x7F) << shift
                shift += 7
                if not byte & 0x80:
                    return value

        while pos < len(buf):
            key = varint()
            number, wire = key >> 3, key & 7
            if wire == 0:
                value: Any = varint()
            elif wire == 1:
                value, pos = buf[pos:pos + 8], pos + 8
            elif wire == 2:
                size = varint()
                value, pos = buf[pos:pos + size], pos + size
            elif wire == 5:
                value, pos = buf[pos:pos + 4], pos + 4
            else:
                raise ValueError(f"unsupported wire type {wire}")
            if pos > len(buf) or number == 0:
                raise ValueError("truncated field")
            out.append((number, wire, value))
        return out

    try:
        model = {"pieces": [], "model_type": 1, "unk_id": 0, "unk_piece": "<unk>", "byte_fallback": False,
                 "precompiled_charsmap": b""}
        for number, wire, value in fields(data):
            if number == 1 and wire == 2:  # SentencePiece: piece 1, score 2 (float), type 3 (NORMAL = 1)
                piece, score, kind = "", 0.0, 1
                for n, w, v in fields(value):
                    if n == 1 and w == 2:
                        piece = v.decode("utf-8")
                    elif n == 2 and w == 5:
                        score = struct.unpack("<f", v)[0]
                    elif n == 3 and w == 0:
                        kind = v
                model["pieces"].append((piece, score, kind))
            elif number == 2 and wire == 2:  # TrainerSpec
                for n, w, v in fields(value):
                    if (n, w) == (3, 0):
                        model["model_type"] = v
                    elif (n, w) == (35, 0):
                        model["byte_fallback"] = bool(v)
                    elif (n, w) == (40, 0):
                        model["unk_id"] = v
                    elif (n, w) == (45, 2):
                        model["unk_piece"] = v.decode("utf-8")
            elif number == 3 and wire == 2:  # NormalizerSpec
                for n, w, v in fields(value):
                    if (n, w) == (2, 2):
                        model["precompiled_charsmap"] = v
    except (ValueError, UnicodeDecodeError, struct.error) as e:
        raise ValueError(f"{model_file} is not a SentencePiece model: {e}") from None
    if not model["pieces"]:
        raise ValueError(f"{model_file} is not a SentencePiece model: it has no pieces")
    return model


def _sentencepiece(data: bytes, model_file: str, family: TokenizerFamily) -> Any:
    """A ``tokenizers`` backend equal to a SentencePiece model, as the reference's SpmConverter (and the
    family's fairseq id layout, ``family.sentencepiece_vocab``) builds it."""
    from tokenizers import AddedToken, Regex
    from tokenizers import Tokenizer as Backend
    from tokenizers import decoders, models, normalizers, pre_tokenizers

    proto = _read_sentencepiece(data, model_file)
    if proto["byte_fallback"]:
        raise ValueError(f"{model_file} uses SentencePiece's byte fallback, which the reference's converted "
                         "tokenizer does not reproduce either; it is not supported")
    vocab = [(piece, score) for piece, score, _ in proto["pieces"]]
    unk_id = proto["unk_id"]
    if family.sentencepiece_vocab is not None:
        head, skip, tail = family.sentencepiece_vocab
        vocab = list(head) + vocab[skip:] + [(token, 0.0) for token in tail]
        unk_id = [token for token, _ in head].index("<unk>")
    if proto["model_type"] == 1:
        backend = Backend(models.Unigram(vocab, unk_id=unk_id, byte_fallback=False))
    elif proto["model_type"] == 2:
        ids = {piece: i for i, (piece, _) in enumerate(vocab)}
        # Merges are ordered by the model's own ids, before any fairseq shift (as the reference).
        own_ids = {piece: i for i, (piece, _, _) in enumerate(proto["pieces"])}
        backend = Backend(models.BPE(ids, _sentencepiece_merges(own_ids, vocab), unk_token=proto["unk_piece"],
                                     fuse_unk=True, byte_fallback=False, dropout=None))
    else:
        raise ValueError(f"{model_file} is a SentencePiece model of type {proto['model_type']}; "
                         "only unigram (1) and BPE (2) models are supported")
    # Control (3) and user-defined (4) pieces match as added tokens; only control ones are special.
    backend.add_tokens([AddedToken(piece, normalized=False, special=kind == 3)
                        for piece, _, kind in proto["pieces"] if kind in (3, 4)])
    steps = [normalizers.Strip(left=False, right=True), normalizers.Replace(Regex(" {2,}"), "\u2581")]
    if proto["precompiled_charsmap"]:
        steps.insert(0, normalizers.Precompiled(proto["precompiled_charsmap"]))
    backend.normalizer = normalizers.Sequence(steps)
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    return backend


def _sentencepiece_merges(ids: Mapping[str, int], vocab: Sequence[Tuple[str, float]]) -> List[Tuple[str, str]]:
    """BPE merges of a SentencePiece BPE model, ordered by the merged piece's score (the reference's
    ``generate_merges``): every split of a piece of ``vocab`` into two pieces of the model (``ids``)."""
    scores = dict(vocab)
    merges = []
    for merged, score in scores.items():
        local = [(merged[:i], merged[i:], score) for i in range(1, len(merged))
                 if merged[:i] in ids and merged[i:] in ids]
        merges.extend(sorted(local, key=lambda m: (ids[m[0]], ids[m[1]])))
    merges.sort(key=lambda m: (m[2], len(m[0]), len(m[1])), reverse=True)
    return [(left, right) for left, right, _ in merges]
