"""Framework-free pieces every model class shares: kwarg routing, load reports, input checks.

The three frameworks call these so that argument routing, the wording of reports and the
checks on token ids are the same everywhere.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Iterable, List, Optional, Tuple

import numpy as np

from encdec.configuration import RESERVED_TOP_LEVEL_KEYS, AutoConfig
from encdec.hub import HUB_KWARGS
from encdec.registry import ENCODER, ModelRegistry, records

# The fields of a Seq2SeqLMOutput, in the reference's order.
SEQ2SEQ_OUTPUT_FIELDS = (
    "loss",
    "logits",
    "past_key_values",
    "decoder_hidden_states",
    "decoder_attentions",
    "cross_attentions",
    "encoder_last_hidden_state",
    "encoder_hidden_states",
    "encoder_attentions",
)


def split_prefixed_kwargs(kwargs: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any], Dict[str, Any]]:
    """``encoder_*`` -> encoder kwargs, ``decoder_*`` -> decoder kwargs (prefix stripped), the rest top-level.

    Names of top-level fields that merely start with a prefix (``decoder_start_token_id``) stay
    top-level: the reference routes them to the decoder and crashes.
    """
    encoder, decoder, top = {}, {}, {}
    for key, value in kwargs.items():
        if key in RESERVED_TOP_LEVEL_KEYS:
            top[key] = value
        elif key.startswith("encoder_"):
            encoder[key[len("encoder_"):]] = value
        elif key.startswith("decoder_"):
            decoder[key[len("decoder_"):]] = value
        else:
            top[key] = value
    return encoder, decoder, top


def _new_weight_groups() -> List[Tuple[str, "re.Pattern[str]", bool]]:
    """Groups for the "newly initialised" report, (label, pattern, expected?), from the records:
    what ``add_cross_attention`` adds is expected, a missing LM head is not."""
    cross = "|".join(f"(?:{r.decoder.new_weights})" for r in records() if r.decoder is not None)
    heads = "|".join(sorted({re.escape(r.lm_head) for r in records()}))
    return [
        ("cross-attention", re.compile(cross), True),
        ("enc_to_dec_proj", re.compile(r"(^|\.)enc_to_dec_proj\."), True),
        ("LM head", re.compile(rf"(^|\.)(?:{heads})\."), False),
    ]


def group_new_weights(names: Iterable[str]) -> Tuple[Dict[str, List[str]], List[str]]:
    """(expected groups {label: names}, unexpected names) for weights a load did not find."""
    groups: Dict[str, List[str]] = {}
    unexpected: List[str] = []
    rules = _new_weight_groups()
    for name in names:
        for label, pattern, expected in rules:
            if pattern.search(name):
                if expected:
                    groups.setdefault(label, []).append(name)
                else:
                    unexpected.append(name)
                break
        else:
            unexpected.append(name)
    return groups, unexpected


def newly_initialised_report(names: Iterable[str], model_name: str = "") -> List[str]:
    """One line per expected group plus one naming any unexpected missing weights."""
    groups, unexpected = group_new_weights(list(names))
    where = f" in {model_name}" if model_name else ""
    lines = [
        f"{label}: {len(keys)} tensors newly initialised{where} (expected; fine-tune before use)"
        for label, keys in groups.items()
    ]
    if unexpected:
        shown = ", ".join(unexpected[:8]) + (f" and {len(unexpected) - 8} more" if len(unexpected) > 8 else "")
        lines.append(f"{len(unexpected)} weights{where} were not in the checkpoint and are random: {shown}")
    return lines


def check_token_ids(ids: Any, vocab_size: int, name: str = "input_ids") -> None:
    """Raise ``ValueError`` naming the first id outside ``[0, vocab_size)``.

    Needed because gathers fail differently per framework: torch raises an IndexError deep
    inside, TF on GPU and JAX return zeros or clamp silently.
    """
    if ids is None:
        return
    arr = np.asarray(ids)
    if arr.size == 0:
        return
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must hold integer token ids, got dtype {arr.dtype}")
    bad = (arr < 0) | (arr >= vocab_size)
    if bad.any():
        pos = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ValueError(
            f"{name} holds token id {int(arr[pos])} at position {pos}, outside the vocabulary "
            f"[0, {vocab_size}) (vocab_size={vocab_size})"
        )


def check_rank(shape: Tuple[int, ...], rank: int, name: str) -> None:
    if len(shape) != rank:
        raise ValueError(f"{name} must have {rank} dimensions, got shape {tuple(shape)}")


def check_same_batch(**shapes: Optional[Tuple[int, ...]]) -> None:
    """Raise naming the shapes when the given inputs disagree on the batch size."""
    given = {k: tuple(v) for k, v in shapes.items() if v is not None}
    batches = {v[0] for v in given.values() if len(v)}
    if len(batches) > 1:
        raise ValueError("inputs disagree on the batch size: " + ", ".join(f"{k} {v}" for k, v in given.items()))


def shift_tokens_right_np(labels: np.ndarray, pad_token_id: Optional[int], decoder_start_token_id: Optional[int]) -> np.ndarray:
    """Reference shift: start first, labels[:, :-1] after, -100 -> pad (numpy, for tests and tools)."""
    if decoder_start_token_id is None:
        raise ValueError("Make sure to set the decoder_start_token_id attribute of the model's configuration.")
    if pad_token_id is None:
        raise ValueError("Make sure to set the pad_token_id attribute of the model's configuration.")
    labels = np.asarray(labels)
    shifted = np.zeros_like(labels)
    shifted[:, 1:] = labels[:, :-1]
    shifted[:, 0] = decoder_start_token_id
    return np.where(shifted == -100, pad_token_id, shifted)


def decoder_mask_from_labels_np(labels: np.ndarray) -> np.ndarray:
    """The derived decoder mask: position 0 (the start token) always on, then labels[:, :-1] != -100."""
    labels = np.asarray(labels)
    mask = np.ones_like(labels)
    mask[:, 1:] = (labels[:, :-1] != -100).astype(labels.dtype)
    return mask


class AutoFactory:
    """Base of the auto classes of every framework (``AutoModel``, ``TFAutoModelForCausalLM``, ...):
    the class for a config's model_type and role, read from a ``ModelRegistry``.

    Subclasses set ``registry`` (the framework's ``ModelRegistry``) and ``role`` (``ENCODER`` for
    base models, ``DECODER`` for causal LMs with cross-attention).
    """

    registry: ModelRegistry = ModelRegistry("")
    role: str = ENCODER

    def __init__(self) -> None:
        raise EnvironmentError(f"{type(self).__name__} is a factory: use from_config or from_pretrained")

    @classmethod
    def model_class(cls, config: Any) -> Any:
        return cls.registry.lookup(config, cls.role)

    @classmethod
    def from_config(cls, config: Any, **kwargs: Any) -> Any:
        return cls.model_class(config)(config, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str, *model_args: Any, **kwargs: Any) -> Any:
        """The registered class of the folder's ``config.json`` (or of ``config=``), loaded by its own
        ``from_pretrained``."""
        config = kwargs.pop("config", None)
        if config is None:
            config = AutoConfig.from_pretrained(
                pretrained_model_name_or_path, **{k: v for k, v in kwargs.items() if k in HUB_KWARGS}
            )
        return cls.model_class(config).from_pretrained(pretrained_model_name_or_path, *model_args, config=config,
                                                       **kwargs)

    @classmethod
    def register(cls, model_type: str, model_class: Any) -> None:
        """Register ``model_class`` for ``model_type`` in this factory's role."""
        cls.registry.register(model_type, **{cls.role: model_class})


def padded_vocab_size(current: int, new_num_tokens: Optional[int], pad_to_multiple_of: Optional[int]) -> int:
    """The vocabulary size ``resize_token_embeddings`` makes (the reference's rule)."""
    size = current if new_num_tokens is None else int(new_num_tokens)
    if pad_to_multiple_of is not None:
        if not isinstance(pad_to_multiple_of, int) or pad_to_multiple_of < 1:
            raise ValueError(f"pad_to_multiple_of must be a positive integer, got {pad_to_multiple_of!r}")
        size = -(-size // pad_to_multiple_of) * pad_to_multiple_of
    if size < 1:
        raise ValueError(f"new_num_tokens must be >= 1, got {size}")
    return size
