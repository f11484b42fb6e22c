"""GPT-2 as decoder with cross-attention (``TFGPT2LMHeadModel``) and its base ``TFGPT2Model``.

Mirrors ``encdec_pt/models/gpt2.py``; sublayers named like the PyTorch attributes, so the
variable tree is the canonical weight tree.
Shapes use the legend of docs/architectures.md (B batch, Q/K query/key length, S encoder length,
H heads, D head dim, E hidden, V vocabulary, L cache length).
"""

from __future__ import annotations

import math
from typing import Any, Dict

import keras
import tensorflow as tf

from encdec.architectures.gpt2 import GPT2Config
from encdec_tf.activations import get_activation
from encdec_tf.layers import DeferredInit, Dense, Dropout, Embedding, LayerNorm, XLATraceCall, matmul_last, split_heads
from encdec_tf.modeling_outputs import TFBaseModelOutputWithPoolingAndCrossAttentions, TFCausalLMOutputWithCrossAttentions
from encdec_tf.modeling_utils import (
    ComposedLayer,
    TFPreTrainedModel,
    additive_mask,
    append_key_value,
    as_int_tensor,
    attend,
    causal_keep,
    check_ids,
    check_labels,
    masked_lm_loss,
    normal_init,
)


class TFConv1D(DeferredInit, XLATraceCall, keras.layers.Layer):
    """GPT-2's "Conv1D": a dense layer whose weight is stored ``(in, out)`` like PyTorch's."""

    def __init__(self, nf: int, nx: int, initializer_range: float = 0.02, **kwargs: Any):
        super().__init__(**kwargs)
        self.nf, self.nx = nf, nx
        self.initializer_range = initializer_range

    def build(self, input_shape):
        self.weight = self.add_weight(
            name="weight", shape=(self.nx, self.nf),
            initializer=keras.initializers.RandomNormal(stddev=self.initializer_range),
        )
        self.bias = self.add_weight(name="bias", shape=(self.nf,), initializer="zeros")

    def call(self, x):
        return matmul_last(x, self.weight) + self.bias  # (B, T, nf); see encdec_tf/layers.py for why not einsum


class TFGPT2Attention(ComposedLayer):
    """Causal self-attention, or cross-attention (queries from ``q_attn``, keys/values from the
    encoder through ``c_attn``)."""

    def __init__(self, config: GPT2Config, is_cross_attention: bool = False, layer_idx: int = 0, **kwargs: Any):
        super().__init__(**kwargs)
        # === Config ===
        self.embed_dim = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = self.embed_dim // self.num_heads
        if self.head_dim * self.num_heads != self.embed_dim:
            raise ValueError(f"n_embd={self.embed_dim} must be divisible by n_head={self.num_heads}")
        self.layer_idx = layer_idx
        scale = 1.0 / math.sqrt(self.head_dim) if config.scale_attn_weights else 1.0
        if config.scale_attn_by_inverse_layer_idx:
            scale = scale / float(layer_idx + 1)
        self.scale = scale
        self.is_cross_attention = is_cross_attention
        # === Layers ===
        r = config.initializer_range
        if is_cross_attention:
            self.c_attn = TFConv1D(2 * self.embed_dim, self.embed_dim, r, name="c_attn")
            self.q_attn = TFConv1D(self.embed_dim, self.embed_dim, r, name="q_attn")
        else:
            self.c_attn = TFConv1D(3 * self.embed_dim, self.embed_dim, r, name="c_attn")
        self.c_proj = TFConv1D(self.embed_dim, self.embed_dim, r, name="c_proj")
        self.attn_dropout = Dropout(config.attn_pdrop, name="attn_dropout")
        self.resid_dropout = Dropout(config.resid_pdrop, name="resid_dropout")

    def call(self, hidden_states, attention_mask=None, encoder_hidden_states=None, past_key_value=None,
             output_attentions=False, training=False):
        """Returns (attn_output (B, Q, E), present (key, value) each (B, H, K, D), probs (B, H, Q, K) or None).

        ``attention_mask`` is an additive bias broadcastable to (B, H, Q, K); for self-attention it
        already holds the causal mask, for cross-attention the encoder padding mask.
        """
        if self.is_cross_attention:
            if encoder_hidden_states is None:
                raise ValueError("cross-attention needs encoder_hidden_states")
            # (B, Q, E) -> (B, H, Q, D)
            query = split_heads(self.q_attn(hidden_states), self.num_heads)
            if past_key_value is not None:
                # The encoder's keys and values do not change while decoding: reuse them. (B, H, S, D)
                key, value = past_key_value[0], past_key_value[1]
            else:
                key, value = tf.split(self.c_attn(encoder_hidden_states), 2, axis=2)
                # (B, S, E) -> (B, H, S, D)
                key, value = split_heads(key, self.num_heads), split_heads(value, self.num_heads)
        else:
            query, key, value = tf.split(self.c_attn(hidden_states), 3, axis=2)
            # (B, Q, E) -> (B, H, Q, D)
            query = split_heads(query, self.num_heads)
            key, value = split_heads(key, self.num_heads), split_heads(value, self.num_heads)
            key, value = append_key_value(key, value, past_key_value)  # (B, H, past + Q | L, D)
        present = (key, value)  # (B, H, K, D) each: the cache layout of every framework in this library

        context, probs = attend(query, key, value, attention_mask, self.scale, self.attn_dropout, training)
        attn_output = self.resid_dropout(self.c_proj(context), training=training)
        return attn_output, present, (probs if output_attentions else None)


class TFGPT2MLP(ComposedLayer):
    def __init__(self, intermediate_size: int, config: GPT2Config, **kwargs: Any):
        super().__init__(**kwargs)
        r = config.initializer_range
        # === Layers ===
        self.c_fc = TFConv1D(intermediate_size, config.hidden_size, r, name="c_fc")
        self.c_proj = TFConv1D(config.hidden_size, intermediate_size, r, name="c_proj")
        self.dropout = Dropout(config.resid_pdrop, name="dropout")
        # === Config ===
        self.act = get_activation(config.activation_function)

    def call(self, hidden_states, training=False):
        hidden_states = self.act(self.c_fc(hidden_states))  # (B, Q, I)
        return self.dropout(self.c_proj(hidden_states), training=training)  # (B, Q, E)


class TFGPT2Block(ComposedLayer):
    """Pre-norm block: self-attention, cross-attention (decoder of a composite), MLP."""

    def __init__(self, config: GPT2Config, layer_idx: int = 0, **kwargs: Any):
        super().__init__(**kwargs)
        eps = config.layer_norm_epsilon
        self.ln_1 = LayerNorm(epsilon=eps, name="ln_1")
        self.attn = TFGPT2Attention(config, layer_idx=layer_idx, name="attn")
        self.ln_2 = LayerNorm(epsilon=eps, name="ln_2")
        self.add_cross_attention = config.add_cross_attention
        if config.add_cross_attention:
            self.crossattention = TFGPT2Attention(config, is_cross_attention=True, layer_idx=layer_idx,
                                                  name="crossattention")
            self.ln_cross_attn = LayerNorm(epsilon=eps, name="ln_cross_attn")
        self.mlp = TFGPT2MLP(config.inner_size, config, name="mlp")

    def call(self, hidden_states, attention_mask=None, encoder_hidden_states=None, encoder_attention_mask=None,
             past_key_value=None, output_attentions=False, training=False):
        """Returns (hidden_states, present, self-attention probs, cross-attention probs)."""
        residual = hidden_states
        attn_output, present, self_probs = self.attn(
            self.ln_1(hidden_states), attention_mask=attention_mask,
            past_key_value=past_key_value[:2] if past_key_value is not None else None,
            output_attentions=output_attentions, training=training,
        )
        hidden_states = attn_output + residual

        cross_probs = None
        if encoder_hidden_states is not None:
            if not self.add_cross_attention:
                raise ValueError(
                    f"{self.name} got encoder_hidden_states but has no cross-attention layers: "
                    "build it with config.add_cross_attention=True"
                )
            residual = hidden_states
            cross_past = past_key_value[2:] if past_key_value is not None else None
            cross_output, cross_present, cross_probs = self.crossattention(
                self.ln_cross_attn(hidden_states), attention_mask=encoder_attention_mask,
                encoder_hidden_states=encoder_hidden_states, past_key_value=cross_past,
                output_attentions=output_attentions, training=training,
            )
            hidden_states = residual + cross_output
            present = present + cross_present

        residual = hidden_states
        hidden_states = residual + self.mlp(self.ln_2(hidden_states), training=training)
        return hidden_states, present, self_probs, cross_probs


class TFGPT2Model(TFPreTrainedModel):
    """GPT-2: token and position embeddings, blocks, final LayerNorm.

    Args:
        config: a ``GPT2Config``.
        build: create the variables now (parents that build themselves pass False).
    """

    config_class = GPT2Config
    base_model_prefix = "transformer"
    schema_head = "base"

    def __init__(self, config: GPT2Config, build: bool = True, **kwargs: Any):
        super().__init__(config, **kwargs)
        # === Layers ===
        self.wte = Embedding(config.vocab_size, config.hidden_size,
                                          embeddings_initializer=normal_init(config), name="wte")
        self.wpe = Embedding(config.max_position_embeddings, config.hidden_size,
                                          embeddings_initializer=normal_init(config), name="wpe")
        self.drop = Dropout(config.embd_pdrop, name="drop")
        self.h = [TFGPT2Block(config, layer_idx=i, name=f"h_._{i}") for i in range(config.num_hidden_layers)]
        self.ln_f = LayerNorm(epsilon=config.layer_norm_epsilon, name="ln_f")
        if build:
            self.build_now()

    def dummy_inputs(self) -> Dict[str, Any]:
        inputs: Dict[str, Any] = {"input_ids": tf.zeros((1, 2), dtype=tf.int32)}
        if self.config.add_cross_attention:
            inputs["encoder_hidden_states"] = tf.zeros((1, 2, self.config.hidden_size))
        return inputs

    def get_input_embeddings(self) -> keras.layers.Embedding:
        return self.wte

    def call(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
             encoder_hidden_states=None, encoder_attention_mask=None, past_key_values=None, use_cache=None,
             output_attentions=None, output_hidden_states=None, return_dict=None, training=False):
        config = self.config
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        return_dict = config.use_return_dict if return_dict is None else return_dict
        use_cache = config.use_cache if use_cache is None else use_cache
        if input_ids is not None and inputs_embeds is not None:
            raise ValueError("You cannot specify both input_ids and inputs_embeds at the same time")
        if input_ids is None and inputs_embeds is None:
            raise ValueError("You have to specify either input_ids or inputs_embeds")
        input_ids = as_int_tensor(input_ids)

        if inputs_embeds is None:
            input_ids = check_ids(input_ids, config.vocab_size, "input_ids")
            inputs_embeds = self.wte(input_ids)  # (B, Q, E)
        batch_size, seq_length = tf.shape(inputs_embeds)[0], tf.shape(inputs_embeds)[1]
        past_len = 0 if past_key_values is None else tf.shape(past_key_values[0][0])[2]
        if position_ids is None:
            # Positions continue after the cached ones.
            position_ids = tf.range(past_len, past_len + seq_length)[None, :]  # (1, Q)
        position_ids = as_int_tensor(position_ids)
        position_ids = check_ids(position_ids, config.max_position_embeddings, "position_ids")
        hidden_states = inputs_embeds + self.wpe(position_ids)
        if token_type_ids is not None:
            token_type_ids = as_int_tensor(token_type_ids)
            token_type_ids = check_ids(token_type_ids, config.vocab_size, "token_type_ids")
            hidden_states = hidden_states + self.wte(token_type_ids)
        hidden_states = self.drop(hidden_states, training=training)  # (B, Q, E)

        # Masks are built once here, as additive biases: (B, 1, Q, K), causal and padding together, and (B, 1, 1, S).
        if attention_mask is None:
            attention_mask = tf.ones((batch_size, past_len + seq_length), dtype=tf.int32)
        keep = tf.cast(attention_mask, tf.int32)[:, None, None, :]  # (B, 1, 1, K)
        keep = keep * causal_keep(seq_length, past_len + seq_length)[None, None]  # (B, 1, Q, K)
        causal_mask = additive_mask(keep)
        encoder_bias = None
        if encoder_hidden_states is not None:
            if encoder_attention_mask is None:
                encoder_attention_mask = tf.ones(tf.shape(encoder_hidden_states)[:2], dtype=tf.int32)
            encoder_bias = additive_mask(tf.cast(encoder_attention_mask, tf.int32)[:, None, None, :])

        presents = () if use_cache else None
        all_hidden_states = () if output_hidden_states else None
        all_attentions = () if output_attentions else None
        all_cross = () if output_attentions and config.add_cross_attention else None
        for i, block in enumerate(self.h):
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            layer_past = past_key_values[i] if past_key_values is not None else None
            hidden_states, present, self_probs, cross_probs = block(
                hidden_states, attention_mask=causal_mask, encoder_hidden_states=encoder_hidden_states,
                encoder_attention_mask=encoder_bias, past_key_value=layer_past,
                output_attentions=output_attentions, training=training,
            )
            if use_cache:
                presents += (present,)
            if output_attentions:
                all_attentions += (self_probs,)
                if all_cross is not None and cross_probs is not None:
                    all_cross += (cross_probs,)
        hidden_states = self.ln_f(hidden_states)
        if output_hidden_states:
            all_hidden_states += (hidden_states,)

        result = TFBaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=hidden_states, hidden_states=all_hidden_states, past_key_values=presents,
            attentions=all_attentions, cross_attentions=all_cross,
        )
        return result if return_dict else result.to_tuple()


class TFGPT2LMHeadModel(TFPreTrainedModel):
    """GPT-2 with its language-model head (tied to ``wte`` unless ``tie_word_embeddings=False``).

    Args:
        config: a ``GPT2Config``.
        build: create the variables now.
    """

    config_class = GPT2Config
    base_model_prefix = "transformer"
    schema_head = "causal_lm"

    def __init__(self, config: GPT2Config, build: bool = True, **kwargs: Any):
        super().__init__(config, **kwargs)
        # === Layers ===
        self.transformer = TFGPT2Model(config, build=False, name="transformer")
        self.lm_head = None if config.tie_word_embeddings else Dense(
            config.vocab_size, use_bias=False, kernel_initializer=normal_init(config), name="lm_head"
        )
        if build:
            self.build_now()

    def dummy_inputs(self) -> Dict[str, Any]:
        return self.transformer.dummy_inputs()

    def get_input_embeddings(self) -> keras.layers.Embedding:
        return self.transformer.wte

    # --- the decoder contract (docs/architectures.md) -------------------------------------------
    def decoder_embed(self, input_ids, position_ids):
        """Token ids (N, Q) at ``position_ids`` (1|N, Q) -> layer input (N, Q, E)."""
        gpt2 = self.transformer
        return gpt2.drop(gpt2.wte(input_ids) + gpt2.wpe(position_ids))

    def decoder_layers(self):
        """The blocks, each called ``block(hidden, attention_mask=, encoder_hidden_states=,
        encoder_attention_mask=, past_key_value=)`` with the 4-tuple cache ``(self_k, self_v, cross_k, cross_v)``."""
        return self.transformer.h

    def decoder_logits(self, hidden_states):
        """The last block's output (N, Q, E) -> next-token logits (N, Q, V) (``ln_f``, then the head)."""
        hidden_states = self.transformer.ln_f(hidden_states)
        if self.lm_head is None:
            return matmul_last(hidden_states, self.transformer.wte.embeddings, transpose_b=True)  # (N, Q, V)
        return self.lm_head(hidden_states)

    def cross_key_value(self, block, encoder_hidden_states):
        """A block's cross-attention keys and values (N, S, E) of the encoder states (N, S, E)."""
        return tf.split(block.crossattention.c_attn(encoder_hidden_states), 2, axis=2)

    def call(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
             encoder_hidden_states=None, encoder_attention_mask=None, labels=None, past_key_values=None,
             use_cache=None, output_attentions=None, output_hidden_states=None, return_dict=None, training=False):
        return_dict = self.config.use_return_dict if return_dict is None else return_dict
        outputs = self.transformer(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
            position_ids=position_ids, inputs_embeds=inputs_embeds, encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask, past_key_values=past_key_values, use_cache=use_cache,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states, return_dict=True,
            training=training,
        )
        hidden_states = outputs.last_hidden_state  # (B, Q, E)
        if self.lm_head is None:
            logits = matmul_last(hidden_states, self.transformer.wte.embeddings, transpose_b=True)  # (B, Q, V)
        else:
            logits = self.lm_head(hidden_states)
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
