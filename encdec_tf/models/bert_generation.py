"""BertGeneration as encoder (``TFBertGenerationEncoder``) and as decoder with cross-attention
(``TFBertGenerationDecoder``).

Mirrors ``encdec_pt/models/bert_generation.py`` class by class and reuses the BERT layers
(``TFBertEncoder``); every sublayer is named like its PyTorch attribute, so the variable tree is the
canonical weight tree. The reference has no TF BertGeneration: files are read and written in the
canonical (PyTorch) names.
Shapes use the legend of docs/architectures.md (B batch, Q/K query/key length, S encoder length,
H heads, D head dim, E hidden, V vocabulary, L cache length).
"""

from __future__ import annotations

from typing import Any, Dict

import keras
import tensorflow as tf

from encdec.architectures.bert_generation import BertGenerationConfig
from encdec_tf.layers import DeferredInit, Dense, Dropout, Embedding, LayerNorm, XLATraceCall, matmul_last
from encdec_tf.modeling_utils import ComposedLayer, TFPreTrainedModel, check_ids, normal_init
from encdec_tf.models.bert import TFBaseModelCall, TFBertEncoder, TFCausalLMCall


class TFBertGenerationEmbeddings(ComposedLayer):
    """Word + position embeddings (no token types), then LayerNorm and dropout."""

    def __init__(self, config: BertGenerationConfig, **kwargs: Any):
        super().__init__(**kwargs)
        # === Config ===
        self.config = config
        # === Layers ===
        self.word_embeddings = Embedding(
            config.vocab_size, config.hidden_size, embeddings_initializer=normal_init(config), name="word_embeddings"
        )
        self.position_embeddings = Embedding(
            config.max_position_embeddings, config.hidden_size, embeddings_initializer=normal_init(config),
            name="position_embeddings",
        )
        # Not snake-cased: the name is the PyTorch attribute, hence the checkpoint key.
        self.LayerNorm = LayerNorm(epsilon=config.layer_norm_eps, name="LayerNorm")
        self.dropout = Dropout(config.hidden_dropout_prob, name="dropout")

    def call(self, input_ids=None, position_ids=None, inputs_embeds=None, past_key_values_length=0, training=False):
        if inputs_embeds is None:
            input_ids = check_ids(input_ids, self.config.vocab_size, "input_ids")
            inputs_embeds = self.word_embeddings(input_ids)  # (B, Q, E)
        seq_length = tf.shape(inputs_embeds)[1]
        if position_ids is None:
            position_ids = tf.range(past_key_values_length, past_key_values_length + seq_length)[None, :]  # (1, Q)
        position_ids = check_ids(position_ids, self.config.max_position_embeddings, "position_ids")
        embeddings = inputs_embeds + self.position_embeddings(position_ids)
        embeddings = self.LayerNorm(embeddings)
        return self.dropout(embeddings, training=training)


class TFBertGenerationEncoder(TFBaseModelCall, TFPreTrainedModel):
    """BertGeneration: embeddings and BERT layers, no pooler. As a decoder (``config.is_decoder``)
    the self-attention is causal and a cache is returned; with ``add_cross_attention`` it attends to
    ``encoder_hidden_states``. ``call`` is ``TFBaseModelCall``'s under the reference's PyTorch
    signature (no ``token_type_ids``).

    Args:
        config: a ``BertGenerationConfig``.
        build: create the variables now (parents that build themselves pass False).
    """

    config_class = BertGenerationConfig
    base_model_prefix = "bert"
    schema_head = "base"

    def __init__(self, config: BertGenerationConfig, build: bool = True, **kwargs: Any):
        super().__init__(config, **kwargs)
        # === Layers ===
        self.embeddings = TFBertGenerationEmbeddings(config, name="embeddings")
        self.encoder = TFBertEncoder(config, name="encoder")
        self.pooler = None
        if build:
            self.build_now()

    def dummy_inputs(self) -> Dict[str, Any]:
        inputs: Dict[str, Any] = {"input_ids": tf.zeros((1, 2), dtype=tf.int32)}
        if self.config.add_cross_attention:
            inputs["encoder_hidden_states"] = tf.zeros((1, 2, self.config.hidden_size))
        return inputs

    def get_input_embeddings(self) -> keras.layers.Embedding:
        return self.embeddings.word_embeddings

    def embed(self, input_ids=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
              past_key_values_length=0, training=False):
        """The first layer's input (B, Q, E); ``token_type_ids`` is always None here."""
        return self.embeddings(input_ids=input_ids, position_ids=position_ids, inputs_embeds=inputs_embeds,
                               past_key_values_length=past_key_values_length, training=training)

    def call(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None,
             encoder_hidden_states=None, encoder_attention_mask=None, past_key_values=None, use_cache=None,
             output_attentions=None, output_hidden_states=None, return_dict=None, training=False):
        return super().call(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, inputs_embeds=inputs_embeds,
            encoder_hidden_states=encoder_hidden_states, encoder_attention_mask=encoder_attention_mask,
            past_key_values=past_key_values, use_cache=use_cache, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states, return_dict=return_dict, training=training,
        )


class TFBertGenerationOnlyLMHead(DeferredInit, XLATraceCall, keras.layers.Layer):
    """Scores against the (tied) word embeddings plus ``bias``: no transform."""

    def __init__(self, config: BertGenerationConfig, **kwargs: Any):
        super().__init__(**kwargs)
        self.config = config
        # `decoder` is a layer of its own only when it is not tied to the word embeddings.
        self.decoder = None if config.tie_word_embeddings else Dense(
            config.vocab_size, use_bias=False, kernel_initializer=normal_init(config), name="decoder"
        )

    def build(self, input_shape):
        self.bias = self.add_weight(name="bias", shape=(self.config.vocab_size,), initializer="zeros")

    def call(self, hidden_states, word_embeddings=None):
        if self.decoder is None:
            logits = matmul_last(hidden_states, word_embeddings, transpose_b=True)  # (B, Q, V)
        else:
            logits = self.decoder(hidden_states)
        return logits + self.bias


class TFBertGenerationDecoder(TFCausalLMCall, TFPreTrainedModel):
    """BertGeneration with its LM head, the decoder of bert2bert translation models
    (``config.is_decoder``, ``add_cross_attention``).

    Args:
        config: a ``BertGenerationConfig``.
        build: create the variables now.
    """

    config_class = BertGenerationConfig
    base_model_prefix = "bert"
    schema_head = "causal_lm"

    def __init__(self, config: BertGenerationConfig, build: bool = True, **kwargs: Any):
        super().__init__(config, **kwargs)
        # === Layers ===
        self.bert = TFBertGenerationEncoder(config, build=False, name="bert")
        self.lm_head = TFBertGenerationOnlyLMHead(config, name="lm_head")
        if build:
            self.build_now()

    def dummy_inputs(self) -> Dict[str, Any]:
        return self.bert.dummy_inputs()

    def get_input_embeddings(self) -> keras.layers.Embedding:
        return self.bert.get_input_embeddings()

    def _tied_embeddings(self):
        return self.bert.embeddings.word_embeddings.embeddings if self.config.tie_word_embeddings else None

    # --- the decoder contract (docs/architectures.md) -------------------------------------------
    def decoder_embed(self, input_ids, position_ids):
        """Token ids (N, Q) at ``position_ids`` (1|N, Q) -> layer input (N, Q, E)."""
        return self.bert.embeddings(input_ids=input_ids, position_ids=position_ids)

    def decoder_layers(self):
        """The layers (``TFBertLayer``), called as ``TFBertLMHeadModel.decoder_layers`` documents."""
        return self.bert.encoder.layer

    def decoder_logits(self, hidden_states):
        """The last layer's output (N, Q, E) -> next-token logits (N, Q, V)."""
        return self.lm_head(hidden_states, word_embeddings=self._tied_embeddings())

    def cross_key_value(self, layer, encoder_hidden_states):
        """A layer's cross-attention keys and values (N, S, E) of the encoder states (N, S, E)."""
        cross = layer.crossattention.self_attention
        return cross.key(encoder_hidden_states), cross.value(encoder_hidden_states)

    def call(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None,
             encoder_hidden_states=None, encoder_attention_mask=None, labels=None, past_key_values=None,
             use_cache=None, output_attentions=None, output_hidden_states=None, return_dict=None, training=False):
        """``TFCausalLMCall``'s under the reference's PyTorch signature (no ``token_type_ids``)."""
        return super().call(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, inputs_embeds=inputs_embeds,
            encoder_hidden_states=encoder_hidden_states, encoder_attention_mask=encoder_attention_mask, labels=labels,
            past_key_values=past_key_values, use_cache=use_cache, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states, return_dict=return_dict, training=training,
        )
