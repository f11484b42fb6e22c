"""ELECTRA in Flax linen: ``FlaxElectraModel`` (encoder) and ``FlaxElectraForCausalLM`` (decoder with
cross-attention), mirroring ``encdec_pt/models/electra.py``.

BERT's layers (``encdec_flax/models/bert.py``) used whole; ELECTRA's own embedding width
(``embedding_size``, projected by ``embeddings_project`` when it is not ``hidden_size``), no pooler,
and the generator's LM head. The params tree is the Hugging Face Flax port's
(``electra/embeddings/...``, ``electra/embeddings_project``, ``generator_predictions/dense``,
``generator_lm_head/bias``, plus ``generator_lm_head/kernel`` when not tied).

Shape letters: B batch, Q query length, E hidden size, M embedding size, V vocabulary.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from encdec.architectures.electra import ElectraConfig
from encdec_flax.layers import Dense, Embed, LayerNorm, ShapeCheckedParams
from encdec_flax.modeling_utils import ACT2FN, FlaxPreTrainedModel, normal_init
from encdec_flax.models.bert import FlaxBaseModelCall, FlaxBertEmbeddings, FlaxBertEncoder, FlaxCausalLMCall


class FlaxElectraEmbeddings(FlaxBertEmbeddings):
    """BERT's embeddings (and call) at width ``embedding_size``."""

    def setup(self):
        cfg = self.config
        self.word_embeddings = Embed(
            cfg.vocab_size, cfg.embedding_size, embedding_init=normal_init(cfg), dtype=self.dtype
        )
        self.position_embeddings = Embed(
            cfg.max_position_embeddings, cfg.embedding_size, embedding_init=normal_init(cfg), dtype=self.dtype
        )
        self.token_type_embeddings = Embed(
            cfg.type_vocab_size, cfg.embedding_size, embedding_init=normal_init(cfg), dtype=self.dtype
        )
        self.LayerNorm = LayerNorm(epsilon=cfg.layer_norm_eps, dtype=self.dtype)
        self.dropout = nn.Dropout(rate=cfg.hidden_dropout_prob)


class FlaxElectraModule(FlaxBaseModelCall):
    """``ElectraModel``: embeddings (width M), ``embeddings_project`` (M -> E, only when M != E),
    BERT's encoder; no pooler."""

    config: ElectraConfig
    dtype: jnp.dtype = jnp.float32
    add_pooling_layer: bool = False
    gradient_checkpointing: bool = False

    def setup(self):
        cfg = self.config
        self.embeddings = FlaxElectraEmbeddings(cfg, dtype=self.dtype)
        if cfg.embedding_size != cfg.hidden_size:
            self.embeddings_project = Dense(cfg.hidden_size, dtype=self.dtype, kernel_init=normal_init(cfg))
        self.encoder = FlaxBertEncoder(cfg, dtype=self.dtype, gradient_checkpointing=self.gradient_checkpointing)

    def embed(self, input_ids, token_type_ids, position_ids, deterministic: bool = True):
        """The embeddings (B, Q, M), projected to the layers' width (B, Q, E)."""
        hidden_states = self.embeddings(input_ids, token_type_ids, position_ids, deterministic=deterministic)
        if self.config.embedding_size != self.config.hidden_size:
            hidden_states = self.embeddings_project(hidden_states)
        return hidden_states



class FlaxElectraGeneratorPredictions(nn.Module):
    """dense (E -> M), gelu, LayerNorm: the generator's transform before the vocabulary projection."""

    config: ElectraConfig
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        cfg = self.config
        self.LayerNorm = LayerNorm(epsilon=cfg.layer_norm_eps, dtype=self.dtype)
        self.dense = Dense(cfg.embedding_size, dtype=self.dtype, kernel_init=normal_init(cfg))

    def __call__(self, hidden_states):
        # The reference applies erf GELU here whatever `hidden_act` says.
        return self.LayerNorm(ACT2FN["gelu"](self.dense(hidden_states)))  # (B, Q, M)


class FlaxElectraGeneratorLMHead(ShapeCheckedParams, nn.Module):
    """``generator_lm_head``: the vocabulary projection plus ``bias``. With tied word embeddings it
    owns no kernel: the embedding matrix is applied instead (the Hugging Face Flax port's tree)."""

    config: ElectraConfig
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        cfg = self.config
        if not cfg.tie_word_embeddings:
            self.kernel = self.param("kernel", normal_init(cfg), (cfg.embedding_size, cfg.vocab_size))
        self.bias = self.param("bias", jax.nn.initializers.zeros, (cfg.vocab_size,))

    def __call__(self, hidden_states, shared_embedding=None):
        if shared_embedding is not None:
            # (B, Q, M) x (V, M) -> (B, Q, V)
            logits = hidden_states @ shared_embedding.T.astype(self.dtype)
        else:
            logits = hidden_states @ self.kernel.astype(self.dtype)
        return logits + self.bias.astype(self.dtype)


class FlaxElectraForCausalLMModule(FlaxCausalLMCall):
    """``ElectraForCausalLM``: ``electra``, ``generator_predictions`` and ``generator_lm_head``."""

    config: ElectraConfig
    dtype: jnp.dtype = jnp.float32
    gradient_checkpointing: bool = False
    base_model_prefix = "electra"

    def setup(self):
        self.electra = FlaxElectraModule(
            self.config, dtype=self.dtype, gradient_checkpointing=self.gradient_checkpointing
        )
        self.generator_predictions = FlaxElectraGeneratorPredictions(self.config, dtype=self.dtype)
        self.generator_lm_head = FlaxElectraGeneratorLMHead(self.config, dtype=self.dtype)

    def decoder_logits(self, hidden_states, shared_embedding=None):
        """The last layer's output (B, Q, E) -> next-token logits (B, Q, V)."""
        return self.generator_lm_head(self.generator_predictions(hidden_states), shared_embedding=shared_embedding)


class FlaxElectraModel(FlaxPreTrainedModel):
    """ELECTRA encoder (``ElectraModel``) behind the functional Flax API.

    Args:
        config: an ``ElectraConfig``.
        input_shape: the dummy input shape used to create the params.
        seed: the PRNG seed of the random init.
        dtype: the computation dtype (params stay float32; see ``to_bf16``).
        _do_init: False creates no params (``model.params`` is then None; pass ``params=``).
        add_pooling_layer: accepted for the encoder role's common signature; ELECTRA has no pooler.
        gradient_checkpointing: recompute each layer in the backward pass (``nn.remat``).
    """

    config_class = ElectraConfig
    base_model_prefix = "electra"
    schema_head = "base"
    module_class = FlaxElectraModule

    def __init__(self, config: ElectraConfig, add_pooling_layer: bool = False, **kwargs: Any):
        super().__init__(config, **kwargs)


class FlaxElectraForCausalLM(FlaxPreTrainedModel):
    """ELECTRA decoder with the generator's LM head (``ElectraForCausalLM``); the same Args as ``FlaxElectraModel``."""

    config_class = ElectraConfig
    base_model_prefix = "electra"
    schema_head = "causal_lm"
    module_class = FlaxElectraForCausalLMModule
