"""GPT-2 in Flax linen: ``FlaxGPT2Model`` and ``FlaxGPT2LMHeadModel`` (with cross-attention when
``add_cross_attention``), mirroring ``encdec_pt/models/gpt2.py`` module for module.

``FlaxConv1D`` stores its kernel as ``(out, in)`` like the Hugging Face Flax port (the PyTorch
``Conv1D`` weight transposed), so its files load unchanged; the layout table says so once.

Shape letters: B batch, Q query length, K key length, H heads, D head dim.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from encdec.architectures.gpt2 import GPT2Config
from encdec_flax.layers import Dense, Embed, LayerNorm, ShapeCheckedParams
from encdec_flax.modeling_outputs import (
    FlaxBaseModelOutputWithPastAndCrossAttentions,
    FlaxCausalLMOutputWithCrossAttentions,
)
from encdec_flax.modeling_utils import ACT2FN, FlaxPreTrainedModel, attention_bias, causal_mask, normal_init


class FlaxConv1D(ShapeCheckedParams, nn.Module):
    """GPT-2's ``Conv1D``: a dense layer whose kernel is stored ``(features, in)``."""

    features: int
    use_bias: bool = True
    dtype: jnp.dtype = jnp.float32
    kernel_init: object = jax.nn.initializers.normal(stddev=0.02)

    @nn.compact
    def __call__(self, inputs):
        kernel = self.param("kernel", self.kernel_init, (self.features, inputs.shape[-1]))
        # (..., in) x (features, in) -> (..., features)
        y = jnp.einsum("...i,oi->...o", inputs.astype(self.dtype), kernel.astype(self.dtype))
        if self.use_bias:
            y = y + self.param("bias", jax.nn.initializers.zeros, (self.features,)).astype(self.dtype)
        return y


class FlaxGPT2Attention(nn.Module):
    """Causal self-attention, or cross-attention over ``key_value_states`` (``q_attn`` makes the
    queries, ``c_attn`` the keys and values). Cache as in ``FlaxBertSelfAttention``."""

    config: GPT2Config
    is_cross_attention: bool = False
    layer_idx: int = 0
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        cfg = self.config
        self.embed_dim = cfg.hidden_size
        self.num_heads = cfg.num_attention_heads
        self.head_dim = self.embed_dim // self.num_heads
        if self.head_dim * self.num_heads != self.embed_dim:
            raise ValueError(f"n_embd={self.embed_dim} is not a multiple of n_head={self.num_heads}")
        init = normal_init(cfg)
        if self.is_cross_attention:
            self.c_attn = FlaxConv1D(2 * self.embed_dim, dtype=self.dtype, kernel_init=init)
            self.q_attn = FlaxConv1D(self.embed_dim, dtype=self.dtype, kernel_init=init)
        else:
            self.c_attn = FlaxConv1D(3 * self.embed_dim, dtype=self.dtype, kernel_init=init)
        self.c_proj = FlaxConv1D(self.embed_dim, dtype=self.dtype, kernel_init=init)
        self.attn_dropout = nn.Dropout(rate=cfg.attn_pdrop)
        self.resid_dropout = nn.Dropout(rate=cfg.resid_pdrop)

    def _heads(self, x):
        # (B, Q, H*D) -> (B, Q, H, D)
        return x.reshape(x.shape[:2] + (self.num_heads, self.head_dim))

    def _heads_first(self, x):
        # (B, K, H*D) -> (B, H, K, D), the cache's layout (as in PyTorch and TensorFlow)
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
        has_cache = self.has_variable("cache", "cached_key")
        cache_index = None
        if self.is_cross_attention:
            # (B, Q, H, D)
            query = self._heads(self.q_attn(hidden_states))
            if has_cache and not init_cache:
                # (B, H, K, D): encoder keys/values projected once, when the cache was made
                key = self.variables["cache"]["cached_key"]
                value = self.variables["cache"]["cached_value"]
            else:
                key, value = jnp.split(self.c_attn(key_value_states), 2, axis=-1)
                key, value = self._heads_first(key), self._heads_first(value)  # (B, H, K, D)
                if init_cache:
                    key, value, _ = self._cached_key_value(key, value, query_length)
        else:
            query, key, value = jnp.split(self.c_attn(hidden_states), 3, axis=-1)
            query = self._heads(query)  # (B, Q, H, D)
            key = self._heads_first(key)  # (B, H, Q, D)
            value = self._heads_first(value)
            if has_cache or init_cache:
                key, value, cache_index = self._cached_key_value(key, value, query_length)

        # (B or 1, 1, Q, K) boolean: True = attend
        mask = None
        if not self.is_cross_attention:
            mask = causal_mask(query_length, key.shape[2], cache_index)
        if attention_mask is not None:
            pad = attention_mask[:, None, None, :].astype(bool)
            mask = pad if mask is None else mask & pad

        # (B, Q, H, D) x (B, H, K, D) -> (B, H, Q, K)
        scores = jnp.einsum("bqhd,bhkd->bhqk", query, key).astype(jnp.float32)
        if self.config.scale_attn_weights:
            scores = scores / math.sqrt(self.head_dim)
        if self.config.scale_attn_by_inverse_layer_idx:
            scores = scores / float(self.layer_idx + 1)
        if mask is not None:
            scores = scores + attention_bias(mask, scores.dtype)
        probs = jax.nn.softmax(scores, axis=-1).astype(self.dtype)
        probs = self.attn_dropout(probs, deterministic=deterministic)
        # (B, H, Q, K) x (B, H, K, D) -> (B, Q, H, D)
        context = jnp.einsum("bhqk,bhkd->bqhd", probs, value)
        # (B, Q, H*D)
        context = context.reshape(batch_size, query_length, -1)
        attn_output = self.c_proj(context)
        attn_output = self.resid_dropout(attn_output, deterministic=deterministic)
        return attn_output, (probs if output_attentions else None)


class FlaxGPT2MLP(nn.Module):
    config: GPT2Config
    intermediate_size: int
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        init = normal_init(self.config)
        self.c_fc = FlaxConv1D(self.intermediate_size, dtype=self.dtype, kernel_init=init)
        self.c_proj = FlaxConv1D(self.config.hidden_size, dtype=self.dtype, kernel_init=init)
        self.act = ACT2FN[self.config.activation_function]
        self.dropout = nn.Dropout(rate=self.config.resid_pdrop)

    def __call__(self, hidden_states, deterministic: bool = True):
        hidden_states = self.act(self.c_fc(hidden_states))
        hidden_states = self.c_proj(hidden_states)
        return self.dropout(hidden_states, deterministic=deterministic)


class FlaxGPT2Block(nn.Module):
    config: GPT2Config
    layer_idx: int = 0
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        cfg = self.config
        eps = cfg.layer_norm_epsilon
        self.ln_1 = LayerNorm(epsilon=eps, dtype=self.dtype)
        self.attn = FlaxGPT2Attention(cfg, layer_idx=self.layer_idx, dtype=self.dtype)
        self.ln_2 = LayerNorm(epsilon=eps, dtype=self.dtype)
        if cfg.add_cross_attention:
            self.crossattention = FlaxGPT2Attention(
                cfg, is_cross_attention=True, layer_idx=self.layer_idx, dtype=self.dtype
            )
            self.ln_cross_attn = LayerNorm(epsilon=eps, dtype=self.dtype)
        self.mlp = FlaxGPT2MLP(cfg, cfg.inner_size, dtype=self.dtype)

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
        residual = hidden_states
        hidden_states = self.ln_1(hidden_states)
        attn_output, self_attn_weights = self.attn(
            hidden_states, attention_mask, init_cache=init_cache, deterministic=deterministic,
            output_attentions=output_attentions,
        )
        hidden_states = attn_output + residual

        cross_attn_weights = None
        if encoder_hidden_states is not None:
            if not self.config.add_cross_attention:
                raise ValueError(
                    "encoder_hidden_states were passed but this GPT-2 has no cross-attention layers: "
                    "set `add_cross_attention=True` in its config"
                )
            residual = hidden_states
            hidden_states = self.ln_cross_attn(hidden_states)
            cross_attn_output, cross_attn_weights = self.crossattention(
                hidden_states, encoder_attention_mask, key_value_states=encoder_hidden_states,
                init_cache=init_cache, deterministic=deterministic, output_attentions=output_attentions,
            )
            hidden_states = residual + cross_attn_output

        residual = hidden_states
        hidden_states = self.ln_2(hidden_states)
        feed_forward_hidden_states = self.mlp(hidden_states, deterministic=deterministic)
        hidden_states = residual + feed_forward_hidden_states
        return hidden_states, self_attn_weights, cross_attn_weights


class FlaxGPT2BlockCollection(nn.Module):
    """PyTorch's ``h`` ModuleList: blocks named ``"0"``, ``"1"``, ..."""

    config: GPT2Config
    dtype: jnp.dtype = jnp.float32
    gradient_checkpointing: bool = False

    def setup(self):
        block_cls = FlaxGPT2Block
        if self.gradient_checkpointing:
            # init_cache, deterministic, output_attentions are Python bools (self is argument 0).
            block_cls = nn.remat(FlaxGPT2Block, static_argnums=(5, 6, 7))
        self.blocks = [
            block_cls(self.config, layer_idx=i, dtype=self.dtype, name=str(i)) for i in range(self.config.num_hidden_layers)
        ]

    def __call__(
        self,
        hidden_states,
        attention_mask=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        init_cache: bool = False,
        deterministic: bool = True,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ):
        all_hidden_states = () if output_hidden_states else None
        all_self_attentions = () if output_attentions else None
        all_cross_attentions = () if output_attentions and encoder_hidden_states is not None else None
        for block in self.blocks:
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            hidden_states, self_attn_weights, cross_attn_weights = block(
                hidden_states, attention_mask, encoder_hidden_states, encoder_attention_mask,
                init_cache, deterministic, output_attentions,
            )
            if output_attentions:
                all_self_attentions += (self_attn_weights,)
                if all_cross_attentions is not None:
                    all_cross_attentions += (cross_attn_weights,)
        return hidden_states, all_hidden_states, all_self_attentions, all_cross_attentions


class FlaxGPT2Module(nn.Module):
    """``GPT2Model``: ``wte``, ``wpe``, blocks ``h``, final ``ln_f``."""

    config: GPT2Config
    dtype: jnp.dtype = jnp.float32
    gradient_checkpointing: bool = False

    def setup(self):
        cfg = self.config
        self.wte = Embed(cfg.vocab_size, cfg.hidden_size, embedding_init=normal_init(cfg), dtype=self.dtype)
        self.wpe = Embed(cfg.max_position_embeddings, cfg.hidden_size, embedding_init=normal_init(cfg), dtype=self.dtype)
        self.drop = nn.Dropout(rate=cfg.embd_pdrop)
        self.h = FlaxGPT2BlockCollection(cfg, dtype=self.dtype, gradient_checkpointing=self.gradient_checkpointing)
        self.ln_f = LayerNorm(epsilon=cfg.layer_norm_epsilon, dtype=self.dtype)

    def __call__(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        init_cache: bool = False,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        deterministic: bool = True,
    ):
        if position_ids is None:
            position_ids = jnp.broadcast_to(jnp.arange(input_ids.shape[-1]), input_ids.shape)
        # (B, Q, hidden)
        inputs_embeds = self.wte(input_ids.astype("i4"))
        position_embeds = self.wpe(position_ids.astype("i4"))
        hidden_states = inputs_embeds + position_embeds
        if token_type_ids is not None:  # GPT-2 embeds token types with wte, as in PyTorch
            hidden_states = hidden_states + self.wte(token_type_ids.astype("i4"))
        hidden_states = self.drop(hidden_states, deterministic=deterministic)
        hidden_states, all_hidden_states, all_attentions, all_cross_attentions = self.h(
            hidden_states,
            attention_mask=attention_mask,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            init_cache=init_cache,
            deterministic=deterministic,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )
        hidden_states = self.ln_f(hidden_states)
        if output_hidden_states:
            all_hidden_states += (hidden_states,)
        return FlaxBaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=hidden_states,
            hidden_states=all_hidden_states,
            attentions=all_attentions,
            cross_attentions=all_cross_attentions,
        )


class FlaxGPT2LMHeadModule(nn.Module):
    """``GPT2LMHeadModel``: ``transformer`` and ``lm_head`` (no bias). With tied word embeddings
    ``lm_head`` owns no kernel: ``wte`` is applied instead, so the params hold no copy of it."""

    config: GPT2Config
    dtype: jnp.dtype = jnp.float32
    gradient_checkpointing: bool = False

    def setup(self):
        self.transformer = FlaxGPT2Module(self.config, dtype=self.dtype, gradient_checkpointing=self.gradient_checkpointing)
        self.lm_head = Dense(self.config.vocab_size, use_bias=False, dtype=self.dtype, kernel_init=normal_init(self.config))

    def __call__(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        init_cache: bool = False,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        deterministic: bool = True,
    ):
        outputs = self.transformer(
            input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            init_cache=init_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            deterministic=deterministic,
        )
        hidden_states = outputs.last_hidden_state
        if self.config.tie_word_embeddings:
            shared_embedding = self.transformer.variables["params"]["wte"]["embedding"]
            # (B, Q, hidden) x (vocab, hidden) -> (B, Q, vocab)
            logits = hidden_states @ shared_embedding.T.astype(self.dtype)
        else:
            logits = self.lm_head(hidden_states)
        return FlaxCausalLMOutputWithCrossAttentions(
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            cross_attentions=outputs.cross_attentions,
        )


class FlaxGPT2Model(FlaxPreTrainedModel):
    """GPT-2 (``GPT2Model``) behind the functional Flax API.

    Args:
        config: a ``GPT2Config``.
        input_shape, seed, dtype, _do_init, gradient_checkpointing: as for ``FlaxBertModel``.
    """

    config_class = GPT2Config
    base_model_prefix = "transformer"
    schema_head = "base"
    module_class = FlaxGPT2Module


class FlaxGPT2LMHeadModel(FlaxPreTrainedModel):
    """GPT-2 with its LM head (``GPT2LMHeadModel``); the same Args as ``FlaxGPT2Model``."""

    config_class = GPT2Config
    base_model_prefix = "transformer"
    schema_head = "causal_lm"
    module_class = FlaxGPT2LMHeadModule
