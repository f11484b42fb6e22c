"""ELECTRA as encoder (``TFElectraModel``) and as decoder with cross-attention (``TFElectraForCausalLM``).

Mirrors ``encdec_pt/models/electra.py``: BERT's layers (``encdec_tf/models/bert.py``) used whole,
ELECTRA's own embedding width (``embedding_size``, projected by ``embeddings_project`` when it is
not ``hidden_size``), no pooler, and the generator's LM head. Shapes: b batch, q query length,
e hidden size, m embedding size, v vocabulary.
"""

from __future__ import annotations

from typing import Any, Dict

import keras
import tensorflow as tf

from encdec.architectures.electra import ElectraConfig
from encdec_tf.activations import get_activation
from encdec_tf.layers import DeferredInit, Dropout, Embedding, XLATraceCall, matmul_last
from encdec_tf.modeling_outputs import TFBaseModelOutputWithPoolingAndCrossAttentions
from encdec_tf.modeling_utils import (
    ComposedLayer,
    TFPreTrainedModel,
    additive_mask,
    as_int_tensor,
    causal_keep,
    normal_init,
)
from encdec_tf.models.bert import TFBertEmbeddings, TFBertEncoder, TFCausalLMCall, _dense, _layer_norm


class TFElectraEmbeddings(TFBertEmbeddings):
    """BERT's embeddings (and call) at width ``embedding_size``."""

    def __init__(self, config: ElectraConfig, **kwargs: Any):
        ComposedLayer.__init__(self, **kwargs)
        # === Config ===
        self.config = config
        # === Layers ===
        self.word_embeddings = Embedding(
            config.vocab_size, config.embedding_size, embeddings_initializer=normal_init(config),
            name="word_embeddings",
        )
        self.position_embeddings = Embedding(
            config.max_position_embeddings, config.embedding_size, embeddings_initializer=normal_init(config),
            name="position_embeddings",
        )
        self.token_type_embeddings = Embedding(
            config.type_vocab_size, config.embedding_size, embeddings_initializer=normal_init(config),
            name="token_type_embeddings",
        )
        # Not snake-cased: the name is the PyTorch attribute, hence the checkpoint key.
        self.LayerNorm = _layer_norm(config)
        self.dropout = Dropout(config.hidden_dropout_prob, name="dropout")


class TFElectraModel(TFPreTrainedModel):
    """ELECTRA: embeddings (width m), ``embeddings_project`` (m -> e, only when m != e), BERT's layers;
    no pooler. A decoder when ``config.is_decoder``.

    Args:
        config: an ``ElectraConfig``.
        add_pooling_layer: accepted for the encoder role's common signature; ELECTRA has no pooler.
        build: create the variables now (parents that build themselves pass False).
    """

    config_class = ElectraConfig
    base_model_prefix = "electra"
    schema_head = "base"

    def __init__(self, config: ElectraConfig, add_pooling_layer: bool = False, build: bool = True, **kwargs: Any):
        super().__init__(config, **kwargs)
        self.add_pooling_layer = False
        # === Layers ===
        self.embeddings = TFElectraEmbeddings(config, name="embeddings")
        if config.embedding_size != config.hidden_size:
            self.embeddings_project = _dense(config, config.hidden_size, "embeddings_project")
        else:
            self.embeddings_project = None
        self.encoder = TFBertEncoder(config, name="encoder")
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
        """The embeddings (b, q, m), projected to the layers' width (b, q, e)."""
        hidden_states = self.embeddings(
            input_ids=input_ids, token_type_ids=token_type_ids, position_ids=position_ids,
            inputs_embeds=inputs_embeds, past_key_values_length=past_key_values_length, training=training,
        )  # (b, q, m)
        if self.embeddings_project is not None:
            hidden_states = self.embeddings_project(hidden_states)  # (b, q, e)
        return hidden_states

    def call(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
             encoder_hidden_states=None, encoder_attention_mask=None, past_key_values=None, use_cache=None,
             output_attentions=None, output_hidden_states=None, return_dict=None, training=False):
        """``TFBertModel.call`` with ELECTRA's embeddings (``inputs_embeds`` are (b, q, m)) and no pooler."""
        config = self.config
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        return_dict = config.use_return_dict if return_dict is None else return_dict
        use_cache = (config.use_cache if use_cache is None else use_cache) if config.is_decoder else False
        if input_ids is not None and inputs_embeds is not None:
            raise ValueError("You cannot specify both input_ids and inputs_embeds at the same time")
        if input_ids is None and inputs_embeds is None:
            raise ValueError("You have to specify either input_ids or inputs_embeds")
        input_ids = as_int_tensor(input_ids)
        shape_source = input_ids if input_ids is not None else inputs_embeds
        batch_size, seq_length = tf.shape(shape_source)[0], tf.shape(shape_source)[1]
        past_key_values_length = 0 if past_key_values is None else tf.shape(past_key_values[0][0])[2]

        # Masks, built once: (b, 1, q|1, k) additive.
        if attention_mask is None:
            attention_mask = tf.ones((batch_size, past_key_values_length + seq_length), dtype=tf.int32)
        keep = tf.cast(attention_mask, tf.int32)[:, None, None, :]  # (b, 1, 1, k)
        if config.is_decoder:
            keep = keep * causal_keep(seq_length, past_key_values_length + seq_length)[None, None]  # (b, 1, q, k)
        extended_attention_mask = additive_mask(keep)
        encoder_extended_attention_mask = None
        if config.is_decoder and encoder_hidden_states is not None:
            if encoder_attention_mask is None:
                encoder_attention_mask = tf.ones(tf.shape(encoder_hidden_states)[:2], dtype=tf.int32)
            encoder_extended_attention_mask = additive_mask(tf.cast(encoder_attention_mask, tf.int32)[:, None, None, :])

        hidden_states = self.embed(
            input_ids=input_ids, token_type_ids=as_int_tensor(token_type_ids), position_ids=as_int_tensor(position_ids),
            inputs_embeds=inputs_embeds, past_key_values_length=past_key_values_length, training=training,
        )  # (b, q, e)
        sequence_output, next_cache, all_hidden_states, all_self_attentions, all_cross_attentions = self.encoder(
            hidden_states, attention_mask=extended_attention_mask, encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_extended_attention_mask, past_key_values=past_key_values,
            use_cache=use_cache, output_attentions=output_attentions, output_hidden_states=output_hidden_states,
            training=training,
        )
        outputs = TFBaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=sequence_output, pooler_output=None, hidden_states=all_hidden_states,
            past_key_values=next_cache, attentions=all_self_attentions, cross_attentions=all_cross_attentions,
        )
        return outputs if return_dict else outputs.to_tuple()


class TFElectraGeneratorPredictions(ComposedLayer):
    """dense (e -> m), gelu, LayerNorm: the generator's transform before the vocabulary projection."""

    def __init__(self, config: ElectraConfig, **kwargs: Any):
        super().__init__(**kwargs)
        # === Layers ===
        self.LayerNorm = _layer_norm(config)
        self.dense = _dense(config, config.embedding_size, "dense")
        # The reference applies erf GELU here whatever `hidden_act` says.
        self.act = get_activation("gelu")

    def call(self, hidden_states):
        return self.LayerNorm(self.act(self.dense(hidden_states)))  # (b, q, m)


class TFElectraGeneratorLMHead(DeferredInit, XLATraceCall, keras.layers.Layer):
    """``generator_lm_head``: scores against the (tied) word embeddings plus ``bias``; a ``kernel``
    of its own only when not tied (the reference's TF head likewise holds only ``bias``)."""

    def __init__(self, config: ElectraConfig, **kwargs: Any):
        super().__init__(**kwargs)
        self.config = config

    def build(self, input_shape):
        if not self.config.tie_word_embeddings:
            self.kernel = self.add_weight(name="kernel", shape=(self.config.embedding_size, self.config.vocab_size),
                                          initializer=normal_init(self.config))
        self.bias = self.add_weight(name="bias", shape=(self.config.vocab_size,), initializer="zeros")

    def call(self, hidden_states, word_embeddings=None):
        if word_embeddings is not None:
            logits = matmul_last(hidden_states, word_embeddings, transpose_b=True)  # (b, q, v)
        else:
            logits = matmul_last(hidden_states, self.kernel)  # (b, q, v)
        return logits + self.bias


class TFElectraForCausalLM(TFCausalLMCall, TFPreTrainedModel):
    """ELECTRA with the generator's LM head, the decoder of electra2electra (``config.is_decoder``,
    ``add_cross_attention``). The reference has no TF class for it; this one matches PyTorch's.

    Args:
        config: an ``ElectraConfig``.
        build: create the variables now.
    """

    config_class = ElectraConfig
    base_model_prefix = "electra"
    schema_head = "causal_lm"

    def __init__(self, config: ElectraConfig, build: bool = True, **kwargs: Any):
        super().__init__(config, **kwargs)
        # === Layers ===
        self.electra = TFElectraModel(config, build=False, name="electra")
        self.generator_predictions = TFElectraGeneratorPredictions(config, name="generator_predictions")
        self.generator_lm_head = TFElectraGeneratorLMHead(config, name="generator_lm_head")
        if build:
            self.build_now()

    def dummy_inputs(self) -> Dict[str, Any]:
        return self.electra.dummy_inputs()

    def get_input_embeddings(self) -> keras.layers.Embedding:
        return self.electra.get_input_embeddings()

    # --- the decoder contract (docs/architectures.md) -------------------------------------------
    def decoder_embed(self, input_ids, position_ids):
        """Token ids (N, Q) at ``position_ids`` (1|N, Q) -> layer input (N, Q, E), projected."""
        return self.electra.embed(input_ids=input_ids, position_ids=position_ids)

    def decoder_layers(self):
        """The layers, each called ``layer(hidden, attention_mask=, encoder_hidden_states=,
        encoder_attention_mask=, past_key_value=)`` with the 4-tuple cache ``(self_k, self_v, cross_k, cross_v)``."""
        return self.electra.encoder.layer

    def decoder_logits(self, hidden_states):
        """The last layer's output (N, Q, E) -> next-token logits (N, Q, V)."""
        tied = self.electra.embeddings.word_embeddings.embeddings if self.config.tie_word_embeddings else None
        return self.generator_lm_head(self.generator_predictions(hidden_states), word_embeddings=tied)

    def cross_key_value(self, layer, encoder_hidden_states):
        """A layer's cross-attention keys and values (N, S, E) of the encoder states (N, S, E)."""
        cross = layer.crossattention.self_attention
        return cross.key(encoder_hidden_states), cross.value(encoder_hidden_states)
