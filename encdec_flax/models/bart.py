"""BART's decoder (``FlaxBartForCausalLM``) and mBART's (``FlaxMBartForCausalLM``) in Flax linen,
mirroring ``encdec_pt/models/bart.py`` module for module.

Every submodule is named like the PyTorch attribute it mirrors, so the params tree is the layout of
the Hugging Face Flax port (``model/decoder/layers/0/encoder_attn/k_proj/kernel``). The cross-attention
module is ``encoder_attn`` (the record's ``DecoderLayout.cross_attention``: generation repeats its
cache entries per beam and never reorders them).

Shapes use the legend of docs/architectures.md (B batch, Q/K query/key length, S encoder length,
H heads, D head dim, E d_model, I ffn size, V vocabulary, L cache length).

The attention modules return ``(attn_output, probs)``: ``present``, which PyTorch and TensorFlow
return between them, lives in the ``"cache"`` collection (the Flax idiom), as in
``encdec_flax/models/bert.py``. The masks are built once, as additive biases, by ``FlaxBartDecoder``.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from encdec.architectures.bart import POSITION_OFFSET, BartConfig, MBartConfig
from encdec_flax.layers import Dense, Embed, KeyValueCache, LayerNorm, attend, split_heads
from encdec_flax.modeling_outputs import FlaxCausalLMOutputWithCrossAttentions
from encdec_flax.modeling_utils import (
    ACT2FN,
    FlaxPreTrainedModel,
    cross_attention_bias,
    normal_init,
    self_attention_bias,
)

# nn.LayerNorm's default in PyTorch, which BART's norms use (flax's default is 1e-6).
LAYER_NORM_EPS = 1e-5


class FlaxBartAttention(KeyValueCache):
    """Multi-head attention: self-attention (causal), or cross-attention over ``encoder_hidden_states``.

    Returns ``(attn_output, probs)``: where PyTorch and TensorFlow also return ``present``, the keys
    and values live in the ``"cache"`` collection, as in ``FlaxBertSelfAttention``: a preallocated
    ``(B, H, L, D)`` self buffer written at ``cache_index``; cross keys/values stored once when the
    cache is created.
    """

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
        # === Config ===
        self.num_heads = cfg.decoder_attention_heads
        self.head_dim = cfg.d_model // cfg.decoder_attention_heads
        self.scale = self.head_dim ** -0.5
        # === Layers ===
        self.k_proj = Dense(cfg.d_model, dtype=self.dtype, kernel_init=normal_init(cfg))
        self.v_proj = Dense(cfg.d_model, dtype=self.dtype, kernel_init=normal_init(cfg))
        self.q_proj = Dense(cfg.d_model, dtype=self.dtype, kernel_init=normal_init(cfg))
        self.out_proj = Dense(cfg.d_model, dtype=self.dtype, kernel_init=normal_init(cfg))
        self.dropout = nn.Dropout(rate=cfg.attention_dropout)

    def __call__(
        self,
        hidden_states,
        attention_mask=None,
        encoder_hidden_states=None,
        output_attentions: bool = False,
        init_cache: bool = False,
        deterministic: bool = True,
    ):
        """Returns (attn_output (B, Q, E), probs (B, H, Q, K) or None).

        ``attention_mask`` is an additive bias broadcastable to (B, H, Q, K), built at the top of the model.
        """
        # (B, Q, E) -> (B, Q, H, D)
        query = split_heads(self.q_proj(hidden_states), self.num_heads)
        # (B, H, K, D) each
        key, value = self._keys_and_values(self.k_proj, self.v_proj, self.num_heads, hidden_states, encoder_hidden_states,
                                           init_cache)

        # BART returns the probabilities before dropout, as the reference does
        context, probs = attend(query, key, value, attention_mask, self.scale, self.dropout, deterministic, self.dtype,
                                probs_after_dropout=False)
        attn_output = self.out_proj(context)
        return attn_output, (probs if output_attentions else None)


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
        output_attentions: bool = False,
        init_cache: bool = False,
        deterministic: bool = True,
    ):
        """Returns (hidden_states, self-attention probs, cross-attention probs); the cache is in the collection."""
        pre_norm = self.config.pre_norm
        residual = hidden_states
        if pre_norm:
            hidden_states = self.self_attn_layer_norm(hidden_states)
        attn_output, self_probs = self.self_attn(
            hidden_states, attention_mask=attention_mask, output_attentions=output_attentions,
            init_cache=init_cache, deterministic=deterministic,
        )
        hidden_states = residual + self.dropout(attn_output, deterministic=deterministic)
        if not pre_norm:
            hidden_states = self.self_attn_layer_norm(hidden_states)

        cross_probs = None
        if encoder_hidden_states is not None:
            residual = hidden_states
            if pre_norm:
                hidden_states = self.encoder_attn_layer_norm(hidden_states)
            attn_output, cross_probs = self.encoder_attn(
                hidden_states, attention_mask=encoder_attention_mask, encoder_hidden_states=encoder_hidden_states,
                output_attentions=output_attentions, init_cache=init_cache, deterministic=deterministic,
            )
            hidden_states = residual + self.dropout(attn_output, deterministic=deterministic)
            if not pre_norm:
                hidden_states = self.encoder_attn_layer_norm(hidden_states)

        residual = hidden_states
        if pre_norm:
            hidden_states = self.final_layer_norm(hidden_states)
        hidden_states = self.activation_fn(self.fc1(hidden_states))  # (B, Q, I)
        hidden_states = self.activation_dropout(hidden_states, deterministic=deterministic)
        hidden_states = residual + self.dropout(self.fc2(hidden_states), deterministic=deterministic)  # (B, Q, E)
        if not pre_norm:
            hidden_states = self.final_layer_norm(hidden_states)
        return hidden_states, self_probs, cross_probs


class FlaxBartDecoderLayerCollection(nn.Module):
    """``layers``: the decoder layers, named ``0``, ``1``, ... as the PyTorch ModuleList items."""

    config: BartConfig
    dtype: jnp.dtype = jnp.float32
    gradient_checkpointing: bool = False

    def setup(self):
        layer_cls = FlaxBartDecoderLayer
        if self.gradient_checkpointing:
            # output_attentions, init_cache, deterministic are Python bools (self is argument 0).
            layer_cls = nn.remat(FlaxBartDecoderLayer, static_argnums=(5, 6, 7))
        # === Layers ===
        self.layers = [layer_cls(self.config, dtype=self.dtype, name=str(i)) for i in range(self.config.decoder_layers)]

    def __call__(self, hidden_states, attention_mask=None, encoder_hidden_states=None, encoder_attention_mask=None,
                 output_attentions: bool = False, output_hidden_states: bool = False, init_cache: bool = False,
                 deterministic: bool = True):
        all_hidden_states = () if output_hidden_states else None
        all_attentions = () if output_attentions else None
        all_cross = () if output_attentions and encoder_hidden_states is not None else None
        for layer in self.layers:
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            hidden_states, self_probs, cross_probs = layer(
                hidden_states, attention_mask, encoder_hidden_states, encoder_attention_mask,
                output_attentions, init_cache, deterministic,
            )
            if output_attentions:
                all_attentions += (self_probs,)
                if all_cross is not None:
                    all_cross += (cross_probs,)
        return hidden_states, all_hidden_states, all_attentions, all_cross


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
        inputs_embeds = self.embed_tokens(input_ids.astype("i4")) * self.config.embed_scale  # (B, Q, E)
        hidden_states = inputs_embeds + self.embed_positions(position_ids.astype("i4") + POSITION_OFFSET)
        hidden_states = self.layernorm_embedding(hidden_states)
        hidden_states = self.dropout(hidden_states, deterministic=deterministic)  # (B, Q, E)

        # Masks are built once here, as additive biases: (B|1, 1, Q, K) and (B, 1, 1, S). While
        # decoding with a cache, the first layer's self-attention cache says where the queries sit.
        self_cache = self.variables["cache"]["layers"]["0"]["self_attn"] if self.variables.get("cache") else None
        self_bias = self_attention_bias(attention_mask, input_ids.shape[1], causal=True, self_cache=self_cache)
        cross_bias = cross_attention_bias(encoder_attention_mask)

        hidden_states, all_hidden_states, all_attentions, all_cross = self.layers(
            hidden_states, self_bias, encoder_hidden_states, cross_bias, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states, init_cache=init_cache, deterministic=deterministic,
        )
        if self.config.pre_norm:
            hidden_states = self.layer_norm(hidden_states)
        if output_hidden_states:
            all_hidden_states += (hidden_states,)
        return hidden_states, all_hidden_states, all_attentions, all_cross


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
        hidden_states, all_hidden_states, all_attentions, all_cross = self.model(
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
            # (B, Q, E) x (V, E) -> (B, Q, V)
            logits = hidden_states @ shared.T.astype(self.dtype)
        else:
            logits = self.lm_head(hidden_states)
        return FlaxCausalLMOutputWithCrossAttentions(
            logits=logits,
            hidden_states=all_hidden_states,
            attentions=all_attentions,
            cross_attentions=all_cross,
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
