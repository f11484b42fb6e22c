"""RoBERTa (``roberta``) and, on the same modules, XLM-RoBERTa (``xlm-roberta``) and CamemBERT
(``camembert``): encoder (``RobertaModel``) and decoder with cross-attention (``RobertaForCausalLM``).

The layers are BERT's; RoBERTa differs in its embeddings (position ids derived from the input ids:
``padding_idx + 1 +`` the running count of non-pad tokens, continued from the cache length while
decoding; pad id 1; ``type_vocab_size`` 1 in its checkpoints) and in its LM head
(``lm_head.dense / layer_norm / decoder / bias``, ``decoder`` tied to the word embeddings).

Three records rather than one with aliases: the reference has one config class per model_type
(``config.json`` of each names its own), and XLM-R / CamemBERT folders carry a SentencePiece
tokenizer where RoBERTa's carry a byte-level BPE. Schema, layout and modules are shared.
"""

from __future__ import annotations

from typing import Any, List

from encdec.architectures.bert import BERT_IGNORED, BertConfig
from encdec.naming.schema import BIAS, LINEAR, ParamSpec, Schema, embedding, layernorm, linear
from encdec.registry import Architecture, DecoderLayout, TokenizerFamily, register_architecture


class RobertaConfig(BertConfig):
    """RoBERTa: the fields of ``BertConfig`` with RoBERTa's special token ids (pad 1, bos 0, eos 2)
    and vocabulary (50265) as defaults.

    Args: the fields of HF ``RobertaConfig`` (those of ``BertConfig``).
    """

    model_type = "roberta"
    defaults = dict(BertConfig.defaults, vocab_size=50265)

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("pad_token_id", 1)
        kwargs.setdefault("bos_token_id", 0)
        kwargs.setdefault("eos_token_id", 2)
        super().__init__(**kwargs)


class XLMRobertaConfig(RobertaConfig):
    """XLM-RoBERTa: RoBERTa's fields and defaults (HF ``XLMRobertaConfig``), vocabulary 30522 by default."""

    model_type = "xlm-roberta"
    defaults = dict(BertConfig.defaults)


class CamembertConfig(RobertaConfig):
    """CamemBERT: RoBERTa's fields and defaults (HF ``CamembertConfig``), vocabulary 30522 by default."""

    model_type = "camembert"
    defaults = dict(BertConfig.defaults)


def roberta_model_schema(config: RobertaConfig, add_pooling_layer: bool = True) -> Schema:
    """``RobertaModel``: BERT's tree (embeddings, layers, optional pooler)."""
    h, i = config.hidden_size, config.intermediate_size
    specs: List[ParamSpec] = []
    specs += embedding("embeddings.word_embeddings", config.vocab_size, h)
    specs += embedding("embeddings.position_embeddings", config.max_position_embeddings, h)
    specs += embedding("embeddings.token_type_embeddings", config.type_vocab_size, h)
    specs += layernorm("embeddings.LayerNorm", h)
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
    if add_pooling_layer:
        specs += linear("pooler.dense", h, h)
    return Schema(specs, BERT_IGNORED)


def roberta_causal_lm_schema(config: RobertaConfig) -> Schema:
    """``RobertaForCausalLM``: ``roberta.`` (no pooler) plus ``lm_head`` (dense, layer_norm, decoder, bias)."""
    h, v = config.hidden_size, config.vocab_size
    schema = roberta_model_schema(config, add_pooling_layer=False).prefixed("roberta.")
    word = "roberta.embeddings.word_embeddings.weight"
    head = linear("lm_head.dense", h, h) + layernorm("lm_head.layer_norm", h)
    head.append(ParamSpec("lm_head.bias", (v,), BIAS))
    head.append(ParamSpec("lm_head.decoder.weight", (v, h), LINEAR, word if config.tie_word_embeddings else None))
    # `decoder.bias` is always the same Parameter as `lm_head.bias` in the reference.
    head.append(ParamSpec("lm_head.decoder.bias", (v,), LINEAR, "lm_head.bias"))
    for p in head:
        schema.add(p)
    return schema


# RoBERTa's byte-level BPE (``RobertaTokenizer``): GPT-2's algorithm with `<s> A </s></s> B </s>` (the
# reference's RobertaConverter takes the template's tokens from the tokenizer's cls and sep tokens).
ROBERTA_BPE = TokenizerFamily(
    name="roberta_bpe",
    class_name="RobertaTokenizer",
    special_tokens={"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
                    "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>"},
    model_input_names=("input_ids", "attention_mask"),
    class_names=("RobertaTokenizer", "RobertaTokenizerFast"),
    template=("{cls_token} $A {sep_token}", "{cls_token} $A {sep_token} {sep_token} $B {sep_token}"),
    lstrip=("mask_token",),
)

# XLM-R's and CamemBERT's SentencePiece BPE (``sentencepiece.bpe.model``), same template as RoBERTa but
# with literal tokens, and fairseq's ids: `<s> <pad> </s> <unk>` first, the model's pieces shifted
# after them, `<mask>` last (the reference's XLMRobertaConverter / CamembertConverter).
_SPM_SPECIALS = {"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
                 "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>"}
_SPM_TEMPLATE = ("<s> $A </s>", "<s> $A </s> </s> $B </s>")
XLM_ROBERTA_SPM = TokenizerFamily(
    name="xlm_roberta_spm",
    class_name="XLMRobertaTokenizer",
    special_tokens=_SPM_SPECIALS,
    model_input_names=("input_ids", "attention_mask"),
    class_names=("XLMRobertaTokenizer", "XLMRobertaTokenizerFast"),
    template=_SPM_TEMPLATE,
    lstrip=("mask_token",),
    # The model's own <unk> <s> </s> (its first three pieces) give way to fairseq's four.
    sentencepiece_file="sentencepiece.bpe.model",
    sentencepiece_vocab=((("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)), 3, ("<mask>",)),
)
CAMEMBERT_SPM = TokenizerFamily(
    name="camembert_spm",
    class_name="CamembertTokenizer",
    special_tokens=_SPM_SPECIALS,
    model_input_names=("input_ids", "attention_mask"),
    class_names=("CamembertTokenizer", "CamembertTokenizerFast"),
    template=_SPM_TEMPLATE,
    lstrip=("mask_token",),
    # CamemBERT keeps its model's pieces after its first, behind five fairseq ones; the model's own
    # `<unk>` is demoted (score -100) so that the fairseq `<unk>` (id 3) is the one used.
    sentencepiece_file="sentencepiece.bpe.model",
    sentencepiece_vocab=((("<s>NOTUSED", 0.0), ("<pad>", 0.0), ("</s>NOTUSED", 0.0), ("<unk>", 0.0),
                          ("<unk>NOTUSED", -100.0)), 1, ("<mask>",)),
)

_DECODER = DecoderLayout(
    cross_attention="crossattention",
    cross_key_value=("self.key", "self.value"),
    new_weights=r"\.crossattention\.",
)
_TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
             max_position_embeddings=64, type_vocab_size=1, pad_token_id=1, bos_token_id=0, eos_token_id=2)


def _record(config_class: type, tokenizer: TokenizerFamily) -> Architecture:
    return register_architecture(Architecture(
        model_type=config_class.model_type,
        config_class=config_class,
        base_model_prefix="roberta",
        base_schema=roberta_model_schema,
        causal_lm_schema=roberta_causal_lm_schema,
        decoder=_DECODER,
        tokenizer=tokenizer,
        word_embeddings="embeddings.word_embeddings.weight",
        lm_head="lm_head",
        has_pooler=True,
        tf_reused=((r"(^|\.)lm_head\.decoder\.(weight|bias)$",
                    "TF RoBERTa's LM head reuses the word embeddings and `lm_head.bias`"),),
        tiny=dict(_TINY),
    ))


ROBERTA = _record(RobertaConfig, ROBERTA_BPE)
XLM_ROBERTA = _record(XLMRobertaConfig, XLM_ROBERTA_SPM)
CAMEMBERT = _record(CamembertConfig, CAMEMBERT_SPM)
