"""Model outputs: frozen dataclasses that are JAX pytrees (they pass through ``jax.jit``).

Fields are read by name (``out.logits``, ``out["logits"]``) or by position over the fields that
are set (``out[0]``), like the Hugging Face ``ModelOutput``; ``to_tuple()`` gives the tuple form.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Optional, Tuple

import flax.struct


class ModelOutput:
    """Mixin for the output dataclasses below."""

    def keys(self) -> Tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None)

    def to_tuple(self) -> Tuple[Any, ...]:
        return tuple(getattr(self, k) for k in self.keys())

    def __getitem__(self, key):
        if isinstance(key, str):
            return getattr(self, key)
        return self.to_tuple()[key]

    def __iter__(self):
        return iter(self.to_tuple())

    def __len__(self) -> int:
        return len(self.keys())


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
