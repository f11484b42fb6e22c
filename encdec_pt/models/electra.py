"""ELECTRA as encoder (``ElectraModel``) and as decoder with cross-attention (``ElectraForCausalLM``).

The layers, masks and cache are BERT's (``encdec_pt/models/bert.py``), used whole; what is
ELECTRA's own is the embedding width (``embedding_size``, projected to ``hidden_size`` by
``embeddings_project`` when they differ), the absence of a pooler, and the generator's LM head.
Shape legend as in ``bert.py``: B batch, Q query length, E hidden size, M embedding size, V vocabulary.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from encdec.architectures.electra import ElectraConfig
from encdec_pt.modeling_outputs import BaseModelOutputWithPoolingAndCrossAttentions
from encdec_pt.modeling_utils import (
    as_legacy_cache,
    check_rank,
    check_same_batch,
    check_token_ids,
    cross_attention_bias,
    past_length,
    self_attention_bias,
)
from encdec_pt.models.bert import BertEmbeddings, BertEncoder, BertPreTrainedModel, CausalLMForward


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


class ElectraModel(ElectraPreTrainedModel):
    """ELECTRA: embeddings (width M), ``embeddings_project`` (M -> E, only when M != E), BERT's layer
    stack; no pooler. A decoder when ``config.is_decoder``.

    Args:
        config: an ``ElectraConfig``.
        add_pooling_layer: accepted for the encoder role's common signature; ELECTRA has no pooler.
    """

    _init_kwargs = ("add_pooling_layer",)

    def __init__(self, config: ElectraConfig, add_pooling_layer: bool = False):
        super().__init__(config)
        # === Layers ===
        self.embeddings = ElectraEmbeddings(config)
        if config.embedding_size != config.hidden_size:
            self.embeddings_project = nn.Linear(config.embedding_size, config.hidden_size)
        else:
            self.embeddings_project = None
        self.encoder = BertEncoder(config)
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

    def forward(
        self,
        input_ids: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        token_type_ids: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.Tensor] = None,
        head_mask: Optional[torch.Tensor] = None,
        inputs_embeds: Optional[torch.Tensor] = None,
        encoder_hidden_states: Optional[torch.Tensor] = None,
        encoder_attention_mask: Optional[torch.Tensor] = None,
        past_key_values=None,
        use_cache: Optional[bool] = None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
    ):
        """``BertModel.forward`` with ELECTRA's embeddings (``inputs_embeds`` are (B, Q, M)) and no pooler."""
        config = self.config
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        return_dict = config.use_return_dict if return_dict is None else return_dict
        # The reference's ElectraModel does not fall back to config.use_cache: no cache unless asked
        # (its outputs, tuples included, have no past_key_values by default).
        use_cache = bool(use_cache) and config.is_decoder

        if input_ids is not None and inputs_embeds is not None:
            raise ValueError("pass either input_ids or inputs_embeds, not both")
        if input_ids is None and inputs_embeds is None:
            raise ValueError("pass input_ids or inputs_embeds")
        check_rank(input_ids, 2, "input_ids")
        check_rank(inputs_embeds, 3, "inputs_embeds", "(batch, length, embedding_size)")
        check_rank(token_type_ids, 2, "token_type_ids")
        check_token_ids(input_ids, config.vocab_size, "input_ids")
        check_token_ids(token_type_ids, config.type_vocab_size, "token_type_ids")
        check_same_batch(
            input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
            encoder_hidden_states=encoder_hidden_states, encoder_attention_mask=encoder_attention_mask,
        )

        past_key_values = as_legacy_cache(past_key_values)
        past_len = past_length(past_key_values)
        hidden_states = self.embed(
            input_ids=input_ids,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            past_key_values_length=past_len,
        )  # (B, Q, E)
        batch_size, seq_length = hidden_states.shape[:2]
        dtype, device = hidden_states.dtype, hidden_states.device

        # Masks are built once here, as additive biases: (B|1, 1, Q, K) and (B, 1, 1, S).
        extended_attention_mask = self_attention_bias(
            attention_mask, batch_size, seq_length, past_len, causal=config.is_decoder, dtype=dtype, device=device
        )
        encoder_extended_attention_mask = None
        if config.is_decoder and encoder_hidden_states is not None:
            encoder_extended_attention_mask = cross_attention_bias(encoder_attention_mask, dtype)

        sequence_output, presents, all_hidden_states, all_attentions, all_cross = self.encoder(
            hidden_states,
            attention_mask=extended_attention_mask,
            head_mask=head_mask,
            encoder_hidden_states=encoder_hidden_states if config.is_decoder else None,
            encoder_attention_mask=encoder_extended_attention_mask,
            past_key_values=past_key_values,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
        )

        if not return_dict:
            # The reference's tuple order (cache before hidden states), Nones dropped.
            return tuple(
                v for v in (sequence_output, presents, all_hidden_states, all_attentions, all_cross) if v is not None
            )
        return BaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=sequence_output,
            pooler_output=None,
            hidden_states=all_hidden_states,
            past_key_values=presents,
            attentions=all_attentions,
            cross_attentions=all_cross,
        )


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
