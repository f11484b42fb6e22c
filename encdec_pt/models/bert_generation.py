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
from encdec_pt.modeling_outputs import BaseModelOutputWithPoolingAndCrossAttentions, CausalLMOutputWithCrossAttentions
from encdec_pt.modeling_utils import (
    PreTrainedModel,
    as_legacy_cache,
    causal_lm_loss,
    check_rank,
    check_same_batch,
    check_token_ids,
    cross_attention_bias,
    past_length,
    self_attention_bias,
)
from encdec_pt.models.bert import BertEncoder


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
        std = self.config.initializer_range
        with torch.no_grad():
            if isinstance(module, nn.Linear):
                module.weight.normal_(mean=0.0, std=std)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.Embedding):
                module.weight.normal_(mean=0.0, std=std)
                if module.padding_idx is not None:
                    module.weight[module.padding_idx].zero_()
            elif isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
            elif isinstance(module, BertGenerationOnlyLMHead):
                module.bias.zero_()


class BertGenerationEncoder(BertGenerationPreTrainedModel):
    """BertGeneration: embeddings and BERT layers, no pooler. A decoder when ``config.is_decoder``.

    Args:
        config: a ``BertGenerationConfig``.
    """

    def __init__(self, config: BertGenerationConfig):
        super().__init__(config)
        # === Layers ===
        self.embeddings = BertGenerationEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

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
        config = self.config
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        return_dict = config.use_return_dict if return_dict is None else return_dict
        use_cache = (config.use_cache if use_cache is None else use_cache) and config.is_decoder

        if input_ids is not None and inputs_embeds is not None:
            raise ValueError("pass either input_ids or inputs_embeds, not both")
        if input_ids is None and inputs_embeds is None:
            raise ValueError("pass input_ids or inputs_embeds")
        check_rank(input_ids, 2, "input_ids")
        check_rank(inputs_embeds, 3, "inputs_embeds", "(batch, length, hidden)")
        check_token_ids(input_ids, config.vocab_size, "input_ids")
        check_same_batch(
            input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
            encoder_hidden_states=encoder_hidden_states, encoder_attention_mask=encoder_attention_mask,
        )

        past_key_values = as_legacy_cache(past_key_values)
        past_len = past_length(past_key_values)
        embedding_output = self.embeddings(
            input_ids=input_ids, position_ids=position_ids, inputs_embeds=inputs_embeds,
            past_key_values_length=past_len,
        )  # (B, Q, E)
        batch_size, seq_length = embedding_output.shape[:2]
        dtype, device = embedding_output.dtype, embedding_output.device

        # Masks are built once here, as additive biases: (B|1, 1, Q, K) and (B, 1, 1, S).
        extended_attention_mask = self_attention_bias(
            attention_mask, batch_size, seq_length, past_len, causal=config.is_decoder, dtype=dtype, device=device
        )
        encoder_extended_attention_mask = None
        if config.is_decoder and encoder_hidden_states is not None:
            encoder_extended_attention_mask = cross_attention_bias(encoder_attention_mask, dtype)

        sequence_output, presents, all_hidden_states, all_attentions, all_cross = self.encoder(
            embedding_output,
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
            hidden_states=all_hidden_states,
            past_key_values=presents,
            attentions=all_attentions,
            cross_attentions=all_cross,
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


class BertGenerationDecoder(BertGenerationPreTrainedModel):
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
        """``labels`` gives the stand-alone next-token loss (logits[:, :-1] vs labels[:, 1:])."""
        return_dict = self.config.use_return_dict if return_dict is None else return_dict
        if labels is not None:
            use_cache = False
        outputs = self.bert(
            input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            head_mask=head_mask,
            inputs_embeds=inputs_embeds,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            past_key_values=past_key_values,
            use_cache=use_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.lm_head(outputs.last_hidden_state)  # (B, Q, V)
        loss = causal_lm_loss(logits, labels) if labels is not None else None
        result = CausalLMOutputWithCrossAttentions(
            loss=loss,
            logits=logits,
            past_key_values=outputs.past_key_values,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
            cross_attentions=outputs.cross_attentions,
        )
        return result if return_dict else result.to_tuple()
