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
from encdec_tf.modeling_outputs import TFBaseModelOutputWithPoolingAndCrossAttentions, TFCausalLMOutputWithCrossAttentions
from encdec_tf.modeling_utils import (
    ComposedLayer,
    TFPreTrainedModel,
    additive_mask,
    as_int_tensor,
    causal_keep,
    check_ids,
    check_labels,
    masked_lm_loss,
    normal_init,
)
from encdec_tf.models.bert import TFBertEncoder


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


class TFBertGenerationEncoder(TFPreTrainedModel):
    """BertGeneration: embeddings and BERT layers, no pooler. As a decoder (``config.is_decoder``)
    the self-attention is causal and a cache is returned; with ``add_cross_attention`` it attends to
    ``encoder_hidden_states``.

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
        if build:
            self.build_now()

    def dummy_inputs(self) -> Dict[str, Any]:
        inputs: Dict[str, Any] = {"input_ids": tf.zeros((1, 2), dtype=tf.int32)}
        if self.config.add_cross_attention:
            inputs["encoder_hidden_states"] = tf.zeros((1, 2, self.config.hidden_size))
        return inputs

    def get_input_embeddings(self) -> keras.layers.Embedding:
        return self.embeddings.word_embeddings

    def call(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None,
             encoder_hidden_states=None, encoder_attention_mask=None, past_key_values=None, use_cache=None,
             output_attentions=None, output_hidden_states=None, return_dict=None, training=False):
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

        past_len = 0 if past_key_values is None else tf.shape(past_key_values[0][0])[2]
        embedding_output = self.embeddings(
            input_ids=input_ids, position_ids=as_int_tensor(position_ids), inputs_embeds=inputs_embeds,
            past_key_values_length=past_len, training=training,
        )  # (B, Q, E)
        batch_size, seq_length = tf.shape(embedding_output)[0], tf.shape(embedding_output)[1]

        # Masks are built once here, as additive biases: (B, 1, Q|1, K) and (B, 1, 1, S).
        if attention_mask is None:
            attention_mask = tf.ones((batch_size, past_len + seq_length), dtype=tf.int32)
        keep = tf.cast(attention_mask, tf.int32)[:, None, None, :]  # (B, 1, 1, K)
        if config.is_decoder:
            keep = keep * causal_keep(seq_length, past_len + seq_length)[None, None]  # (B, 1, Q, K)
        extended_attention_mask = additive_mask(keep)
        encoder_extended_attention_mask = None
        if config.is_decoder and encoder_hidden_states is not None:
            if encoder_attention_mask is None:
                encoder_attention_mask = tf.ones(tf.shape(encoder_hidden_states)[:2], dtype=tf.int32)
            encoder_extended_attention_mask = additive_mask(tf.cast(encoder_attention_mask, tf.int32)[:, None, None, :])

        sequence_output, presents, all_hidden_states, all_attentions, all_cross = self.encoder(
            embedding_output, attention_mask=extended_attention_mask, encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_extended_attention_mask, past_key_values=past_key_values,
            use_cache=use_cache, output_attentions=output_attentions, output_hidden_states=output_hidden_states,
            training=training,
        )
        result = TFBaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=sequence_output, hidden_states=all_hidden_states, past_key_values=presents,
            attentions=all_attentions, cross_attentions=all_cross,
        )
        return result if return_dict else result.to_tuple()


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


class TFBertGenerationDecoder(TFPreTrainedModel):
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
        return_dict = self.config.use_return_dict if return_dict is None else return_dict
        if labels is not None:
            use_cache = False
        outputs = self.bert(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, inputs_embeds=inputs_embeds,
            encoder_hidden_states=encoder_hidden_states, encoder_attention_mask=encoder_attention_mask,
            past_key_values=past_key_values, use_cache=use_cache, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states, return_dict=True, training=training,
        )
        logits = self.lm_head(outputs.last_hidden_state, word_embeddings=self._tied_embeddings())  # (B, Q, V)
        loss = None
        if labels is not None:
            # Causal LM: position t predicts token t+1.
            labels = as_int_tensor(labels)
            check_labels(labels, self.config.vocab_size)
            loss = masked_lm_loss(labels[:, 1:], logits[:, :-1])
        result = TFCausalLMOutputWithCrossAttentions(
            loss=loss, logits=logits, past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states, attentions=outputs.attentions,
            cross_attentions=outputs.cross_attentions,
        )
        return result if return_dict else result.to_tuple()
