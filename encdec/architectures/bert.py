"""BERT (``bert``): encoder (``BertModel``) and decoder with cross-attention (``BertLMHeadModel``).

The record below is all that shared code knows about BERT; the modules are in
``encdec_pt/models/bert.py``, ``encdec_tf/models/bert.py`` and ``encdec_flax/models/bert.py``.
"""

from __future__ import annotations

from typing import Any, List

from encdec.configuration import PretrainedConfig
from encdec.naming.schema import BIAS, LINEAR, IgnoredKey, ParamSpec, Schema, embedding, layernorm, linear
from encdec.registry import Architecture, DecoderLayout, TokenizerFamily, register_architecture


class BertConfig(PretrainedConfig):
    """BERT encoder, or decoder with ``is_decoder`` / ``add_cross_attention``.

    Args: the fields of HF ``BertConfig`` (``vocab_size``, ``hidden_size``, ``num_hidden_layers``,
        ``num_attention_heads``, ``intermediate_size``, ``hidden_act``, dropouts,
        ``max_position_embeddings``, ``type_vocab_size``, ``initializer_range``,
        ``layer_norm_eps``, ``pad_token_id``, ``position_embedding_type``, ``use_cache``).
    """

    model_type = "bert"
    defaults = {
        "vocab_size": 30522,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": 512,
        "type_vocab_size": 2,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "position_embedding_type": "absolute",
        "use_cache": True,
        "classifier_dropout": None,
    }

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("pad_token_id", 0)
        super().__init__(**kwargs)
        if self.position_embedding_type != "absolute":
            raise NotImplementedError(
                f"BertConfig.position_embedding_type={self.position_embedding_type!r} is not supported; "
                "only 'absolute' position embeddings are implemented"
            )



BERT_IGNORED = [
    IgnoredKey(r"^embeddings\.position_ids$", "buffer arange(max_position_embeddings); rebuilt by the model"),
    IgnoredKey(r"^embeddings\.token_type_ids$", "buffer of zeros; rebuilt by the model"),
]


def bert_model_schema(config: BertConfig, add_pooling_layer: bool = True) -> Schema:
    """``BertModel``: embeddings, layers (with cross-attention when configured), pooler."""
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


def bert_lm_head_schema(config: BertConfig) -> Schema:
    """``BertLMHeadModel``: ``bert.`` (no pooler) plus the ``cls.predictions`` head."""
    h, v = config.hidden_size, config.vocab_size
    schema = bert_model_schema(config, add_pooling_layer=False).prefixed("bert.")
    word = "bert.embeddings.word_embeddings.weight"
    head = linear("cls.predictions.transform.dense", h, h) + layernorm("cls.predictions.transform.LayerNorm", h)
    head.append(ParamSpec("cls.predictions.bias", (v,), BIAS))
    head.append(
        ParamSpec("cls.predictions.decoder.weight", (v, h), LINEAR, word if config.tie_word_embeddings else None)
    )
    # `decoder.bias` is always the same Parameter as `predictions.bias` in the reference.
    head.append(ParamSpec("cls.predictions.decoder.bias", (v,), LINEAR, "cls.predictions.bias"))
    for p in head:
        schema.add(p)
    return schema


# BERT's WordPiece tokenizer (``BertTokenizer``); ELECTRA's and DistilBERT's folders use the same rules.
WORDPIECE = TokenizerFamily(
    name="wordpiece",
    class_name="BertTokenizer",
    special_tokens={"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
                    "mask_token": "[MASK]"},
    model_input_names=("input_ids", "token_type_ids", "attention_mask"),
    normalizer_options={"do_lower_case": ("lowercase", True), "strip_accents": ("strip_accents", None),
                        "tokenize_chinese_chars": ("handle_chinese_chars", True)},
    class_names=("BertTokenizer", "BertTokenizerFast", "ElectraTokenizer", "ElectraTokenizerFast",
                 "DistilBertTokenizer", "DistilBertTokenizerFast"),
)

BERT = register_architecture(Architecture(
    model_type="bert",
    config_class=BertConfig,
    base_model_prefix="bert",
    base_schema=bert_model_schema,
    causal_lm_schema=bert_lm_head_schema,
    decoder=DecoderLayout(
        cross_attention="crossattention",
        cross_key_value=("self.key", "self.value"),
        new_weights=r"\.crossattention\.",
    ),
    tokenizer=WORDPIECE,
    word_embeddings="embeddings.word_embeddings.weight",
    lm_head="cls",
    has_pooler=True,
    tf_layer_names={"cls": "mlm___cls"},
    tf_reused=((r"(^|\.)cls\.predictions\.decoder\.(weight|bias)$",
                "TF BERT's LM head reuses the word embeddings and `predictions.bias`"),),
    tiny=dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
              max_position_embeddings=64, type_vocab_size=2, pad_token_id=0, bos_token_id=1, eos_token_id=3),
))
