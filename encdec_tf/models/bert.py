"""BERT as encoder (``TFBertModel``) and as decoder with cross-attention (``TFBertLMHeadModel``).

Mirrors ``encdec_pt/models/bert.py`` class by class; every sublayer is named like its PyTorch
attribute, so the variable tree is the canonical weight tree.
Shapes use the legend of docs/architectures.md (B batch, Q/K query/key length, S encoder length,
H heads, D head dim, E hidden, V vocabulary, L cache length).
"""

from __future__ import annotations

import math
from typing import Any, Dict

import keras
import tensorflow as tf

from encdec.architectures.bert import BertConfig
from encdec_tf.activations import get_activation
from encdec_tf.layers import DeferredInit, Dense, Dropout, Embedding, LayerNorm, XLATraceCall, matmul_last, split_heads
from encdec_tf.modeling_outputs import TFBaseModelOutputWithPoolingAndCrossAttentions, TFCausalLMOutputWithCrossAttentions
from encdec_tf.modeling_utils import (
    ComposedLayer,
    TFPreTrainedModel,
    additive_mask,
    as_int_tensor,
    attend,
    causal_keep,
    check_ids,
    check_labels,
    keys_and_values,
    masked_lm_loss,
    normal_init,
)


def _dense(config: BertConfig, units: int, name: str, use_bias: bool = True) -> Dense:
    return Dense(units, use_bias=use_bias, kernel_initializer=normal_init(config), name=name)


def _layer_norm(config: BertConfig, name: str = "LayerNorm") -> LayerNorm:
    return LayerNorm(epsilon=config.layer_norm_eps, name=name)


class TFBertEmbeddings(ComposedLayer):
    """Word + position + token-type embeddings, then LayerNorm and dropout."""

    def __init__(self, config: BertConfig, **kwargs: Any):
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
        self.token_type_embeddings = Embedding(
            config.type_vocab_size, config.hidden_size, embeddings_initializer=normal_init(config),
            name="token_type_embeddings",
        )
        # Not snake-cased: the name is the PyTorch attribute, hence the checkpoint key.
        self.LayerNorm = _layer_norm(config)
        self.dropout = Dropout(config.hidden_dropout_prob, name="dropout")

    def call(self, input_ids=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
             past_key_values_length=0, training=False):
        if inputs_embeds is None:
            input_ids = check_ids(input_ids, self.config.vocab_size, "input_ids")
            inputs_embeds = self.word_embeddings(input_ids)  # (B, Q, E)
        seq_length = tf.shape(inputs_embeds)[1]
        if position_ids is None:
            position_ids = tf.range(past_key_values_length, past_key_values_length + seq_length)[None, :]  # (1, Q)
        if token_type_ids is None:
            token_type_ids = tf.zeros(tf.shape(inputs_embeds)[:2], dtype=tf.int32)
        position_ids = check_ids(position_ids, self.config.max_position_embeddings, "position_ids")
        embeddings = inputs_embeds + self.token_type_embeddings(token_type_ids) + self.position_embeddings(position_ids)
        embeddings = self.LayerNorm(embeddings)
        return self.dropout(embeddings, training=training)


class TFBertSelfAttention(ComposedLayer):
    """Multi-head attention; keys/values from ``encoder_hidden_states`` when cross-attention."""

    def __init__(self, config: BertConfig, is_cross_attention: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        # === Config ===
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        self.all_head_size = self.num_attention_heads * self.attention_head_size
        self.scale = 1.0 / math.sqrt(self.attention_head_size)
        self.is_cross_attention = is_cross_attention
        # === Layers ===
        self.query = _dense(config, self.all_head_size, "query")
        self.key = _dense(config, self.all_head_size, "key")
        self.value = _dense(config, self.all_head_size, "value")
        self.dropout = Dropout(config.attention_probs_dropout_prob, name="dropout")

    def call(self, hidden_states, attention_mask=None, encoder_hidden_states=None, past_key_value=None,
             output_attentions=False, training=False):
        """Returns (context (B, Q, E), present (key, value) each (B, H, K, D), probs (B, H, Q, K) or None).

        ``attention_mask`` is an additive bias broadcastable to (B, H, Q, K).
        """
        # (B, Q, E) -> (B, H, Q, D)
        query = split_heads(self.query(hidden_states), self.num_attention_heads)
        # (B, H, K, D) each
        key, value = keys_and_values(self.key, self.value, self.num_attention_heads, hidden_states,
                                     encoder_hidden_states, past_key_value, self.is_cross_attention)
        present = (key, value)  # (B, H, K, D) each: the cache layout of every framework in this library

        context, probs = attend(query, key, value, attention_mask, self.scale, self.dropout, training)
        return context, present, (probs if output_attentions else None)


class TFBertSelfOutput(ComposedLayer):
    def __init__(self, config: BertConfig, **kwargs: Any):
        super().__init__(**kwargs)
        # === Layers ===
        self.dense = _dense(config, config.hidden_size, "dense")
        self.LayerNorm = _layer_norm(config)
        self.dropout = Dropout(config.hidden_dropout_prob, name="dropout")

    def call(self, hidden_states, input_tensor, training=False):
        hidden_states = self.dropout(self.dense(hidden_states), training=training)
        return self.LayerNorm(hidden_states + input_tensor)


class TFBertAttention(ComposedLayer):
    def __init__(self, config: BertConfig, is_cross_attention: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        # === Layers ===
        # PyTorch calls these `self` and `output`; neither can be a Keras attribute, the names
        # (hence the canonical weight names) are kept.
        self.self_attention = TFBertSelfAttention(config, is_cross_attention=is_cross_attention, name="self")
        self.output_layer = TFBertSelfOutput(config, name="output")

    def call(self, hidden_states, attention_mask=None, encoder_hidden_states=None, past_key_value=None,
             output_attentions=False, training=False):
        context, present, probs = self.self_attention(
            hidden_states, attention_mask=attention_mask, encoder_hidden_states=encoder_hidden_states,
            past_key_value=past_key_value, output_attentions=output_attentions, training=training,
        )
        attn_output = self.output_layer(context, hidden_states, training=training)
        return attn_output, present, probs


class TFBertIntermediate(ComposedLayer):
    def __init__(self, config: BertConfig, **kwargs: Any):
        super().__init__(**kwargs)
        # === Layers ===
        self.dense = _dense(config, config.intermediate_size, "dense")
        # === Config ===
        self.intermediate_act_fn = get_activation(config.hidden_act)

    def call(self, hidden_states):
        return self.intermediate_act_fn(self.dense(hidden_states))


class TFBertOutput(ComposedLayer):
    def __init__(self, config: BertConfig, **kwargs: Any):
        super().__init__(**kwargs)
        # === Layers ===
        self.dense = _dense(config, config.hidden_size, "dense")
        self.LayerNorm = _layer_norm(config)
        self.dropout = Dropout(config.hidden_dropout_prob, name="dropout")

    def call(self, hidden_states, input_tensor, training=False):
        hidden_states = self.dropout(self.dense(hidden_states), training=training)
        return self.LayerNorm(hidden_states + input_tensor)


class TFBertLayer(ComposedLayer):
    """Self-attention, cross-attention (decoder only), feed-forward."""

    def __init__(self, config: BertConfig, **kwargs: Any):
        super().__init__(**kwargs)
        # === Config ===
        self.is_decoder = config.is_decoder
        self.add_cross_attention = config.add_cross_attention
        if self.add_cross_attention and not self.is_decoder:
            raise ValueError("BertConfig.add_cross_attention=True needs is_decoder=True (cross-attention is a decoder part)")
        # === Layers ===
        self.attention = TFBertAttention(config, name="attention")
        if self.add_cross_attention:
            self.crossattention = TFBertAttention(config, is_cross_attention=True, name="crossattention")
        self.intermediate = TFBertIntermediate(config, name="intermediate")
        # `output` in PyTorch; a Keras layer has an `output` property.
        self.output_layer = TFBertOutput(config, name="output")

    def call(self, hidden_states, attention_mask=None, encoder_hidden_states=None, encoder_attention_mask=None,
             past_key_value=None, output_attentions=False, training=False):
        """Returns (hidden_states, present, self-attention probs, cross-attention probs)."""
        self_past = past_key_value[:2] if past_key_value is not None else None
        attn_output, present, self_probs = self.attention(
            hidden_states, attention_mask=attention_mask, past_key_value=self_past,
            output_attentions=output_attentions, training=training,
        )
        cross_probs = None
        if self.is_decoder and encoder_hidden_states is not None:
            if not self.add_cross_attention:
                raise ValueError(
                    f"{self.name} got encoder_hidden_states but has no cross-attention layers: "
                    "build it with config.add_cross_attention=True"
                )
            cross_past = past_key_value[2:] if past_key_value is not None else None
            attn_output, cross_present, cross_probs = self.crossattention(
                attn_output, attention_mask=encoder_attention_mask, encoder_hidden_states=encoder_hidden_states,
                past_key_value=cross_past, output_attentions=output_attentions, training=training,
            )
            present = present + cross_present
        layer_output = self.output_layer(self.intermediate(attn_output), attn_output, training=training)
        return layer_output, present, self_probs, cross_probs


class TFBertEncoder(ComposedLayer):
    def __init__(self, config: BertConfig, **kwargs: Any):
        super().__init__(**kwargs)
        # === Layers ===
        self.layer = [TFBertLayer(config, name=f"layer_._{i}") for i in range(config.num_hidden_layers)]
        # === Config ===
        self.config = config

    def call(self, hidden_states, attention_mask=None, encoder_hidden_states=None, encoder_attention_mask=None,
             past_key_values=None, use_cache=False, output_attentions=False, output_hidden_states=False,
             training=False):
        """Returns (last hidden state, cache or None, hidden states or None, attentions or None,
        cross-attentions or None)."""
        all_hidden_states = () if output_hidden_states else None
        all_attentions = () if output_attentions else None
        all_cross = () if output_attentions and self.config.add_cross_attention else None
        presents = () if use_cache else None
        for i, layer_module in enumerate(self.layer):
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            layer_past = past_key_values[i] if past_key_values is not None else None
            hidden_states, present, self_probs, cross_probs = layer_module(
                hidden_states, attention_mask=attention_mask, encoder_hidden_states=encoder_hidden_states,
                encoder_attention_mask=encoder_attention_mask, past_key_value=layer_past,
                output_attentions=output_attentions, training=training,
            )
            if use_cache:
                presents += (present,)
            if output_attentions:
                all_attentions += (self_probs,)
                if all_cross is not None and cross_probs is not None:
                    all_cross += (cross_probs,)
        if output_hidden_states:
            all_hidden_states += (hidden_states,)
        return hidden_states, presents, all_hidden_states, all_attentions, all_cross


class TFBertPooler(ComposedLayer):
    def __init__(self, config: BertConfig, **kwargs: Any):
        super().__init__(**kwargs)
        # === Layers ===
        self.dense = _dense(config, config.hidden_size, "dense")

    def call(self, hidden_states):
        return tf.tanh(self.dense(hidden_states[:, 0]))  # (B, E): the first token


class TFBaseModelCall:
    """``call`` of the base models built on BERT's layer stack (BERT, RoBERTa, ELECTRA,
    BertGeneration): the model's ``embed``, the masks built once, the layers, then ``pooler`` when
    the model has one."""

    def call(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
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
        embedding_output = self.embed(
            input_ids=input_ids, token_type_ids=as_int_tensor(token_type_ids), position_ids=as_int_tensor(position_ids),
            inputs_embeds=inputs_embeds, past_key_values_length=past_len, training=training,
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
        pooled_output = self.pooler(sequence_output) if self.pooler is not None else None
        result = TFBaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=sequence_output, pooler_output=pooled_output, hidden_states=all_hidden_states,
            past_key_values=presents, attentions=all_attentions, cross_attentions=all_cross,
        )
        return result if return_dict else result.to_tuple()


class TFBertModel(TFBaseModelCall, TFPreTrainedModel):
    """BERT: embeddings, layers, pooler. As a decoder (``config.is_decoder``) the self-attention
    is causal and a cache is returned; with ``add_cross_attention`` it attends to
    ``encoder_hidden_states``.

    Args:
        config: a ``BertConfig``.
        add_pooling_layer: build the pooler (the encoder of a composite has one).
        build: create the variables now (parents that build themselves pass False).
    """

    config_class = BertConfig
    base_model_prefix = "bert"
    schema_head = "base"

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True, build: bool = True, **kwargs: Any):
        super().__init__(config, **kwargs)
        # === Layers ===
        self.embeddings = TFBertEmbeddings(config, name="embeddings")
        self.encoder = TFBertEncoder(config, name="encoder")
        self.pooler = TFBertPooler(config, name="pooler") if add_pooling_layer else None
        # === Config ===
        self.add_pooling_layer = add_pooling_layer
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
        """The first layer's input (B, Q, E)."""
        return self.embeddings(
            input_ids=input_ids, token_type_ids=token_type_ids, position_ids=position_ids,
            inputs_embeds=inputs_embeds, past_key_values_length=past_key_values_length, training=training,
        )


class TFBertPredictionHeadTransform(ComposedLayer):
    def __init__(self, config: BertConfig, **kwargs: Any):
        super().__init__(**kwargs)
        # === Layers ===
        self.dense = _dense(config, config.hidden_size, "dense")
        self.LayerNorm = _layer_norm(config)
        # === Config ===
        self.transform_act_fn = get_activation(config.hidden_act)

    def call(self, hidden_states):
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))


class TFBertLMPredictionHead(DeferredInit, XLATraceCall, keras.layers.Layer):
    """Transform, then scores against the (tied) word embeddings plus a bias."""

    def __init__(self, config: BertConfig, **kwargs: Any):
        super().__init__(**kwargs)
        # === Layers ===
        self.transform = TFBertPredictionHeadTransform(config, name="transform")
        # `decoder` is a layer of its own only when it is not tied to the word embeddings.
        self.decoder = None if config.tie_word_embeddings else _dense(config, config.vocab_size, "decoder", use_bias=False)
        # === Config ===
        self.config = config

    def build(self, input_shape):
        self.bias = self.add_weight(name="bias", shape=(self.config.vocab_size,), initializer="zeros")

    def call(self, hidden_states, word_embeddings=None):
        hidden_states = self.transform(hidden_states)  # (B, Q, E)
        if self.decoder is None:
            logits = matmul_last(hidden_states, word_embeddings, transpose_b=True)  # (B, Q, V)
        else:
            logits = self.decoder(hidden_states)
        return logits + self.bias


class TFBertOnlyMLMHead(ComposedLayer):
    def __init__(self, config: BertConfig, **kwargs: Any):
        super().__init__(**kwargs)
        # === Layers ===
        self.predictions = TFBertLMPredictionHead(config, name="predictions")

    def call(self, sequence_output, word_embeddings=None):
        return self.predictions(sequence_output, word_embeddings=word_embeddings)


class TFCausalLMCall:
    """``call`` of the LM-head decoders whose base model takes BERT's arguments (BERT, RoBERTa,
    ELECTRA; BertGeneration's, less token types): the base model under ``base_model_prefix``, then
    the decoder contract's ``decoder_logits``."""

    def call(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
             encoder_hidden_states=None, encoder_attention_mask=None, labels=None, past_key_values=None,
             use_cache=None, output_attentions=None, output_hidden_states=None, return_dict=None, training=False):
        return_dict = self.config.use_return_dict if return_dict is None else return_dict
        if labels is not None:
            use_cache = False
        # token_type_ids only when given: a base model without token types (BertGeneration) has no such argument
        token_types = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        outputs = getattr(self, self.base_model_prefix)(
            input_ids=input_ids, attention_mask=attention_mask, **token_types,
            position_ids=position_ids, inputs_embeds=inputs_embeds, encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask, past_key_values=past_key_values, use_cache=use_cache,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states, return_dict=True,
            training=training,
        )
        logits = self.decoder_logits(outputs.last_hidden_state)  # (B, Q, V)
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


class TFBertLMHeadModel(TFCausalLMCall, TFPreTrainedModel):
    """BERT with a language-model head, the decoder of bert2bert (``config.is_decoder``,
    ``add_cross_attention``).

    Args:
        config: a ``BertConfig``.
        build: create the variables now.
    """

    config_class = BertConfig
    base_model_prefix = "bert"
    schema_head = "causal_lm"

    def __init__(self, config: BertConfig, build: bool = True, **kwargs: Any):
        super().__init__(config, **kwargs)
        # === Layers ===
        self.bert = TFBertModel(config, add_pooling_layer=False, build=False, name="bert")
        self.cls = TFBertOnlyMLMHead(config, name="cls")
        if build:
            self.build_now()

    def dummy_inputs(self) -> Dict[str, Any]:
        return self.bert.dummy_inputs()

    def get_input_embeddings(self) -> keras.layers.Embedding:
        return self.bert.get_input_embeddings()

    # --- the decoder contract (docs/architectures.md) -------------------------------------------
    def decoder_embed(self, input_ids, position_ids):
        """Token ids (N, Q) at ``position_ids`` (1|N, Q) -> layer input (N, Q, E)."""
        return self.bert.embeddings(input_ids=input_ids, position_ids=position_ids)

    def decoder_layers(self):
        """The layers, each called ``layer(hidden, attention_mask=, encoder_hidden_states=,
        encoder_attention_mask=, past_key_value=)`` with the 4-tuple cache ``(self_k, self_v, cross_k, cross_v)``."""
        return self.bert.encoder.layer

    def decoder_logits(self, hidden_states):
        """The last layer's output (N, Q, E) -> next-token logits (N, Q, V)."""
        tied = self.bert.embeddings.word_embeddings.embeddings if self.config.tie_word_embeddings else None
        return self.cls(hidden_states, word_embeddings=tied)

    def cross_key_value(self, layer, encoder_hidden_states):
        """A layer's cross-attention keys and values (N, S, E) of the encoder states (N, S, E)."""
        cross = layer.crossattention.self_attention
        return cross.key(encoder_hidden_states), cross.value(encoder_hidden_states)
