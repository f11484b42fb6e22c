"""Model outputs: frozen dataclasses that are JAX pytrees (they pass through ``jax.jit``), on the
shared ``encdec.modeling_outputs.ModelOutput`` (name, ``["key"]`` and position access as in
PyTorch and TF; ``to_tuple()`` gives the tuple form).
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import flax.struct

from encdec.modeling_outputs import ModelOutput


@flax.struct.dataclass
class FlaxBaseModelOutput(ModelOutput):
    last_hidden_state: Any = None
    hidden_states: Optional[Tuple[Any, ...]] = None
    attentions: Optional[Tuple[Any, ...]] = None


@flax.struct.dataclass
class FlaxBaseModelOutputWithPoolingAndCrossAttentions(ModelOutput):
    last_hidden_state: Any = None
    pooler_output: Any = None
    hidden_states: Optional[Tuple[Any, ...]] = None
    past_key_values: Any = None
    attentions: Optional[Tuple[Any, ...]] = None
    cross_attentions: Optional[Tuple[Any, ...]] = None


@flax.struct.dataclass
class FlaxBaseModelOutputWithPastAndCrossAttentions(ModelOutput):
    last_hidden_state: Any = None
    past_key_values: Any = None
    hidden_states: Optional[Tuple[Any, ...]] = None
    attentions: Optional[Tuple[Any, ...]] = None
    cross_attentions: Optional[Tuple[Any, ...]] = None


@flax.struct.dataclass
class FlaxCausalLMOutputWithCrossAttentions(ModelOutput):
    logits: Any = None
    past_key_values: Any = None
    hidden_states: Optional[Tuple[Any, ...]] = None
    attentions: Optional[Tuple[Any, ...]] = None
    cross_attentions: Optional[Tuple[Any, ...]] = None


@flax.struct.dataclass
class FlaxSeq2SeqLMOutput(ModelOutput):
    """The encoder-decoder output; fields in ``encdec.modeling_utils.SEQ2SEQ_OUTPUT_FIELDS`` order."""

    loss: Any = None
    logits: Any = None
    past_key_values: Any = None
    decoder_hidden_states: Optional[Tuple[Any, ...]] = None
    decoder_attentions: Optional[Tuple[Any, ...]] = None
    cross_attentions: Optional[Tuple[Any, ...]] = None
    encoder_last_hidden_state: Any = None
    encoder_hidden_states: Optional[Tuple[Any, ...]] = None
    encoder_attentions: Optional[Tuple[Any, ...]] = None
