"""Model parts: BERT and GPT-2 (one file each), and the ``model_type`` registries."""

from encdec_pt.models.auto import MODELS, AutoModel, AutoModelForCausalLM
from encdec_pt.models.bert import BertLMHeadModel, BertModel
from encdec_pt.models.gpt2 import GPT2LMHeadModel, GPT2Model

__all__ = [
    "AutoModel",
    "AutoModelForCausalLM",
    "BertLMHeadModel",
    "BertModel",
    "GPT2LMHeadModel",
    "GPT2Model",
    "MODELS",
]
