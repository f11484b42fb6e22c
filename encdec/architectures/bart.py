"""BART's decoder (``bart``, ``BartForCausalLM``) and mBART's (``mbart``, ``MBartForCausalLM``): decoders
with cross-attention only (their records have no encoder role, see ``Architecture.can_encode``).

``model.decoder``: token embeddings (times ``embed_scale`` = sqrt(d_model) when ``scale_embedding``),
learned positions stored with an offset of 2 rows, ``layernorm_embedding``, then layers of
``self_attn`` / ``encoder_attn`` / ``fc1`` / ``fc2`` with their norms: post-norm in BART, pre-norm in
mBART, which also has a final ``layer_norm``. ``lm_head`` (no bias) is tied to the token embeddings.
The decoder's own counts are ``decoder_layers`` / ``decoder_attention_heads`` / ``decoder_ffn_dim``
(the config's ``num_hidden_layers`` and ``num_attention_heads`` are the *encoder's*, as in the
reference). The modules are in ``encdec_pt/models/bart.py``, ``encdec_tf/models/bart.py`` and
``encdec_flax/models/bart.py``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, List

from encdec.configuration import PretrainedConfig
from encdec.naming.schema import LINEAR, ParamSpec, Schema, embedding, layernorm, linear
from encdec.architectures.roberta import ROBERTA_BPE
from encdec.registry import Architecture, DecoderLayout, register_architecture

# BART's learned positions keep two extra rows in front (a fairseq legacy): position p reads row p + 2.
POSITION_OFFSET = 2


class BartConfig(PretrainedConfig):
    """BART (used here as a decoder).

    Args: the fields of HF ``BartConfig`` (``vocab_size``, ``d_model``, ``encoder_layers``,
        ``decoder_layers``, ``*_attention_heads``, ``*_ffn_dim``, ``activation_function``, dropouts,
        ``max_position_embeddings``, ``init_std``, ``scale_embedding``, ...). ``hidden_size`` and
        ``num_attention_heads`` alias ``d_model`` and ``encoder_attention_heads`` as in the reference;
        ``initializer_range`` aliases ``init_std`` (the reference's BartConfig has none, which breaks
        its Flax composite).
    """

    model_type = "bart"
    # mBART normalises before each sublayer and after the last layer; BART after each sublayer.
    pre_norm: ClassVar[bool] = False
    defaults = {
        "vocab_size": 50265,
        "max_position_embeddings": 1024,
        "encoder_layers": 12,
        "encoder_ffn_dim": 4096,
        "encoder_attention_heads": 16,
        "decoder_layers": 12,
        "decoder_ffn_dim": 4096,
        "decoder_attention_heads": 16,
        "encoder_layerdrop": 0.0,
        "decoder_layerdrop": 0.0,
        "activation_function": "gelu",
        "d_model": 1024,
        "dropout": 0.1,
        "attention_dropout": 0.0,
        "activation_dropout": 0.0,
        "init_std": 0.02,
        "classifier_dropout": 0.0,
        "scale_embedding": False,
        "use_cache": True,
    }
    attribute_map = {"num_attention_heads": "encoder_attention_heads", "hidden_size": "d_model",
                     "initializer_range": "init_std"}

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("pad_token_id", 1)
        kwargs.setdefault("bos_token_id", 0)
        kwargs.setdefault("eos_token_id", 2)
        kwargs.setdefault("is_encoder_decoder", True)
        kwargs.setdefault("decoder_start_token_id", 2)
        kwargs.setdefault("forced_eos_token_id", 2)
        # The reference stores the encoder's layer count here (and writes it to config.json).
        kwargs.setdefault("num_hidden_layers", kwargs.get("encoder_layers", self.defaults["encoder_layers"]))
        super().__init__(**kwargs)

    @property
    def embed_scale(self) -> float:
        return self.d_model ** 0.5 if self.scale_embedding else 1.0


class MBartConfig(BartConfig):
    """mBART (used here as a decoder): BART's fields; pre-norm layers and a final ``layer_norm``."""

    model_type = "mbart"
    pre_norm = True

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("decoder_start_token_id", None)
        super().__init__(**kwargs)


def bart_decoder_schema(config: BartConfig) -> Schema:
    """``BartDecoder`` (no prefix): embeddings, layers, and for mBART the final ``layer_norm``."""
    d, ffn, v = config.d_model, config.decoder_ffn_dim, config.vocab_size
    specs: List[ParamSpec] = []
    specs += embedding("embed_tokens", v, d)
    specs += embedding("embed_positions", config.max_position_embeddings + POSITION_OFFSET, d)
    specs += layernorm("layernorm_embedding", d)
    for n in range(config.decoder_layers):
        layer = f"layers.{n}"
        for att in ("self_attn", "encoder_attn"):
            for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
                specs += linear(f"{layer}.{att}.{proj}", d, d)
            specs += layernorm(f"{layer}.{att}_layer_norm", d)
        specs += linear(f"{layer}.fc1", ffn, d)
        specs += linear(f"{layer}.fc2", d, ffn)
        specs += layernorm(f"{layer}.final_layer_norm", d)
    if config.pre_norm:
        specs += layernorm("layer_norm", d)
    return Schema(specs)


def bart_base_schema(config: BartConfig, add_pooling_layer: bool = True) -> Schema:
    """``BartDecoderWrapper`` (``decoder.``): what the causal LM holds under ``model``, so the decoder
    half of a ``BartModel`` checkpoint (``decoder.*``) is read into it."""
    return bart_decoder_schema(config).prefixed("decoder.")


def bart_causal_lm_schema(config: BartConfig) -> Schema:
    """``BartForCausalLM``: ``model.decoder.`` plus ``lm_head`` (no bias, tied to ``embed_tokens``)."""
    schema = bart_base_schema(config).prefixed("model.")
    owner = "model.decoder.embed_tokens.weight" if config.tie_word_embeddings else None
    schema.add(ParamSpec("lm_head.weight", (config.vocab_size, config.d_model), LINEAR, owner))
    return schema


# BART folders hold GPT-2's vocabulary files (vocab.json + merges.txt) with RoBERTa's `<s> A </s>`
# template and <s>/</s>/<pad>/<mask> defaults (the reference's BartTokenizer is RobertaTokenizer's copy).
BART_BPE = dataclasses.replace(ROBERTA_BPE, name="bart_bpe", class_name="BartTokenizer",
                               class_names=("BartTokenizer", "BartTokenizerFast"))

_DECODER = DecoderLayout(
    cross_attention="encoder_attn",
    cross_key_value=("k_proj", "v_proj"),
    new_weights=r"\.encoder_attn(_layer_norm)?\.",
    num_layers="decoder_layers",
    num_heads="decoder_attention_heads",
)
_TF_REUSED = ((r"(^|\.)lm_head\.weight$", "TF BART's decoder has no lm_head variable: it reuses `embed_tokens`"),)
_TINY = dict(vocab_size=99, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
             decoder_attention_heads=4, encoder_ffn_dim=37, decoder_ffn_dim=37, max_position_embeddings=64,
             scale_embedding=True, pad_token_id=0, bos_token_id=1, eos_token_id=3, decoder_start_token_id=2,
             forced_eos_token_id=3)

BART = register_architecture(Architecture(
    model_type="bart",
    config_class=BartConfig,
    base_model_prefix="model",
    base_schema=bart_base_schema,
    causal_lm_schema=bart_causal_lm_schema,
    decoder=_DECODER,
    tokenizer=BART_BPE,
    word_embeddings="decoder.embed_tokens.weight",
    lm_head="lm_head",
    tf_reused=_TF_REUSED,
    tiny=_TINY,
    can_encode=False,
))

MBART = register_architecture(Architecture(
    model_type="mbart",
    config_class=MBartConfig,
    base_model_prefix="model",
    base_schema=bart_base_schema,
    causal_lm_schema=bart_causal_lm_schema,
    decoder=_DECODER,
    tokenizer=BART_BPE,
    word_embeddings="decoder.embed_tokens.weight",
    lm_head="lm_head",
    tf_reused=_TF_REUSED,
    tiny=_TINY,
    can_encode=False,
))
