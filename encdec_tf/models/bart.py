"""BART's decoder (``TFBartForCausalLM``) and mBART's (``TFMBartForCausalLM``) as decoders with
cross-attention.

Mirrors ``encdec_pt/models/bart.py`` class by class; every sublayer is named like its PyTorch
attribute, so the variable tree is the canonical weight tree (``model/decoder/layers_._0/encoder_attn/k_proj``).
The reference has no TF causal LM of BART: files are read and written in the canonical names.
Shapes use the legend of docs/architectures.md (B batch, Q/K query/key length, S encoder length,
H heads, D head dim, E d_model, I ffn size, V vocabulary, L cache length).
"""

from __future__ import annotations

from typing import Any, Dict

import keras
import tensorflow as tf

from encdec.architectures.bart import POSITION_OFFSET, BartConfig, MBartConfig
from encdec_tf.activations import get_activation
from encdec_tf.layers import Dense, Dropout, Embedding, LayerNorm, matmul_last, split_heads
from encdec_tf.modeling_outputs import TFCausalLMOutputWithCrossAttentions
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

# nn.LayerNorm's default, which BART's norms use.
LAYER_NORM_EPS = 1e-5


def _dense(config: BartConfig, units: int, name: str, use_bias: bool = True) -> Dense:
    return Dense(units, use_bias=use_bias, kernel_initializer=normal_init(config), name=name)


class TFBartAttention(ComposedLayer):
    """Multi-head attention: self-attention, or cross-attention (keys/values from
    ``encoder_hidden_states``) when ``is_cross_attention``."""

    def __init__(self, config: BartConfig, is_cross_attention: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        embed_dim, num_heads = config.d_model, config.decoder_attention_heads
        if embed_dim % num_heads != 0:
            raise ValueError(f"d_model ({embed_dim}) is not a multiple of decoder_attention_heads ({num_heads})")
        # === Config ===
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.is_cross_attention = is_cross_attention
        # === Layers ===
        self.k_proj = _dense(config, embed_dim, "k_proj")
        self.v_proj = _dense(config, embed_dim, "v_proj")
        self.q_proj = _dense(config, embed_dim, "q_proj")
        self.out_proj = _dense(config, embed_dim, "out_proj")
        self.dropout = Dropout(config.attention_dropout, name="dropout")

    def call(self, hidden_states, attention_mask=None, encoder_hidden_states=None, past_key_value=None,
             output_attentions=False, training=False):
        """Returns (attn_output (B, Q, E), present (key, value) each (B, H, K, D), probs (B, H, Q, K) or None).

        ``attention_mask`` is an additive bias broadcastable to (B, H, Q, K).
        """
        # (B, Q, E) -> (B, H, Q, D)
        query = split_heads(self.q_proj(hidden_states), self.num_heads)
        # (B, H, K, D) each
        key, value = keys_and_values(self.k_proj, self.v_proj, self.num_heads, hidden_states,
                                     encoder_hidden_states, past_key_value, self.is_cross_attention)
        present = (key, value)  # (B, H, K, D) each: the cache layout of every framework in this library

        # BART returns the probabilities before dropout, as the reference does
        context, probs = attend(query, key, value, attention_mask, self.scale, self.dropout, training,
                                probs_after_dropout=False)
        attn_output = self.out_proj(context)
        return attn_output, present, (probs if output_attentions else None)


class TFBartDecoderLayer(ComposedLayer):
    """Self-attention, cross-attention, feed-forward; normalised after (BART) or before (mBART)."""

    def __init__(self, config: BartConfig, **kwargs: Any):
        super().__init__(**kwargs)
        d = config.d_model
        # === Config ===
        self.pre_norm = config.pre_norm
        self.activation_fn = get_activation(config.activation_function)
        # === Layers ===
        self.self_attn = TFBartAttention(config, name="self_attn")
        self.self_attn_layer_norm = LayerNorm(epsilon=LAYER_NORM_EPS, name="self_attn_layer_norm")
        self.encoder_attn = TFBartAttention(config, is_cross_attention=True, name="encoder_attn")
        self.encoder_attn_layer_norm = LayerNorm(epsilon=LAYER_NORM_EPS, name="encoder_attn_layer_norm")
        self.fc1 = _dense(config, config.decoder_ffn_dim, "fc1")
        self.fc2 = _dense(config, d, "fc2")
        self.final_layer_norm = LayerNorm(epsilon=LAYER_NORM_EPS, name="final_layer_norm")
        self.dropout = Dropout(config.dropout, name="dropout")
        self.activation_dropout = Dropout(config.activation_dropout, name="activation_dropout")

    def call(self, hidden_states, attention_mask=None, encoder_hidden_states=None, encoder_attention_mask=None,
             past_key_value=None, output_attentions=False, training=False):
        """Returns (hidden_states, present, self-attention probs, cross-attention probs)."""
        residual = hidden_states
        if self.pre_norm:
            hidden_states = self.self_attn_layer_norm(hidden_states)
        self_past = past_key_value[:2] if past_key_value is not None else None
        attn_output, present, self_probs = self.self_attn(
            hidden_states, attention_mask=attention_mask, past_key_value=self_past,
            output_attentions=output_attentions, training=training,
        )
        hidden_states = residual + self.dropout(attn_output, training=training)
        if not self.pre_norm:
            hidden_states = self.self_attn_layer_norm(hidden_states)

        cross_probs = None
        if encoder_hidden_states is not None:
            residual = hidden_states
            if self.pre_norm:
                hidden_states = self.encoder_attn_layer_norm(hidden_states)
            cross_past = past_key_value[2:] if past_key_value is not None else None
            attn_output, cross_present, cross_probs = self.encoder_attn(
                hidden_states, attention_mask=encoder_attention_mask, encoder_hidden_states=encoder_hidden_states,
                past_key_value=cross_past, output_attentions=output_attentions, training=training,
            )
            hidden_states = residual + self.dropout(attn_output, training=training)
            if not self.pre_norm:
                hidden_states = self.encoder_attn_layer_norm(hidden_states)
            present = present + cross_present

        residual = hidden_states
        if self.pre_norm:
            hidden_states = self.final_layer_norm(hidden_states)
        hidden_states = self.activation_fn(self.fc1(hidden_states))  # (B, Q, I)
        hidden_states = self.activation_dropout(hidden_states, training=training)
        hidden_states = residual + self.dropout(self.fc2(hidden_states), training=training)  # (B, Q, E)
        if not self.pre_norm:
            hidden_states = self.final_layer_norm(hidden_states)
        return hidden_states, present, self_probs, cross_probs


class TFBartDecoder(ComposedLayer):
    """Scaled token embeddings + learned positions (offset 2), ``layernorm_embedding``, the layers,
    and (mBART) the final ``layer_norm``."""

    def __init__(self, config: BartConfig, **kwargs: Any):
        super().__init__(**kwargs)
        # === Config ===
        self.config = config
        self.embed_scale = config.embed_scale
        # === Layers ===
        self.embed_tokens = Embedding(config.vocab_size, config.d_model, embeddings_initializer=normal_init(config),
                                      name="embed_tokens")
        self.embed_positions = Embedding(config.max_position_embeddings + POSITION_OFFSET, config.d_model,
                                         embeddings_initializer=normal_init(config), name="embed_positions")
        self.layernorm_embedding = LayerNorm(epsilon=LAYER_NORM_EPS, name="layernorm_embedding")
        self.layers = [TFBartDecoderLayer(config, name=f"layers_._{i}") for i in range(config.decoder_layers)]
        self.layer_norm = LayerNorm(epsilon=LAYER_NORM_EPS, name="layer_norm") if config.pre_norm else None
        self.dropout = Dropout(config.dropout, name="dropout")

    def embed(self, input_ids, position_ids, inputs_embeds=None, training=False):
        """Token ids (B, Q) (or their embeddings) at ``position_ids`` (1|B, Q) -> first layer input (B, Q, E)."""
        if inputs_embeds is None:
            input_ids = check_ids(input_ids, self.config.vocab_size, "input_ids")
            inputs_embeds = self.embed_tokens(input_ids) * self.embed_scale  # (B, Q, E)
        position_ids = check_ids(position_ids, self.config.max_position_embeddings, "position_ids")
        hidden_states = inputs_embeds + self.embed_positions(position_ids + POSITION_OFFSET)
        hidden_states = self.layernorm_embedding(hidden_states)
        return self.dropout(hidden_states, training=training)

    def call(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None,
             encoder_hidden_states=None, encoder_attention_mask=None, past_key_values=None, use_cache=False,
             output_attentions=False, output_hidden_states=False, training=False):
        if input_ids is not None and inputs_embeds is not None:
            raise ValueError("You cannot specify both input_ids and inputs_embeds at the same time")
        if input_ids is None and inputs_embeds is None:
            raise ValueError("You have to specify either input_ids or inputs_embeds")
        input_ids = as_int_tensor(input_ids)
        shape_source = input_ids if input_ids is not None else inputs_embeds
        batch_size, seq_length = tf.shape(shape_source)[0], tf.shape(shape_source)[1]
        past_len = 0 if past_key_values is None else tf.shape(past_key_values[0][0])[2]
        if position_ids is None:
            # Positions continue after the cached ones.
            position_ids = tf.range(past_len, past_len + seq_length)[None, :]  # (1, Q)
        hidden_states = self.embed(input_ids, as_int_tensor(position_ids), inputs_embeds, training=training)  # (B, Q, E)

        # Masks are built once here, as additive biases: (B, 1, Q, K), causal and padding together, and (B, 1, 1, S).
        if attention_mask is None:
            attention_mask = tf.ones((batch_size, past_len + seq_length), dtype=tf.int32)
        keep = tf.cast(attention_mask, tf.int32)[:, None, None, :]  # (B, 1, 1, K)
        keep = keep * causal_keep(seq_length, past_len + seq_length)[None, None]  # (B, 1, Q, K)
        self_bias = additive_mask(keep)
        cross_bias = None
        if encoder_hidden_states is not None:
            if encoder_attention_mask is None:
                encoder_attention_mask = tf.ones(tf.shape(encoder_hidden_states)[:2], dtype=tf.int32)
            cross_bias = additive_mask(tf.cast(encoder_attention_mask, tf.int32)[:, None, None, :])

        all_hidden_states = () if output_hidden_states else None
        all_attentions = () if output_attentions else None
        all_cross = () if output_attentions and encoder_hidden_states is not None else None
        presents = () if use_cache else None
        for i, layer in enumerate(self.layers):
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            layer_past = past_key_values[i] if past_key_values is not None else None
            hidden_states, present, self_probs, cross_probs = layer(
                hidden_states, attention_mask=self_bias, encoder_hidden_states=encoder_hidden_states,
                encoder_attention_mask=cross_bias, past_key_value=layer_past,
                output_attentions=output_attentions, training=training,
            )
            if use_cache:
                presents += (present,)
            if output_attentions:
                all_attentions += (self_probs,)
                if all_cross is not None:
                    all_cross += (cross_probs,)
        if self.layer_norm is not None:
            hidden_states = self.layer_norm(hidden_states)
        if output_hidden_states:
            all_hidden_states += (hidden_states,)
        return hidden_states, presents, all_hidden_states, all_attentions, all_cross


class TFBartDecoderWrapper(ComposedLayer):
    """``model`` of the causal LM: holds ``decoder`` so the names read ``model.decoder.*``."""

    def __init__(self, config: BartConfig, **kwargs: Any):
        super().__init__(**kwargs)
        self.decoder = TFBartDecoder(config, name="decoder")

    def call(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None,
             encoder_hidden_states=None, encoder_attention_mask=None, past_key_values=None, use_cache=False,
             output_attentions=False, output_hidden_states=False, training=False):
        return self.decoder(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, inputs_embeds=inputs_embeds,
            encoder_hidden_states=encoder_hidden_states, encoder_attention_mask=encoder_attention_mask,
            past_key_values=past_key_values, use_cache=use_cache, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states, training=training,
        )


class TFBartForCausalLM(TFPreTrainedModel):
    """BART's decoder with its LM head (``lm_head`` tied to ``embed_tokens``; a layer of its own
    only when ``tie_word_embeddings=False``).

    Args:
        config: a ``BartConfig`` (an ``MBartConfig`` for ``TFMBartForCausalLM``).
        build: create the variables now.
    """

    config_class = BartConfig
    base_model_prefix = "model"
    schema_head = "causal_lm"

    def __init__(self, config: BartConfig, build: bool = True, **kwargs: Any):
        super().__init__(config, **kwargs)
        # === Layers ===
        self.model = TFBartDecoderWrapper(config, name="model")
        self.lm_head = None if config.tie_word_embeddings else _dense(config, config.vocab_size, "lm_head",
                                                                      use_bias=False)
        if build:
            self.build_now()

    def dummy_inputs(self) -> Dict[str, Any]:
        return {"input_ids": tf.zeros((1, 2), dtype=tf.int32),
                "encoder_hidden_states": tf.zeros((1, 2, self.config.d_model))}

    def get_input_embeddings(self) -> keras.layers.Embedding:
        return self.model.decoder.embed_tokens

    def _logits(self, hidden_states):
        if self.lm_head is None:
            return matmul_last(hidden_states, self.model.decoder.embed_tokens.embeddings, transpose_b=True)  # (B, Q, V)
        return self.lm_head(hidden_states)

    # --- the decoder contract (docs/architectures.md) -------------------------------------------
    def decoder_embed(self, input_ids, position_ids):
        """Token ids (N, Q) at ``position_ids`` (1|N, Q) -> layer input (N, Q, E)."""
        return self.model.decoder.embed(input_ids, position_ids)

    def decoder_layers(self):
        """The layers, each called ``layer(hidden, attention_mask=, encoder_hidden_states=,
        encoder_attention_mask=, past_key_value=)`` with the 4-tuple cache ``(self_k, self_v, cross_k, cross_v)``."""
        return self.model.decoder.layers

    def decoder_logits(self, hidden_states):
        """The last layer's output (N, Q, E) -> next-token logits (N, Q, V), mBART's final norm included."""
        if self.model.decoder.layer_norm is not None:
            hidden_states = self.model.decoder.layer_norm(hidden_states)
        return self._logits(hidden_states)

    def cross_key_value(self, layer, encoder_hidden_states):
        """A layer's cross-attention keys and values (N, S, E) of the encoder states (N, S, E)."""
        return layer.encoder_attn.k_proj(encoder_hidden_states), layer.encoder_attn.v_proj(encoder_hidden_states)

    def call(self, input_ids=None, attention_mask=None, position_ids=None, inputs_embeds=None,
             encoder_hidden_states=None, encoder_attention_mask=None, labels=None, past_key_values=None,
             use_cache=None, output_attentions=None, output_hidden_states=None, return_dict=None, training=False):
        config = self.config
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        return_dict = config.use_return_dict if return_dict is None else return_dict
        use_cache = (config.use_cache if use_cache is None else use_cache) and labels is None
        hidden_states, presents, all_hidden_states, all_attentions, all_cross = self.model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, inputs_embeds=inputs_embeds,
            encoder_hidden_states=encoder_hidden_states, encoder_attention_mask=encoder_attention_mask,
            past_key_values=past_key_values, use_cache=use_cache, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states, training=training,
        )
        logits = self._logits(hidden_states)  # (B, Q, V)
        loss = None
        if labels is not None:
            # Causal LM: position t predicts token t+1.
            labels = as_int_tensor(labels)
            check_labels(labels, config.vocab_size)
            loss = masked_lm_loss(labels[:, 1:], logits[:, :-1])
        result = TFCausalLMOutputWithCrossAttentions(
            loss=loss, logits=logits, past_key_values=presents, hidden_states=all_hidden_states,
            attentions=all_attentions, cross_attentions=all_cross,
        )
        return result if return_dict else result.to_tuple()


class TFMBartForCausalLM(TFBartForCausalLM):
    """mBART's decoder with its LM head: pre-norm layers and a final ``layer_norm`` (from ``MBartConfig``)."""

    config_class = MBartConfig
