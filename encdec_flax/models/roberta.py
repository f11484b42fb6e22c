"""RoBERTa (also XLM-RoBERTa and CamemBERT) in Flax linen: ``FlaxRobertaModel`` (encoder) and
``FlaxRobertaForCausalLM`` (decoder with cross-attention), mirroring ``encdec_pt/models/roberta.py``.

BERT's layers (``encdec_flax/models/bert.py``) as they are; RoBERTa's own embeddings (positions
derived from the input ids) and LM head. The params tree is the Hugging Face Flax port's
(``roberta/embeddings/...``, ``lm_head/dense``, ``lm_head/layer_norm``, ``lm_head/bias``).

Shapes use the legend of docs/architectures.md (B batch, Q/K query/key length, S encoder length,
H heads, D head dim, E hidden, V vocabulary, L cache length).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from encdec.architectures.roberta import RobertaConfig
from encdec_flax.models.bert import (FlaxBertEmbeddings, FlaxBertEncoder, FlaxBertPooler, FlaxCausalLMCall,
                                     bert_attention_biases)
from encdec_flax.layers import Dense, LayerNorm, ShapeCheckedParams
from encdec_flax.modeling_outputs import FlaxBaseModelOutputWithPoolingAndCrossAttentions
from encdec_flax.modeling_utils import ACT2FN, FlaxPreTrainedModel, normal_init


def roberta_position_ids(input_ids, padding_idx: int, start):
    """Positions of ``input_ids`` (B, Q) as RoBERTa numbers them: ``padding_idx`` for a pad token,
    else ``padding_idx + start +`` the count of non-pad tokens up to and including it. ``start`` is
    the cache length (a scalar, or (B|1, 1) for per-row starts)."""
    mask = (input_ids != padding_idx).astype("i4")
    return (jnp.cumsum(mask, axis=1) + start) * mask + padding_idx  # (B, Q)


class FlaxRobertaModule(nn.Module):
    """``RobertaModel``: BERT's embeddings tree (positions numbered RoBERTa's way), encoder, optional pooler.

    ``position_ids`` are RoBERTa's own numbers when given, as in the reference; derived from the
    input ids when not. While decoding with a cache (the ``"cache"`` collection mutable, not
    ``init_cache``) the positions given are cache positions counted from 0, as for every decoder
    (what the composite's ``decode`` and ``generate`` pass), and RoBERTa numbers the tokens from
    the first one's cache position on, as its PyTorch forward does from the cache length.
    """

    config: RobertaConfig
    dtype: jnp.dtype = jnp.float32
    add_pooling_layer: bool = True
    gradient_checkpointing: bool = False

    def setup(self):
        # BERT's embeddings module: the same params; only the positions fed to it differ.
        self.embeddings = FlaxBertEmbeddings(self.config, dtype=self.dtype)
        self.encoder = FlaxBertEncoder(
            self.config, dtype=self.dtype, gradient_checkpointing=self.gradient_checkpointing
        )
        if self.add_pooling_layer:
            self.pooler = FlaxBertPooler(self.config, dtype=self.dtype)

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
        pad = self.config.pad_token_id
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        if position_ids is None:
            position_ids = roberta_position_ids(input_ids, pad, 0)
        elif self.is_mutable_collection("cache") and not init_cache:
            position_ids = roberta_position_ids(input_ids, pad, position_ids[:, :1])
        if encoder_hidden_states is not None and encoder_attention_mask is None:
            encoder_attention_mask = jnp.ones(encoder_hidden_states.shape[:2], dtype="i4")
        embedding_output = self.embeddings(
            input_ids, token_type_ids, position_ids, deterministic=deterministic
        )  # (B, Q, E)

        # Masks are built once here, as additive biases (the layers are BERT's): (B|1, 1, Q, K) and (B, 1, 1, S).
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


class FlaxRobertaLMHead(ShapeCheckedParams, nn.Module):
    """``lm_head``: dense, gelu, layer_norm, then the vocabulary projection plus ``bias``. With tied
    word embeddings ``decoder`` owns no kernel: the embedding matrix is applied instead."""

    config: RobertaConfig
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        cfg = self.config
        self.dense = Dense(cfg.hidden_size, dtype=self.dtype, kernel_init=normal_init(cfg))
        self.layer_norm = LayerNorm(epsilon=cfg.layer_norm_eps, dtype=self.dtype)
        self.decoder = Dense(cfg.vocab_size, dtype=self.dtype, use_bias=False, kernel_init=normal_init(cfg))
        self.bias = self.param("bias", jax.nn.initializers.zeros, (cfg.vocab_size,))

    def __call__(self, hidden_states, shared_embedding=None):
        # The reference applies erf GELU here whatever `hidden_act` says.
        hidden_states = self.layer_norm(ACT2FN["gelu"](self.dense(hidden_states)))
        if shared_embedding is not None:
            # (B, Q, E) x (V, E) -> (B, Q, V)
            logits = hidden_states @ shared_embedding.T.astype(self.dtype)
        else:
            logits = self.decoder(hidden_states)
        return logits + self.bias.astype(self.dtype)


class FlaxRobertaForCausalLMModule(FlaxCausalLMCall):
    """``RobertaForCausalLM``: ``roberta`` (no pooler) and ``lm_head``."""

    config: RobertaConfig
    dtype: jnp.dtype = jnp.float32
    gradient_checkpointing: bool = False
    base_model_prefix = "roberta"

    def setup(self):
        self.roberta = FlaxRobertaModule(
            self.config, dtype=self.dtype, add_pooling_layer=False, gradient_checkpointing=self.gradient_checkpointing
        )
        self.lm_head = FlaxRobertaLMHead(self.config, dtype=self.dtype)

    def decoder_logits(self, hidden_states, shared_embedding=None):
        """The last layer's output (B, Q, E) -> next-token logits (B, Q, V)."""
        return self.lm_head(hidden_states, shared_embedding=shared_embedding)


class FlaxRobertaModel(FlaxPreTrainedModel):
    """RoBERTa encoder (``RobertaModel``) behind the functional Flax API.

    Args:
        config: a ``RobertaConfig`` (or ``XLMRobertaConfig`` / ``CamembertConfig``).
        input_shape: the dummy input shape used to create the params.
        seed: the PRNG seed of the random init.
        dtype: the computation dtype (params stay float32; see ``to_bf16``).
        _do_init: False creates no params (``model.params`` is then None; pass ``params=``).
        add_pooling_layer: keep the ``pooler``.
        gradient_checkpointing: recompute each layer in the backward pass (``nn.remat``).
    """

    config_class = RobertaConfig
    base_model_prefix = "roberta"
    schema_head = "base"
    module_class = FlaxRobertaModule

    def __init__(self, config: RobertaConfig, add_pooling_layer: bool = True, **kwargs: Any):
        super().__init__(config, add_pooling_layer=add_pooling_layer, **kwargs)


class FlaxRobertaForCausalLM(FlaxPreTrainedModel):
    """RoBERTa decoder with an LM head (``RobertaForCausalLM``); the same Args as ``FlaxRobertaModel``."""

    config_class = RobertaConfig
    base_model_prefix = "roberta"
    schema_head = "causal_lm"
    module_class = FlaxRobertaForCausalLMModule
