"""BertGeneration in Flax linen: ``FlaxBertGenerationEncoder`` (encoder) and
``FlaxBertGenerationDecoder`` (decoder with cross-attention), mirroring
``encdec_pt/models/bert_generation.py`` module for module and reusing the BERT layers
(``FlaxBertEncoder``).

Every submodule is named like the PyTorch attribute it mirrors, so the params tree maps to canonical
names with the generic walk in ``modeling_utils``.
Shapes use the legend of docs/architectures.md (B batch, Q/K query/key length, S encoder length,
H heads, D head dim, E hidden, V vocabulary, L cache length).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from encdec.architectures.bert_generation import BertGenerationConfig
from encdec_flax.models.bert import FlaxBaseModelCall, FlaxBertEncoder, FlaxCausalLMCall
from encdec_flax.layers import Dense, Embed, LayerNorm, ShapeCheckedParams
from encdec_flax.modeling_utils import FlaxPreTrainedModel, normal_init


class FlaxBertGenerationEmbeddings(nn.Module):
    """Word + position embeddings (no token types), then LayerNorm and dropout."""

    config: BertGenerationConfig
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        cfg = self.config
        self.word_embeddings = Embed(cfg.vocab_size, cfg.hidden_size, embedding_init=normal_init(cfg), dtype=self.dtype)
        self.position_embeddings = Embed(
            cfg.max_position_embeddings, cfg.hidden_size, embedding_init=normal_init(cfg), dtype=self.dtype
        )
        self.LayerNorm = LayerNorm(epsilon=cfg.layer_norm_eps, dtype=self.dtype)
        self.dropout = nn.Dropout(rate=cfg.hidden_dropout_prob)

    def __call__(self, input_ids, position_ids, deterministic: bool = True):
        inputs_embeds = self.word_embeddings(input_ids.astype("i4"))  # (B, Q, E)
        embeddings = inputs_embeds + self.position_embeddings(position_ids.astype("i4"))
        embeddings = self.LayerNorm(embeddings)
        embeddings = self.dropout(embeddings, deterministic=deterministic)
        return embeddings  # (B, Q, E)


class FlaxBertGenerationEncoderModule(FlaxBaseModelCall):
    """``BertGenerationEncoder``: embeddings and the BERT layer stack; no pooler. ``__call__`` is
    ``FlaxBaseModelCall``'s (token types, which this architecture lacks, are never read)."""

    config: BertGenerationConfig
    dtype: jnp.dtype = jnp.float32
    gradient_checkpointing: bool = False
    add_pooling_layer = False

    def setup(self):
        self.embeddings = FlaxBertGenerationEmbeddings(self.config, dtype=self.dtype)
        self.encoder = FlaxBertEncoder(
            self.config, dtype=self.dtype, gradient_checkpointing=self.gradient_checkpointing
        )

    def embed(self, input_ids, token_type_ids, position_ids, deterministic: bool = True):
        """The first layer's input (B, Q, E)."""
        return self.embeddings(input_ids, position_ids, deterministic=deterministic)


class FlaxBertGenerationOnlyLMHead(ShapeCheckedParams, nn.Module):
    """``lm_head``: the vocabulary projection plus ``bias``, no transform. With tied word
    embeddings ``decoder`` owns no kernel: the embedding matrix is applied instead."""

    config: BertGenerationConfig
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        cfg = self.config
        self.decoder = Dense(cfg.vocab_size, dtype=self.dtype, use_bias=False, kernel_init=normal_init(cfg))
        self.bias = self.param("bias", jax.nn.initializers.zeros, (cfg.vocab_size,))

    def __call__(self, hidden_states, shared_embedding=None):
        if shared_embedding is not None:
            # (B, Q, E) x (V, E) -> (B, Q, V)
            logits = hidden_states @ shared_embedding.T.astype(self.dtype)
        else:
            logits = self.decoder(hidden_states)
        return logits + self.bias.astype(self.dtype)


class FlaxBertGenerationDecoderModule(FlaxCausalLMCall):
    """``BertGenerationDecoder``: ``bert`` and ``lm_head``."""

    config: BertGenerationConfig
    dtype: jnp.dtype = jnp.float32
    gradient_checkpointing: bool = False
    base_model_prefix = "bert"

    def setup(self):
        self.bert = FlaxBertGenerationEncoderModule(
            self.config, dtype=self.dtype, gradient_checkpointing=self.gradient_checkpointing
        )
        self.lm_head = FlaxBertGenerationOnlyLMHead(self.config, dtype=self.dtype)

    def decoder_logits(self, hidden_states, shared_embedding=None):
        """The last layer's output (B, Q, E) -> next-token logits (B, Q, V)."""
        return self.lm_head(hidden_states, shared_embedding=shared_embedding)


class FlaxBertGenerationEncoder(FlaxPreTrainedModel):
    """BertGeneration encoder (``BertGenerationEncoder``) behind the functional Flax API.

    Args:
        config: a ``BertGenerationConfig``.
        input_shape: the dummy input shape used to create the params.
        seed: the PRNG seed of the random init.
        dtype: the computation dtype (params stay float32; see ``to_bf16``).
        _do_init: False creates no params (``model.params`` is then None; pass ``params=``).
        gradient_checkpointing: recompute each layer in the backward pass (``nn.remat``).
    """

    config_class = BertGenerationConfig
    base_model_prefix = "bert"
    schema_head = "base"
    module_class = FlaxBertGenerationEncoderModule

    def __init__(self, config: BertGenerationConfig, **kwargs: Any):
        super().__init__(config, **kwargs)


class FlaxBertGenerationDecoder(FlaxPreTrainedModel):
    """BertGeneration decoder with its LM head (``BertGenerationDecoder``); the same Args as
    ``FlaxBertGenerationEncoder``."""

    config_class = BertGenerationConfig
    base_model_prefix = "bert"
    schema_head = "causal_lm"
    module_class = FlaxBertGenerationDecoderModule
