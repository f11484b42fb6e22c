"""Model outputs: dataclasses with attribute, ``["key"]`` and integer access.

They behave like the reference's ``ModelOutput``: fields left ``None`` are skipped by integer
indexing, iteration and ``to_tuple()``, so ``outputs[0]`` is the first field that was computed
(``loss`` when labels were given, ``logits`` otherwise).
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

import torch

from encdec.modeling_outputs import ModelOutput


@dataclasses.dataclass
class BaseModelOutputWithPoolingAndCrossAttentions(ModelOutput):
    """Output of ``BertModel`` / ``GPT2Model`` (GPT-2 leaves ``pooler_output`` None)."""

    last_hidden_state: Optional[torch.Tensor] = None
    pooler_output: Optional[torch.Tensor] = None
    hidden_states: Optional[Tuple[torch.Tensor, ...]] = None
    past_key_values: Optional[Tuple[Tuple[torch.Tensor, ...], ...]] = None
    attentions: Optional[Tuple[torch.Tensor, ...]] = None
    cross_attentions: Optional[Tuple[torch.Tensor, ...]] = None


@dataclasses.dataclass
class CausalLMOutputWithCrossAttentions(ModelOutput):
    """Output of ``BertLMHeadModel`` / ``GPT2LMHeadModel``."""

    loss: Optional[torch.Tensor] = None
    logits: Optional[torch.Tensor] = None
    past_key_values: Optional[Tuple[Tuple[torch.Tensor, ...], ...]] = None
    hidden_states: Optional[Tuple[torch.Tensor, ...]] = None
    attentions: Optional[Tuple[torch.Tensor, ...]] = None
    cross_attentions: Optional[Tuple[torch.Tensor, ...]] = None


@dataclasses.dataclass
class Seq2SeqLMOutput(ModelOutput):
    """Output of ``EncoderDecoderModel`` (field order = ``encdec.modeling_utils.SEQ2SEQ_OUTPUT_FIELDS``)."""

    loss: Optional[torch.Tensor] = None
    logits: Optional[torch.Tensor] = None
    past_key_values: Optional[Tuple[Tuple[torch.Tensor, ...], ...]] = None
    decoder_hidden_states: Optional[Tuple[torch.Tensor, ...]] = None
    decoder_attentions: Optional[Tuple[torch.Tensor, ...]] = None
    cross_attentions: Optional[Tuple[torch.Tensor, ...]] = None
    encoder_last_hidden_state: Optional[torch.Tensor] = None
    encoder_hidden_states: Optional[Tuple[torch.Tensor, ...]] = None
    encoder_attentions: Optional[Tuple[torch.Tensor, ...]] = None
