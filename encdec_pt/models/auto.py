"""The PyTorch module classes of each architecture record: registered here, in one place."""

from __future__ import annotations

from encdec.modeling_utils import AutoFactory
from encdec.registry import DECODER, ENCODER, ModelRegistry
from encdec_pt.models.bart import BartForCausalLM, MBartForCausalLM
from encdec_pt.models.bert import BertLMHeadModel, BertModel
from encdec_pt.models.bert_generation import BertGenerationDecoder, BertGenerationEncoder
from encdec_pt.models.electra import ElectraForCausalLM, ElectraModel
from encdec_pt.models.gpt2 import GPT2LMHeadModel, GPT2Model
from encdec_pt.models.roberta import RobertaForCausalLM, RobertaModel

MODELS = ModelRegistry("PyTorch")
MODELS.register("bert", encoder=BertModel, decoder=BertLMHeadModel)
MODELS.register("gpt2", encoder=GPT2Model, decoder=GPT2LMHeadModel)
MODELS.register("bert-generation", encoder=BertGenerationEncoder, decoder=BertGenerationDecoder)
MODELS.register("bart", decoder=BartForCausalLM)
MODELS.register("mbart", decoder=MBartForCausalLM)
MODELS.register("roberta", encoder=RobertaModel, decoder=RobertaForCausalLM)
MODELS.register("xlm-roberta", encoder=RobertaModel, decoder=RobertaForCausalLM)
MODELS.register("camembert", encoder=RobertaModel, decoder=RobertaForCausalLM)
MODELS.register("electra", encoder=ElectraModel, decoder=ElectraForCausalLM)


class AutoModel(AutoFactory):
    """Base models (``BertModel``, ``GPT2Model``): what an ``EncoderDecoderModel`` uses as encoder."""

    registry = MODELS
    role = ENCODER


class AutoModelForCausalLM(AutoFactory):
    """Causal LMs with cross-attention (``BertLMHeadModel``, ``GPT2LMHeadModel``): what it uses as decoder."""

    registry = MODELS
    role = DECODER
