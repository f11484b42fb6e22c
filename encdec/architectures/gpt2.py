"""GPT-2 (``gpt2``): decoder with cross-attention (``GPT2LMHeadModel``), or encoder (``GPT2Model``).

The record below is all that shared code knows about GPT-2; the modules are in
``encdec_pt/models/gpt2.py``, ``encdec_tf/models/gpt2.py`` and ``encdec_flax/models/gpt2.py``.
"""

from __future__ import annotations

from typing import Any, List

from encdec.configuration import PretrainedConfig
from encdec.naming.schema import LINEAR, IgnoredKey, ParamSpec, Schema, conv1d, embedding, layernorm
from encdec.registry import Architecture, DecoderLayout, TokenizerFamily, register_architecture


class GPT2Config(PretrainedConfig):
    """GPT-2 decoder (with cross-attention when ``add_cross_attention``).

    Args: the fields of HF ``GPT2Config``; ``hidden_size``, ``num_hidden_layers``,
        ``num_attention_heads`` and ``max_position_embeddings`` are aliases of ``n_embd``,
        ``n_layer``, ``n_head`` and ``n_positions``.
    """

    model_type = "gpt2"
    defaults = {
        "vocab_size": 50257,
        "n_positions": 1024,
        "n_embd": 768,
        "n_layer": 12,
        "n_head": 12,
        "n_inner": None,
        "activation_function": "gelu_new",
        "resid_pdrop": 0.1,
        "embd_pdrop": 0.1,
        "attn_pdrop": 0.1,
        "layer_norm_epsilon": 1e-5,
        "initializer_range": 0.02,
        "summary_type": "cls_index",
        "summary_use_proj": True,
        "summary_activation": None,
        "summary_proj_to_labels": True,
        "summary_first_dropout": 0.1,
        "scale_attn_weights": True,
        "use_cache": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
    }
    attribute_map = {
        "hidden_size": "n_embd",
        "max_position_embeddings": "n_positions",
        "num_attention_heads": "n_head",
        "num_hidden_layers": "n_layer",
    }

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("bos_token_id", 50256)
        kwargs.setdefault("eos_token_id", 50256)
        super().__init__(**kwargs)

    @property
    def inner_size(self) -> int:
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd



GPT2_IGNORED = [
    IgnoredKey(r"^h\.\d+\.(attn|crossattention)\.bias$", "causal-mask buffer of old checkpoints; the mask is built per call"),
    IgnoredKey(r"^h\.\d+\.(attn|crossattention)\.masked_bias$", "constant buffer of old checkpoints; masks use the dtype minimum"),
]


def gpt2_model_schema(config: GPT2Config) -> Schema:
    """``GPT2Model``: token/position embeddings, blocks (cross-attention when configured), ``ln_f``."""
    h, inner = config.n_embd, config.inner_size
    specs: List[ParamSpec] = []
    specs += embedding("wte", config.vocab_size, h)
    specs += embedding("wpe", config.n_positions, h)
    for n in range(config.n_layer):
        block = f"h.{n}"
        specs += layernorm(f"{block}.ln_1", h)
        specs += conv1d(f"{block}.attn.c_attn", h, 3 * h)
        specs += conv1d(f"{block}.attn.c_proj", h, h)
        specs += layernorm(f"{block}.ln_2", h)
        if config.add_cross_attention:
            specs += conv1d(f"{block}.crossattention.c_attn", h, 2 * h)
            specs += conv1d(f"{block}.crossattention.q_attn", h, h)
            specs += conv1d(f"{block}.crossattention.c_proj", h, h)
            specs += layernorm(f"{block}.ln_cross_attn", h)
        specs += conv1d(f"{block}.mlp.c_fc", h, inner)
        specs += conv1d(f"{block}.mlp.c_proj", inner, h)
    specs += layernorm("ln_f", h)
    return Schema(specs, GPT2_IGNORED)


def gpt2_lm_head_schema(config: GPT2Config) -> Schema:
    """``GPT2LMHeadModel``: ``transformer.`` plus ``lm_head`` (no bias, tied to ``wte``)."""
    schema = gpt2_model_schema(config).prefixed("transformer.")
    owner = "transformer.wte.weight" if config.tie_word_embeddings else None
    schema.add(ParamSpec("lm_head.weight", (config.vocab_size, config.n_embd), LINEAR, owner))
    return schema


def _gpt2_base_schema(config: GPT2Config, add_pooling_layer: bool = True) -> Schema:
    return gpt2_model_schema(config)  # GPT-2 has no pooler


# GPT-2's byte-level BPE tokenizer (``GPT2Tokenizer``).
BYTE_LEVEL_BPE = TokenizerFamily(
    name="byte_level_bpe",
    class_name="GPT2Tokenizer",
    special_tokens={"unk_token": "<|endoftext|>", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"},
    model_input_names=("input_ids", "attention_mask"),
    class_names=("GPT2Tokenizer", "GPT2TokenizerFast"),
    slow_normalized=("bos_token", "eos_token", "unk_token", "pad_token"),
)

GPT2 = register_architecture(Architecture(
    model_type="gpt2",
    config_class=GPT2Config,
    base_model_prefix="transformer",
    base_schema=_gpt2_base_schema,
    causal_lm_schema=gpt2_lm_head_schema,
    decoder=DecoderLayout(
        cross_attention="crossattention",
        cross_key_value=("c_attn",),
        new_weights=r"\.(crossattention|ln_cross_attn)\.",
    ),
    tokenizer=BYTE_LEVEL_BPE,
    word_embeddings="wte.weight",
    lm_head="lm_head",
    tf_reused=((r"(^|\.)lm_head\.weight$", "TF GPT-2 has no lm_head variable: it reuses `wte`"),),
    tiny=dict(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_inner=37, n_positions=64,
              pad_token_id=0, bos_token_id=1, eos_token_id=3),
))
