"""Model outputs: dataclasses with attribute, ``["key"]`` and integer access.

They behave like the reference's ``ModelOutput``: fields left ``None`` are skipped by integer
indexing, iteration and ``to_tuple()``, so ``outputs[0]`` is the first field that was computed
(``loss`` when labels were given, ``logits`` otherwise).
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

import tensorflow as tf

from encdec.modeling_outputs import ModelOutput as _ModelOutput


class ModelOutput(_ModelOutput):
    """``encdec.modeling_outputs.ModelOutput`` that can leave a ``tf.function`` (and XLA) as it is."""

    # tf.nest's custom-structure protocol: outputs can leave a `tf.function` (and XLA) as they are.
    def __tf_flatten__(self):
        names = tuple(f.name for f in dataclasses.fields(self))
        return names, tuple(getattr(self, name) for name in names)

    @classmethod
    def __tf_unflatten__(cls, metadata, components):
        return cls(**dict(zip(metadata, components)))


@dataclasses.dataclass
class TFBaseModelOutputWithPoolingAndCrossAttentions(ModelOutput):
    """Output of ``TFBertModel`` / ``TFGPT2Model`` (GPT-2 leaves ``pooler_output`` None)."""

    last_hidden_state: Optional[tf.Tensor] = None
    pooler_output: Optional[tf.Tensor] = None
    hidden_states: Optional[Tuple[tf.Tensor, ...]] = None
    past_key_values: Optional[Tuple[Tuple[tf.Tensor, ...], ...]] = None
    attentions: Optional[Tuple[tf.Tensor, ...]] = None
    cross_attentions: Optional[Tuple[tf.Tensor, ...]] = None


@dataclasses.dataclass
class TFCausalLMOutputWithCrossAttentions(ModelOutput):
    """Output of ``TFBertLMHeadModel`` / ``TFGPT2LMHeadModel``."""

    loss: Optional[tf.Tensor] = None
    logits: Optional[tf.Tensor] = None
    past_key_values: Optional[Tuple[Tuple[tf.Tensor, ...], ...]] = None
    hidden_states: Optional[Tuple[tf.Tensor, ...]] = None
    attentions: Optional[Tuple[tf.Tensor, ...]] = None
    cross_attentions: Optional[Tuple[tf.Tensor, ...]] = None


@dataclasses.dataclass
class TFSeq2SeqLMOutput(ModelOutput):
    """Output of ``TFEncoderDecoderModel`` (field order = ``encdec.modeling_utils.SEQ2SEQ_OUTPUT_FIELDS``)."""

    loss: Optional[tf.Tensor] = None
    logits: Optional[tf.Tensor] = None
    past_key_values: Optional[Tuple[Tuple[tf.Tensor, ...], ...]] = None
    decoder_hidden_states: Optional[Tuple[tf.Tensor, ...]] = None
    decoder_attentions: Optional[Tuple[tf.Tensor, ...]] = None
    cross_attentions: Optional[Tuple[tf.Tensor, ...]] = None
    encoder_last_hidden_state: Optional[tf.Tensor] = None
    encoder_hidden_states: Optional[Tuple[tf.Tensor, ...]] = None
    encoder_attentions: Optional[Tuple[tf.Tensor, ...]] = None
