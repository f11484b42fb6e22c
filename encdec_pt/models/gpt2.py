"""GPT-2 (``GPT2Model``, ``GPT2LMHeadModel``), with cross-attention when ``add_cross_attention``.

Attribute names are the Hugging Face PyTorch state-dict keys. ``Conv1D`` keeps GPT-2's
``weight (in, out)`` layout, so checkpoints load without transposes.
Shapes use the legend of docs/architectures.md (B batch, Q/K query/key length, S encoder length,
H heads, D head dim, E hidden, V vocabulary, L cache length).

Cache (``past_key_values``): per block ``(self_k, self_v, cross_k, cross_v)`` with cross-attention,
``(self_k, self_v)`` without; each (B, H, T, D).
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from encdec.architectures.gpt2 import GPT2Config
from encdec_pt.activations import get_activation
from encdec_pt.layers import Conv1D
from encdec_pt.modeling_outputs import BaseModelOutputWithPoolingAndCrossAttentions, CausalLMOutputWithCrossAttentions
from encdec_pt.modeling_utils import (
    PreTrainedModel,
    append_key_value,
    as_legacy_cache,
    attend,
    causal_lm_loss,
    check_rank,
    check_same_batch,
    check_token_ids,
    cross_attention_bias,
    heads_first,
    init_module,
    layer_head_masks,
    past_length,
    self_attention_bias,
    split_heads,
)


class GPT2Attention(nn.Module):
    """Causal self-attention (``c_attn`` -> q, k, v), or cross-attention (``q_attn`` -> q from the
    decoder, ``c_attn`` -> k, v from the encoder) when ``is_cross_attention``."""

    def __init__(self, config: GPT2Config, is_cross_attention: bool = False, layer_idx: Optional[int] = None):
        super().__init__()
        # === Config ===
        self.embed_dim = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = self.embed_dim // self.num_heads
        self.split_size = self.embed_dim
        if self.head_dim * self.num_heads != self.embed_dim:
            raise ValueError(f"n_embd ({self.embed_dim}) is not a multiple of n_head ({self.num_heads})")
        self.is_cross_attention = is_cross_attention
        self.layer_idx = layer_idx
        scale = 1.0 / math.sqrt(self.head_dim) if config.scale_attn_weights else 1.0
        if config.scale_attn_by_inverse_layer_idx:
            scale = scale / float(layer_idx + 1)
        self.scale = scale
        # === Layers ===
        if is_cross_attention:
            self.c_attn = Conv1D(2 * self.embed_dim, self.embed_dim)
            self.q_attn = Conv1D(self.embed_dim, self.embed_dim)
        else:
            self.c_attn = Conv1D(3 * self.embed_dim, self.embed_dim)
        self.c_proj = Conv1D(self.embed_dim, self.embed_dim)
        self.attn_dropout = nn.Dropout(config.attn_pdrop)
        self.resid_dropout = nn.Dropout(config.resid_pdrop)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: Optional[torch.Tensor] = None,
        head_mask: Optional[torch.Tensor] = None,
        encoder_hidden_states: Optional[torch.Tensor] = None,
        past_key_value: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
        output_attentions: bool = False,
    ) -> Tuple[torch.Tensor, Tuple[torch.Tensor, torch.Tensor], Optional[torch.Tensor]]:
        """Returns (output (B, Q, E), present (key, value) each (B, H, K, D), probabilities (B, H, Q, K) or None).

        ``attention_mask`` is an additive bias broadcastable to (B, H, Q, K); for self-attention it
        already holds the causal mask, for cross-attention the encoder padding mask.
        """
        if self.is_cross_attention:
            if encoder_hidden_states is None:
                raise ValueError("cross-attention needs encoder_hidden_states")
            # (B, Q, E) -> (B, Q, H, D)
            query = split_heads(self.q_attn(hidden_states), self.num_heads)
            if past_key_value is not None:
                # The encoder's keys and values do not change while decoding: reuse them. (B, H, S, D)
                key, value = past_key_value[0], past_key_value[1]
            else:
                key, value = self.c_attn(encoder_hidden_states).split(self.split_size, dim=2)
                # (B, S, E) -> (B, H, S, D)
                key, value = heads_first(key, self.num_heads), heads_first(value, self.num_heads)
        else:
            query, key, value = self.c_attn(hidden_states).split(self.split_size, dim=2)
            # (B, Q, E) -> (B, Q, H, D) and (B, H, Q, D)
            query = split_heads(query, self.num_heads)
            key, value = heads_first(key, self.num_heads), heads_first(value, self.num_heads)
            key, value = append_key_value(key, value, past_key_value)  # (B, H, past + Q | L, D)
        present = (key, value)  # (B, H, K, D) each: the cache layout of every framework in this library

        dropout_p = self.attn_dropout.p if self.training else 0.0
        context, probs = attend(query, key, value, attention_mask, head_mask, self.scale, dropout_p, output_attentions)
        attn_output = self.resid_dropout(self.c_proj(context))
        return attn_output, present, probs


class GPT2MLP(nn.Module):
    def __init__(self, intermediate_size: int, config: GPT2Config):
        super().__init__()
        # === Layers ===
        self.c_fc = Conv1D(intermediate_size, config.hidden_size)
        self.c_proj = Conv1D(config.hidden_size, intermediate_size)
        self.dropout = nn.Dropout(config.resid_pdrop)
        # === Config ===
        self.act = get_activation(config.activation_function)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.act(self.c_fc(hidden_states))  # (B, Q, I)
        return self.dropout(self.c_proj(hidden_states))  # (B, Q, E)


class GPT2Block(nn.Module):
    """Pre-norm block: ln_1 -> attn, [ln_cross_attn -> crossattention], ln_2 -> mlp, each residual."""

    def __init__(self, config: GPT2Config, layer_idx: Optional[int] = None):
        super().__init__()
        hidden_size = config.hidden_size
        # === Layers ===
        self.ln_1 = nn.LayerNorm(hidden_size, eps=config.layer_norm_epsilon)
        self.attn = GPT2Attention(config, layer_idx=layer_idx)
        self.ln_2 = nn.LayerNorm(hidden_size, eps=config.layer_norm_epsilon)
        if config.add_cross_attention:
            self.crossattention = GPT2Attention(config, is_cross_attention=True, layer_idx=layer_idx)
            self.ln_cross_attn = nn.LayerNorm(hidden_size, eps=config.layer_norm_epsilon)
        self.mlp = GPT2MLP(config.inner_size, config)
        # === Config ===
        self.add_cross_attention = config.add_cross_attention

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
        attn_output, present, self_probs = self.attn(
            self.ln_1(hidden_states),
            attention_mask=attention_mask,
            head_mask=head_mask,
            past_key_value=past_key_value[:2] if past_key_value is not None else None,
            output_attentions=output_attentions,
        )
        hidden_states = attn_output + residual

        cross_probs = None
        if encoder_hidden_states is not None:
            if not self.add_cross_attention:
                raise ValueError(
                    "encoder_hidden_states were passed but this GPT-2 has no cross-attention layers; "
                    "build it with add_cross_attention=True"
                )
            residual = hidden_states
            cross_past = past_key_value[2:4] if past_key_value is not None and len(past_key_value) == 4 else None
            cross_output, cross_present, cross_probs = self.crossattention(
                self.ln_cross_attn(hidden_states),
                attention_mask=encoder_attention_mask,
                head_mask=head_mask,
                encoder_hidden_states=encoder_hidden_states,
                past_key_value=cross_past,
                output_attentions=output_attentions,
            )
            hidden_states = residual + cross_output
            present = present + cross_present

        residual = hidden_states
        hidden_states = residual + self.mlp(self.ln_2(hidden_states))
        return hidden_states, present, self_probs, cross_probs


class GPT2PreTrainedModel(PreTrainedModel):
    """GPT-2 initialisation: N(0, initializer_range), zero biases, unit norms, and the residual
    projections (``c_proj``) scaled by 1/sqrt(2 * n_layer) as in the GPT-2 paper."""

    config_class = GPT2Config
    base_model_prefix = "transformer"

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        init_module(module, std, linear_types=(nn.Linear, Conv1D))
        with torch.no_grad():
            for name, p in module.named_parameters():
                if name == "c_proj.weight":
                    p.normal_(mean=0.0, std=std / math.sqrt(2 * self.config.n_layer))


class GPT2Model(GPT2PreTrainedModel):
    """GPT-2: token and position embeddings, blocks, final ``ln_f``.

    Args:
        config: a ``GPT2Config``.
    """

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        # === Layers ===
        self.wte = nn.Embedding(config.vocab_size, config.hidden_size)
        self.wpe = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.drop = nn.Dropout(config.embd_pdrop)
        self.h = nn.ModuleList([GPT2Block(config, layer_idx=i) for i in range(config.num_hidden_layers)])
        self.ln_f = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_epsilon)
        # === Config ===
        self.gradient_checkpointing = False
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.wte

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.wte = value

    def forward(
        self,
        input_ids: Optional[torch.Tensor] = None,
        past_key_values=None,
        attention_mask: Optional[torch.Tensor] = None,
        token_type_ids: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.Tensor] = None,
        head_mask: Optional[torch.Tensor] = None,
        inputs_embeds: Optional[torch.Tensor] = None,
        encoder_hidden_states: Optional[torch.Tensor] = None,
        encoder_attention_mask: Optional[torch.Tensor] = None,
        use_cache: Optional[bool] = None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
    ):
        config = self.config
        output_attentions = config.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        return_dict = config.use_return_dict if return_dict is None else return_dict
        use_cache = config.use_cache if use_cache is None else use_cache
        checkpointing = self.gradient_checkpointing and self.training
        use_cache = use_cache and not checkpointing

        if input_ids is not None and inputs_embeds is not None:
            raise ValueError("pass either input_ids or inputs_embeds, not both")
        if input_ids is None and inputs_embeds is None:
            raise ValueError("pass input_ids or inputs_embeds")
        check_rank(input_ids, 2, "input_ids")
        check_rank(inputs_embeds, 3, "inputs_embeds", "(batch, length, hidden)")
        check_token_ids(input_ids, config.vocab_size, "input_ids")
        check_token_ids(token_type_ids, config.vocab_size, "token_type_ids")
        check_same_batch(
            input_ids=input_ids, inputs_embeds=inputs_embeds, attention_mask=attention_mask,
            encoder_hidden_states=encoder_hidden_states, encoder_attention_mask=encoder_attention_mask,
        )

        if inputs_embeds is None:
            inputs_embeds = self.wte(input_ids)  # (B, Q, E)
        batch_size, seq_length = inputs_embeds.shape[:2]
        dtype, device = inputs_embeds.dtype, inputs_embeds.device
        past_key_values = as_legacy_cache(past_key_values)
        past_len = past_length(past_key_values)
        if position_ids is None:
            if past_len + seq_length > config.max_position_embeddings:
                raise ValueError(
                    f"positions up to {past_len + seq_length} exceed n_positions={config.max_position_embeddings}"
                )
            # Positions continue after the cached ones.
            position_ids = torch.arange(past_len, past_len + seq_length, device=device)[None, :]  # (1, Q)
        hidden_states = inputs_embeds + self.wpe(position_ids)
        if token_type_ids is not None:
            hidden_states = hidden_states + self.wte(token_type_ids)
        hidden_states = self.drop(hidden_states)  # (B, Q, E)

        # Masks are built once here, as additive biases: (B|1, 1, Q, K) and (B, 1, 1, S).
        causal_mask = self_attention_bias(
            attention_mask, batch_size, seq_length, past_len, causal=True, dtype=dtype, device=device
        )
        encoder_bias = None
        if encoder_hidden_states is not None:
            encoder_bias = cross_attention_bias(encoder_attention_mask, dtype)
        head_masks = layer_head_masks(head_mask, len(self.h))

        presents = () if use_cache else None
        all_hidden_states = () if output_hidden_states else None
        all_attentions = () if output_attentions else None
        all_cross = () if output_attentions and config.add_cross_attention else None
        for i, block in enumerate(self.h):
            if output_hidden_states:
                all_hidden_states += (hidden_states,)
            layer_past = past_key_values[i] if past_key_values is not None else None
            args = (hidden_states, causal_mask, head_masks[i], encoder_hidden_states, encoder_bias, layer_past,
                    output_attentions)
            if checkpointing:
                hidden_states, present, self_probs, cross_probs = checkpoint(block, *args, use_reentrant=False)
            else:
                hidden_states, present, self_probs, cross_probs = block(*args)
            if use_cache:
                presents += (present,)
            if output_attentions:
                all_attentions += (self_probs,)
                if all_cross is not None:
                    all_cross += (cross_probs,)
        hidden_states = self.ln_f(hidden_states)
        if output_hidden_states:
            all_hidden_states += (hidden_states,)

        result = BaseModelOutputWithPoolingAndCrossAttentions(
            last_hidden_state=hidden_states,
            hidden_states=all_hidden_states,
            past_key_values=presents,
            attentions=all_attentions,
            cross_attentions=all_cross,
        )
        if not return_dict:
            # The reference's tuple order (cache before hidden states), Nones dropped.
            return tuple(
                v for v in (hidden_states, presents, all_hidden_states, all_attentions, all_cross) if v is not None
            )
        return result


class GPT2LMHeadModel(GPT2PreTrainedModel):
    """GPT-2 with ``lm_head`` (no bias; its weight is ``transformer.wte.weight``).

    Args:
        config: a ``GPT2Config`` (``add_cross_attention=True`` inside an ``EncoderDecoderModel``).
    """

    schema_head = "causal_lm"

    def __init__(self, config: GPT2Config):
        super().__init__(config)
        # === Layers ===
        self.transformer = GPT2Model(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    # --- the decoder contract (docs/architectures.md) -------------------------------------------
    def decoder_embed(self, input_ids: torch.Tensor, position_ids: torch.Tensor) -> torch.Tensor:
        """Token ids (N, Q) at ``position_ids`` (1|N, Q) -> layer input (N, Q, E)."""
        gpt2 = self.transformer
        return gpt2.drop(gpt2.wte(input_ids) + gpt2.wpe(position_ids))

    def decoder_layers(self) -> nn.ModuleList:
        """The blocks, each called ``block(hidden, self_bias, head_mask, encoder_hidden_states,
        cross_bias, cache)`` with ``cache`` the 4-tuple ``(self_k, self_v, cross_k, cross_v)``."""
        return self.transformer.h

    def decoder_logits(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """The last block's output (N, Q, E) -> next-token logits (N, Q, V) (``ln_f`` then ``lm_head``)."""
        return self.lm_head(self.transformer.ln_f(hidden_states))

    def tie_weights(self) -> None:
        if self.config.tie_word_embeddings:
            self.lm_head.weight = self.transformer.wte.weight

    def get_input_embeddings(self) -> nn.Embedding:
        return self.transformer.wte

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.transformer.wte = value

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
        past_key_values=None,
        attention_mask: Optional[torch.Tensor] = None,
        token_type_ids: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.Tensor] = None,
        head_mask: Optional[torch.Tensor] = None,
        inputs_embeds: Optional[torch.Tensor] = None,
        encoder_hidden_states: Optional[torch.Tensor] = None,
        encoder_attention_mask: Optional[torch.Tensor] = None,
        labels: Optional[torch.Tensor] = None,
        use_cache: Optional[bool] = None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
    ):
        """``labels`` gives the stand-alone next-token loss (logits[:, :-1] vs labels[:, 1:])."""
        return_dict = self.config.use_return_dict if return_dict is None else return_dict
        outputs = self.transformer(
            input_ids,
            past_key_values=past_key_values,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            position_ids=position_ids,
            head_mask=head_mask,
            inputs_embeds=inputs_embeds,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
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
