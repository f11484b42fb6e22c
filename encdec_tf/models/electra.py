"""ELECTRA as encoder (``TFElectraModel``) and as decoder with cross-attention (``TFElectraForCausalLM``).

Mirrors ``encdec_pt/models/electra.py``: BERT's layers (``encdec_tf/models/bert.py``) used whole,
ELECTRA's own embedding width (``embedding_size``, projected by ``embeddings_project`` when it is
not ``hidden_size``), no pooler, and the generator's LM head. Shapes: b batch, q query length,
e hidden size, m embedding size, v vocabulary.
"""

from __future__ import annotations

from typing import Any, Dict

import keras
import tensorflow as tf

from encdec.architectures.electra import ElectraConfig
from encdec_tf.activations import get_activation
from encdec_tf.layers import DeferredInit, Dropout, Embedding, XLATraceCall, matmul_last
from encdec_tf.modeling_utils import ComposedLayer, TFPreTrainedModel, normal_init
from encdec_tf.models.bert import TFBaseModelCall, TFBertEmbeddings, TFBertEncoder, TFCausalLMCall, _dense, _layer_norm


class TFElectraEmbeddings(TFBertEmbeddings):
    """BERT's embeddings (and call) at width ``embedding_size``."""

    def __init__(self, config: ElectraConfig, **kwargs: Any):
        ComposedLayer.__init__(self, **kwargs)
        # === Config ===
        self.config = config
        # === Layers ===
        self.word_embeddings = Embedding(
            config.vocab_size, config.embedding_size, embeddings_initializer=normal_init(config),
            name="word_embeddings",
        )
        self.position_embeddings = Embedding(
            config.max_position_embeddings, config.embedding_size, embeddings_initializer=normal_init(config),
            name="position_embeddings",
        )
        self.token_type_embeddings = Embedding(
            config.type_vocab_size, config.embedding_size, embeddings_initializer=normal_init(config),
            name="token_type_embeddings",
        )
        # Not snake-cased: the name is the PyTorch attribute, hence the checkpoint key.
        self.LayerNorm = _layer_norm(config)
        self.dropout = Dropout(config.hidden_dropout_prob, name="dropout")


class TFElectraModel(TFBaseModelCall, TFPreTrainedModel):
    """ELECTRA: embeddings (width m), ``embeddings_project`` (m -> e, only when m != e), BERT's layers;
    no pooler. A decoder when ``config.is_decoder``.

    Args:
        config: an ``ElectraConfig``.
        add_pooling_layer: accepted for the encoder role's common signature; ELECTRA has no pooler.
        build: create the variables now (parents that build themselves pass False).
    """

    config_class = ElectraConfig
    base_model_prefix = "electra"
    schema_head = "base"

    def __init__(self, config: ElectraConfig, add_pooling_layer: bool = False, build: bool = True, **kwargs: Any):
        super().__init__(config, **kwargs)
        self.add_pooling_layer = False
        # === Layers ===
        self.embeddings = TFElectraEmbeddings(config, name="embeddings")
        if config.embedding_size != config.hidden_size:
            self.embeddings_project = _dense(config, config.hidden_size, "embeddings_project")
        else:
            self.embeddings_project = None
        self.encoder = TFBertEncoder(config, name="encoder")
        self.pooler = None
        if build:
            self.build_now()

    def dummy_inputs(self) -> Dict[str, Any]:
        inputs: Dict[str, Any] = {"input_ids": tf.zeros((1, 2), dtype=tf.int32)}
        if self.config.add_cross_attention:
            inputs["encoder_hidden_states"] = tf.zeros((1, 2, self.config.hidden_size))
        return inputs

    def get_input_embeddings(self) -> keras.layers.Embedding:
        return self.embeddings.word_embeddings

    def embed(self, input_ids=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
              past_key_values_length=0, training=False):
        """The embeddings (b, q, m), projected to the layers' width (b, q, e)."""
        hidden_states = self.embeddings(
            input_ids=input_ids, token_type_ids=token_type_ids, position_ids=position_ids,
            inputs_embeds=inputs_embeds, past_key_values_length=past_key_values_length, training=training,
        )  # (b, q, m)
        if self.embeddings_project is not None:
            hidden_states = self.embeddings_project(hidden_states)  # (b, q, e)
        return hidden_states



class TFElectraGeneratorPredictions(ComposedLayer):
    """dense (e -> m), gelu, LayerNorm: the generator's transform before the vocabulary projection."""

    def __init__(self, config: ElectraConfig, **kwargs: Any):
        super().__init__(**kwargs)
        # === Layers ===
        self.LayerNorm = _layer_norm(config)
        self.dense = _dense(config, config.embedding_size, "dense")
        # The reference applies erf GELU here whatever `hidden_act` says.
        self.act = get_activation("gelu")

    def call(self, hidden_states):
        return self.LayerNorm(self.act(self.dense(hidden_states)))  # (b, q, m)


class TFElectraGeneratorLMHead(DeferredInit, XLATraceCall, keras.layers.Layer):
    """``generator_lm_head``: scores against the (tied) word embeddings plus ``bias``; a ``kernel``
    of its own only when not tied (the reference's TF head likewise holds only ``bias``)."""

    def __init__(self, config: ElectraConfig, **kwargs: Any):
        super().__init__(**kwargs)
        self.config = config

    def build(self, input_shape):
        if not self.config.tie_word_embeddings:
            self.kernel = self.add_weight(name="kernel", shape=(self.config.embedding_size, self.config.vocab_size),
                                          initializer=normal_init(self.config))
        self.bias = self.add_weight(name="bias", shape=(self.config.vocab_size,), initializer="zeros")

    def call(self, hidden_states, word_embeddings=None):
        if word_embeddings is not None:
            logits = matmul_last(hidden_states, word_embeddings, transpose_b=True)  # (b, q, v)
        else:
            logits = matmul_last(hidden_states, self.kernel)  # (b, q, v)
        return logits + self.bias


class TFElectraForCausalLM(TFCausalLMCall, TFPreTrainedModel):
    """ELECTRA with the generator's LM head, the decoder of electra2electra (``config.is_decoder``,
    ``add_cross_attention``). The reference has no TF class for it; this one matches PyTorch's.

    Args:
        config: an ``ElectraConfig``.
        build: create the variables now.
    """

    config_class = ElectraConfig
    base_model_prefix = "electra"
    schema_head = "causal_lm"

    def __init__(self, config: ElectraConfig, build: bool = True, **kwargs: Any):
        super().__init__(config, **kwargs)
        # === Layers ===
        self.electra = TFElectraModel(config, build=False, name="electra")
        self.generator_predictions = TFElectraGeneratorPredictions(config, name="generator_predictions")
        self.generator_lm_head = TFElectraGeneratorLMHead(config, name="generator_lm_head")
        if build:
            self.build_now()

    def dummy_inputs(self) -> Dict[str, Any]:
        return self.electra.dummy_inputs()

    def get_input_embeddings(self) -> keras.layers.Embedding:
        return self.electra.get_input_embeddings()

    # --- the decoder contract (docs/architectures.md) -------------------------------------------
    def decoder_embed(self, input_ids, position_ids):
        """Token ids (N, Q) at ``position_ids`` (1|N, Q) -> layer input (N, Q, E), projected."""
        return self.electra.embed(input_ids=input_ids, position_ids=position_ids)

    def decoder_layers(self):
        """The layers, each called ``layer(hidden, attention_mask=, encoder_hidden_states=,
        encoder_attention_mask=, past_key_value=)`` with the 4-tuple cache ``(self_k, self_v, cross_k, cross_v)``."""
        return self.electra.encoder.layer

    def decoder_logits(self, hidden_states):
        """The last layer's output (N, Q, E) -> next-token logits (N, Q, V)."""
        tied = self.electra.embeddings.word_embeddings.embeddings if self.config.tie_word_embeddings else None
        return self.generator_lm_head(self.generator_predictions(hidden_states), word_embeddings=tied)

    def cross_key_value(self, layer, encoder_hidden_states):
        """A layer's cross-attention keys and values (N, S, E) of the encoder states (N, S, E)."""
        cross = layer.crossattention.self_attention
        return cross.key(encoder_hidden_states), cross.value(encoder_hidden_states)
