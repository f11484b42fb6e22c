"""The TensorFlow layer classes of each architecture record: registered here, in one place."""

from __future__ import annotations

from typing import Any

from encdec.configuration import AutoConfig
from encdec.registry import DECODER, ENCODER, AutoFactory, ModelRegistry
from encdec_tf.models.bert import TFBertLMHeadModel, TFBertModel
from encdec_tf.models.gpt2 import TFGPT2LMHeadModel, TFGPT2Model

MODELS = ModelRegistry("TensorFlow")
MODELS.register("bert", encoder=TFBertModel, decoder=TFBertLMHeadModel)
MODELS.register("gpt2", encoder=TFGPT2Model, decoder=TFGPT2LMHeadModel)


class _TFAutoFactory(AutoFactory):
    registry = MODELS

    @classmethod
    def from_pretrained_with_report(cls, pretrained_model_name_or_path: str, *model_args: Any, **kwargs: Any):
        """(model, report lines on weights the checkpoint lacked)."""
        config = kwargs.pop("config", None)
        if config is None:
            from encdec.hub import HUB_KWARGS

            hub_kwargs = {k: v for k, v in kwargs.items() if k in HUB_KWARGS}
            config = AutoConfig.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
        model_class = cls.model_class(config)
        return model_class._from_pretrained_with_report(pretrained_model_name_or_path, *model_args, config=config, **kwargs)


class TFAutoModel(_TFAutoFactory):
    """The base model of a config's ``model_type`` (``TFBertModel``, ``TFGPT2Model``)."""

    role = ENCODER


class TFAutoModelForCausalLM(_TFAutoFactory):
    """The causal LM with cross-attention of a config's ``model_type`` (``TFBertLMHeadModel``, ``TFGPT2LMHeadModel``)."""

    role = DECODER
