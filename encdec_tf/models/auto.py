"""``TFAutoModel`` / ``TFAutoModelForCausalLM``: registries from ``model_type`` to class."""

from __future__ import annotations

from typing import Any, Dict, Type

from encdec.configuration import AutoConfig, PretrainedConfig
from encdec_tf.models.bert import TFBertLMHeadModel, TFBertModel
from encdec_tf.models.gpt2 import TFGPT2LMHeadModel, TFGPT2Model
from encdec_tf.modeling_utils import TFPreTrainedModel

TF_MODEL_MAPPING: Dict[str, Type[TFPreTrainedModel]] = {
    "bert": TFBertModel,
    "gpt2": TFGPT2Model,
}
TF_MODEL_FOR_CAUSAL_LM_MAPPING: Dict[str, Type[TFPreTrainedModel]] = {
    "bert": TFBertLMHeadModel,
    "gpt2": TFGPT2LMHeadModel,
}


class _TFAutoBase:
    mapping: Dict[str, Type[TFPreTrainedModel]] = {}
    kind = ""

    def __init__(self) -> None:
        raise EnvironmentError(f"{type(self).__name__} is a factory: use from_config or from_pretrained")

    @classmethod
    def model_class(cls, config: PretrainedConfig) -> Type[TFPreTrainedModel]:
        try:
            return cls.mapping[config.model_type]
        except KeyError:
            raise ValueError(
                f"{cls.__name__} has no {cls.kind} class for model_type {config.model_type!r}; "
                f"supported: {sorted(cls.mapping)}"
            ) from None

    @classmethod
    def from_config(cls, config: PretrainedConfig, **kwargs: Any) -> TFPreTrainedModel:
        return cls.model_class(config)(config, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str, *model_args: Any, **kwargs: Any) -> TFPreTrainedModel:
        model, _ = cls.from_pretrained_with_report(pretrained_model_name_or_path, *model_args, **kwargs)
        return model

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

    @classmethod
    def register(cls, model_type: str, model_class: Type[TFPreTrainedModel]) -> None:
        cls.mapping[model_type] = model_class


class TFAutoModel(_TFAutoBase):
    """The base model of a config's ``model_type`` (``TFBertModel``, ``TFGPT2Model``)."""

    mapping = TF_MODEL_MAPPING
    kind = "base"


class TFAutoModelForCausalLM(_TFAutoBase):
    """The causal-LM model of a config's ``model_type`` (``TFBertLMHeadModel``, ``TFGPT2LMHeadModel``)."""

    mapping = TF_MODEL_FOR_CAUSAL_LM_MAPPING
    kind = "causal-LM"
