"""ELECTRA as encoder (``ElectraModel``) and as decoder with cross-attention (``ElectraForCausalLM``).

The layers, masks and cache are BERT's (``encdec_pt/models/bert.py``), used whole; what is
ELECTRA's own is the embedding width (``embedding_size``, projected to ``hidden_size`` by
``embeddings_project`` when they differ), the absence of a pooler, and the generator's LM head.
Shape legend as in ``bert.py``: B batch, Q query length, E hidden size, M embedding size, V vocabulary.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from encdec.architectures.electra import ElectraConfig
from encdec_pt.models.bert import BaseModelForward, BertEmbeddings, BertEncoder, BertPreTrainedModel, CausalLMForward


class ElectraEmbeddings(BertEmbeddings):
    """BERT's embeddings (and forward) at width ``embedding_size``."""

    def __init__(self, config: ElectraConfig):
        nn.Module.__init__(self)
        # === Layers ===
        self.word_embeddings = nn.Embedding(config.vocab_size, config.embedding_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.embedding_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.embedding_size)
        self.LayerNorm = nn.LayerNorm(config.embedding_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        # === Config ===
        self.vocab_size = config.vocab_size
        self.max_position_embeddings = config.max_position_embeddings


class ElectraPreTrainedModel(BertPreTrainedModel):
    """BERT's initialisation; ``electra`` is the base model's attribute."""

    config_class = ElectraConfig
    base_model_prefix = "electra"


class ElectraModel(BaseModelForward, ElectraPreTrainedModel):
    """ELECTRA: embeddings (width M), ``embeddings_project`` (M -> E, only when M != E), BERT's layer
    stack; no pooler. A decoder when ``config.is_decoder``.

    Args:
        config: an ``ElectraConfig``.
        add_pooling_layer: accepted for the encoder role's common signature; ELECTRA has no pooler.
    """

    _init_kwargs = ("add_pooling_layer",)
    # The reference's ElectraModel does not fall back to config.use_cache: no cache unless asked
    # (its outputs, tuples included, have no past_key_values by default).
    cache_by_default = False
    inputs_embeds_width = "embedding_size"

    def __init__(self, config: ElectraConfig, add_pooling_layer: bool = False):
        super().__init__(config)
        # === Layers ===
        self.embeddings = ElectraEmbeddings(config)
        if config.embedding_size != config.hidden_size:
            self.embeddings_project = nn.Linear(config.embedding_size, config.hidden_size)
        else:
            self.embeddings_project = None
        self.encoder = BertEncoder(config)
        self.pooler = None
        # === Config ===
        self.add_pooling_layer = False
        self.post_init()

    def schema(self):
        from encdec.naming.schema import schema_for

        return schema_for(self.config, head="base")

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    def embed(self, input_ids=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
              past_key_values_length: int = 0) -> torch.Tensor:
        """The embeddings (B, Q, M), projected to the layers' width (B, Q, E)."""
        hidden_states = self.embeddings(
            input_ids=input_ids,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            past_key_values_length=past_key_values_length,
        )  # (B, Q, M)
        if self.embeddings_project is not None:
            hidden_states = self.embeddings_project(hidden_states)  # (B, Q, E)
        return hidden_states


class ElectraGeneratorPredictions(nn.Module):
    """dense (E -> M), gelu, LayerNorm: the generator's transform before the vocabulary projection."""

    def __init__(self, config: ElectraConfig):
        super().__init__()
        # === Layers ===
        self.LayerNorm = nn.LayerNorm(config.embedding_size, eps=config.layer_norm_eps)
        self.dense = nn.Linear(config.hidden_size, config.embedding_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        # The reference applies erf GELU here whatever `hidden_act` says.
        return self.LayerNorm(F.gelu(self.dense(hidden_states)))  # (B, Q, M)


class ElectraForCausalLM(CausalLMForward, ElectraPreTrainedModel):
    """ELECTRA decoder: ``electra`` plus the generator head (``generator_predictions``, then
    ``generator_lm_head``, whose weight is tied to the word embeddings); causal when ``is_decoder``.

    Args:
        config: an ``ElectraConfig`` (``is_decoder=True``, and ``add_cross_attention=True`` inside an
            ``EncoderDecoderModel``).
    """

    schema_head = "causal_lm"

    def __init__(self, config: ElectraConfig):
        super().__init__(config)
        # === Layers ===
        self.electra = ElectraModel(config)
        self.generator_predictions = ElectraGeneratorPredictions(config)
        self.generator_lm_head = nn.Linear(config.embedding_size, config.vocab_size)
        self.post_init()

    # --- the decoder contract (docs/architectures.md) -------------------------------------------
    def decoder_embed(self, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """Token ids (N, Q) at ``position_ids`` (1|N, Q) -> layer input (N, Q, E), projected."""
        return self.electra.embed(input_ids=input_ids, position_ids=position_ids)

    def decoder_layers(self) -> nn.ModuleList:
        """The layers, each called ``layer(hidden, self_bias, head_mask, encoder_hidden_states,
        cross_bias, cache)`` with ``cache`` the 4-tuple ``(self_k, self_v, cross_k, cross_v)``."""
        return self.electra.encoder.layer

    def decoder_logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """The last layer's output (N, Q, E) -> next-token logits (N, Q, V)."""
        return self.generator_lm_head(self.generator_predictions(hidden_states))

    def tie_weights(self) -> None:
        if self.config.tie_word_embeddings:
            self.generator_lm_head.weight = self.electra.embeddings.word_embeddings.weight

    def get_input_embeddings(self) -> nn.Embedding:
        return self.electra.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.electra.embeddings.word_embeddings = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.generator_lm_head

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.generator_lm_head = new_embeddings
        self.tie_weights()

    def _set_resized_output(self, new: nn.Linear) -> None:
        self.generator_lm_head = new

    def _resize_output_bias(self, n: int) -> None:
        # An untied head was resized whole (bias included); a tied one keeps its own bias: resize it.
        head = self.generator_lm_head
        old = head.bias
        if old.shape[0] == n:
            return
        new = torch.zeros(n, dtype=old.dtype, device=old.device)
        keep = min(n, old.shape[0])
        new[:keep] = old.detach()[:keep]
        head.bias = nn.Parameter(new)
        head.out_features = n
