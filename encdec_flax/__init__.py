"""encdec in JAX/Flax: ``FlaxEncoderDecoderModel`` and its BERT / GPT-2 parts.

Imports jax, flax and ``encdec`` only (never torch or TensorFlow).
"""

from encdec_flax.models.auto import (
    MODELS,
    FlaxAutoModel,
    FlaxAutoModelForCausalLM,
)
from encdec_flax.models.bert import FlaxBertForCausalLM, FlaxBertModel
from encdec_flax.encoder_decoder import FlaxEncoderDecoderModel, FlaxEncoderDecoderModule
from encdec_flax.models.gpt2 import FlaxGPT2LMHeadModel, FlaxGPT2Model
from encdec_flax.modeling_outputs import FlaxSeq2SeqLMOutput
from encdec_flax.modeling_utils import params_to_state_dict, state_dict_to_params

__all__ = [
    "MODELS",
    "FlaxAutoModel",
    "FlaxAutoModelForCausalLM",
    "FlaxBertForCausalLM",
    "FlaxBertModel",
    "FlaxEncoderDecoderModel",
    "FlaxEncoderDecoderModule",
    "FlaxGPT2LMHeadModel",
    "FlaxGPT2Model",
    "FlaxSeq2SeqLMOutput",
    "params_to_state_dict",
    "state_dict_to_params",
]
