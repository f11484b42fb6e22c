"""BERT in Flax linen: ``FlaxBertModel`` (encoder) and ``FlaxBertForCausalLM`` (decoder with
cross-attention), mirroring ``encdec_pt/models/bert.py`` module for module.

Every submodule is named like the PyTorch attribute it mirrors, so the params tree *is* the
checkpoint layout of the Hugging Face Flax port (``embeddings/word_embeddings/embedding``,
``encoder/layer/0/attention/self/query/kernel``) and maps to canonical names with the generic
walk in ``modeling_utils`` plus ``encdec.naming.layout``.

Shapes use the legend of docs/architectures.md (B batch, Q/K query/key length, S encoder length,
H heads, D head dim, E hidden, V vocabulary, L cache length).

The attention modules return ``(context, probs)``: ``present``, which PyTorch and TensorFlow
return between them, lives in the ``"cache"`` collection (the Flax idiom), per layer
``cached_key`` / ``cached_value`` (B, H, L, D) and ``cache_index``. The masks are built once, as
additive biases, by ``FlaxBertModule``.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from encdec.architectures.bert import BertConfig
from encdec_flax.layers import Dense, Embed, KeyValueCache, LayerNorm, ShapeCheckedParams, attend, split_heads
from encdec_flax.modeling_outputs import (
    FlaxBaseModelOutputWithPoolingAndCrossAttentions,
    FlaxCausalLMOutputWithCrossAttentions,
)
from encdec_flax.modeling_utils import (
    ACT2FN,
    FlaxPreTrainedModel,
    cross_attention_bias,
    normal_init,
    self_attention_bias,
)


class FlaxBertEmbeddings(nn.Module):
    config: BertConfig
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        cfg = self.config
        self.word_embeddings = Embed(cfg.vocab_size, cfg.hidden_size, embedding_init=normal_init(cfg), dtype=self.dtype)
        self.position_embeddings = Embed(
            cfg.max_position_embeddings, cfg.hidden_size, embedding_init=normal_init(cfg), dtype=self.dtype
        )
        self.token_type_embeddings = Embed(
            cfg.type_vocab_size, cfg.hidden_size, embedding_init=normal_init(cfg), dtype=self.dtype
        )
        self.LayerNorm = LayerNorm(epsilon=cfg.layer_norm_eps, dtype=self.dtype)
        self.dropout = nn.Dropout(rate=cfg.hidden_dropout_prob)

    def __call__(self, input_ids, token_type_ids, position_ids, deterministic: bool = True):
        inputs_embeds = self.word_embeddings(input_ids.astype("i4"))  # (B, Q, E)
        embeddings = (
            inputs_embeds
            + self.token_type_embeddings(token_type_ids.astype("i4"))
            + self.position_embeddings(position_ids.astype("i4"))
        )
        embeddings = self.LayerNorm(embeddings)
        embeddings = self.dropout(embeddings, deterministic=deterministic)
        return embeddings  # (B, Q, E)


class FlaxBertSelfAttention(KeyValueCache):
    """Multi-head attention: self-attention (causal in a decoder), or cross-attention over
    ``encoder_hidden_states``.

    Returns ``(context, probs)``: where PyTorch and TensorFlow also return ``present``, the keys and
    values live in the ``"cache"`` collection (the Flax idiom). With that collection, self-attention
    writes this call's keys/values at ``cache_index`` of a preallocated ``(B, H, L, D)`` buffer (the
    layout of the PyTorch and TensorFlow caches) and cross-attention stores the projected encoder
    keys/values once (when the cache is created) and reuses them.
    """

    config: BertConfig
    causal: bool = False
    is_cross_attention: bool = False
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        cfg = self.config
        if cfg.hidden_size % cfg.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size={cfg.hidden_size} is not a multiple of num_attention_heads={cfg.num_attention_heads}"
            )
        # === Config ===
        self.num_attention_heads = cfg.num_attention_heads
        self.attention_head_size = cfg.hidden_size // cfg.num_attention_heads
        self.scale = 1.0 / math.sqrt(self.attention_head_size)
        # === Layers ===
        self.query = Dense(cfg.hidden_size, dtype=self.dtype, kernel_init=normal_init(cfg))
        self.key = Dense(cfg.hidden_size, dtype=self.dtype, kernel_init=normal_init(cfg))
        self.value = Dense(cfg.hidden_size, dtype=self.dtype, kernel_init=normal_init(cfg))
        self.dropout = nn.Dropout(rate=cfg.attention_probs_dropout_prob)

    def __call__(
        self,
        hidden_states,
        attention_mask=None,
        encoder_hidden_states=None,
        output_attentions: bool = False,
        init_cache: bool = False,
        deterministic: bool = True,
    ):
        """Returns (context (B, Q, E), probs (B, H, Q, K) or None).

        ``attention_mask`` is an additive bias broadcastable to (B, H, Q, K), built at the top of the model.
        """
        # (B, Q, E) -> (B, Q, H, D)
        query = split_heads(self.query(hidden_states), self.num_attention_heads)
        # (B, H, K, D) each
        key, value = self._keys_and_values(self.key, self.value, self.num_attention_heads, hidden_states, encoder_hidden_states,
                                           init_cache)

        context, probs = attend(query, key, value, attention_mask, self.scale, self.dropout, deterministic, self.dtype)
        return context, (probs if output_attentions else None)


class FlaxBertSelfOutput(nn.Module):
    config: BertConfig
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        cfg = self.config
        self.dense = Dense(cfg.hidden_size, dtype=self.dtype, kernel_init=normal_init(cfg))
        self.LayerNorm = LayerNorm(epsilon=cfg.layer_norm_eps, dtype=self.dtype)
        self.dropout = nn.Dropout(rate=cfg.hidden_dropout_prob)

    def __call__(self, hidden_states, input_tensor, deterministic: bool = True):
        hidden_states = self.dense(hidden_states)
        hidden_states = self.dropout(hidden_states, deterministic=deterministic)
        hidden_states = self.LayerNorm(hidden_states + input_tensor)
        return hidden_states


class FlaxBertAttention(nn.Module):
    """``self`` (the attention proper; the name is the checkpoint key) plus ``output`` (projection, residual, norm)."""

    config: BertConfig
    causal: bool = False
    is_cross_attention: bool = False
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        # === Layers ===
        self.self = FlaxBertSelfAttention(
            self.config, causal=self.causal, is_cross_attention=self.is_cross_attention, dtype=self.dtype
        )
        self.output = FlaxBertSelfOutput(self.config, dtype=self.dtype)

    def __call__(
        self,
        hidden_states,
        attention_mask=None,
        encoder_hidden_states=None,
        output_attentions: bool = False,
        init_cache: bool = False,
        deterministic: bool = True,
    ):
        context, probs = self.self(
            hidden_states,
            attention_mask=attention_mask,
            encoder_hidden_states=encoder_hidden_states,
            output_attentions=output_attentions,
            init_cache=init_cache,
            deterministic=deterministic,
        )
        attn_output = self.output(context, hidden_states, deterministic=deterministic)
        return attn_output, probs


class FlaxBertIntermediate(nn.Module):
    config: BertConfig
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        self.dense = Dense(self.config.intermediate_size, dtype=self.dtype, kernel_init=normal_init(self.config))
        self.activation = ACT2FN[self.config.hidden_act]

    def __call__(self, hidden_states):
        return self.activation(self.dense(hidden_states))


class FlaxBertOutput(nn.Module):
    config: BertConfig
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        cfg = self.config
        self.dense = Dense(cfg.hidden_size, dtype=self.dtype, kernel_init=normal_init(cfg))
        self.dropout = nn.Dropout(rate=cfg.hidden_dropout_prob)
        self.LayerNorm = LayerNorm(epsilon=cfg.layer_norm_eps, dtype=self.dtype)

    def __call__(self, hidden_states, input_tensor, deterministic: bool = True):
        hidden_states = self.dense(hidden_states)
        hidden_states = self.dropout(hidden_states, deterministic=deterministic)
        return self.LayerNorm(hidden_states + input_tensor)  # (B, Q, E)


class FlaxBertLayer(nn.Module):
    """Self-attention, cross-attention (decoders with ``add_cross_attention``), feed-forward."""

    config: BertConfig
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        cfg = self.config
        # === Layers ===
        self.attention = FlaxBertAttention(cfg, causal=cfg.is_decoder, dtype=self.dtype)
        if cfg.add_cross_attention:
            self.crossattention = FlaxBertAttention(cfg, is_cross_attention=True, dtype=self.dtype)
        self.intermediate = FlaxBertIntermediate(cfg, dtype=self.dtype)
        self.output = FlaxBertOutput(cfg, dtype=self.dtype)

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
        attn_output, self_probs = self.attention(
            hidden_states, attention_mask=attention_mask, output_attentions=output_attentions,
            init_cache=init_cache, deterministic=deterministic,
        )
        cross_probs = None
        if encoder_hidden_states is not None:
            if not self.config.add_cross_attention:
                raise ValueError(
                    "encoder_hidden_states were passed but this BERT has no cross-attention layers: "
                    "set `add_cross_attention=True` in its config"
                )
            attn_output, cross_probs = self.crossattention(
                attn_output, attention_mask=encoder_attention_mask, encoder_hidden_states=encoder_hidden_states,
                output_attentions=output_attentions, init_cache=init_cache, deterministic=deterministic,
            )
        layer_output = self.output(self.intermediate(attn_output), attn_output, deterministic=deterministic)
        return layer_output, self_probs, cross_probs


class FlaxBertLayerCollection(nn.Module):
    """PyTorch's ``encoder.layer`` ModuleList: layers named ``"0"``, ``"1"``, ..."""

    config: BertConfig
    dtype: jnp.dtype = jnp.float32
    gradient_checkpointing: bool = False

    def setup(self):
        layer_cls = FlaxBertLayer
        if self.gradient_checkpointing:
            # output_attentions, init_cache, deterministic are Python bools (self is argument 0).
            layer_cls = nn.remat(FlaxBertLayer, static_argnums=(5, 6, 7))
        # === Layers ===
        self.layers = [layer_cls(self.config, dtype=self.dtype, name=str(i)) for i in range(self.config.num_hidden_layers)]

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
        """Returns (last hidden state, hidden states or None, attentions or None, cross-attentions or None)."""
        all_hidden_states = () if output_hidden_states else None
        all_attentions = () if output_attentions else None
        all_cross = () if output_attentions and encoder_hidden_states is not None else None
        for layer_module in self.layers:
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            hidden_states, self_probs, cross_probs = layer_module(
                hidden_states, attention_mask, encoder_hidden_states, encoder_attention_mask,
                output_attentions, init_cache, deterministic,
            )
            if output_attentions:
                all_attentions += (self_probs,)
                if all_cross is not None:
                    all_cross += (cross_probs,)
        if output_hidden_states:
            all_hidden_states += (hidden_states,)
        return hidden_states, all_hidden_states, all_attentions, all_cross


def bert_attention_biases(module: nn.Module, attention_mask, encoder_attention_mask, query_length: int):
    """The additive biases (self (B|1, 1, Q, K) or None, cross (B, 1, 1, S) or None) of a model whose
    layers are its ``encoder`` (a ``FlaxBertEncoder``), built once at its top from the 0/1 masks.
    While decoding with a cache, the first layer's self-attention cache says where the queries sit."""
    config = module.config
    self_cache = None
    if config.is_decoder and module.variables.get("cache"):
        self_cache = module.variables["cache"]["encoder"]["layer"]["0"]["attention"]["self"]
    self_bias = self_attention_bias(attention_mask, query_length, causal=config.is_decoder, self_cache=self_cache)
    return self_bias, cross_attention_bias(encoder_attention_mask)


class FlaxBertEncoder(nn.Module):
    config: BertConfig
    dtype: jnp.dtype = jnp.float32
    gradient_checkpointing: bool = False

    def setup(self):
        self.layer = FlaxBertLayerCollection(
            self.config, dtype=self.dtype, gradient_checkpointing=self.gradient_checkpointing
        )

    def __call__(self, hidden_states, **kwargs):
        return self.layer(hidden_states, **kwargs)


class FlaxBertPooler(nn.Module):
    config: BertConfig
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        self.dense = Dense(self.config.hidden_size, dtype=self.dtype, kernel_init=normal_init(self.config))

    def __call__(self, hidden_states):
        return jnp.tanh(self.dense(hidden_states[:, 0]))  # (B, E): the first token


class FlaxBaseModelCall(nn.Module):
    """``__call__`` of the base modules built on BERT's layer stack (BERT, ELECTRA, BertGeneration):
    the module's ``embed``, the masks built once, the layers, then the pooler when
    ``add_pooling_layer``."""

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
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        if position_ids is None:
            position_ids = jnp.broadcast_to(jnp.arange(input_ids.shape[-1]), input_ids.shape)
        if encoder_hidden_states is not None and encoder_attention_mask is None:
            encoder_attention_mask = jnp.ones(encoder_hidden_states.shape[:2], dtype="i4")
        embedding_output = self.embed(input_ids, token_type_ids, position_ids, deterministic=deterministic)  # (B, Q, E)

        # Masks are built once here, as additive biases: (B|1, 1, Q, K) and (B, 1, 1, S).
        extended_attention_mask, encoder_extended_attention_mask = bert_attention_biases(
            self, attention_mask, encoder_attention_mask, input_ids.shape[1]
        )

        hidden_states, all_hidden_states, all_attentions, all_cross = self.encoder(
            embedding_output,
            attention_mask=extended_attention_mask,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_extended_attention_mask,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            init_cache=init_cache,
            deterministic=deterministic,
        )
        pooled_output = self.pooler(hidden_states) if self.add_pooling_layer else None
        return FlaxBaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=hidden_states,
            pooler_output=pooled_output,
            hidden_states=all_hidden_states,
            attentions=all_attentions,
            cross_attentions=all_cross,
        )


class FlaxBertModule(FlaxBaseModelCall):
    """``BertModel``: embeddings, encoder, optional pooler."""

    config: BertConfig
    dtype: jnp.dtype = jnp.float32
    add_pooling_layer: bool = True
    gradient_checkpointing: bool = False

    def setup(self):
        self.embeddings = FlaxBertEmbeddings(self.config, dtype=self.dtype)
        self.encoder = FlaxBertEncoder(
            self.config, dtype=self.dtype, gradient_checkpointing=self.gradient_checkpointing
        )
        if self.add_pooling_layer:
            self.pooler = FlaxBertPooler(self.config, dtype=self.dtype)

    def embed(self, input_ids, token_type_ids, position_ids, deterministic: bool = True):
        """The first layer's input (B, Q, E)."""
        return self.embeddings(input_ids, token_type_ids, position_ids, deterministic=deterministic)


class FlaxBertPredictionHeadTransform(nn.Module):
    config: BertConfig
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        cfg = self.config
        self.dense = Dense(cfg.hidden_size, dtype=self.dtype, kernel_init=normal_init(cfg))
        self.transform_act_fn = ACT2FN[cfg.hidden_act]
        self.LayerNorm = LayerNorm(epsilon=cfg.layer_norm_eps, dtype=self.dtype)

    def __call__(self, hidden_states):
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))


class FlaxBertLMPredictionHead(ShapeCheckedParams, nn.Module):
    """``cls.predictions``: transform, then the vocabulary projection plus ``bias``. With tied
    word embeddings ``decoder`` owns no kernel: the embedding matrix is applied instead, so the
    params tree holds no copy of it (as in the Hugging Face Flax port)."""

    config: BertConfig
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        cfg = self.config
        self.transform = FlaxBertPredictionHeadTransform(cfg, dtype=self.dtype)
        self.decoder = Dense(cfg.vocab_size, dtype=self.dtype, use_bias=False, kernel_init=normal_init(cfg))
        self.bias = self.param("bias", jax.nn.initializers.zeros, (cfg.vocab_size,))

    def __call__(self, hidden_states, shared_embedding=None):
        hidden_states = self.transform(hidden_states)
        if shared_embedding is not None:
            # (B, Q, E) x (V, E) -> (B, Q, V)
            logits = hidden_states @ shared_embedding.T.astype(self.dtype)
        else:
            logits = self.decoder(hidden_states)
        return logits + self.bias.astype(self.dtype)


class FlaxBertOnlyMLMHead(nn.Module):
    config: BertConfig
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        self.predictions = FlaxBertLMPredictionHead(self.config, dtype=self.dtype)

    def __call__(self, sequence_output, shared_embedding=None):
        return self.predictions(sequence_output, shared_embedding=shared_embedding)


class FlaxCausalLMCall(nn.Module):
    """``__call__`` of the LM-head decoder modules whose base module takes BERT's arguments (BERT,
    RoBERTa, ELECTRA, BertGeneration): the base module under ``base_model_prefix``, then the module's
    ``decoder_logits`` (with the base's word embeddings when the head is tied to them)."""

    base_model_prefix = ""

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
        base = getattr(self, self.base_model_prefix)
        outputs = base(
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
        shared_embedding = None
        if self.config.tie_word_embeddings:
            shared_embedding = base.variables["params"]["embeddings"]["word_embeddings"]["embedding"]
        logits = self.decoder_logits(outputs.last_hidden_state, shared_embedding)  # (B, Q, V)
        return FlaxCausalLMOutputWithCrossAttentions(
            logits=logits,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            cross_attentions=outputs.cross_attentions,
        )


class FlaxBertForCausalLMModule(FlaxCausalLMCall):
    """``BertLMHeadModel``: ``bert`` (no pooler) and ``cls``."""

    config: BertConfig
    dtype: jnp.dtype = jnp.float32
    gradient_checkpointing: bool = False
    base_model_prefix = "bert"

    def setup(self):
        self.bert = FlaxBertModule(
            self.config, dtype=self.dtype, add_pooling_layer=False, gradient_checkpointing=self.gradient_checkpointing
        )
        self.cls = FlaxBertOnlyMLMHead(self.config, dtype=self.dtype)

    def decoder_logits(self, hidden_states, shared_embedding=None):
        """The last layer's output (B, Q, E) -> next-token logits (B, Q, V)."""
        return self.cls(hidden_states, shared_embedding=shared_embedding)


class FlaxBertModel(FlaxPreTrainedModel):
    """BERT encoder (``BertModel``) behind the functional Flax API.

    Args:
        config: a ``BertConfig``.
        input_shape: the dummy input shape used to create the params.
        seed: the PRNG seed of the random init.
        dtype: the computation dtype (params stay float32; see ``to_bf16``).
        _do_init: False creates no params (``model.params`` is then None; pass ``params=``).
        add_pooling_layer: keep the ``pooler``.
        gradient_checkpointing: recompute each layer in the backward pass (``nn.remat``).
    """

    config_class = BertConfig
    base_model_prefix = "bert"
    schema_head = "base"
    module_class = FlaxBertModule

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True, **kwargs: Any):
        super().__init__(config, add_pooling_layer=add_pooling_layer, **kwargs)


class FlaxBertForCausalLM(FlaxPreTrainedModel):
    """BERT decoder with an LM head (``BertLMHeadModel``); the same Args as ``FlaxBertModel``."""

    config_class = BertConfig
    base_model_prefix = "bert"
    schema_head = "causal_lm"
    module_class = FlaxBertForCausalLMModule
