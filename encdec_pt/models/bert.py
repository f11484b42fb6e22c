"""BERT as encoder (``BertModel``) and as decoder with cross-attention (``BertLMHeadModel``).

Attribute names are the Hugging Face PyTorch state-dict keys (``encdec.naming.schema``), so the
module tree *is* the checkpoint layout.
Shapes use the legend of docs/architectures.md (B batch, Q/K query/key length, S encoder length,
H heads, D head dim, E hidden, V vocabulary, L cache length).

Cache (``past_key_values``): per layer ``(self_k, self_v, cross_k, cross_v)``, each (B, H, T, D);
a decoder without cross-attention keeps ``(self_k, self_v)``.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from encdec.architectures.bert import BertConfig
from encdec_pt.activations import get_activation
from encdec_pt.modeling_outputs import BaseModelOutputWithPoolingAndCrossAttentions, CausalLMOutputWithCrossAttentions
from encdec_pt.modeling_utils import (
    PreTrainedModel,
    as_legacy_cache,
    attend,
    causal_lm_loss,
    check_rank,
    check_same_batch,
    check_token_ids,
    cross_attention_bias,
    init_module,
    keys_and_values,
    layer_head_masks,
    past_length,
    self_attention_bias,
    split_heads,
)


class BertEmbeddings(nn.Module):
    """Word + position + token-type embeddings, then LayerNorm and dropout.

    ``LayerNorm`` keeps its CamelCase name: it is the checkpoint key.
    """

    def __init__(self, config: BertConfig):
        super().__init__()
        # === Layers ===
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        # === Config ===
        self.vocab_size = config.vocab_size
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
            if past_key_values_length + seq_length > self.max_position_embeddings:
                raise ValueError(
                    f"positions up to {past_key_values_length + seq_length} exceed max_position_embeddings="
                    f"{self.max_position_embeddings}"
                )
            # Positions continue after the cached ones.
            position_ids = torch.arange(
                past_key_values_length, past_key_values_length + seq_length, device=inputs_embeds.device
            )[None, :]  # (1, Q)
        if token_type_ids is None:
            token_type_ids = torch.zeros((batch_size, seq_length), dtype=torch.long, device=inputs_embeds.device)
        embeddings = inputs_embeds + self.token_type_embeddings(token_type_ids) + self.position_embeddings(position_ids)
        embeddings = self.LayerNorm(embeddings)
        embeddings = self.dropout(embeddings)
        return embeddings  # (B, Q, E)


class BertSelfAttention(nn.Module):
    """Multi-head attention: self-attention, or cross-attention when ``encoder_hidden_states`` is given."""

    def __init__(self, config: BertConfig):
        super().__init__()
        if config.hidden_size % config.num_attention_heads != 0:
            raise ValueError(
                f"hidden_size ({config.hidden_size}) is not a multiple of num_attention_heads "
                f"({config.num_attention_heads})"
            )
        # === Config ===
        self.num_attention_heads = config.num_attention_heads
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        self.all_head_size = self.num_attention_heads * self.attention_head_size
        self.scale = 1.0 / math.sqrt(self.attention_head_size)
        # === Layers ===
        self.query = nn.Linear(config.hidden_size, self.all_head_size)
        self.key = nn.Linear(config.hidden_size, self.all_head_size)
        self.value = nn.Linear(config.hidden_size, self.all_head_size)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        head_mask: Optional[torch.Tensor] = None,
        encoder_hidden_states: Optional[torch.Tensor] = None,
        past_key_value: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
        output_attentions: bool = False,
    ) -> Tuple[torch.Tensor, Tuple[torch.Tensor, torch.Tensor], Optional[torch.Tensor]]:
        """Returns (context (B, Q, E), present (key, value) each (B, H, K, D), probabilities (B, H, Q, K) or None).

        ``attention_mask`` is an additive bias broadcastable to (B, H, Q, K).
        """
        # (B, Q, E) -> (B, Q, H, D)
        query = split_heads(self.query(hidden_states), self.num_attention_heads)
        # (B, H, K, D) each
        key, value = keys_and_values(self.key, self.value, self.num_attention_heads, hidden_states,
                                     encoder_hidden_states, past_key_value, encoder_hidden_states is not None)
        present = (key, value)  # (B, H, K, D) each: the cache layout of every framework in this library

        dropout_p = self.dropout.p if self.training else 0.0
        context, probs = attend(query, key, value, attention_mask, head_mask, self.scale, dropout_p, output_attentions)
        return context, present, probs


class BertSelfOutput(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        # === Layers ===
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        hidden_states = self.dense(hidden_states)
        hidden_states = self.dropout(hidden_states)
        return self.LayerNorm(hidden_states + input_tensor)  # (B, Q, E)


class BertAttention(nn.Module):
    """``self`` (the attention proper; the name is the checkpoint key) plus ``output`` (projection, residual, norm)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        # === Layers ===
        self.self = BertSelfAttention(config)
        self.output = BertSelfOutput(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        head_mask: Optional[torch.Tensor] = None,
        encoder_hidden_states: Optional[torch.Tensor] = None,
        past_key_value: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
        output_attentions: bool = False,
    ):
        context, present, probs = self.self(
            hidden_states,
            attention_mask=attention_mask,
            head_mask=head_mask,
            encoder_hidden_states=encoder_hidden_states,
            past_key_value=past_key_value,
            output_attentions=output_attentions,
        )
        attn_output = self.output(context, hidden_states)
        return attn_output, present, probs


class BertIntermediate(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        # === Layers ===
        self.dense = nn.Linear(config.hidden_size, config.intermediate_size)
        # === Config ===
        self.intermediate_act_fn = get_activation(config.hidden_act)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.intermediate_act_fn(self.dense(hidden_states))  # (B, Q, I)


class BertOutput(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        # === Layers ===
        self.dense = nn.Linear(config.intermediate_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        hidden_states = self.dense(hidden_states)
        hidden_states = self.dropout(hidden_states)
        return self.LayerNorm(hidden_states + input_tensor)  # (B, Q, E)


class BertLayer(nn.Module):
    """Self-attention, cross-attention (decoders with ``add_cross_attention``), feed-forward."""

    def __init__(self, config: BertConfig):
        super().__init__()
        # === Config ===
        self.is_decoder = config.is_decoder
        self.add_cross_attention = config.add_cross_attention
        if self.add_cross_attention and not self.is_decoder:
            raise ValueError("add_cross_attention=True needs is_decoder=True in the BERT config")
        # === Layers ===
        self.attention = BertAttention(config)
        if self.add_cross_attention:
            self.crossattention = BertAttention(config)
        self.intermediate = BertIntermediate(config)
        self.output = BertOutput(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        head_mask: Optional[torch.Tensor] = None,
        encoder_hidden_states: Optional[torch.Tensor] = None,
        encoder_attention_mask: Optional[torch.Tensor] = None,
        past_key_value: Optional[Tuple[torch.Tensor, ...]] = None,
        output_attentions: bool = False,
    ):
        """Returns (hidden_states, present, self-attention probs, cross-attention probs)."""
        self_past = past_key_value[:2] if past_key_value is not None else None
        attn_output, present, self_probs = self.attention(
            hidden_states,
            attention_mask=attention_mask,
            head_mask=head_mask,
            past_key_value=self_past,
            output_attentions=output_attentions,
        )
        cross_probs = None
        if self.is_decoder and encoder_hidden_states is not None:
            if not self.add_cross_attention:
                raise ValueError(
                    "encoder_hidden_states were passed but this BERT has no cross-attention layers; "
                    "build it with is_decoder=True and add_cross_attention=True"
                )
            cross_past = past_key_value[2:4] if past_key_value is not None and len(past_key_value) == 4 else None
            attn_output, cross_present, cross_probs = self.crossattention(
                attn_output,
                attention_mask=encoder_attention_mask,
                head_mask=head_mask,
                encoder_hidden_states=encoder_hidden_states,
                past_key_value=cross_past,
                output_attentions=output_attentions,
            )
            present = present + cross_present
        layer_output = self.output(self.intermediate(attn_output), attn_output)
        return layer_output, present, self_probs, cross_probs


class BertEncoder(nn.Module):
    """The stack of ``BertLayer`` (named ``encoder`` inside ``BertModel``, as in the checkpoint)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        # === Layers ===
        self.layer = nn.ModuleList([BertLayer(config) for _ in range(config.num_hidden_layers)])
        # === Config ===
        self.config = config
        self.gradient_checkpointing = False

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        head_mask: Optional[torch.Tensor] = None,
        encoder_hidden_states: Optional[torch.Tensor] = None,
        encoder_attention_mask: Optional[torch.Tensor] = None,
        past_key_values: Optional[Tuple[Tuple[torch.Tensor, ...], ...]] = None,
        use_cache: bool = False,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ):
        """Returns (last hidden state, cache or None, hidden states or None, attentions or None,
        cross-attentions or None)."""
        checkpointing = self.gradient_checkpointing and self.training
        use_cache = use_cache and not checkpointing
        head_masks = layer_head_masks(head_mask, len(self.layer))
        all_hidden_states = () if output_hidden_states else None
        all_attentions = () if output_attentions else None
        all_cross = () if output_attentions and self.config.add_cross_attention else None
        presents = () if use_cache else None
        for i, layer_module in enumerate(self.layer):
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            layer_past = past_key_values[i] if past_key_values is not None else None
            args = (hidden_states, attention_mask, head_masks[i], encoder_hidden_states, encoder_attention_mask,
                    layer_past, output_attentions)
            if checkpointing:
                hidden_states, present, self_probs, cross_probs = checkpoint(layer_module, *args, use_reentrant=False)
            else:
                hidden_states, present, self_probs, cross_probs = layer_module(*args)
            if use_cache:
                presents += (present,)
            if output_attentions:
                all_attentions += (self_probs,)
                if all_cross is not None:
                    all_cross += (cross_probs,)
        if output_hidden_states:
            all_hidden_states += (hidden_states,)
        return hidden_states, presents, all_hidden_states, all_attentions, all_cross


class BertPooler(nn.Module):
    """tanh(dense(first token))."""

    def __init__(self, config: BertConfig):
        super().__init__()
        # === Layers ===
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.Tanh()

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.activation(self.dense(hidden_states[:, 0]))  # (B, E)


class BertPreTrainedModel(PreTrainedModel):
    """Initialisation shared by the BERT models: N(0, initializer_range), zero biases, unit norms."""

    config_class = BertConfig
    base_model_prefix = "bert"

    def _init_weights(self, module: nn.Module) -> None:
        init_module(module, self.config.initializer_range, zero_bias_types=(BertLMPredictionHead,))


class BaseModelForward:
    """``forward`` of the base models built on BERT's layer stack (BERT, RoBERTa, ELECTRA,
    BertGeneration): the model's ``embed``, the masks built once, the layers, then ``pooler`` when
    the model has one.
    ``cache_by_default``: whether ``use_cache=None`` falls back to ``config.use_cache`` (the
    reference's ElectraModel does not); ``inputs_embeds_width`` names the last axis of
    ``inputs_embeds`` in errors."""

    cache_by_default = True
    inputs_embeds_width = "hidden"

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
        config = self.config
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        return_dict = config.use_return_dict if return_dict is None else return_dict
        if use_cache is None:
            use_cache = config.use_cache if self.cache_by_default else False
        use_cache = use_cache and config.is_decoder

        if input_ids is not None and inputs_embeds is not None:
            raise ValueError("pass either input_ids or inputs_embeds, not both")
        if input_ids is None and inputs_embeds is None:
            raise ValueError("pass input_ids or inputs_embeds")
        check_rank(input_ids, 2, "input_ids")
        check_rank(inputs_embeds, 3, "inputs_embeds", f"(batch, length, {self.inputs_embeds_width})")
        check_rank(token_type_ids, 2, "token_type_ids")
        check_token_ids(input_ids, config.vocab_size, "input_ids")
        if token_type_ids is not None:  # (an architecture without token types never passes them)
            check_token_ids(token_type_ids, config.type_vocab_size, "token_type_ids")
        check_same_batch(
            input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
            encoder_hidden_states=encoder_hidden_states, encoder_attention_mask=encoder_attention_mask,
        )

        past_key_values = as_legacy_cache(past_key_values)
        past_len = past_length(past_key_values)
        embedding_output = self.embed(
            input_ids=input_ids,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
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
        pooled_output = self.pooler(sequence_output) if self.pooler is not None else None

        if not return_dict:
            # The reference's tuple order (cache before hidden states), Nones dropped.
            return tuple(
                v for v in (sequence_output, pooled_output, presents, all_hidden_states, all_attentions, all_cross)
                if v is not None
            )
        return BaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=sequence_output,
            pooler_output=pooled_output,
            hidden_states=all_hidden_states,
            past_key_values=presents,
            attentions=all_attentions,
            cross_attentions=all_cross,
        )



class BertModel(BaseModelForward, BertPreTrainedModel):
    """BERT: embeddings, layer stack, optional pooler. A decoder when ``config.is_decoder``.

    Args:
        config: a ``BertConfig``.
        add_pooling_layer: build ``pooler`` (the encoder of an ``EncoderDecoderModel`` has one).
    """

    _init_kwargs = ("add_pooling_layer",)

    def __init__(self, config: BertConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        # === Layers ===
        self.embeddings = BertEmbeddings(config)
        self.encoder = BertEncoder(config)
        self.pooler = BertPooler(config) if add_pooling_layer else None
        # === Config ===
        self.add_pooling_layer = add_pooling_layer
        self.post_init()

    def schema(self):
        from encdec.naming.schema import schema_for

        return schema_for(self.config, head="base", add_pooling_layer=self.add_pooling_layer)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    def embed(self, input_ids=None, token_type_ids=None, position_ids=None, inputs_embeds=None,
              past_key_values_length: int = 0) -> torch.Tensor:
        """The first layer's input (B, Q, E)."""
        return self.embeddings(
            input_ids=input_ids,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            inputs_embeds=inputs_embeds,
            past_key_values_length=past_key_values_length,
        )


class BertPredictionHeadTransform(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        # === Layers ===
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        # === Config ===
        self.transform_act_fn = get_activation(config.hidden_act)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.transform_act_fn(self.dense(hidden_states)))  # (B, Q, E)


class BertLMPredictionHead(nn.Module):
    """Transform, then ``decoder`` (weight tied to the word embeddings; its bias IS ``bias``)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        # === Layers ===
        self.transform = BertPredictionHeadTransform(config)
        self.decoder = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))
        # Both names are checkpoint keys of one tensor; the owner is `bias` (see the schema).
        self.decoder.bias = self.bias

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(hidden_states))  # (B, Q, V)


class BertOnlyMLMHead(nn.Module):
    def __init__(self, config: BertConfig):
        super().__init__()
        # === Layers ===
        self.predictions = BertLMPredictionHead(config)

    def forward(self, sequence_output: torch.Tensor) -> torch.Tensor:
        return self.predictions(sequence_output)


class CausalLMForward:
    """``forward`` of the LM-head decoders whose base model takes BERT's arguments (BERT, RoBERTa,
    ELECTRA; BertGeneration's, less token types): the base model under ``base_model_prefix``, then
    the decoder contract's ``decoder_logits``."""

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
        # token_type_ids only when given: a base model without token types (BertGeneration) has no such argument
        token_types = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        outputs = getattr(self, self.base_model_prefix)(
            input_ids,
            attention_mask=attention_mask,
            **token_types,
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
        logits = self.decoder_logits(outputs.last_hidden_state)  # (B, Q, V)
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


class BertLMHeadModel(CausalLMForward, BertPreTrainedModel):
    """BERT decoder: ``bert`` (no pooler) plus the ``cls`` LM head; causal when ``is_decoder``.

    Args:
        config: a ``BertConfig`` (``is_decoder=True``, and ``add_cross_attention=True`` inside an
            ``EncoderDecoderModel``).
    """

    schema_head = "causal_lm"

    def __init__(self, config: BertConfig):
        super().__init__(config)
        # === Layers ===
        self.bert = BertModel(config, add_pooling_layer=False)
        self.cls = BertOnlyMLMHead(config)
        self.post_init()

    # --- the decoder contract (docs/architectures.md) -------------------------------------------
    def decoder_embed(self, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """Token ids (N, Q) at ``position_ids`` (1|N, Q) -> layer input (N, Q, E)."""
        return self.bert.embeddings(input_ids=input_ids, position_ids=position_ids)

    def decoder_layers(self) -> nn.ModuleList:
        """The layers, each called ``layer(hidden, self_bias, head_mask, encoder_hidden_states,
        cross_bias, cache)`` with ``cache`` the 4-tuple ``(self_k, self_v, cross_k, cross_v)``."""
        return self.bert.encoder.layer

    def decoder_logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """The last layer's output (N, Q, E) -> next-token logits (N, Q, V)."""
        return self.cls(hidden_states)

    def tie_weights(self) -> None:
        head = self.cls.predictions
        if self.config.tie_word_embeddings:
            head.decoder.weight = self.bert.embeddings.word_embeddings.weight
        head.decoder.bias = head.bias

    def get_input_embeddings(self) -> nn.Embedding:
        return self.bert.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.bert.embeddings.word_embeddings = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.cls.predictions.decoder

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.cls.predictions.decoder = new_embeddings
        if new_embeddings.bias is not None:
            self.cls.predictions.bias = new_embeddings.bias
        self.tie_weights()

    def _set_resized_output(self, new: nn.Linear) -> None:
        self.cls.predictions.decoder = new

    def _resize_output_bias(self, n: int) -> None:
        old = self.cls.predictions.bias
        new = torch.zeros(n, dtype=old.dtype, device=old.device)
        keep = min(n, old.shape[0])
        new[:keep] = old.detach()[:keep]
        self.cls.predictions.bias = nn.Parameter(new)
