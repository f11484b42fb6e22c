"""BART's decoder (``BartForCausalLM``) and mBART's (``MBartForCausalLM``) as decoders with
cross-attention.

Attribute names are the Hugging Face PyTorch state-dict keys (``model.decoder.layers.0.encoder_attn.k_proj``),
so the module tree *is* the checkpoint layout. BART's layers normalise after each sublayer, mBART's
before (``config.pre_norm``), and mBART's decoder ends with ``layer_norm``.
Shapes use the legend of docs/architectures.md (B batch, Q/K query/key length, S encoder length,
H heads, D head dim, E d_model, I ffn size, V vocabulary, L cache length).

Cache (``past_key_values``): per layer ``(self_k, self_v, cross_k, cross_v)``, each (B, H, T, D),
sized by the decoder's own ``decoder_layers``.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from encdec.architectures.bart import POSITION_OFFSET, BartConfig, MBartConfig
from encdec_pt.activations import get_activation
from encdec_pt.modeling_outputs import CausalLMOutputWithCrossAttentions
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


class BartLearnedPositionalEmbedding(nn.Embedding):
    """Learned positions; position p is row p + 2 (two leading rows, a fairseq legacy)."""

    def __init__(self, num_embeddings: int, embedding_dim: int):
        super().__init__(num_embeddings + POSITION_OFFSET, embedding_dim)

    def forward(self, position_ids: torch.Tensor) -> torch.Tensor:
        return super().forward(position_ids + POSITION_OFFSET)  # (1|B, Q, E)


class BartAttention(nn.Module):
    """Multi-head attention: self-attention, or cross-attention when ``encoder_hidden_states`` is given."""

    def __init__(self, config: BartConfig):
        super().__init__()
        embed_dim, num_heads = config.d_model, config.decoder_attention_heads
        if embed_dim % num_heads != 0:
            raise ValueError(f"d_model ({embed_dim}) is not a multiple of decoder_attention_heads ({num_heads})")
        # === Config ===
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.dropout_p = config.attention_dropout
        # === Layers ===
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        head_mask: Optional[torch.Tensor] = None,
        encoder_hidden_states: Optional[torch.Tensor] = None,
        past_key_value: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
        output_attentions: bool = False,
    ) -> Tuple[torch.Tensor, Tuple[torch.Tensor, torch.Tensor], Optional[torch.Tensor]]:
        """Returns (attn_output (B, Q, E), present (key, value) each (B, H, K, D), probs (B, H, Q, K) or None).

        ``attention_mask`` is an additive bias broadcastable to (B, H, Q, K).
        """
        # (B, Q, E) -> (B, Q, H, D)
        query = split_heads(self.q_proj(hidden_states), self.num_heads)
        # (B, H, K, D) each
        key, value = keys_and_values(self.k_proj, self.v_proj, self.num_heads, hidden_states,
                                     encoder_hidden_states, past_key_value, encoder_hidden_states is not None)
        present = (key, value)  # (B, H, K, D) each: the cache layout of every framework in this library

        dropout_p = self.dropout_p if self.training else 0.0
        # BART returns the probabilities before dropout, as the reference does
        context, probs = attend(query, key, value, attention_mask, head_mask, self.scale, dropout_p, output_attentions,
                                probs_after_dropout=False)
        attn_output = self.out_proj(context)
        return attn_output, present, probs


class BartDecoderLayer(nn.Module):
    """Self-attention, cross-attention, feed-forward; each a residual block normalised after
    (BART) or before (mBART, ``config.pre_norm``)."""

    def __init__(self, config: BartConfig):
        super().__init__()
        d = config.d_model
        # === Config ===
        self.pre_norm = config.pre_norm
        self.dropout_p = config.dropout
        self.activation_dropout_p = config.activation_dropout
        self.activation_fn = get_activation(config.activation_function)
        # === Layers ===
        self.self_attn = BartAttention(config)
        self.self_attn_layer_norm = nn.LayerNorm(d)
        self.encoder_attn = BartAttention(config)
        self.encoder_attn_layer_norm = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, config.decoder_ffn_dim)
        self.fc2 = nn.Linear(config.decoder_ffn_dim, d)
        self.final_layer_norm = nn.LayerNorm(d)

    def _dropout(self, x: torch.Tensor) -> torch.Tensor:
        return F.dropout(x, p=self.dropout_p, training=self.training)

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
        residual = hidden_states
        if self.pre_norm:
            hidden_states = self.self_attn_layer_norm(hidden_states)
        self_past = past_key_value[:2] if past_key_value is not None else None
        attn_output, present, self_probs = self.self_attn(
            hidden_states, attention_mask=attention_mask, head_mask=head_mask, past_key_value=self_past,
            output_attentions=output_attentions,
        )
        hidden_states = residual + self._dropout(attn_output)
        if not self.pre_norm:
            hidden_states = self.self_attn_layer_norm(hidden_states)

        cross_probs = None
        if encoder_hidden_states is not None:
            residual = hidden_states
            if self.pre_norm:
                hidden_states = self.encoder_attn_layer_norm(hidden_states)
            cross_past = past_key_value[2:4] if past_key_value is not None and len(past_key_value) == 4 else None
            attn_output, cross_present, cross_probs = self.encoder_attn(
                hidden_states, attention_mask=encoder_attention_mask, head_mask=head_mask,
                encoder_hidden_states=encoder_hidden_states, past_key_value=cross_past, output_attentions=output_attentions,
            )
            hidden_states = residual + self._dropout(attn_output)
            if not self.pre_norm:
                hidden_states = self.encoder_attn_layer_norm(hidden_states)
            present = present + cross_present

        residual = hidden_states
        if self.pre_norm:
            hidden_states = self.final_layer_norm(hidden_states)
        hidden_states = self.activation_fn(self.fc1(hidden_states))  # (B, Q, I)
        hidden_states = F.dropout(hidden_states, p=self.activation_dropout_p, training=self.training)
        hidden_states = residual + self._dropout(self.fc2(hidden_states))  # (B, Q, E)
        if not self.pre_norm:
            hidden_states = self.final_layer_norm(hidden_states)
        return hidden_states, present, self_probs, cross_probs


class BartDecoder(nn.Module):
    """Scaled token embeddings + learned positions, ``layernorm_embedding``, the layers, and
    (mBART) the final ``layer_norm``."""

    def __init__(self, config: BartConfig):
        super().__init__()
        # === Config ===
        self.config = config
        self.embed_scale = config.embed_scale
        self.max_position_embeddings = config.max_position_embeddings
        self.gradient_checkpointing = False
        # === Layers ===
        self.embed_tokens = nn.Embedding(config.vocab_size, config.d_model, padding_idx=config.pad_token_id)
        self.embed_positions = BartLearnedPositionalEmbedding(config.max_position_embeddings, config.d_model)
        self.layernorm_embedding = nn.LayerNorm(config.d_model)
        self.layers = nn.ModuleList([BartDecoderLayer(config) for _ in range(config.decoder_layers)])
        self.layer_norm = nn.LayerNorm(config.d_model) if config.pre_norm else None

    def embed(self, input_ids: Optional[torch.Tensor], position_ids: torch.Tensor,
              inputs_embeds: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Token ids (B, Q) (or their embeddings) at ``position_ids`` (1|B, Q) -> first layer input (B, Q, E)."""
        if inputs_embeds is None:
            inputs_embeds = self.embed_tokens(input_ids) * self.embed_scale  # (B, Q, E)
        hidden_states = inputs_embeds + self.embed_positions(position_ids)
        hidden_states = self.layernorm_embedding(hidden_states)
        return F.dropout(hidden_states, p=self.config.dropout, training=self.training)

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
        use_cache: bool = False,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
    ):
        """Returns (last hidden state, cache or None, hidden states or None, attentions or None,
        cross-attentions or None)."""
        config = self.config
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
        seq_length = (input_ids if input_ids is not None else inputs_embeds).shape[1]
        device = (input_ids if input_ids is not None else inputs_embeds).device
        if position_ids is None:
            if past_len + seq_length > self.max_position_embeddings:
                raise ValueError(
                    f"positions up to {past_len + seq_length} exceed max_position_embeddings={self.max_position_embeddings}"
                )
            # Positions continue after the cached ones.
            position_ids = torch.arange(past_len, past_len + seq_length, device=device)[None, :]  # (1, Q)
        hidden_states = self.embed(input_ids, position_ids, inputs_embeds)  # (B, Q, E)
        batch_size, dtype = hidden_states.shape[0], hidden_states.dtype

        # Masks are built once here, as additive biases: (B|1, 1, Q, K) and (B, 1, 1, S).
        self_bias = self_attention_bias(attention_mask, batch_size, seq_length, past_len, causal=True, dtype=dtype,
                                        device=device)
        cross_bias = cross_attention_bias(encoder_attention_mask, dtype) if encoder_hidden_states is not None else None

        checkpointing = self.gradient_checkpointing and self.training
        use_cache = use_cache and not checkpointing
        head_masks = layer_head_masks(head_mask, len(self.layers))
        all_hidden_states = () if output_hidden_states else None
        all_attentions = () if output_attentions else None
        all_cross = () if output_attentions and encoder_hidden_states is not None else None
        presents = () if use_cache else None
        for i, layer in enumerate(self.layers):
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            layer_past = past_key_values[i] if past_key_values is not None else None
            args = (hidden_states, self_bias, head_masks[i], encoder_hidden_states, cross_bias, layer_past,
                    output_attentions)
            if checkpointing:
                hidden_states, present, self_probs, cross_probs = checkpoint(layer, *args, use_reentrant=False)
            else:
                hidden_states, present, self_probs, cross_probs = layer(*args)
            if use_cache:
                presents += (present,)
            if output_attentions:
                all_attentions += (self_probs,)
                if all_cross is not None:
                    all_cross += (cross_probs,)
        if self.layer_norm is not None:
            hidden_states = self.layer_norm(hidden_states)
        if output_hidden_states:
            all_hidden_states += (hidden_states,)
        return hidden_states, presents, all_hidden_states, all_attentions, all_cross


class BartDecoderWrapper(nn.Module):
    """``model`` of the causal LM: holds ``decoder`` so the keys read ``model.decoder.*`` as in the reference."""

    def __init__(self, config: BartConfig):
        super().__init__()
        # === Layers ===
        self.decoder = BartDecoder(config)

    def forward(self, *args, **kwargs):
        return self.decoder(*args, **kwargs)


class BartForCausalLM(PreTrainedModel):
    """BART's decoder with its LM head: ``model.decoder`` plus ``lm_head`` (tied to ``embed_tokens``).

    Args:
        config: a ``BartConfig`` (an ``MBartConfig`` for ``MBartForCausalLM``).
    """

    config_class = BartConfig
    base_model_prefix = "model"
    schema_head = "causal_lm"

    def __init__(self, config: BartConfig):
        super().__init__(config)
        # === Layers ===
        self.model = BartDecoderWrapper(config)
        self.lm_head = nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        init_module(module, self.config.init_std)

    # --- the decoder contract (docs/architectures.md) -------------------------------------------
    def decoder_embed(self, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """Token ids (N, Q) at ``position_ids`` (1|N, Q) -> layer input (N, Q, E)."""
        return self.model.decoder.embed(input_ids, position_ids)

    def decoder_layers(self) -> nn.ModuleList:
        """The layers, each called ``layer(hidden, self_bias, head_mask, encoder_hidden_states,
        cross_bias, cache)`` with ``cache`` the 4-tuple ``(self_k, self_v, cross_k, cross_v)``."""
        return self.model.decoder.layers

    def decoder_logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """The last layer's output (N, Q, E) -> next-token logits (N, Q, V), mBART's final norm included."""
        if self.model.decoder.layer_norm is not None:
            hidden_states = self.model.decoder.layer_norm(hidden_states)
        return self.lm_head(hidden_states)

    def tie_weights(self) -> None:
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.model.decoder.embed_tokens.weight

    def get_input_embeddings(self) -> nn.Embedding:
        return self.model.decoder.embed_tokens

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.model.decoder.embed_tokens = value

    def get_output_embeddings(self) -> nn.Linear:
        return self.lm_head

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.lm_head = new_embeddings
        self.tie_weights()

    def _set_resized_output(self, new: nn.Linear) -> None:
        self.lm_head = new

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
        config = self.config
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        return_dict = config.use_return_dict if return_dict is None else return_dict
        use_cache = (config.use_cache if use_cache is None else use_cache) and labels is None
        hidden_states, presents, all_hidden_states, all_attentions, all_cross = self.model.decoder(
            input_ids=input_ids,
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
        )
        logits = self.lm_head(hidden_states)  # (B, Q, V)
        loss = causal_lm_loss(logits, labels) if labels is not None else None
        result = CausalLMOutputWithCrossAttentions(
            loss=loss,
            logits=logits,
            past_key_values=presents,
            hidden_states=all_hidden_states,
            attentions=all_attentions,
            cross_attentions=all_cross,
        )
        return result if return_dict else result.to_tuple()


class MBartForCausalLM(BartForCausalLM):
    """mBART's decoder with its LM head: BART's modules with pre-norm layers and a final ``layer_norm``
    (both follow from ``MBartConfig``)."""

    config_class = MBartConfig
