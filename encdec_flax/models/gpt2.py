"""GPT-2 in Flax linen: ``FlaxGPT2Model`` and ``FlaxGPT2LMHeadModel`` (with cross-attention when
``add_cross_attention``), mirroring ``encdec_pt/models/gpt2.py`` module for module.

``FlaxConv1D`` stores its kernel as ``(out, in)`` like the Hugging Face Flax port (the PyTorch
``Conv1D`` weight transposed), so its files load unchanged; the layout table says so once.

Shapes use the legend of docs/architectures.md (B batch, Q/K query/key length, S encoder length,
H heads, D head dim, E hidden, V vocabulary, L cache length).

The attention modules return ``(attn_output, probs)``: ``present``, which PyTorch and TensorFlow
return between them, lives in the ``"cache"`` collection (the Flax idiom), as in
``encdec_flax/models/bert.py``. The masks are built once, as additive biases, by ``FlaxGPT2Module``.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from encdec.architectures.gpt2 import GPT2Config
from encdec_flax.layers import Dense, Embed, KeyValueCache, LayerNorm, ShapeCheckedParams, attend, heads_first, split_heads
from encdec_flax.modeling_outputs import (
    FlaxBaseModelOutputWithPastAndCrossAttentions,
    FlaxCausalLMOutputWithCrossAttentions,
)
from encdec_flax.modeling_utils import (
    ACT2FN,
    FlaxPreTrainedModel,
    cross_attention_bias,
    normal_init,
    self_attention_bias,
)


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


class FlaxGPT2Attention(KeyValueCache):
    """Causal self-attention (``c_attn`` -> q, k, v), or cross-attention (``q_attn`` -> q from the
    decoder, ``c_attn`` -> k, v from the encoder) when ``is_cross_attention``.

    Returns ``(attn_output, probs)``: where PyTorch and TensorFlow also return ``present``, the keys
    and values live in the ``"cache"`` collection, as in ``FlaxBertSelfAttention``.
    """

    config: GPT2Config
    is_cross_attention: bool = False
    layer_idx: int = 0
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        cfg = self.config
        # === Config ===
        self.embed_dim = cfg.hidden_size
        self.num_heads = cfg.num_attention_heads
        self.head_dim = self.embed_dim // self.num_heads
        if self.head_dim * self.num_heads != self.embed_dim:
            raise ValueError(f"n_embd={self.embed_dim} is not a multiple of n_head={self.num_heads}")
        scale = 1.0 / math.sqrt(self.head_dim) if cfg.scale_attn_weights else 1.0
        if cfg.scale_attn_by_inverse_layer_idx:
            scale = scale / float(self.layer_idx + 1)
        self.scale = scale
        # === Layers ===
        init = normal_init(cfg)
        if self.is_cross_attention:
            self.c_attn = FlaxConv1D(2 * self.embed_dim, dtype=self.dtype, kernel_init=init)
            self.q_attn = FlaxConv1D(self.embed_dim, dtype=self.dtype, kernel_init=init)
        else:
            self.c_attn = FlaxConv1D(3 * self.embed_dim, dtype=self.dtype, kernel_init=init)
        self.c_proj = FlaxConv1D(self.embed_dim, dtype=self.dtype, kernel_init=init)
        self.attn_dropout = nn.Dropout(rate=cfg.attn_pdrop)
        self.resid_dropout = nn.Dropout(rate=cfg.resid_pdrop)

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

        ``attention_mask`` is an additive bias broadcastable to (B, H, Q, K), built at the top of the
        model; for self-attention it already holds the causal mask, for cross-attention the encoder
        padding mask.
        """
        query_length = hidden_states.shape[1]
        has_cache = self.has_variable("cache", "cached_key")
        if self.is_cross_attention:
            if encoder_hidden_states is None:
                raise ValueError("cross-attention needs encoder_hidden_states")
            # (B, Q, E) -> (B, Q, H, D)
            query = split_heads(self.q_attn(hidden_states), self.num_heads)
            if has_cache and not init_cache:
                # The encoder's keys and values do not change while decoding: reuse them. (B, H, S, D)
                key = self.variables["cache"]["cached_key"]
                value = self.variables["cache"]["cached_value"]
            else:
                key, value = jnp.split(self.c_attn(encoder_hidden_states), 2, axis=-1)
                # (B, S, E) -> (B, H, S, D)
                key, value = heads_first(key, self.num_heads), heads_first(value, self.num_heads)
                if init_cache:
                    key, value = self._cached_key_value(key, value, query_length)
        else:
            query, key, value = jnp.split(self.c_attn(hidden_states), 3, axis=-1)
            # (B, Q, E) -> (B, Q, H, D) and (B, H, Q, D)
            query = split_heads(query, self.num_heads)
            key, value = heads_first(key, self.num_heads), heads_first(value, self.num_heads)
            if has_cache or init_cache:
                # (B, H, L, D)
                key, value = self._cached_key_value(key, value, query_length)

        context, probs = attend(query, key, value, attention_mask, self.scale, self.attn_dropout, deterministic, self.dtype)
        attn_output = self.resid_dropout(self.c_proj(context), deterministic=deterministic)
        return attn_output, (probs if output_attentions else None)


class FlaxGPT2MLP(nn.Module):
    intermediate_size: int
    config: GPT2Config
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        init = normal_init(self.config)
        # === Layers ===
        self.c_fc = FlaxConv1D(self.intermediate_size, dtype=self.dtype, kernel_init=init)
        self.c_proj = FlaxConv1D(self.config.hidden_size, dtype=self.dtype, kernel_init=init)
        self.dropout = nn.Dropout(rate=self.config.resid_pdrop)
        # === Config ===
        self.act = ACT2FN[self.config.activation_function]

    def __call__(self, hidden_states, deterministic: bool = True):
        hidden_states = self.act(self.c_fc(hidden_states))  # (B, Q, I)
        return self.dropout(self.c_proj(hidden_states), deterministic=deterministic)  # (B, Q, E)


class FlaxGPT2Block(nn.Module):
    """Pre-norm block: ln_1 -> attn, [ln_cross_attn -> crossattention], ln_2 -> mlp, each residual."""

    config: GPT2Config
    layer_idx: int = 0
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        cfg = self.config
        eps = cfg.layer_norm_epsilon
        # === Layers ===
        self.ln_1 = LayerNorm(epsilon=eps, dtype=self.dtype)
        self.attn = FlaxGPT2Attention(cfg, layer_idx=self.layer_idx, dtype=self.dtype)
        self.ln_2 = LayerNorm(epsilon=eps, dtype=self.dtype)
        if cfg.add_cross_attention:
            self.crossattention = FlaxGPT2Attention(
                cfg, is_cross_attention=True, layer_idx=self.layer_idx, dtype=self.dtype
            )
            self.ln_cross_attn = LayerNorm(epsilon=eps, dtype=self.dtype)
        self.mlp = FlaxGPT2MLP(cfg.inner_size, cfg, dtype=self.dtype)

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
        residual = hidden_states
        attn_output, self_probs = self.attn(
            self.ln_1(hidden_states), attention_mask=attention_mask, output_attentions=output_attentions,
            init_cache=init_cache, deterministic=deterministic,
        )
        hidden_states = attn_output + residual

        cross_probs = None
        if encoder_hidden_states is not None:
            if not self.config.add_cross_attention:
                raise ValueError(
                    "encoder_hidden_states were passed but this GPT-2 has no cross-attention layers: "
                    "set `add_cross_attention=True` in its config"
                )
            residual = hidden_states
            cross_output, cross_probs = self.crossattention(
                self.ln_cross_attn(hidden_states), attention_mask=encoder_attention_mask,
                encoder_hidden_states=encoder_hidden_states, output_attentions=output_attentions,
                init_cache=init_cache, deterministic=deterministic,
            )
            hidden_states = residual + cross_output

        residual = hidden_states
        hidden_states = residual + self.mlp(self.ln_2(hidden_states), deterministic=deterministic)
        return hidden_states, self_probs, cross_probs


class FlaxGPT2BlockCollection(nn.Module):
    """PyTorch's ``h`` ModuleList: blocks named ``"0"``, ``"1"``, ..."""

    config: GPT2Config
    dtype: jnp.dtype = jnp.float32
    gradient_checkpointing: bool = False

    def setup(self):
        block_cls = FlaxGPT2Block
        if self.gradient_checkpointing:
            # output_attentions, init_cache, deterministic are Python bools (self is argument 0).
            block_cls = nn.remat(FlaxGPT2Block, static_argnums=(5, 6, 7))
        # === Layers ===
        self.blocks = [
            block_cls(self.config, layer_idx=i, dtype=self.dtype, name=str(i)) for i in range(self.config.num_hidden_layers)
        ]

    def __call__(
        self,
        hidden_states,
        attention_mask=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        init_cache: bool = False,
        deterministic: bool = True,
    ):
        all_hidden_states = () if output_hidden_states else None
        all_attentions = () if output_attentions else None
        all_cross = () if output_attentions and encoder_hidden_states is not None else None
        for block in self.blocks:
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            hidden_states, self_probs, cross_probs = block(
                hidden_states, attention_mask, encoder_hidden_states, encoder_attention_mask,
                output_attentions, init_cache, deterministic,
            )
            if output_attentions:
                all_attentions += (self_probs,)
                if all_cross is not None:
                    all_cross += (cross_probs,)
        return hidden_states, all_hidden_states, all_attentions, all_cross


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
        inputs_embeds = self.wte(input_ids.astype("i4"))  # (B, Q, E)
        hidden_states = inputs_embeds + self.wpe(position_ids.astype("i4"))
        if token_type_ids is not None:  # GPT-2 embeds token types with wte, as in PyTorch
            hidden_states = hidden_states + self.wte(token_type_ids.astype("i4"))
        hidden_states = self.drop(hidden_states, deterministic=deterministic)  # (B, Q, E)

        # Masks are built once here, as additive biases: (B|1, 1, Q, K) and (B, 1, 1, S). While
        # decoding with a cache, the first block's self-attention cache says where the queries sit.
        self_cache = self.variables["cache"]["h"]["0"]["attn"] if self.variables.get("cache") else None
        causal_mask = self_attention_bias(attention_mask, input_ids.shape[1], causal=True, self_cache=self_cache)
        encoder_bias = cross_attention_bias(encoder_attention_mask)

        hidden_states, all_hidden_states, all_attentions, all_cross = self.h(
            hidden_states,
            attention_mask=causal_mask,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_bias,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            init_cache=init_cache,
            deterministic=deterministic,
        )
        hidden_states = self.ln_f(hidden_states)
        if output_hidden_states:
            all_hidden_states += (hidden_states,)
        return FlaxBaseModelOutputWithPastAndCrossAttentions(
            last_hidden_state=hidden_states,
            hidden_states=all_hidden_states,
            attentions=all_attentions,
            cross_attentions=all_cross,
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
            # (B, Q, E) x (V, E) -> (B, Q, V)
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
