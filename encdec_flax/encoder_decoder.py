"""``FlaxEncoderDecoderModel``: a pretrained encoder (BERT) and a causal-LM decoder (BERT or GPT-2
with cross-attention), mirroring ``encdec_pt/encoder_decoder.py``.

Beyond the Hugging Face Flax class: ``labels`` -> ``loss`` (mean cross-entropy over labels that are
not -100, decoder inputs shifted from the labels when absent, derived decoder mask),
``encoder_outputs`` and ``token_type_ids`` in ``__call__``; ``encode`` passes keyword arguments (the
reference feeds position ids into BERT's token-type slot); ``init_cache`` caches cross-attention
keys/values too; ``_do_init=False``; ``tie_encoder_decoder``; gradient checkpointing; sharded
safetensors and PyTorch files load with no flag.

Training, with the loss from labels and a dropout rng (``encdec_flax.training.make_train_step``
is the same step plus the host-side token id check, which a jitted call cannot do)::

    import jax, optax
    from encdec_flax import FlaxEncoderDecoderModel

    model = FlaxEncoderDecoderModel.from_encoder_decoder_pretrained("bert-dir", "bert-dir")
    tx = optax.adamw(1e-4)
    opt_state = tx.init(model.params)

    @jax.jit
    def train_step(params, opt_state, batch, rng):
        def loss_fn(p):
            return model(**batch, params=p, train=True, dropout_rng=rng).loss
        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    # batch = {"input_ids": ..., "attention_mask": ..., "labels": ...}
    params, opt_state, loss = train_step(model.params, opt_state, batch, jax.random.PRNGKey(0))

Tied encoder and decoder (``config.tie_encoder_decoder``): the params tree holds each shared
tensor once, under the decoder (``params["decoder"]["bert"]...``); the encoder subtree keeps only
what the decoder lacks (the pooler). Every call rebuilds the encoder's view by reading those
leaves from the decoder subtree (``_expand``), so gradients of both uses sum into one leaf, as
with PyTorch's shared parameters, and an optimizer sees one copy.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional, Tuple

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.traverse_util import flatten_dict, unflatten_dict

from encdec.configuration import EncoderDecoderConfig
from encdec.generation_config import GenerationConfig
from encdec.loading import load_encoder_decoder_pretrained
from encdec.naming.layout import framework_path
from encdec.naming.schema import needs_enc_to_dec_proj, schema_for
from encdec_flax.generation.utils import FlaxGenerationMixin
from encdec_flax.models.auto import FlaxAutoModel, FlaxAutoModelForCausalLM
from encdec_flax.layers import Dense
from encdec_flax.modeling_outputs import FlaxSeq2SeqLMOutput
from encdec_flax.modeling_utils import (
    FlaxLoader,
    FlaxPreTrainedModel,
    _flax_result,
    check_ids,
    check_labels,
    check_positions,
    normal_init,
)

logger = logging.getLogger("encdec_flax")


def shift_tokens_right(labels, pad_token_id: int, decoder_start_token_id: int):
    """Decoder inputs from labels: start token first, ``labels[:, :-1]`` after, -100 -> pad."""
    shifted = jnp.zeros_like(labels)
    shifted = shifted.at[:, 1:].set(labels[:, :-1])
    shifted = shifted.at[:, 0].set(decoder_start_token_id)
    return jnp.where(shifted == -100, pad_token_id, shifted)


def decoder_mask_from_labels(labels):
    """Position 0 (the start token) always attended, then ``labels[:, :-1] != -100``."""
    first = jnp.ones(labels.shape[:1] + (1,), dtype="i4")
    return jnp.concatenate([first, (labels[:, :-1] != -100).astype("i4")], axis=1)


def causal_lm_loss(logits, labels):
    """Mean cross-entropy over the positions whose label is not -100 (float32, shape ())."""
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    valid = labels != -100
    # (B, T): -log p(label); ignored positions read class 0 and are masked out
    nll = -jnp.take_along_axis(log_probs, jnp.where(valid, labels, 0)[..., None], axis=-1)[..., 0]
    # max(count, 1): a batch whose labels are all -100 has loss 0, not NaN (as in every framework).
    return jnp.sum(jnp.where(valid, nll, 0.0)) / jnp.maximum(jnp.sum(valid), 1)


class FlaxEncoderDecoderModule(nn.Module):
    config: EncoderDecoderConfig
    dtype: jnp.dtype = jnp.float32
    gradient_checkpointing: bool = False

    def setup(self):
        cfg = self.config
        encoder_module = FlaxAutoModel.model_class(cfg.encoder).module_class
        decoder_module = FlaxAutoModelForCausalLM.model_class(cfg.decoder).module_class
        self.encoder = encoder_module(cfg.encoder, dtype=self.dtype, gradient_checkpointing=self.gradient_checkpointing)
        self.decoder = decoder_module(cfg.decoder, dtype=self.dtype, gradient_checkpointing=self.gradient_checkpointing)
        if needs_enc_to_dec_proj(cfg):
            self.enc_to_dec_proj = Dense(
                cfg.decoder.hidden_size,
                dtype=self.dtype,
                kernel_init=normal_init(cfg.decoder),
                bias_init=jax.nn.initializers.zeros,
            )
        else:
            self.enc_to_dec_proj = None

    def encode(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        deterministic: bool = True,
    ):
        # Keyword arguments only: BERT's third positional slot is token_type_ids.
        kwargs = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        return self.encoder(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            deterministic=deterministic,
            **kwargs,
        )

    def decode(
        self,
        decoder_input_ids,
        encoder_hidden_states,
        encoder_attention_mask=None,
        decoder_attention_mask=None,
        decoder_position_ids=None,
        init_cache: bool = False,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        deterministic: bool = True,
    ):
        if self.enc_to_dec_proj is not None:
            # (B, S, encoder hidden) -> (B, S, decoder hidden)
            encoder_hidden_states = self.enc_to_dec_proj(encoder_hidden_states)
        return self.decoder(
            input_ids=decoder_input_ids,
            attention_mask=decoder_attention_mask,
            position_ids=decoder_position_ids,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            init_cache=init_cache,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            deterministic=deterministic,
        )

    def __call__(
        self,
        input_ids,
        attention_mask,
        decoder_input_ids,
        decoder_attention_mask,
        position_ids=None,
        decoder_position_ids=None,
        token_type_ids=None,
        encoder_outputs=None,
        labels=None,
        output_attentions: bool = False,
        output_hidden_states: bool = False,
        deterministic: bool = True,
    ):
        """Returns ``(loss or None, decoder outputs, encoder outputs)``."""
        if encoder_outputs is None:
            encoder_outputs = self.encode(
                input_ids, attention_mask, token_type_ids, position_ids,
                output_attentions=output_attentions, output_hidden_states=output_hidden_states,
                deterministic=deterministic,
            )
        decoder_outputs = self.decode(
            decoder_input_ids,
            encoder_outputs.last_hidden_state,
            encoder_attention_mask=attention_mask,
            decoder_attention_mask=decoder_attention_mask,
            decoder_position_ids=decoder_position_ids,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            deterministic=deterministic,
        )
        loss = None if labels is None else causal_lm_loss(decoder_outputs.logits, labels)
        return loss, decoder_outputs, encoder_outputs


class _EncoderOutputs:
    """Wraps user-given ``encoder_outputs`` (an output object, a tuple, or the hidden states)."""

    @staticmethod
    def normalise(encoder_outputs):
        from encdec_flax.modeling_outputs import FlaxBaseModelOutput

        if hasattr(encoder_outputs, "last_hidden_state"):
            return encoder_outputs
        if isinstance(encoder_outputs, (tuple, list)):
            fields = list(encoder_outputs) + [None] * 3
            return FlaxBaseModelOutput(last_hidden_state=jnp.asarray(fields[0]))
        return FlaxBaseModelOutput(last_hidden_state=jnp.asarray(encoder_outputs))


class FlaxEncoderDecoderModel(FlaxGenerationMixin, FlaxPreTrainedModel):
    """An encoder and a decoder with cross-attention, behind the functional Flax API.

    Args:
        config: an ``EncoderDecoderConfig``.
        input_shape: ``(encoder shape, decoder shape)`` of the dummy inputs that create the params
            (default ``((1, 1), (1, 1))``).
        seed: the PRNG seed of the random init.
        dtype: the computation dtype; params stay float32 (see ``to_bf16`` / ``to_fp16``).
        _do_init: False creates no params (``model.params`` is None): pass ``params=`` to calls,
            e.g. from ``model.init_weights(rng, input_shape)`` or ``from_pretrained(..., _do_init=False)``.
        gradient_checkpointing: recompute every layer in the backward pass (``nn.remat``).
    """

    config_class = EncoderDecoderConfig
    module_class = FlaxEncoderDecoderModule
    base_model_prefix = "encoder_decoder"
    schema_head = "seq2seq"

    def __init__(
        self,
        config: EncoderDecoderConfig,
        input_shape: Optional[Tuple[Tuple[int, int], Tuple[int, int]]] = None,
        seed: int = 0,
        dtype: Any = jnp.float32,
        _do_init: bool = True,
        gradient_checkpointing: bool = False,
    ):
        needs_enc_to_dec_proj(config)  # raises on an inconsistent cross_attention_hidden_size
        self._tied_paths = None
        super().__init__(config, input_shape=input_shape, seed=seed, dtype=dtype, _do_init=_do_init,
                         gradient_checkpointing=gradient_checkpointing)

    def _default_input_shape(self):
        return ((1, 1), (1, 1))

    def can_generate(self) -> bool:
        return True

    def schema(self):
        return schema_for(self.config)

    # --- tie_encoder_decoder: one copy in the tree, the encoder reads the decoder's -------------
    def _encoder_ties(self):
        if self._tied_paths is None:
            schema = self.schema()
            self._tied_paths = [
                (framework_path(schema[tied], "flax"), framework_path(schema[owner], "flax"))
                for tied, owner in schema.ties().items()
                if tied.startswith("encoder.")
            ]
        return self._tied_paths

    def _compact(self, params):
        ties = self._encoder_ties()
        if not ties:
            return params
        flat = flatten_dict(dict(params))
        for tied, _ in ties:
            flat.pop(tied, None)
        return unflatten_dict(flat)

    def _expand(self, params):
        ties = self._encoder_ties()
        if not ties:
            return params
        flat = flatten_dict(dict(params))
        for tied, owner in ties:
            flat[tied] = flat[owner]
        return unflatten_dict(flat)

    def _dummy_inputs(self, input_shape):
        encoder_shape, decoder_shape = input_shape
        if encoder_shape[0] != decoder_shape[0]:
            raise ValueError(
                f"encoder and decoder inputs need the same batch size, got {encoder_shape} and {decoder_shape}"
            )
        input_ids = jnp.zeros(encoder_shape, dtype="i4")
        decoder_input_ids = jnp.zeros(decoder_shape, dtype="i4")
        return (input_ids, jnp.ones_like(input_ids), decoder_input_ids, jnp.ones_like(decoder_input_ids)), {}

    # --- calling -----------------------------------------------------------------------------
    def _flags(self, output_attentions, output_hidden_states, return_dict):
        cfg = self.config
        return (
            cfg.output_attentions if output_attentions is None else output_attentions,
            cfg.output_hidden_states if output_hidden_states is None else output_hidden_states,
            cfg.return_dict if return_dict is None else return_dict,
        )

    def __call__(
        self,
        input_ids=None,
        attention_mask=None,
        decoder_input_ids=None,
        decoder_attention_mask=None,
        position_ids=None,
        decoder_position_ids=None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        train: bool = False,
        params: Any = None,
        dropout_rng=None,
        labels=None,
        encoder_outputs=None,
        token_type_ids=None,
    ):
        """The forward pass; ``labels`` give ``loss``. Jit-able with ``params=`` as an argument
        (token ids are then checked only when the values are concrete)."""
        output_attentions, output_hidden_states, return_dict = self._flags(
            output_attentions, output_hidden_states, return_dict
        )
        self.check_inputs(input_ids=input_ids, decoder_input_ids=decoder_input_ids, labels=labels,
                          position_ids=position_ids, decoder_position_ids=decoder_position_ids,
                          token_type_ids=token_type_ids)
        if labels is not None:
            labels = jnp.asarray(labels)
            if decoder_input_ids is None:
                decoder_input_ids = shift_tokens_right(labels, *self._shift_tokens())
            if decoder_attention_mask is None:
                decoder_attention_mask = decoder_mask_from_labels(labels)
        if decoder_input_ids is None:
            raise ValueError("decoder_input_ids are needed (or labels, from which they are made by shifting right)")
        decoder_input_ids = jnp.asarray(decoder_input_ids)
        if encoder_outputs is not None:
            encoder_outputs = _EncoderOutputs.normalise(encoder_outputs)
            source_shape = encoder_outputs.last_hidden_state.shape[:2]
        elif input_ids is None:
            raise ValueError("pass input_ids (or encoder_outputs)")
        else:
            input_ids = jnp.asarray(input_ids)
            source_shape = input_ids.shape
        if attention_mask is None:
            attention_mask = jnp.ones(source_shape, dtype="i4")
        if decoder_attention_mask is None:
            decoder_attention_mask = jnp.ones_like(decoder_input_ids)

        loss, decoder_outputs, encoder_outputs = self.module.apply(
            {"params": self._expand(self._params_or_raise(params))},
            input_ids,
            jnp.asarray(attention_mask),
            decoder_input_ids,
            jnp.asarray(decoder_attention_mask),
            position_ids=None if position_ids is None else jnp.asarray(position_ids),
            decoder_position_ids=None if decoder_position_ids is None else jnp.asarray(decoder_position_ids),
            token_type_ids=None if token_type_ids is None else jnp.asarray(token_type_ids),
            encoder_outputs=encoder_outputs,
            labels=labels,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            deterministic=not train,
            rngs=self._rngs(train, dropout_rng),
        )
        if not return_dict:
            head = (loss, decoder_outputs.logits, None, decoder_outputs.hidden_states,
                    decoder_outputs.attentions, decoder_outputs.cross_attentions)
            return tuple(x for x in head if x is not None) + encoder_outputs.to_tuple()
        return FlaxSeq2SeqLMOutput(
            loss=loss,
            logits=decoder_outputs.logits,
            decoder_hidden_states=decoder_outputs.hidden_states,
            decoder_attentions=decoder_outputs.attentions,
            cross_attentions=decoder_outputs.cross_attentions,
            encoder_last_hidden_state=encoder_outputs.last_hidden_state,
            encoder_hidden_states=encoder_outputs.hidden_states,
            encoder_attentions=encoder_outputs.attentions,
        )

    def check_inputs(self, input_ids=None, decoder_input_ids=None, labels=None, position_ids=None,
                     decoder_position_ids=None, token_type_ids=None, **_: Any) -> None:
        """Raise ``ValueError`` naming any id JAX would clamp silently (host-side, numpy): token ids
        outside the vocabulary, positions past ``max_position_embeddings``, unknown token types."""
        cfg = self.config
        check_ids(cfg.encoder.vocab_size, input_ids=input_ids)
        check_ids(cfg.decoder.vocab_size, decoder_input_ids=decoder_input_ids)
        check_labels(labels, cfg.decoder.vocab_size)
        check_positions(cfg.encoder, input_ids, position_ids, token_type_ids)
        check_positions(cfg.decoder, decoder_input_ids if decoder_input_ids is not None else labels,
                        decoder_position_ids, prefix="decoder_")

    def _shift_tokens(self) -> Tuple[int, int]:
        cfg = self.config
        if cfg.decoder_start_token_id is None:
            raise ValueError(
                "labels need decoder_start_token_id to build decoder_input_ids: set "
                "model.config.decoder_start_token_id (e.g. the tokenizer's [CLS] or bos id)"
            )
        if cfg.pad_token_id is None:
            raise ValueError(
                "labels need pad_token_id to replace -100 in decoder_input_ids: set model.config.pad_token_id"
            )
        return cfg.pad_token_id, cfg.decoder_start_token_id

    def encode(
        self,
        input_ids,
        attention_mask=None,
        position_ids=None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        train: bool = False,
        params: Any = None,
        dropout_rng=None,
        token_type_ids=None,
    ):
        """The encoder's outputs (for BERT: last_hidden_state, pooler_output, hidden_states,
        attentions), equal to the encoder part of ``__call__``; reusable as ``encoder_outputs``."""
        output_attentions, output_hidden_states, return_dict = self._flags(
            output_attentions, output_hidden_states, return_dict
        )
        self.check_inputs(input_ids=input_ids, position_ids=position_ids, token_type_ids=token_type_ids)
        input_ids = jnp.asarray(input_ids)
        if attention_mask is None:
            attention_mask = jnp.ones_like(input_ids)
        outputs = self.module.apply(
            {"params": self._expand(self._params_or_raise(params))},
            input_ids,
            attention_mask=jnp.asarray(attention_mask),
            token_type_ids=None if token_type_ids is None else jnp.asarray(token_type_ids),
            position_ids=None if position_ids is None else jnp.asarray(position_ids),
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            deterministic=not train,
            rngs=self._rngs(train, dropout_rng),
            method=FlaxEncoderDecoderModule.encode,
        )
        return outputs if return_dict else outputs.to_tuple()

    def decode(
        self,
        decoder_input_ids,
        encoder_outputs,
        encoder_attention_mask=None,
        decoder_attention_mask=None,
        decoder_position_ids=None,
        past_key_values: Optional[Dict[str, Any]] = None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        train: bool = False,
        params: Any = None,
        dropout_rng=None,
    ):
        """One decoder pass over ``encoder_outputs``. With ``past_key_values`` (from
        ``init_cache``) it appends to the cache and returns the new one as ``past_key_values``;
        ``decoder_attention_mask`` is then ``(batch, max_length)`` or None (no padding)."""
        output_attentions, output_hidden_states, return_dict = self._flags(
            output_attentions, output_hidden_states, return_dict
        )
        check_ids(self.config.decoder.vocab_size, decoder_input_ids=decoder_input_ids)
        check_positions(self.config.decoder, None if past_key_values is not None else decoder_input_ids,
                        decoder_position_ids, prefix="decoder_")
        decoder_input_ids = jnp.asarray(decoder_input_ids)
        encoder_hidden_states = _EncoderOutputs.normalise(encoder_outputs).last_hidden_state
        if encoder_attention_mask is None:
            encoder_attention_mask = jnp.ones(encoder_hidden_states.shape[:2], dtype="i4")
        variables = {"params": self._expand(self._params_or_raise(params))}
        mutable = False
        if past_key_values is not None:
            if decoder_position_ids is None:
                raise ValueError("Make sure to provide decoder_position_ids when passing past_key_values.")
            variables["cache"] = past_key_values
            mutable = ["cache"]
        elif decoder_attention_mask is None:
            decoder_attention_mask = jnp.ones_like(decoder_input_ids)
        outputs = self.module.apply(
            variables,
            decoder_input_ids,
            encoder_hidden_states,
            encoder_attention_mask=jnp.asarray(encoder_attention_mask),
            decoder_attention_mask=None if decoder_attention_mask is None else jnp.asarray(decoder_attention_mask),
            decoder_position_ids=None if decoder_position_ids is None else jnp.asarray(decoder_position_ids),
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            deterministic=not train,
            rngs=self._rngs(train, dropout_rng),
            mutable=mutable,
            method=FlaxEncoderDecoderModule.decode,
        )
        if past_key_values is not None:
            outputs, cache = outputs
            outputs = outputs.replace(past_key_values=cache["cache"])
        return outputs if return_dict else outputs.to_tuple()

    def init_cache(self, batch_size: int, max_length: int, encoder_outputs, params: Any = None):
        """The decoder cache for up to ``max_length`` tokens: per self-attention layer
        ``cached_key`` / ``cached_value`` ``(batch, heads, max_length, head_dim)`` and ``cache_index``;
        per cross-attention layer the projected encoder keys/values, computed here once."""
        if max_length > self.config.decoder.max_position_embeddings:
            raise ValueError(
                f"max_length={max_length} is longer than the decoder's max_position_embeddings="
                f"{self.config.decoder.max_position_embeddings}"
            )
        encoder_hidden_states = _EncoderOutputs.normalise(encoder_outputs).last_hidden_state
        decoder_input_ids = jnp.ones((batch_size, max_length), dtype="i4")
        _, cache = self.module.apply(
            {"params": self._expand(self._params_or_raise(params))},
            decoder_input_ids,
            encoder_hidden_states,
            init_cache=True,
            mutable=["cache"],
            method=FlaxEncoderDecoderModule.decode,
        )
        return cache["cache"]

    # --- loading -----------------------------------------------------------------------------
    @classmethod
    def from_encoder_decoder_pretrained(
        cls,
        encoder_pretrained_model_name_or_path: Optional[str] = None,
        decoder_pretrained_model_name_or_path: Optional[str] = None,
        *model_args: Any,
        **kwargs: Any,
    ) -> "FlaxEncoderDecoderModel":
        """Build from a pretrained encoder and decoder (folders or hub ids, any checkpoint format;
        ``encdec.loading.load_encoder_decoder_pretrained``).

        ``encoder_*`` / ``decoder_*`` kwargs go to that side (``encoder_config=``,
        ``decoder_hidden_dropout_prob=``, ``decoder_from_pt=``, hub options); reserved top-level names
        such as ``decoder_start_token_id`` stay on the composite config; ``dtype``, ``seed``,
        ``input_shape`` and ``gradient_checkpointing`` go to the constructor;
        ``output_loading_info=True`` also returns the load-info dict. The encoder's config is reset to
        ``is_decoder=False`` / ``add_cross_attention=False``, the decoder's gets both True; the
        weights no checkpoint holds (cross-attention, ``enc_to_dec_proj``) are initialised randomly
        and reported in one line per group (also in ``model.loading_info``).
        """
        loaded, args = load_encoder_decoder_pretrained(
            FlaxLoader(), cls, encoder_pretrained_model_name_or_path, decoder_pretrained_model_name_or_path,
            model_args, kwargs, ("dtype", "seed", "input_shape", "gradient_checkpointing"),
        )
        model = loaded.model
        model.generation_config = GenerationConfig.from_model_config(model.config)
        return _flax_result(model, loaded, True, args.output_loading_info)
