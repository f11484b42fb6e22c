"""ELECTRA (``electra``): encoder (``ElectraModel``) and decoder with cross-attention (``ElectraForCausalLM``).

The layers are BERT's; ELECTRA differs in its embeddings, whose width is ``embedding_size`` (the
word, position and token-type tables and their LayerNorm), projected to ``hidden_size`` by the base
model's ``embeddings_project`` when the two differ; in having no pooler; and in its LM head, the
generator's: ``generator_predictions`` (dense hidden -> embedding width, gelu, LayerNorm) then
``generator_lm_head`` (embedding width -> vocabulary, weight tied to the word embeddings, own bias).
"""

from __future__ import annotations

from typing import List

from encdec.architectures.bert import BERT_IGNORED, WORDPIECE, BertConfig
from encdec.naming.schema import LINEAR, ParamSpec, Schema, embedding, layernorm, linear
from encdec.registry import Architecture, DecoderLayout, register_architecture


class ElectraConfig(BertConfig):
    """ELECTRA: the fields of ``BertConfig`` plus ``embedding_size`` (the width of the embeddings),
    with the reference's defaults (HF ``ElectraConfig``: the small generator's sizes).

    Args: the fields of HF ``ElectraConfig`` (those of ``BertConfig``, ``embedding_size``, and the
        sequence-summary fields ``summary_*``, kept for the reference's heads).
    """

    model_type = "electra"
    defaults = dict(
        BertConfig.defaults,
        embedding_size=128,
        hidden_size=256,
        num_attention_heads=4,
        intermediate_size=1024,
        summary_type="first",
        summary_use_proj=True,
        summary_activation="gelu",
        summary_last_dropout=0.1,
    )


def electra_model_schema(config: ElectraConfig, add_pooling_layer: bool = True) -> Schema:
    """``ElectraModel``: embeddings of width ``embedding_size``, ``embeddings_project`` when that is
    not ``hidden_size``, BERT's layers; never a pooler (``add_pooling_layer`` is ignored)."""
    e, h, i = config.embedding_size, config.hidden_size, config.intermediate_size
    specs: List[ParamSpec] = []
    specs += embedding("embeddings.word_embeddings", config.vocab_size, e)
    specs += embedding("embeddings.position_embeddings", config.max_position_embeddings, e)
    specs += embedding("embeddings.token_type_embeddings", config.type_vocab_size, e)
    specs += layernorm("embeddings.LayerNorm", e)
    if e != h:
        specs += linear("embeddings_project", h, e)
    for n in range(config.num_hidden_layers):
        layer = f"encoder.layer.{n}"
        attentions = ["attention"] + (["crossattention"] if config.add_cross_attention else [])
        for att in attentions:
            for proj in ("query", "key", "value"):
                specs += linear(f"{layer}.{att}.self.{proj}", h, h)
            specs += linear(f"{layer}.{att}.output.dense", h, h)
            specs += layernorm(f"{layer}.{att}.output.LayerNorm", h)
        specs += linear(f"{layer}.intermediate.dense", i, h)
        specs += linear(f"{layer}.output.dense", h, i)
        specs += layernorm(f"{layer}.output.LayerNorm", h)
    return Schema(specs, BERT_IGNORED)


def electra_causal_lm_schema(config: ElectraConfig) -> Schema:
    """``ElectraForCausalLM``: ``electra.`` plus ``generator_predictions`` and ``generator_lm_head``."""
    e, h, v = config.embedding_size, config.hidden_size, config.vocab_size
    schema = electra_model_schema(config).prefixed("electra.")
    word = "electra.embeddings.word_embeddings.weight"
    head = linear("generator_predictions.dense", e, h) + layernorm("generator_predictions.LayerNorm", e)
    head.append(ParamSpec("generator_lm_head.weight", (v, e), LINEAR, word if config.tie_word_embeddings else None))
    head.append(ParamSpec("generator_lm_head.bias", (v,), LINEAR))
    for p in head:
        schema.add(p)
    return schema


ELECTRA = register_architecture(Architecture(
    model_type="electra",
    config_class=ElectraConfig,
    base_model_prefix="electra",
    base_schema=electra_model_schema,
    causal_lm_schema=electra_causal_lm_schema,
    decoder=DecoderLayout(
        cross_attention="crossattention",
        cross_key_value=("self.key", "self.value"),
        new_weights=r"\.crossattention\.",
    ),
    tokenizer=WORDPIECE,
    word_embeddings="embeddings.word_embeddings.weight",
    lm_head="generator_lm_head",
    has_pooler=False,
    # The reference's TF generator head (`TFElectraForMaskedLM`) holds only `generator_lm_head/bias`.
    tf_reused=((r"(^|\.)generator_lm_head\.weight$",
                "TF ELECTRA's generator head reuses the word embeddings"),),
    # embedding_size != hidden_size, so every test goes through `embeddings_project`.
    tiny=dict(vocab_size=99, embedding_size=24, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
              intermediate_size=37, max_position_embeddings=64, type_vocab_size=2, pad_token_id=0, bos_token_id=1,
              eos_token_id=3),
))
