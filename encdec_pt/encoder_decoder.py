"""``EncoderDecoderModel``: a pretrained encoder (BERT-like) and a causal decoder with cross-attention.

Semantics shared with the TF and Flax classes (``docs/semantics.md``):
- ``labels`` -> ``decoder_input_ids`` by ``shift_tokens_right`` (start token first, -100 -> pad);
- loss = mean cross-entropy over labels != -100, a scalar;
- with ``labels`` and no ``decoder_attention_mask``, the mask is derived from the labels: position 0
  (the start token) is always attended, position t>0 is masked exactly when ``labels[:, t-1]`` is
  -100 (a pad that came from an ignored label). Unlike the reference we never mask the start token
  when it equals the pad id.
"""

from __future__ import annotations

import inspect
from typing import Any, Optional

import torch
from torch import nn

from encdec.configuration import EncoderDecoderConfig, PretrainedConfig
from encdec.loading import load_encoder_decoder_pretrained
from encdec.naming.schema import needs_enc_to_dec_proj, schema_for
from encdec.registry import check_decoder_contract
from encdec_pt.generation.utils import GenerationMixin
from encdec_pt.modeling_outputs import BaseModelOutputWithPoolingAndCrossAttentions, Seq2SeqLMOutput
from encdec_pt.modeling_utils import (
    PreTrainedModel,
    TorchLoader,
    check_rank,
    check_same_batch,
    check_token_ids,
    set_parameter,
    token_cross_entropy,
)
from encdec_pt.models.auto import AutoModel, AutoModelForCausalLM

# What generation and the static cache call on a decoder (docs/architectures.md).
DECODER_CONTRACT = ("decoder_embed", "decoder_layers", "decoder_logits")


def shift_tokens_right(input_ids: torch.Tensor, pad_token_id: Optional[int],
                       decoder_start_token_id: Optional[int]) -> torch.Tensor:
    """Decoder inputs from labels: ``decoder_start_token_id`` first, then ``input_ids[:, :-1]``,
    with -100 replaced by ``pad_token_id``. Raises ``ValueError`` naming a missing config id."""
    if decoder_start_token_id is None:
        raise ValueError("Make sure to set the decoder_start_token_id attribute of the model's configuration.")
    if pad_token_id is None:
        raise ValueError("Make sure to set the pad_token_id attribute of the model's configuration.")
    shifted = input_ids.new_zeros(input_ids.shape)
    shifted[:, 1:] = input_ids[:, :-1].clone()
    shifted[:, 0] = decoder_start_token_id
    return shifted.masked_fill(shifted == -100, pad_token_id)


def decoder_attention_mask_from_labels(labels: torch.Tensor) -> torch.Tensor:
    """1 at position 0 (the start token), then ``labels[:, :-1] != -100``: (B, T) long."""
    mask = torch.ones_like(labels)
    mask[:, 1:] = (labels[:, :-1] != -100).long()
    return mask


class EncoderDecoderModel(PreTrainedModel, GenerationMixin):
    """An encoder (``AutoModel``) and a decoder with cross-attention (``AutoModelForCausalLM``).

    Args:
        config: an ``EncoderDecoderConfig``; sub-models are built from it when not given.
        encoder: a ready encoder (no LM head), e.g. ``BertModel``.
        decoder: a ready causal LM built with ``is_decoder=True, add_cross_attention=True``.

    ``enc_to_dec_proj`` (a Linear initialised N(0, decoder.initializer_range), bias 0) maps encoder
    states to the decoder width when the hidden sizes differ. With ``config.tie_encoder_decoder``
    the encoder's parameters ARE the decoder base model's (same Parameter objects).
    """

    config_class = EncoderDecoderConfig
    base_model_prefix = "encoder_decoder"

    def __init__(self, config: Optional[EncoderDecoderConfig] = None, encoder: Optional[PreTrainedModel] = None,
                 decoder: Optional[PreTrainedModel] = None):
        if config is None and (encoder is None or decoder is None):
            raise ValueError("Either a configuration or an encoder and a decoder has to be provided.")
        if config is None:
            config = EncoderDecoderConfig.from_encoder_decoder_configs(encoder.config, decoder.config)
        elif not isinstance(config, EncoderDecoderConfig):
            raise ValueError(f"config must be an EncoderDecoderConfig, got {type(config).__name__}")
        super().__init__(config)

        # === Layers ===
        if encoder is None:
            encoder = AutoModel.from_config(config.encoder)
        if decoder is None:
            decoder = AutoModelForCausalLM.from_config(config.decoder)
        if encoder.get_output_embeddings() is not None:
            raise ValueError(
                f"The encoder {type(encoder).__name__} should not have a LM head: pass a base model such as "
                "BertModel (AutoModel), not a model with an output layer"
            )
        check_decoder_contract(decoder, DECODER_CONTRACT)
        if "encoder_hidden_states" not in inspect.signature(decoder.forward).parameters:
            raise ValueError(
                f"The selected decoder {type(decoder).__name__} is not prepared for the encoder hidden states: "
                "its forward takes no `encoder_hidden_states`; use a causal LM with cross-attention "
                "(BertLMHeadModel, GPT2LMHeadModel)"
            )
        if not getattr(decoder.config, "add_cross_attention", False):
            raise ValueError(
                f"The decoder {type(decoder).__name__} has no cross-attention layers: build it with "
                "is_decoder=True and add_cross_attention=True (from_encoder_decoder_pretrained does this)"
            )
        self.encoder = encoder
        self.decoder = decoder
        # One config object per side, shared by the composite and every module of that side.
        _share_config(self.encoder, self.config.encoder)
        _share_config(self.decoder, self.config.decoder)
        if needs_enc_to_dec_proj(config):
            self.enc_to_dec_proj = nn.Linear(config.encoder.hidden_size, config.decoder.hidden_size)
            self._init_enc_to_dec_proj()
        else:
            self.enc_to_dec_proj = None
        self.tie_weights()

    def _init_enc_to_dec_proj(self) -> None:
        with torch.no_grad():
            self.enc_to_dec_proj.weight.normal_(mean=0.0, std=self.config.decoder.initializer_range)
            self.enc_to_dec_proj.bias.zero_()

    def _init_weights(self, module: nn.Module) -> None:
        self.decoder._init_weights(module)

    def schema(self):
        return schema_for(self.config)

    def tie_weights(self) -> None:
        """Ties inside each side, then (``tie_encoder_decoder``) encoder params := decoder base params."""
        self.encoder.tie_weights()
        self.decoder.tie_weights()
        if self.config.tie_encoder_decoder:
            params = self._all_parameters()
            for tied, owner in self.schema().ties().items():
                if tied.startswith("encoder."):
                    set_parameter(self, tied, params[owner])

    # --- accessors -----------------------------------------------------------------------------
    def get_encoder(self) -> PreTrainedModel:
        return self.encoder

    def get_decoder(self) -> PreTrainedModel:
        return self.decoder

    def get_input_embeddings(self) -> nn.Embedding:
        return self.encoder.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.encoder.set_input_embeddings(value)
        self.tie_weights()

    def get_output_embeddings(self) -> nn.Module:
        return self.decoder.get_output_embeddings()

    def set_output_embeddings(self, new_embeddings: nn.Module) -> None:
        self.decoder.set_output_embeddings(new_embeddings)

    def resize_token_embeddings(self, new_num_tokens: Optional[int] = None, pad_to_multiple_of: Optional[int] = None,
                                side: str = "decoder") -> nn.Embedding:
        """Resize the vocabulary of the ``"decoder"`` (default), the ``"encoder"`` or ``"both"``
        (``new_num_tokens`` / ``pad_to_multiple_of`` as in the reference's sub-models; the
        reference's composite raises ``NotImplementedError`` instead).

        With ``tie_encoder_decoder`` both sides share embeddings, so both are resized.
        Returns the resized input embeddings of the (last) side.
        """
        if side not in ("decoder", "encoder", "both"):
            raise ValueError(f"side must be 'decoder', 'encoder' or 'both', got {side!r}")
        if self.config.tie_encoder_decoder:
            side = "decoder"  # the encoder's embeddings are the decoder's
        out = None
        if side in ("encoder", "both"):
            out = self.encoder.resize_token_embeddings(new_num_tokens, pad_to_multiple_of=pad_to_multiple_of)
        if side in ("decoder", "both"):
            out = self.decoder.resize_token_embeddings(new_num_tokens, pad_to_multiple_of=pad_to_multiple_of)
        if self.config.tie_encoder_decoder:
            self.config.encoder.vocab_size = out.num_embeddings
        self.tie_weights()
        return out

    def prepare_decoder_input_ids_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        return shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)

    # --- forward -------------------------------------------------------------------------------
    def forward(
        self,
        input_ids: Optional[torch.Tensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        decoder_input_ids: Optional[torch.Tensor] = None,
        decoder_attention_mask: Optional[torch.Tensor] = None,
        encoder_outputs: Any = None,
        past_key_values: Any = None,
        inputs_embeds: Optional[torch.Tensor] = None,
        decoder_inputs_embeds: Optional[torch.Tensor] = None,
        labels: Optional[torch.Tensor] = None,
        use_cache: Optional[bool] = None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        **kwargs: Any,
    ):
        """Encode (unless ``encoder_outputs`` is given), decode, and compute the loss from ``labels``.

        ``decoder_``-prefixed kwargs go to the decoder (prefix stripped), the others to the
        encoder (e.g. ``token_type_ids``). ``encoder_outputs`` may be an output object or a tuple
        whose first item is the last hidden state. Returns a ``Seq2SeqLMOutput``, or with
        ``return_dict=False`` the tuple ``(loss?,) + decoder tuple + encoder tuple`` of the reference
        (the encoder tuple includes BERT's pooler output).
        """
        return_dict = self.config.use_return_dict if return_dict is None else return_dict
        kwargs_encoder = {k: v for k, v in kwargs.items() if not k.startswith("decoder_")}
        kwargs_decoder = {k[len("decoder_"):]: v for k, v in kwargs.items() if k.startswith("decoder_")}
        # Accepted for Trainer compatibility; the loss is a mean over this batch's tokens.
        kwargs_encoder.pop("num_items_in_batch", None)

        self._check_inputs(input_ids, attention_mask, inputs_embeds, decoder_input_ids, decoder_attention_mask,
                           decoder_inputs_embeds, labels, encoder_outputs)

        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                input_ids=input_ids,
                attention_mask=attention_mask,
                inputs_embeds=inputs_embeds,
                output_attentions=output_attentions,
                output_hidden_states=output_hidden_states,
                return_dict=True,
                **kwargs_encoder,
            )
            encoder_tuple = encoder_outputs.to_tuple()
        elif isinstance(encoder_outputs, torch.Tensor):
            encoder_tuple = (encoder_outputs,)
            encoder_outputs = BaseModelOutputWithPoolingAndCrossAttentions(last_hidden_state=encoder_outputs)
        elif isinstance(encoder_outputs, (tuple, list)):
            # A tuple is kept as given for the tuple output; only its first item is interpreted.
            encoder_tuple = tuple(encoder_outputs)
            encoder_outputs = BaseModelOutputWithPoolingAndCrossAttentions(last_hidden_state=encoder_outputs[0])
        else:
            encoder_tuple = encoder_outputs.to_tuple()

        encoder_hidden_states = encoder_outputs.last_hidden_state  # (B, S, E_enc)
        if self.enc_to_dec_proj is not None:
            encoder_hidden_states = self.enc_to_dec_proj(encoder_hidden_states)  # (B, S, E_dec)

        if labels is not None:
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                decoder_input_ids = shift_tokens_right(
                    labels, self.config.pad_token_id, self.config.decoder_start_token_id
                )
            if decoder_attention_mask is None:
                decoder_attention_mask = decoder_attention_mask_from_labels(labels)

        decoder_outputs = self.decoder(
            input_ids=decoder_input_ids,
            attention_mask=decoder_attention_mask,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=attention_mask,
            inputs_embeds=decoder_inputs_embeds,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            use_cache=use_cache,
            past_key_values=past_key_values,
            return_dict=True,
            **kwargs_decoder,
        )
        logits = decoder_outputs.logits  # (B, T, V)

        loss = None
        if labels is not None:
            loss = token_cross_entropy(logits, labels)

        if not return_dict:
            outputs = decoder_outputs.to_tuple() + encoder_tuple
            return ((loss,) + outputs) if loss is not None else outputs
        return Seq2SeqLMOutput(
            loss=loss,
            logits=logits,
            past_key_values=decoder_outputs.past_key_values,
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )

    def _check_inputs(self, input_ids, attention_mask, inputs_embeds, decoder_input_ids, decoder_attention_mask,
                      decoder_inputs_embeds, labels, encoder_outputs) -> None:
        """Clear errors for wrong ranks, batch-size mismatches and out-of-vocabulary ids."""
        check_rank(input_ids, 2, "input_ids")
        check_rank(attention_mask, 2, "attention_mask")
        check_rank(inputs_embeds, 3, "inputs_embeds", "(batch, length, hidden)")
        check_rank(decoder_input_ids, 2, "decoder_input_ids")
        check_rank(decoder_inputs_embeds, 3, "decoder_inputs_embeds", "(batch, length, hidden)")
        check_rank(labels, 2, "labels")
        if decoder_attention_mask is not None and decoder_attention_mask.dim() not in (2, 3):
            raise ValueError(
                f"decoder_attention_mask must have 2 dimensions (batch, length), got shape "
                f"{tuple(decoder_attention_mask.shape)}"
            )
        encoder_states = None
        if encoder_outputs is not None:
            encoder_states = encoder_outputs if isinstance(encoder_outputs, torch.Tensor) else encoder_outputs[0]
            check_rank(encoder_states, 3, "encoder_outputs[0]", "(batch, length, hidden)")
        check_same_batch(
            input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
            encoder_outputs=encoder_states, decoder_input_ids=decoder_input_ids,
            decoder_attention_mask=decoder_attention_mask, decoder_inputs_embeds=decoder_inputs_embeds, labels=labels,
        )
        decoder_source = decoder_input_ids if decoder_input_ids is not None else decoder_inputs_embeds
        if labels is not None and decoder_source is not None and labels.shape[:2] != decoder_source.shape[:2]:
            raise ValueError(
                f"labels have shape {tuple(labels.shape)} but the decoder input has shape "
                f"{tuple(decoder_source.shape)}; labels must be (batch, decoder length)"
            )
        source = input_ids if input_ids is not None else inputs_embeds
        if attention_mask is not None and source is not None and attention_mask.shape[:2] != source.shape[:2]:
            raise ValueError(
                f"attention_mask has shape {tuple(attention_mask.shape)} but the encoder input has shape "
                f"{tuple(source.shape)}"
            )
        check_token_ids(input_ids, self.config.encoder.vocab_size, "input_ids")
        check_token_ids(decoder_input_ids, self.config.decoder.vocab_size, "decoder_input_ids")
        if labels is not None:
            check_token_ids(labels.masked_fill(labels == -100, 0), self.config.decoder.vocab_size, "labels")

    # --- building from pretrained parts --------------------------------------------------------
    @classmethod
    def from_encoder_decoder_pretrained(
        cls,
        encoder_pretrained_model_name_or_path: Optional[str] = None,
        decoder_pretrained_model_name_or_path: Optional[str] = None,
        *model_args: Any,
        **kwargs: Any,
    ) -> "EncoderDecoderModel":
        """Warm-start from a pretrained encoder and decoder (``encdec.loading.load_encoder_decoder_pretrained``).

        ``encoder_*`` / ``decoder_*`` kwargs go to that side with the prefix stripped: ``model``
        (a ready instance), ``config``, ``from_pt`` / ``from_tf`` / ``from_flax``, hub arguments, and
        config overrides (``encoder_hidden_dropout_prob=0.33``). Top-level names such as
        ``decoder_start_token_id`` go to the ``EncoderDecoderConfig``; ``torch_dtype`` / ``dtype``
        cast the whole model; ``output_loading_info=True`` also returns the load-info dict.
        The encoder's config is reset to ``is_decoder=False`` / ``add_cross_attention=False``, the
        decoder's gets both True; the weights no checkpoint holds (cross-attention, ``enc_to_dec_proj``)
        are initialised and reported in one line per group on the ``encdec`` logger, any other
        missing weight in a warning that names it. Returns the model in eval mode.
        """
        dtype = kwargs.pop("torch_dtype", None)
        dtype = kwargs.pop("dtype", dtype)
        loaded, args = load_encoder_decoder_pretrained(
            TorchLoader(dtype), cls, encoder_pretrained_model_name_or_path, decoder_pretrained_model_name_or_path,
            model_args, kwargs,
        )
        model = loaded.model
        model.eval()
        return (model, loaded.info) if args.output_loading_info else model


def _share_config(model: nn.Module, config: PretrainedConfig) -> None:
    """Point every module that held ``model.config`` at ``config`` (the composite's sub-config)."""
    old = model.config
    for module in model.modules():
        if getattr(module, "config", None) is old:
            module.config = config
