"""``TFEncoderDecoderModel``: a pretrained encoder and a causal-LM decoder with cross-attention.

Mirrors ``encdec_pt/encoder_decoder.py``: the same constructor paths and checks, kwarg
routing, label shift, derived decoder mask, loss, outputs and cache, with Keras idioms on top
(``call(..., training=False)``, ``compile`` / ``fit`` on the internal loss).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any, Dict, Optional

import keras
import tensorflow as tf

from encdec.configuration import EncoderDecoderConfig
from encdec.loading import load_encoder_decoder_pretrained
from encdec.naming.schema import needs_enc_to_dec_proj
from encdec.registry import architecture, check_decoder_contract
from encdec_tf.generation import TFGenerationMixin
from encdec_tf.layers import Dense
from encdec_tf.modeling_outputs import ModelOutput, TFBaseModelOutputWithPoolingAndCrossAttentions, TFSeq2SeqLMOutput
from encdec_tf.modeling_utils import (
    TFLoader,
    TFPreTrainedModel,
    as_int_tensor,
    check_ids,
    check_labels,
    masked_lm_loss,
    normal_init,
    share_variables,
)
from encdec_tf.models.auto import TFAutoModel, TFAutoModelForCausalLM

logger = logging.getLogger(__name__)

# What generation and the static cache call on a decoder (docs/architectures.md).
DECODER_CONTRACT = ("decoder_embed", "decoder_layers", "decoder_logits", "cross_key_value")


def shift_tokens_right(labels: tf.Tensor, pad_token_id: Optional[int], decoder_start_token_id: Optional[int]) -> tf.Tensor:
    """Decoder inputs from labels: start token first, then labels[:, :-1], -100 -> pad."""
    if decoder_start_token_id is None:
        raise ValueError("Make sure to set the decoder_start_token_id attribute of the model's configuration.")
    if pad_token_id is None:
        raise ValueError("Make sure to set the pad_token_id attribute of the model's configuration.")
    start_tokens = tf.fill((tf.shape(labels)[0], 1), tf.cast(decoder_start_token_id, labels.dtype))
    shifted = tf.concat([start_tokens, labels[:, :-1]], axis=1)  # (b, q)
    return tf.where(shifted == -100, tf.cast(pad_token_id, labels.dtype), shifted)


def decoder_mask_from_labels(labels: tf.Tensor) -> tf.Tensor:
    """Position 0 (the start token) is always attended, even when start == pad; after it, a
    position is masked exactly when it holds a pad that came from a -100 label."""
    first = tf.ones((tf.shape(labels)[0], 1), dtype=tf.int32)
    return tf.concat([first, tf.cast(labels[:, :-1] != -100, tf.int32)], axis=1)  # (b, q)


class TFEncoderDecoderModel(TFGenerationMixin, TFPreTrainedModel):
    """An encoder (``TFAutoModel``) and a decoder (``TFAutoModelForCausalLM`` with
    cross-attention), plus ``enc_to_dec_proj`` when their hidden sizes differ.

    Args:
        config: an ``EncoderDecoderConfig``; built from the parts' configs when omitted.
        encoder: a built encoder model (its name becomes ``"encoder"``).
        decoder: a built decoder model with cross-attention (its name becomes ``"decoder"``).
    """

    config_class = EncoderDecoderConfig
    base_model_prefix = "encoder_decoder"
    main_input_name = "input_ids"

    def __init__(self, config: Optional[EncoderDecoderConfig] = None, encoder: Optional[TFPreTrainedModel] = None,
                 decoder: Optional[TFPreTrainedModel] = None, **kwargs: Any):
        # === Config ===
        if config is None and (encoder is None or decoder is None):
            raise ValueError("Either a configuration or an encoder and a decoder has to be provided.")
        if config is None:
            config = EncoderDecoderConfig.from_encoder_decoder_configs(encoder.config, decoder.config)
        elif not isinstance(config, self.config_class):
            raise ValueError(f"Config: {type(config).__name__} has to be of type {self.config_class.__name__}")
        needs_proj = needs_enc_to_dec_proj(config)  # raises on a cross_attention_hidden_size mismatch
        kwargs.setdefault("name", "tf_encoder_decoder_model")
        super().__init__(config, **kwargs)

        # === Layers ===
        if encoder is None:
            encoder = TFAutoModel.from_config(config.encoder, build=False, name="encoder")
        if decoder is None:
            decoder = TFAutoModelForCausalLM.from_config(config.decoder, build=False, name="decoder")
        # The names are the canonical prefixes (`encoder.`, `decoder.`) of every weight.
        encoder.name, decoder.name = "encoder", "decoder"
        self.encoder = encoder
        self.decoder = decoder
        if self.encoder.config.to_dict() != self.config.encoder.to_dict():
            logger.warning("Config of the encoder %s is overwritten by the shared encoder config", type(encoder).__name__)
        if self.decoder.config.to_dict() != self.config.decoder.to_dict():
            logger.warning("Config of the decoder %s is overwritten by the shared decoder config", type(decoder).__name__)
        # One config object, shared: a change made through the composite reaches the parts.
        self.encoder.config = self.config.encoder
        self.decoder.config = self.config.decoder
        self.enc_to_dec_proj = None
        if needs_proj:
            self.enc_to_dec_proj = Dense(
                self.config.decoder.hidden_size,
                kernel_initializer=normal_init(self.config.decoder),
                bias_initializer="zeros", name="enc_to_dec_proj",
            )
        if hasattr(self.encoder, "cls") or hasattr(self.encoder, "lm_head"):
            raise ValueError(f"The encoder {type(self.encoder).__name__} should not have a LM Head. Please use a model without LM Head")
        check_decoder_contract(self.decoder, DECODER_CONTRACT)
        if "encoder_hidden_states" not in inspect.signature(self.decoder.call).parameters:
            raise ValueError(
                "The selected decoder is not prepared for the encoder hidden states to be passed. Please see the "
                "following discussion on GitHub: https://github.com/huggingface/transformers/issues/23350"
            )
        self.build_now()
        self.tie_weights()

    # --- construction -----------------------------------------------------------------------
    def dummy_inputs(self) -> Dict[str, Any]:
        return {"input_ids": tf.zeros((1, 2), dtype=tf.int32), "decoder_input_ids": tf.zeros((1, 2), dtype=tf.int32)}

    def tie_weights(self) -> None:
        """``tie_encoder_decoder``: the encoder uses the decoder's base-model variables (one
        storage, as in PyTorch; the reference's TF class ignores the flag)."""
        if not self.config.tie_encoder_decoder:
            return
        if self.config.encoder.model_type != self.config.decoder.model_type:
            raise ValueError(
                "tie_encoder_decoder=True needs encoder and decoder of the same model_type, got "
                f"{self.config.encoder.model_type!r} and {self.config.decoder.model_type!r}"
            )
        decoder_base = getattr(self.decoder, architecture(self.config.decoder).base_model_prefix)
        shared = share_variables(self.encoder, decoder_base)
        logger.info("tie_encoder_decoder: the encoder shares %d variables with the decoder", shared)

    def get_encoder(self) -> TFPreTrainedModel:
        return self.encoder

    def get_decoder(self) -> TFPreTrainedModel:
        return self.decoder

    def get_input_embeddings(self) -> keras.layers.Embedding:
        return self.encoder.get_input_embeddings()

    def get_output_embeddings(self) -> keras.layers.Layer:
        return self.decoder.get_output_embeddings()

    def resize_token_embeddings(self, *args: Any, **kwargs: Any):
        raise NotImplementedError(
            "Resizing the embedding layers via the TFEncoderDecoderModel directly is not supported. Please use the "
            "respective methods of the wrapped objects (model.encoder.resize_token_embeddings(...) or "
            "model.decoder.resize_token_embeddings(...))"
        )

    @classmethod
    def from_encoder_decoder_pretrained(
        cls, encoder_pretrained_model_name_or_path: Optional[str] = None,
        decoder_pretrained_model_name_or_path: Optional[str] = None, *model_args: Any, **kwargs: Any,
    ) -> "TFEncoderDecoderModel":
        """Warm-start from a pretrained encoder and decoder (``encdec.loading.load_encoder_decoder_pretrained``).
        ``encoder_*`` / ``decoder_*`` keywords go to that part (config overrides such as
        ``decoder_hidden_dropout_prob=0.2``, ``encoder_from_pt=True``, ``encoder_model=`` an instance);
        reserved names such as ``decoder_start_token_id`` stay top-level; ``name=`` names the Keras
        model; ``output_loading_info=True`` also returns the load-info dict. The encoder's config is
        reset to ``is_decoder=False`` / ``add_cross_attention=False``, the decoder's gets both True;
        the weights no checkpoint holds are initialised and reported in one report.
        """
        kwargs.pop("load_weight_prefix", None)
        loaded, args = load_encoder_decoder_pretrained(
            TFLoader(), cls, encoder_pretrained_model_name_or_path, decoder_pretrained_model_name_or_path,
            model_args, kwargs, ("name",),
        )
        return (loaded.model, loaded.info) if args.output_loading_info else loaded.model

    # --- forward ----------------------------------------------------------------------------
    def call(self, input_ids=None, attention_mask=None, decoder_input_ids=None, decoder_attention_mask=None,
             encoder_outputs=None, past_key_values=None, inputs_embeds=None, decoder_inputs_embeds=None, labels=None,
             use_cache=None, output_attentions=None, output_hidden_states=None, return_dict=None, training=False,
             **kwargs):
        if isinstance(input_ids, dict):
            # Keras passes a dataset's dict as the first argument (`model.fit`, `model(batch)`).
            named = dict(attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
                         decoder_attention_mask=decoder_attention_mask, encoder_outputs=encoder_outputs,
                         past_key_values=past_key_values, inputs_embeds=inputs_embeds,
                         decoder_inputs_embeds=decoder_inputs_embeds, labels=labels)
            batch = dict(input_ids)
            twice = sorted(k for k, v in named.items() if v is not None and k in batch)
            if twice:
                raise ValueError(f"{twice} given both inside the input dict and as arguments")
            batch.update({k: v for k, v in named.items() if k not in batch}, **kwargs)
            return self.call(**batch, use_cache=use_cache, output_attentions=output_attentions,
                             output_hidden_states=output_hidden_states, return_dict=return_dict, training=training)
        return_dict = self.config.use_return_dict if return_dict is None else return_dict
        kwargs_encoder = {k: v for k, v in kwargs.items() if not k.startswith("decoder_")}
        kwargs_decoder = {k[len("decoder_"):]: v for k, v in kwargs.items() if k.startswith("decoder_")}
        input_ids = as_int_tensor(input_ids)
        attention_mask = as_int_tensor(attention_mask)
        decoder_input_ids = as_int_tensor(decoder_input_ids)
        decoder_attention_mask = as_int_tensor(decoder_attention_mask)
        labels = as_int_tensor(labels)

        if encoder_outputs is None:
            encoder_outputs = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                output_attentions=output_attentions, output_hidden_states=output_hidden_states, return_dict=True,
                training=training, **kwargs_encoder,
            )
            encoder_tuple = encoder_outputs.to_tuple()
        elif isinstance(encoder_outputs, (tuple, list)):
            # A tuple is kept as given for the tuple output; only its first item is interpreted.
            encoder_tuple = tuple(encoder_outputs)
            encoder_outputs = TFBaseModelOutputWithPoolingAndCrossAttentions(last_hidden_state=encoder_outputs[0])
        elif isinstance(encoder_outputs, ModelOutput):
            encoder_tuple = encoder_outputs.to_tuple()
        else:
            encoder_tuple = (encoder_outputs,)
            encoder_outputs = TFBaseModelOutputWithPoolingAndCrossAttentions(last_hidden_state=encoder_outputs)
        encoder_hidden_states = encoder_outputs[0]  # (b, k, e_enc)
        if self.enc_to_dec_proj is not None:
            encoder_hidden_states = self.enc_to_dec_proj(encoder_hidden_states)  # (b, k, e_dec)

        if labels is not None:
            check_labels(labels, self.config.decoder.vocab_size)
            if decoder_input_ids is None and decoder_inputs_embeds is None:
                decoder_input_ids = shift_tokens_right(labels, self.config.pad_token_id, self.config.decoder_start_token_id)
            if decoder_attention_mask is None:
                decoder_attention_mask = decoder_mask_from_labels(labels)
        if decoder_input_ids is not None:
            decoder_input_ids = check_ids(decoder_input_ids, self.config.decoder.vocab_size, "decoder_input_ids")

        decoder_outputs = self.decoder(
            input_ids=decoder_input_ids, attention_mask=decoder_attention_mask,
            encoder_hidden_states=encoder_hidden_states, encoder_attention_mask=attention_mask,
            inputs_embeds=decoder_inputs_embeds, output_attentions=output_attentions,
            output_hidden_states=output_hidden_states, use_cache=use_cache, past_key_values=past_key_values,
            return_dict=True, training=training, **kwargs_decoder,
        )
        loss = None
        if labels is not None:
            loss = masked_lm_loss(labels, decoder_outputs.logits)  # () : mean over labels != -100

        if not return_dict:
            # Every computed field, decoder hidden states included (the reference's TF class drops them).
            head = (loss,) if loss is not None else ()
            return head + decoder_outputs.to_tuple() + encoder_tuple
        return TFSeq2SeqLMOutput(
            loss=loss, logits=decoder_outputs.logits, past_key_values=decoder_outputs.past_key_values,
            decoder_hidden_states=decoder_outputs.hidden_states, decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states, encoder_attentions=encoder_outputs.attentions,
        )

    # --- training with the internal loss ----------------------------------------------------
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """``fit`` / ``evaluate`` use the model's own loss: batches are dicts that carry
        ``labels`` (or labels as the dataset's ``y``), compiled without ``loss=``."""
        if y_pred is None or getattr(y_pred, "loss", None) is None:
            raise ValueError(
                "TFEncoderDecoderModel trains on its internal loss: give the batches a `labels` entry "
                "(a dict dataset) and compile without `loss=`"
            )
        return y_pred.loss

    def train_step(self, data):
        return super().train_step(_labels_into_inputs(data))

    def test_step(self, data):
        return super().test_step(_labels_into_inputs(data))

    def prepare_decoder_input_ids_from_labels(self, labels: tf.Tensor) -> tf.Tensor:
        return shift_tokens_right(as_int_tensor(labels), self.config.pad_token_id, self.config.decoder_start_token_id)


def _labels_into_inputs(data: Any) -> Any:
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    if y is not None:
        if not isinstance(x, dict):
            raise ValueError("TFEncoderDecoderModel.fit needs dict batches (input_ids, attention_mask, ...)")
        x = dict(x, labels=y)
    if sample_weight is not None:
        raise ValueError("TFEncoderDecoderModel trains on its internal loss; sample weights are not supported, "
                         "use -100 labels to leave tokens out")
    return (x,)
