"""PyTorch implementation of encdec: ``EncoderDecoderModel`` over BERT and GPT-2 parts.

Imports torch and the framework-free ``encdec`` package only.
"""

try:
    import torch  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("encdec_pt needs PyTorch: pip install 'encdec[torch]'") from e

from encdec_pt.encoder_decoder import EncoderDecoderModel, shift_tokens_right
from encdec_pt.modeling_outputs import (
    BaseModelOutputWithPoolingAndCrossAttentions,
    CausalLMOutputWithCrossAttentions,
    Seq2SeqLMOutput,
)
from encdec_pt.modeling_utils import PreTrainedModel
from encdec_pt.models import AutoModel, AutoModelForCausalLM, BertLMHeadModel, BertModel, GPT2LMHeadModel, GPT2Model

__all__ = [
    "AutoModel",
    "AutoModelForCausalLM",
    "BaseModelOutputWithPoolingAndCrossAttentions",
    "BertLMHeadModel",
    "BertModel",
    "CausalLMOutputWithCrossAttentions",
    "EncoderDecoderModel",
    "GPT2LMHeadModel",
    "GPT2Model",
    "PreTrainedModel",
    "Seq2SeqLMOutput",
    "shift_tokens_right",
]
