"""RoBERTa (also XLM-RoBERTa and CamemBERT) as encoder (``TFRobertaModel``) and as decoder with
cross-attention (``TFRobertaForCausalLM``).

Mirrors ``encdec_pt/models/roberta.py``: BERT's layers (``encdec_tf/models/bert.py``) as they are,
RoBERTa's own embeddings (positions derived from the input ids) and LM head.
Shapes use the legend of docs/architectures.md (B batch, Q/K query/key length, S encoder length,
H heads, D head dim, E hidden, V vocabulary, L cache length).
"""

from __future__ import annotations

from typing import Any, Dict

import keras
import tensorflow as tf

from encdec.architectures.roberta import RobertaConfig
from encdec_tf.activations import get_activation
from encdec_tf.layers import DeferredInit, Dropout, Embedding, XLATraceCall, matmul_last
from encdec_tf.modeling_utils import (
    ComposedLayer,
    TFPreTrainedModel,
    check_ids,
    normal_init,
)
from encdec_tf.models.bert import TFBertEncoder, TFBertModel, TFBertPooler, TFCausalLMCall, _dense, _layer_norm


def roberta_position_ids(input_ids, padding_idx: int, start):
    """Positions of ``input_ids`` (B, Q) as RoBERTa numbers them: ``padding_idx`` for a pad token,
    else ``padding_idx + start +`` the count of non-pad tokens up to and including it. ``start`` is
    the cache length (a scalar, or (B|1, 1) for per-row starts)."""
    mask = tf.cast(tf.not_equal(input_ids, padding_idx), tf.int32)
    return (tf.cumsum(mask, axis=1) + tf.cast(start, tf.int32)) * mask + padding_idx  # (B, Q)


class TFRobertaEmbeddings(ComposedLayer):
    """Word + position + token-type embeddings, then LayerNorm and dropout; the positions start after
    ``padding_idx`` and skip pad tokens."""

    def __init__(self, config: RobertaConfig, **kwargs: Any):
        super().__init__(**kwargs)
        # === Config ===
        self.config = config
        self.padding_idx = config.pad_token_id
        # === Layers ===
        self.word_embeddings = Embedding(
            config.vocab_size, config.hidden_size, embeddings_initializer=normal_init(config), name="word_embeddings"
        )
        self.position_embeddings = Embedding(
            config.max_position_embeddings, config.hidden_size, embeddings_initializer=normal_init(config),
            name="position_embeddings",
        )
        self.token_type_embeddings = Embedding(
            config.type_vocab_size, config.hidden_size, embeddings_initializer=normal_init(config),
            name="token_type_embeddings",
        )
        # Not snake-cased: the name is the PyTorch attribute, hence the checkpoint key.
        self.LayerNorm = _layer_norm(config)
        self.dropout = Dropout(config.hidden_dropout_prob, name="dropout")

    def call(self, input_ids=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
             past_key_values_length=0, training=False):
        if inputs_embeds is None:
            input_ids = check_ids(input_ids, self.config.vocab_size, "input_ids")
            inputs_embeds = self.word_embeddings(input_ids)  # (B, Q, E)
        seq_length = tf.shape(inputs_embeds)[1]
        if position_ids is None:
            if input_ids is not None:
                position_ids = roberta_position_ids(input_ids, self.padding_idx, past_key_values_length)
            else:
                # No ids to tell pads from tokens: every position is a token.
                first = self.padding_idx + 1 + past_key_values_length
                position_ids = tf.range(first, first + seq_length)[None, :]  # (1, Q)
        if token_type_ids is None:
            token_type_ids = tf.zeros(tf.shape(inputs_embeds)[:2], dtype=tf.int32)
        position_ids = check_ids(position_ids, self.config.max_position_embeddings, "position_ids")
        embeddings = inputs_embeds + self.token_type_embeddings(token_type_ids) + self.position_embeddings(position_ids)
        embeddings = self.LayerNorm(embeddings)
        return self.dropout(embeddings, training=training)


class TFRobertaModel(TFBertModel):
    """RoBERTa: ``TFBertModel`` with ``TFRobertaEmbeddings``. A decoder when ``config.is_decoder``.

    Args:
        config: a ``RobertaConfig`` (or ``XLMRobertaConfig`` / ``CamembertConfig``).
        add_pooling_layer: build the pooler.
        build: create the variables now (parents that build themselves pass False).
    """

    config_class = RobertaConfig
    base_model_prefix = "roberta"
    schema_head = "base"

    def __init__(self, config: RobertaConfig, add_pooling_layer: bool = True, build: bool = True, **kwargs: Any):
        TFPreTrainedModel.__init__(self, config, **kwargs)
        self.add_pooling_layer = add_pooling_layer
        # === Layers ===
        self.embeddings = TFRobertaEmbeddings(config, name="embeddings")
        self.encoder = TFBertEncoder(config, name="encoder")
        self.pooler = TFBertPooler(config, name="pooler") if add_pooling_layer else None
        if build:
            self.build_now()


class TFRobertaLMHead(DeferredInit, XLATraceCall, keras.layers.Layer):
    """dense, gelu, layer_norm, then scores against the (tied) word embeddings plus ``bias``."""

    def __init__(self, config: RobertaConfig, **kwargs: Any):
        super().__init__(**kwargs)
        self.config = config
        self.dense = _dense(config, config.hidden_size, "dense")
        self.layer_norm = _layer_norm(config, name="layer_norm")
        # The reference applies erf GELU here whatever `hidden_act` says.
        self.act = get_activation("gelu")
        # `decoder` is a layer of its own only when it is not tied to the word embeddings.
        self.decoder = None if config.tie_word_embeddings else _dense(config, config.vocab_size, "decoder", use_bias=False)

    def build(self, input_shape):
        self.bias = self.add_weight(name="bias", shape=(self.config.vocab_size,), initializer="zeros")

    def call(self, hidden_states, word_embeddings=None):
        hidden_states = self.layer_norm(self.act(self.dense(hidden_states)))  # (B, Q, E)
        if self.decoder is None:
            logits = matmul_last(hidden_states, word_embeddings, transpose_b=True)  # (B, Q, V)
        else:
            logits = self.decoder(hidden_states)
        return logits + self.bias


class TFRobertaForCausalLM(TFCausalLMCall, TFPreTrainedModel):
    """RoBERTa with a language-model head, the decoder of roberta2roberta (``config.is_decoder``,
    ``add_cross_attention``).

    Args:
        config: a ``RobertaConfig``.
        build: create the variables now.
    """

    config_class = RobertaConfig
    base_model_prefix = "roberta"
    schema_head = "causal_lm"

    def __init__(self, config: RobertaConfig, build: bool = True, **kwargs: Any):
        super().__init__(config, **kwargs)
        # === Layers ===
        self.roberta = TFRobertaModel(config, add_pooling_layer=False, build=False, name="roberta")
        self.lm_head = TFRobertaLMHead(config, name="lm_head")
        if build:
            self.build_now()

    def dummy_inputs(self) -> Dict[str, Any]:
        return self.roberta.dummy_inputs()

    def get_input_embeddings(self) -> keras.layers.Embedding:
        return self.roberta.get_input_embeddings()

    # --- the decoder contract (docs/architectures.md) -------------------------------------------
    def decoder_embed(self, input_ids, position_ids):
        """Token ids (N, Q) at cache positions ``position_ids`` (1|N, Q), counted from 0 as for every
        decoder -> layer input (N, Q, E). RoBERTa numbers them its own way, from the first one's
        cache length on (as its call does with a cache)."""
        start = position_ids[:, :1]  # (1|N, 1)
        positions = roberta_position_ids(input_ids, self.config.pad_token_id, start)
        return self.roberta.embeddings(input_ids=input_ids, position_ids=positions)

    def decoder_layers(self):
        """The layers, each called ``layer(hidden, attention_mask=, encoder_hidden_states=,
        encoder_attention_mask=, past_key_value=)`` with the 4-tuple cache ``(self_k, self_v, cross_k, cross_v)``."""
        return self.roberta.encoder.layer

    def decoder_logits(self, hidden_states):
        """The last layer's output (N, Q, E) -> next-token logits (N, Q, V)."""
        tied = self.roberta.embeddings.word_embeddings.embeddings if self.config.tie_word_embeddings else None
        return self.lm_head(hidden_states, word_embeddings=tied)

    def cross_key_value(self, layer, encoder_hidden_states):
        """A layer's cross-attention keys and values (N, S, E) of the encoder states (N, S, E)."""
        cross = layer.crossattention.self_attention
        return cross.key(encoder_hidden_states), cross.value(encoder_hidden_states)
