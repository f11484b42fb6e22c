"""The Flax module classes of each architecture record: registered here, in one place."""

from __future__ import annotations

from encdec.modeling_utils import AutoFactory
from encdec.registry import DECODER, ENCODER, ModelRegistry
from encdec_flax.models.bart import FlaxBartForCausalLM, FlaxMBartForCausalLM
from encdec_flax.models.bert import FlaxBertForCausalLM, FlaxBertModel
from encdec_flax.models.bert_generation import FlaxBertGenerationDecoder, FlaxBertGenerationEncoder
from encdec_flax.models.electra import FlaxElectraForCausalLM, FlaxElectraModel
from encdec_flax.models.gpt2 import FlaxGPT2LMHeadModel, FlaxGPT2Model
from encdec_flax.models.roberta import FlaxRobertaForCausalLM, FlaxRobertaModel

MODELS = ModelRegistry("Flax")
MODELS.register("bert", encoder=FlaxBertModel, decoder=FlaxBertForCausalLM)
MODELS.register("gpt2", encoder=FlaxGPT2Model, decoder=FlaxGPT2LMHeadModel)
MODELS.register("bert-generation", encoder=FlaxBertGenerationEncoder, decoder=FlaxBertGenerationDecoder)
MODELS.register("bart", decoder=FlaxBartForCausalLM)
MODELS.register("mbart", decoder=FlaxMBartForCausalLM)
MODELS.register("roberta", encoder=FlaxRobertaModel, decoder=FlaxRobertaForCausalLM)
MODELS.register("xlm-roberta", encoder=FlaxRobertaModel, decoder=FlaxRobertaForCausalLM)
MODELS.register("camembert", encoder=FlaxRobertaModel, decoder=FlaxRobertaForCausalLM)
MODELS.register("electra", encoder=FlaxElectraModel, decoder=FlaxElectraForCausalLM)


class FlaxAutoModel(AutoFactory):
    """The base model (``FlaxBertModel``, ``FlaxGPT2Model``) for a config's ``model_type``."""

    registry = MODELS
    role = ENCODER


class FlaxAutoModelForCausalLM(AutoFactory):
    """The causal LM with cross-attention (``FlaxBertForCausalLM``, ``FlaxGPT2LMHeadModel``) for a config's ``model_type``."""

    registry = MODELS
    role = DECODER
