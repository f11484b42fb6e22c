"""RoBERTa (also XLM-RoBERTa and CamemBERT) as encoder (``RobertaModel``) and as decoder with
cross-attention (``RobertaForCausalLM``).

The layers, masks and cache are BERT's (``encdec_pt/models/bert.py``), used as they are; what is
RoBERTa's own is the embeddings (positions derived from the input ids) and the LM head.
Shapes use the legend of docs/architectures.md (B batch, Q/K query/key length, S encoder length,
H heads, D head dim, E hidden, V vocabulary, L cache length).
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from encdec.architectures.roberta import RobertaConfig
from encdec_pt.models.bert import BertEncoder, BertModel, BertPooler, BertPreTrainedModel, CausalLMForward


def roberta_position_ids(input_ids: torch.Tensor, padding_idx: int, start) -> torch.Tensor:
    """Positions of ``input_ids`` (B, Q) as RoBERTa numbers them: ``padding_idx`` for a pad token,
    else ``padding_idx + start +`` the count of non-pad tokens up to and including it. ``start`` is
    the cache length (an int, or (B|1, 1) for per-row starts)."""
    mask = input_ids.ne(padding_idx).long()
    return (torch.cumsum(mask, dim=1) + start) * mask + padding_idx  # (B, Q)


class RobertaEmbeddings(nn.Module):
    """Word + position + token-type embeddings, then LayerNorm and dropout; the positions start after
    ``padding_idx`` and skip pad tokens (fairseq's numbering, which the checkpoints were trained with)."""

    def __init__(self, config: RobertaConfig):
        super().__init__()
        # === Layers ===
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(
            config.max_position_embeddings, config.hidden_size, padding_idx=config.pad_token_id
        )
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        # === Config ===
        self.padding_idx = config.pad_token_id
        self.max_position_embeddings = config.max_position_embeddings

    def forward(
        self,
        input_ids: Optional[torch.Tensor] = None,
        token_type_ids: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.Tensor] = None,
        inputs_embeds: Optional[torch.Tensor] = None,
        past_key_values_length: int = 0,
    ) -> torch.Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)  # (B, Q, E)
        batch_size, seq_length = inputs_embeds.shape[:2]
        if position_ids is None:
            if input_ids is not None:
                position_ids = roberta_position_ids(input_ids, self.padding_idx, past_key_values_length)
            else:
                # No ids to tell pads from tokens: every position is a token.
                first = self.padding_idx + 1 + past_key_values_length
                position_ids = torch.arange(first, first + seq_length, device=inputs_embeds.device)[None, :]
            # The bound first: reading the largest position syncs the device, and is rarely needed.
            if (self.padding_idx + past_key_values_length + seq_length >= self.max_position_embeddings
                    and int(position_ids.max()) >= self.max_position_embeddings):
                raise ValueError(
                    f"RoBERTa positions up to {int(position_ids.max())} (padding_idx {self.padding_idx} + 1 + "
                    f"length) exceed max_position_embeddings={self.max_position_embeddings}"
                )
        if token_type_ids is None:
            token_type_ids = torch.zeros((batch_size, seq_length), dtype=torch.long, device=inputs_embeds.device)
        embeddings = inputs_embeds + self.token_type_embeddings(token_type_ids) + self.position_embeddings(position_ids)
        embeddings = self.LayerNorm(embeddings)
        embeddings = self.dropout(embeddings)
        return embeddings  # (B, Q, E)


class RobertaPreTrainedModel(BertPreTrainedModel):
    """BERT's initialisation; ``roberta`` is the base model's attribute."""

    config_class = RobertaConfig
    base_model_prefix = "roberta"

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, RobertaLMHead):
            with torch.no_grad():
                module.bias.zero_()


class RobertaModel(RobertaPreTrainedModel, BertModel):
    """RoBERTa: ``BertModel`` with ``RobertaEmbeddings``. A decoder when ``config.is_decoder``.

    Args:
        config: a ``RobertaConfig`` (or ``XLMRobertaConfig`` / ``CamembertConfig``).
        add_pooling_layer: build ``pooler``.
    """

    def __init__(self, config: RobertaConfig, add_pooling_layer: bool = True):
        RobertaPreTrainedModel.__init__(self, config)
        # === Layers ===
        self.embeddings = RobertaEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        # === Config ===
        self.add_pooling_layer = add_pooling_layer
        self.post_init()


class RobertaLMHead(nn.Module):
    """dense, gelu, layer_norm, then ``decoder`` (weight tied to the word embeddings; its bias IS ``bias``)."""

    def __init__(self, config: RobertaConfig):
        super().__init__()
        # === Layers ===
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        # Both names are checkpoint keys of one tensor; the owner is `bias` (see the schema).
        self.decoder.bias = self.bias

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # The reference applies erf GELU here whatever `hidden_act` says.
        hidden_states = self.layer_norm(F.gelu(self.dense(features)))  # (B, Q, E)
        return self.decoder(hidden_states)  # (B, Q, V)


class RobertaForCausalLM(CausalLMForward, RobertaPreTrainedModel):
    """RoBERTa decoder: ``roberta`` (no pooler) plus ``lm_head``; causal when ``is_decoder``.

    Args:
        config: a ``RobertaConfig`` (``is_decoder=True``, and ``add_cross_attention=True`` inside an
            ``EncoderDecoderModel``).
    """

    schema_head = "causal_lm"

    def __init__(self, config: RobertaConfig):
        super().__init__(config)
        # === Layers ===
        self.roberta = RobertaModel(config, add_pooling_layer=False)
        self.lm_head = RobertaLMHead(config)
        self.post_init()

    # --- the decoder contract (docs/architectures.md) -------------------------------------------
    def decoder_embed(self, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """Token ids (N, Q) at cache positions ``position_ids`` (1|N, Q), counted from 0 as for every
        decoder -> layer input (N, Q, E). RoBERTa numbers them its own way, from the first one's
        cache length on (as its forward does with a cache)."""
        start = position_ids[:, :1]  # (1|N, 1)
        positions = roberta_position_ids(input_ids, self.config.pad_token_id, start)
        return self.roberta.embeddings(input_ids=input_ids, position_ids=positions)

    def decoder_layers(self) -> nn.ModuleList:
        """The layers, each called ``layer(hidden, self_bias, head_mask, encoder_hidden_states,
        cross_bias, cache)`` with ``cache`` the 4-tuple ``(self_k, self_v, cross_k, cross_v)``."""
        return self.roberta.encoder.layer

    def decoder_logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """The last layer's output (N, Q, E) -> next-token logits (N, Q, V)."""
        return self.lm_head(hidden_states)

    def tie_weights(self) -> None:
        head = self.lm_head
        if self.config.tie_word_embeddings:
            head.decoder.weight = self.roberta.embeddings.word_embeddings.weight
        head.decoder.bias = head.bias

    def get_input_embeddings(self) -> nn.Embedding:
        return self.roberta.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.roberta.embeddings.word_embeddings = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head.decoder

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.lm_head.decoder = new_embeddings
        if new_embeddings.bias is not None:
            self.lm_head.bias = new_embeddings.bias
        self.tie_weights()

    def _set_resized_output(self, new: nn.Linear) -> None:
        self.lm_head.decoder = new

    def _resize_output_bias(self, n: int) -> None:
        old = self.lm_head.bias
        new = torch.zeros(n, dtype=old.dtype, device=old.device)
        keep = min(n, old.shape[0])
        new[:keep] = old.detach()[:keep]
        self.lm_head.bias = nn.Parameter(new)
