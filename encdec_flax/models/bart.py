"""BART's decoder (``FlaxBartForCausalLM``) and mBART's (``FlaxMBartForCausalLM``) in Flax linen,
mirroring ``encdec_pt/models/bart.py`` module for module.

Every submodule is named like the PyTorch attribute it mirrors, so the params tree is the layout of
the Hugging Face Flax port (``model/decoder/layers/0/encoder_attn/k_proj/kernel``). The cross-attention
module is ``encoder_attn`` (the record's ``DecoderLayout.cross_attention``: generation repeats its
cache entries per beam and never reorders them). Shape letters: B batch, Q query length, K key
length, H heads, D head dim.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from encdec.architectures.bart import POSITION_OFFSET, BartConfig, MBartConfig
from encdec_flax.layers import Dense, Embed, LayerNorm
from encdec_flax.modeling_outputs import FlaxCausalLMOutputWithCrossAttentions
from encdec_flax.modeling_utils import ACT2FN, FlaxPreTrainedModel, attention_bias, causal_mask, normal_init

# nn.LayerNorm's default in PyTorch, which BART's norms use (flax's default is 1e-6).
LAYER_NORM_EPS = 1e-5


class FlaxBartAttention(nn.Module):
    """Self-attention (causal) or cross-attention over ``key_value_states``, with the cache of
    ``FlaxBertSelfAttention``: a preallocated ``(b, h, max_length, d)`` self buffer written at
    ``cache_index``; cross keys/values stored once when the cache is created."""

    config: BartConfig
    causal: bool = False
    is_cross_attention: bool = False
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        cfg = self.config
        if cfg.d_model % cfg.decoder_attention_heads != 0:
            raise ValueError(
                f"d_model={cfg.d_model} is not a multiple of decoder_attention_heads={cfg.decoder_attention_heads}"
            )
        self.num_heads = cfg.decoder_attention_heads
        self.head_dim = cfg.d_model // cfg.decoder_attention_heads
        self.k_proj = Dense(cfg.d_model, dtype=self.dtype, kernel_init=normal_init(cfg))
        self.v_proj = Dense(cfg.d_model, dtype=self.dtype, kernel_init=normal_init(cfg))
        self.q_proj = Dense(cfg.d_model, dtype=self.dtype, kernel_init=normal_init(cfg))
        self.out_proj = Dense(cfg.d_model, dtype=self.dtype, kernel_init=normal_init(cfg))
        self.dropout = nn.Dropout(rate=cfg.attention_dropout)

    def _heads(self, x):
        # (B, Q, H*D) -> (B, Q, H, D)
        return x.reshape(x.shape[:2] + (self.num_heads, self.head_dim))

    def _heads_first(self, x):
        # (B, K, H*D) -> (B, H, K, D), the cache's layout
        return jnp.swapaxes(self._heads(x), 1, 2)

    @nn.compact
    def _cached_key_value(self, key, value, query_length: int):
        """Keys/values (B, H, K, D) in; returns (keys, values, cache_index of this call's first query or None)."""
        is_initialized = self.has_variable("cache", "cached_key")
        cached_key = self.variable("cache", "cached_key", jnp.zeros, key.shape, key.dtype)
        cached_value = self.variable("cache", "cached_value", jnp.zeros, value.shape, value.dtype)
        if self.is_cross_attention:
            if not is_initialized:  # creating the cache: keep the encoder projection
                cached_key.value, cached_value.value = key, value
            return cached_key.value, cached_value.value, None
        cache_index = self.variable("cache", "cache_index", lambda: jnp.array(0, dtype=jnp.int32))
        if not is_initialized:
            return key, value, None
        cur_index = cache_index.value
        # (B, H, max_length, D) with this call's Q positions written at cur_index
        key = lax.dynamic_update_slice(cached_key.value, key, (0, 0, cur_index, 0))
        value = lax.dynamic_update_slice(cached_value.value, value, (0, 0, cur_index, 0))
        cached_key.value, cached_value.value = key, value
        cache_index.value = cur_index + query_length
        return key, value, cur_index

    def __call__(
        self,
        hidden_states,
        attention_mask=None,
        key_value_states=None,
        init_cache: bool = False,
        deterministic: bool = True,
        output_attentions: bool = False,
    ):
        batch_size, query_length = hidden_states.shape[:2]
        # (B, Q, H, D)
        query = self._heads(self.q_proj(hidden_states))
        has_cache = self.has_variable("cache", "cached_key")
        cache_index = None
        if self.is_cross_attention and has_cache and not init_cache:
            # (B, H, K, D): encoder keys/values projected once, when the cache was made
            key = self.variables["cache"]["cached_key"]
            value = self.variables["cache"]["cached_value"]
        else:
            source = key_value_states if self.is_cross_attention else hidden_states
            # (B, H, K, D)
            key = self._heads_first(self.k_proj(source))
            value = self._heads_first(self.v_proj(source))
            if (self.is_cross_attention and init_cache) or (self.causal and (has_cache or init_cache)):
                key, value, cache_index = self._cached_key_value(key, value, query_length)

        # (B or 1, 1, Q, K) boolean: True = attend
        mask = None
        if self.causal:
            mask = causal_mask(query_length, key.shape[2], cache_index)
        if attention_mask is not None:
            pad = attention_mask[:, None, None, :].astype(bool)
            mask = pad if mask is None else mask & pad

        # (B, Q, H, D) x (B, H, K, D) -> (B, H, Q, K)
        scores = jnp.einsum("bqhd,bhkd->bhqk", query, key).astype(jnp.float32)
        scores = scores * (self.head_dim ** -0.5)
        if mask is not None:
            scores = scores + attention_bias(mask, scores.dtype)
        probs = jax.nn.softmax(scores, axis=-1).astype(self.dtype)
        dropped = self.dropout(probs, deterministic=deterministic)
        # (B, H, Q, K) x (B, H, K, D) -> (B, Q, H, D)
        context = jnp.einsum("bhqk,bhkd->bqhd", dropped, value)
        # (B, Q, H*D)
        context = context.reshape(batch_size, query_length, -1)
        return self.out_proj(context), (probs if output_attentions else None)


class FlaxBartDecoderLayer(nn.Module):
    """Self-attention, cross-attention, feed-forward; normalised after (BART) or before (mBART)."""

    config: BartConfig
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        cfg = self.config
        self.self_attn = FlaxBartAttention(cfg, causal=True, dtype=self.dtype)
        self.self_attn_layer_norm = LayerNorm(epsilon=LAYER_NORM_EPS, dtype=self.dtype)
        self.encoder_attn = FlaxBartAttention(cfg, is_cross_attention=True, dtype=self.dtype)
        self.encoder_attn_layer_norm = LayerNorm(epsilon=LAYER_NORM_EPS, dtype=self.dtype)
        self.fc1 = Dense(cfg.decoder_ffn_dim, dtype=self.dtype, kernel_init=normal_init(cfg))
        self.fc2 = Dense(cfg.d_model, dtype=self.dtype, kernel_init=normal_init(cfg))
        self.final_layer_norm = LayerNorm(epsilon=LAYER_NORM_EPS, dtype=self.dtype)
        self.activation_fn = ACT2FN[cfg.activation_function]
        self.dropout = nn.Dropout(rate=cfg.dropout)
        self.activation_dropout = nn.Dropout(rate=cfg.activation_dropout)

    def __call__(
        self,
        hidden_states,
        attention_mask=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        init_cache: bool = False,
        deterministic: bool = True,
        output_attentions: bool = False,
    ):
        pre_norm = self.config.pre_norm
        residual = hidden_states
        if pre_norm:
            hidden_states = self.self_attn_layer_norm(hidden_states)
        attn_output, self_attn_weights = self.self_attn(
            hidden_states, attention_mask, init_cache=init_cache, deterministic=deterministic,
            output_attentions=output_attentions,
        )
        hidden_states = residual + self.dropout(attn_output, deterministic=deterministic)
        if not pre_norm:
            hidden_states = self.self_attn_layer_norm(hidden_states)

        cross_attn_weights = None
        if encoder_hidden_states is not None:
            residual = hidden_states
            if pre_norm:
                hidden_states = self.encoder_attn_layer_norm(hidden_states)
            attn_output, cross_attn_weights = self.encoder_attn(
                hidden_states, encoder_attention_mask, key_value_states=encoder_hidden_states,
                init_cache=init_cache, deterministic=deterministic, output_attentions=output_attentions,
            )
            hidden_states = residual + self.dropout(attn_output, deterministic=deterministic)
            if not pre_norm:
                hidden_states = self.encoder_attn_layer_norm(hidden_states)

        residual = hidden_states
        if pre_norm:
            hidden_states = self.final_layer_norm(hidden_states)
        hidden_states = self.activation_fn(self.fc1(hidden_states))  # (B, Q, F)
        hidden_states = self.activation_dropout(hidden_states, deterministic=deterministic)
        hidden_states = residual + self.dropout(self.fc2(hidden_states), deterministic=deterministic)
        if not pre_norm:
            hidden_states = self.final_layer_norm(hidden_states)
        return hidden_states, self_attn_weights, cross_attn_weights


class FlaxBartDecoderLayerCollection(nn.Module):
    """``layers``: the decoder layers, named ``0``, ``1``, ... as the PyTorch ModuleList items."""

    config: BartConfig
    dtype: jnp.dtype = jnp.float32
    gradient_checkpointing: bool = False

    def setup(self):
        layer_cls = nn.remat(FlaxBartDecoderLayer, static_argnums=(5, 6, 7)) if self.gradient_checkpointing \
            else FlaxBartDecoderLayer
        self.layers = [layer_cls(self.config, dtype=self.dtype, name=str(i)) for i in range(self.config.decoder_layers)]

    def __call__(self, hidden_states, attention_mask=None, encoder_hidden_states=None, encoder_attention_mask=None,
                 init_cache: bool = False, deterministic: bool = True, output_attentions: bool = False,
                 output_hidden_states: bool = False):
        all_hidden_states = () if output_hidden_states else None
        all_self_attentions = () if output_attentions else None
        all_cross_attentions = () if output_attentions and encoder_hidden_states is not None else None
        for layer in self.layers:
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            hidden_states, self_attn_weights, cross_attn_weights = layer(
                hidden_states, attention_mask, encoder_hidden_states, encoder_attention_mask,
                init_cache, deterministic, output_attentions,
            )
            if output_attentions:
                all_self_attentions += (self_attn_weights,)
                if all_cross_attentions is not None:
                    all_cross_attentions += (cross_attn_weights,)
        return hidden_states, all_hidden_states, all_self_attentions, all_cross_attentions


class FlaxBartDecoder(nn.Module):
    """Scaled token embeddings + learned positions (offset 2), ``layernorm_embedding``, the layers,
    and (mBART) the final ``layer_norm``."""

    config: BartConfig
    dtype: jnp.dtype = jnp.float32
    gradient_checkpointing: bool = False

    def setup(self):
        cfg = self.config
        self.embed_tokens = Embed(cfg.vocab_size, cfg.d_model, embedding_init=normal_init(cfg), dtype=self.dtype)
        self.embed_positions = Embed(cfg.max_position_embeddings + POSITION_OFFSET, cfg.d_model,
                                     embedding_init=normal_init(cfg), dtype=self.dtype)
        self.layernorm_embedding = LayerNorm(epsilon=LAYER_NORM_EPS, dtype=self.dtype)
        self.layers = FlaxBartDecoderLayerCollection(cfg, dtype=self.dtype,
                                                     gradient_checkpointing=self.gradient_checkpointing)
        if cfg.pre_norm:
            self.layer_norm = LayerNorm(epsilon=LAYER_NORM_EPS, dtype=self.dtype)
        self.dropout = nn.Dropout(rate=cfg.dropout)

    def __call__(self, input_ids, attention_mask=None, position_ids=None, encoder_hidden_states=None,
                 encoder_attention_mask=None, init_cache: bool = False, output_attentions: bool = False,
                 output_hidden_states: bool = False, deterministic: bool = True):
        if position_ids is None:
            position_ids = jnp.broadcast_to(jnp.arange(input_ids.shape[-1]), input_ids.shape)
        if encoder_hidden_states is not None and encoder_attention_mask is None:
            encoder_attention_mask = jnp.ones(encoder_hidden_states.shape[:2], dtype="i4")
        # (B, Q, d_model)
        inputs_embeds = self.embed_tokens(input_ids.astype("i4")) * self.config.embed_scale
        hidden_states = inputs_embeds + self.embed_positions(position_ids.astype("i4") + POSITION_OFFSET)
        hidden_states = self.layernorm_embedding(hidden_states)
        hidden_states = self.dropout(hidden_states, deterministic=deterministic)
        hidden_states, all_hidden_states, all_attentions, all_cross_attentions = self.layers(
            hidden_states, attention_mask, encoder_hidden_states, encoder_attention_mask, init_cache=init_cache,
            deterministic=deterministic, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        if self.config.pre_norm:
            hidden_states = self.layer_norm(hidden_states)
        if output_hidden_states:
            all_hidden_states += (hidden_states,)
        return hidden_states, all_hidden_states, all_attentions, all_cross_attentions


class FlaxBartDecoderWrapper(nn.Module):
    """``model``: holds ``decoder`` so the params read ``model/decoder/...``."""

    config: BartConfig
    dtype: jnp.dtype = jnp.float32
    gradient_checkpointing: bool = False

    def setup(self):
        self.decoder = FlaxBartDecoder(self.config, dtype=self.dtype, gradient_checkpointing=self.gradient_checkpointing)

    def __call__(self, *args, **kwargs):
        return self.decoder(*args, **kwargs)


class FlaxBartForCausalLMModule(nn.Module):
    """``BartForCausalLM``: ``model`` and ``lm_head`` (tied: the token embedding matrix is applied,
    and ``lm_head`` owns no kernel)."""

    config: BartConfig
    dtype: jnp.dtype = jnp.float32
    gradient_checkpointing: bool = False

    def setup(self):
        cfg = self.config
        self.model = FlaxBartDecoderWrapper(cfg, dtype=self.dtype, gradient_checkpointing=self.gradient_checkpointing)
        self.lm_head = Dense(cfg.vocab_size, dtype=self.dtype, use_bias=False, kernel_init=normal_init(cfg))

    def __call__(
        self,
        input_ids,
        attention_mask=None,
        position_ids=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        init_cache: bool = False,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        deterministic: bool = True,
    ):
        hidden_states, all_hidden_states, all_attentions, all_cross_attentions = self.model(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            init_cache=init_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            deterministic=deterministic,
        )
        if self.config.tie_word_embeddings:
            shared = self.model.variables["params"]["decoder"]["embed_tokens"]["embedding"]
            # (B, Q, d_model) x (vocab, d_model) -> (B, Q, vocab)
            logits = hidden_states @ shared.T.astype(self.dtype)
        else:
            logits = self.lm_head(hidden_states)
        return FlaxCausalLMOutputWithCrossAttentions(
            logits=logits,
            hidden_states=all_hidden_states,
            attentions=all_attentions,
            cross_attentions=all_cross_attentions,
        )


class FlaxBartForCausalLM(FlaxPreTrainedModel):
    """BART's decoder with its LM head (``BartForCausalLM``) behind the functional Flax API.

    Args:
        config: a ``BartConfig``.
        input_shape: the dummy input shape used to create the params.
        seed: the PRNG seed of the random init.
        dtype: the computation dtype (params stay float32; see ``to_bf16``).
        _do_init: False creates no params (``model.params`` is then None; pass ``params=``).
        gradient_checkpointing: recompute each layer in the backward pass (``nn.remat``).
    """

    config_class = BartConfig
    base_model_prefix = "model"
    schema_head = "causal_lm"
    module_class = FlaxBartForCausalLMModule

    def __init__(self, config: BartConfig, **kwargs: Any):
        super().__init__(config, **kwargs)


class FlaxMBartForCausalLM(FlaxBartForCausalLM):
    """mBART's decoder with its LM head: pre-norm layers and a final ``layer_norm`` (from ``MBartConfig``)."""

    config_class = MBartConfig
