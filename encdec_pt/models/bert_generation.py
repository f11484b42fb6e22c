"""BertGeneration as encoder (``BertGenerationEncoder``) and as decoder with cross-attention
(``BertGenerationDecoder``).

BERT's layers (``BertEncoder`` from ``bert.py``, the same modules and checkpoint keys) under
embeddings without token types, no pooler, and an LM head that is a single ``decoder`` Linear
whose bias is ``lm_head.bias``.
Shapes use the legend of docs/architectures.md (B batch, Q/K query/key length, S encoder length,
H heads, D head dim, E hidden, V vocabulary, L cache length).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from encdec.architectures.bert_generation import BertGenerationConfig
from encdec_pt.modeling_utils import PreTrainedModel, init_module
from encdec_pt.models.bert import BaseModelForward, BertEncoder, CausalLMForward


class BertGenerationEmbeddings(nn.Module):
    """Word + position embeddings (no token types), then LayerNorm and dropout."""

    def __init__(self, config: BertGenerationConfig):
        super().__init__()
        # === Layers ===
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        # === Config ===
        self.max_position_embeddings = config.max_position_embeddings

    def forward(
        self,
        input_ids: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.Tensor] = None,
        inputs_embeds: Optional[torch.Tensor] = None,
        past_key_values_length: int = 0,
    ) -> torch.Tensor:
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)  # (B, Q, E)
        seq_length = inputs_embeds.shape[1]
        if position_ids is None:
            if past_key_values_length + seq_length > self.max_position_embeddings:
                raise ValueError(
                    f"positions up to {past_key_values_length + seq_length} exceed max_position_embeddings="
                    f"{self.max_position_embeddings}"
                )
            # Positions continue after the cached ones.
            position_ids = torch.arange(
                past_key_values_length, past_key_values_length + seq_length, device=inputs_embeds.device
            )[None, :]  # (1, Q)
        embeddings = inputs_embeds + self.position_embeddings(position_ids)
        embeddings = self.LayerNorm(embeddings)
        embeddings = self.dropout(embeddings)
        return embeddings  # (B, Q, E)


class BertGenerationPreTrainedModel(PreTrainedModel):
    """Initialisation shared by the BertGeneration models: N(0, initializer_range), zero biases, unit norms."""

    config_class = BertGenerationConfig
    base_model_prefix = "bert"

    def _init_weights(self, module: nn.Module) -> None:
        init_module(module, self.config.initializer_range, zero_bias_types=(BertGenerationOnlyLMHead,))


class BertGenerationEncoder(BaseModelForward, BertGenerationPreTrainedModel):
    """BertGeneration: embeddings and BERT layers, no pooler. A decoder when ``config.is_decoder``.
    ``forward`` is ``BaseModelForward``'s under the reference's signature (no ``token_type_ids``).

    Args:
        config: a ``BertGenerationConfig``.
    """

    def __init__(self, config: BertGenerationConfig):
        super().__init__(config)
        # === Layers ===
        self.embeddings = BertGenerationEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = None
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    def embed(self, input_ids=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
              past_key_values_length: int = 0) -> torch.Tensor:
        """The first layer's input (B, Q, E); ``token_type_ids`` is always None here."""
        return self.embeddings(input_ids=input_ids, position_ids=position_ids, inputs_embeds=inputs_embeds,
                               past_key_values_length=past_key_values_length)

    def forward(
        self,
        input_ids: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
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
        return super().forward(
            input_ids, attention_mask=attention_mask, position_ids=position_ids, head_mask=head_mask,
            inputs_embeds=inputs_embeds, encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask, past_key_values=past_key_values, use_cache=use_cache,
            output_attentions=output_attentions, output_hidden_states=output_hidden_states, return_dict=return_dict,
        )


class BertGenerationOnlyLMHead(nn.Module):
    """``decoder`` (weight tied to the word embeddings; its bias IS ``bias``): no transform."""

    def __init__(self, config: BertGenerationConfig):
        super().__init__()
        # === Layers ===
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        # Both names are checkpoint keys of one tensor; the owner is `bias` (see the schema).
        self.decoder.bias = self.bias

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(hidden_states)  # (B, Q, V)


class BertGenerationDecoder(CausalLMForward, BertGenerationPreTrainedModel):
    """BertGeneration decoder: ``bert`` plus the ``lm_head``; causal when ``is_decoder``.

    Args:
        config: a ``BertGenerationConfig`` (``is_decoder=True``, and ``add_cross_attention=True``
            inside an ``EncoderDecoderModel``).
    """

    schema_head = "causal_lm"

    def __init__(self, config: BertGenerationConfig):
        super().__init__(config)
        # === Layers ===
        self.bert = BertGenerationEncoder(config)
        self.lm_head = BertGenerationOnlyLMHead(config)
        self.post_init()

    # --- the decoder contract (docs/architectures.md) -------------------------------------------
    def decoder_embed(self, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """Token ids (N, Q) at ``position_ids`` (1|N, Q) -> layer input (N, Q, E)."""
        return self.bert.embeddings(input_ids=input_ids, position_ids=position_ids)

    def decoder_layers(self) -> nn.ModuleList:
        """The layers (``BertLayer``), called as ``BertLMHeadModel.decoder_layers`` documents."""
        return self.bert.encoder.layer

    def decoder_logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """The last layer's output (N, Q, E) -> next-token logits (N, Q, V)."""
        return self.lm_head(hidden_states)

    def tie_weights(self) -> None:
        head = self.lm_head
        if self.config.tie_word_embeddings:
            head.decoder.weight = self.bert.embeddings.word_embeddings.weight
        head.decoder.bias = head.bias

    def get_input_embeddings(self) -> nn.Embedding:
        return self.bert.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.bert.embeddings.word_embeddings = value

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

    def forward(
        self,
        input_ids: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.Tensor] = None,
        head_mask: Optional[torch.Tensor] = None,
        inputs_embeds: Optional[torch.Tensor] = None,
        encoder_hidden_states: Optional[torch.Tensor] = None,
        encoder_attention_mask: Optional[torch.Tensor] = None,
        labels: Optional[torch.Tensor] = None,
        past_key_values=None,
        use_cache: Optional[bool] = None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
    ):
        """``CausalLMForward``'s under the reference's signature (no ``token_type_ids``); ``labels``
        gives the stand-alone next-token loss (logits[:, :-1] vs labels[:, 1:])."""
        return super().forward(
            input_ids, attention_mask=attention_mask, position_ids=position_ids, head_mask=head_mask,
            inputs_embeds=inputs_embeds, encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask, labels=labels, past_key_values=past_key_values,
            use_cache=use_cache, output_attentions=output_attentions, output_hidden_states=output_hidden_states,
            return_dict=return_dict,
        )
