"""The TensorFlow layer classes of each architecture record: registered here, in one place."""

from __future__ import annotations

from encdec.modeling_utils import AutoFactory
from encdec.registry import DECODER, ENCODER, ModelRegistry
from encdec_tf.models.bart import TFBartForCausalLM, TFMBartForCausalLM
from encdec_tf.models.bert import TFBertLMHeadModel, TFBertModel
from encdec_tf.models.bert_generation import TFBertGenerationDecoder, TFBertGenerationEncoder
from encdec_tf.models.electra import TFElectraForCausalLM, TFElectraModel
from encdec_tf.models.gpt2 import TFGPT2LMHeadModel, TFGPT2Model
from encdec_tf.models.roberta import TFRobertaForCausalLM, TFRobertaModel

MODELS = ModelRegistry("TensorFlow")
MODELS.register("bert", encoder=TFBertModel, decoder=TFBertLMHeadModel)
MODELS.register("gpt2", encoder=TFGPT2Model, decoder=TFGPT2LMHeadModel)
MODELS.register("bert-generation", encoder=TFBertGenerationEncoder, decoder=TFBertGenerationDecoder)
MODELS.register("bart", decoder=TFBartForCausalLM)
MODELS.register("mbart", decoder=TFMBartForCausalLM)
MODELS.register("roberta", encoder=TFRobertaModel, decoder=TFRobertaForCausalLM)
MODELS.register("xlm-roberta", encoder=TFRobertaModel, decoder=TFRobertaForCausalLM)
MODELS.register("camembert", encoder=TFRobertaModel, decoder=TFRobertaForCausalLM)
MODELS.register("electra", encoder=TFElectraModel, decoder=TFElectraForCausalLM)


class _TFAutoFactory(AutoFactory):
    registry = MODELS


class TFAutoModel(_TFAutoFactory):
    """The base model of a config's ``model_type`` (``TFBertModel``, ``TFGPT2Model``)."""

    role = ENCODER


class TFAutoModelForCausalLM(_TFAutoFactory):
    """The causal LM with cross-attention of a config's ``model_type`` (``TFBertLMHeadModel``, ``TFGPT2LMHeadModel``)."""

    role = DECODER
