"""Registries from ``model_type`` to model class (add an architecture by adding one entry)."""

from __future__ import annotations

from typing import Any, Dict, Type

from encdec.configuration import AutoConfig, PretrainedConfig
from encdec_flax.models.bert import FlaxBertForCausalLM, FlaxBertModel
from encdec_flax.models.gpt2 import FlaxGPT2LMHeadModel, FlaxGPT2Model
from encdec_flax.models.modeling_utils import FlaxPreTrainedModel

FLAX_MODEL_MAPPING: Dict[str, Type[FlaxPreTrainedModel]] = {
    "bert": FlaxBertModel,
    "gpt2": FlaxGPT2Model,
}

FLAX_MODEL_FOR_CAUSAL_LM_MAPPING: Dict[str, Type[FlaxPreTrainedModel]] = {
    "bert": FlaxBertForCausalLM,
    "gpt2": FlaxGPT2LMHeadModel,
}


def _lookup(mapping: Dict[str, Type[FlaxPreTrainedModel]], config: PretrainedConfig, what: str):
    try:
        return mapping[config.model_type]
    except KeyError:
        raise ValueError(
            f"no Flax {what} for model_type {config.model_type!r}; supported: {sorted(mapping)}"
        ) from None


class _FlaxAutoClass:
    mapping: Dict[str, Type[FlaxPreTrainedModel]] = {}
    what = ""

    def __init__(self) -> None:
        raise EnvironmentError(f"{type(self).__name__} is a factory: use from_config or from_pretrained")

    @classmethod
    def model_class(cls, config: PretrainedConfig) -> Type[FlaxPreTrainedModel]:
        return _lookup(cls.mapping, config, cls.what)

    @classmethod
    def from_config(cls, config: PretrainedConfig, **kwargs: Any) -> FlaxPreTrainedModel:
        return cls.model_class(config)(config, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str, **kwargs: Any):
        config = kwargs.pop("config", None)
        if config is None:
            from encdec.hub import HUB_KWARGS

            config = AutoConfig.from_pretrained(
                pretrained_model_name_or_path, **{k: v for k, v in kwargs.items() if k in HUB_KWARGS}
            )
        return cls.model_class(config).from_pretrained(pretrained_model_name_or_path, config=config, **kwargs)


class FlaxAutoModel(_FlaxAutoClass):
    """The base model (``FlaxBertModel``, ``FlaxGPT2Model``) for a config's ``model_type``."""

    mapping = FLAX_MODEL_MAPPING
    what = "base model"


class FlaxAutoModelForCausalLM(_FlaxAutoClass):
    """The causal LM (``FlaxBertForCausalLM``, ``FlaxGPT2LMHeadModel``) for a config's ``model_type``."""

    mapping = FLAX_MODEL_FOR_CAUSAL_LM_MAPPING
    what = "causal LM"
