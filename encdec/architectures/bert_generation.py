"""BertGeneration (``bert-generation``): encoder (``BertGenerationEncoder``) and decoder with
cross-attention (``BertGenerationDecoder``), the architecture of ``google/bert2bert_L-24_wmt_en_de``.

BERT's layers without token types and without pooler; the decoder's head is ``lm_head.decoder``
(tied to the word embeddings) plus ``lm_head.bias``, with no transform. The modules are in
``encdec_pt/models/bert_generation.py``, ``encdec_tf/models/bert_generation.py`` and
``encdec_flax/models/bert_generation.py`` (they reuse the BERT layer classes).
"""

from __future__ import annotations

from typing import Any, List

from encdec.configuration import PretrainedConfig
from encdec.naming.schema import BIAS, LINEAR, IgnoredKey, ParamSpec, Schema, embedding, layernorm, linear
from encdec.registry import Architecture, DecoderLayout, TokenizerFamily, register_architecture


class BertGenerationConfig(PretrainedConfig):
    """BertGeneration encoder, or decoder with ``is_decoder`` / ``add_cross_attention``.

    Args: the fields of HF ``BertGenerationConfig`` (``vocab_size``, ``hidden_size``,
        ``num_hidden_layers``, ``num_attention_heads``, ``intermediate_size``, ``hidden_act``,
        dropouts, ``max_position_embeddings``, ``initializer_range``, ``layer_norm_eps``,
        ``position_embedding_type``, ``use_cache``); special ids pad 0, bos 2, eos 1.
    """

    model_type = "bert-generation"
    defaults = {
        "vocab_size": 50358,
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "intermediate_size": 4096,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": 512,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "position_embedding_type": "absolute",
        "use_cache": True,
    }

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("pad_token_id", 0)
        kwargs.setdefault("bos_token_id", 2)
        kwargs.setdefault("eos_token_id", 1)
        super().__init__(**kwargs)
        if self.position_embedding_type != "absolute":
            raise NotImplementedError(
                f"BertGenerationConfig.position_embedding_type={self.position_embedding_type!r} is not supported; "
                "only 'absolute' position embeddings are implemented"
            )


BERT_GENERATION_IGNORED = [
    IgnoredKey(r"^embeddings\.position_ids$", "buffer arange(max_position_embeddings); rebuilt by the model"),
]


def bert_generation_encoder_schema(config: BertGenerationConfig, add_pooling_layer: bool = True) -> Schema:
    """``BertGenerationEncoder``: word + position embeddings, BERT layers; never a pooler."""
    h, i = config.hidden_size, config.intermediate_size
    specs: List[ParamSpec] = []
    specs += embedding("embeddings.word_embeddings", config.vocab_size, h)
    specs += embedding("embeddings.position_embeddings", config.max_position_embeddings, h)
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
    return Schema(specs, BERT_GENERATION_IGNORED)


def bert_generation_decoder_schema(config: BertGenerationConfig) -> Schema:
    """``BertGenerationDecoder``: ``bert.`` plus ``lm_head`` (``decoder`` tied to the word embeddings,
    its bias the same tensor as ``lm_head.bias``)."""
    h, v = config.hidden_size, config.vocab_size
    schema = bert_generation_encoder_schema(config).prefixed("bert.")
    word = "bert.embeddings.word_embeddings.weight"
    schema.add(ParamSpec("lm_head.bias", (v,), BIAS))
    schema.add(ParamSpec("lm_head.decoder.weight", (v, h), LINEAR, word if config.tie_word_embeddings else None))
    # `decoder.bias` is always the same Parameter as `lm_head.bias` in the reference.
    schema.add(ParamSpec("lm_head.decoder.bias", (v,), LINEAR, "lm_head.bias"))
    return schema


# BertGeneration's SentencePiece tokenizer (``BertGenerationTokenizer``, a folder with ``spiece.model``).
SENTENCEPIECE = TokenizerFamily(
    name="sentencepiece",
    class_name="BertGenerationTokenizer",
    special_tokens={"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
                    "sep_token": "<::::>"},
    model_input_names=("input_ids", "attention_mask"),
    class_names=("BertGenerationTokenizer",),
    sentencepiece_file="spiece.model",
    slow_only=True,  # the reference has no BertGenerationTokenizerFast
)

BERT_GENERATION = register_architecture(Architecture(
    model_type="bert-generation",
    config_class=BertGenerationConfig,
    base_model_prefix="bert",
    base_schema=bert_generation_encoder_schema,
    causal_lm_schema=bert_generation_decoder_schema,
    decoder=DecoderLayout(
        cross_attention="crossattention",
        cross_key_value=("self.key", "self.value"),
        new_weights=r"\.crossattention\.",
    ),
    tokenizer=SENTENCEPIECE,
    word_embeddings="embeddings.word_embeddings.weight",
    lm_head="lm_head",
    # The reference has no TF BertGeneration: these are the names our TF classes write.
    tf_reused=((r"(^|\.)lm_head\.decoder\.(weight|bias)$",
                "TF BertGeneration's LM head reuses the word embeddings and `lm_head.bias`"),),
    tiny=dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
              max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=3),
))
