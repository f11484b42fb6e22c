"""Registries from ``model_type`` to model class (add an architecture by adding one entry)."""

from __future__ import annotations

from typing import Any, Dict, Type

from encdec.configuration import AutoConfig, PretrainedConfig
from encdec_pt.modeling_utils import PreTrainedModel
from encdec_pt.models.bert import BertLMHeadModel, BertModel
from encdec_pt.models.gpt2 import GPT2LMHeadModel, GPT2Model

MODEL_MAPPING: Dict[str, Type[PreTrainedModel]] = {
    "bert": BertModel,
    "gpt2": GPT2Model,
}

MODEL_FOR_CAUSAL_LM_MAPPING: Dict[str, Type[PreTrainedModel]] = {
    "bert": BertLMHeadModel,
    "gpt2": GPT2LMHeadModel,
}


class _AutoFactory:
    """Picks the class from the config's ``model_type``; ``from_config`` / ``from_pretrained``."""

    _mapping: Dict[str, Type[PreTrainedModel]] = {}
    _role: str = ""

    def __init__(self) -> None:
        raise EnvironmentError(f"{type(self).__name__} is a factory: use from_config or from_pretrained")

    @classmethod
    def model_class(cls, config: PretrainedConfig) -> Type[PreTrainedModel]:
        try:
            return cls._mapping[config.model_type]
        except KeyError:
            raise ValueError(
                f"no PyTorch {cls._role} for model_type {config.model_type!r}; supported: {sorted(cls._mapping)}"
            ) from None

    @classmethod
    def from_config(cls, config: PretrainedConfig, **kwargs: Any) -> PreTrainedModel:
        return cls.model_class(config)(config, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str, *model_args: Any, **kwargs: Any):
        config = kwargs.pop("config", None)
        if config is None:
            hub = {k: kwargs[k] for k in ("revision", "cache_dir", "local_files_only", "token", "subfolder")
                   if k in kwargs}
            config = AutoConfig.from_pretrained(pretrained_model_name_or_path, **hub)
        return cls.model_class(config).from_pretrained(
            pretrained_model_name_or_path, *model_args, config=config, **kwargs
        )

    @classmethod
    def register(cls, model_type: str, model_class: Type[PreTrainedModel]) -> None:
        cls._mapping[model_type] = model_class


class AutoModel(_AutoFactory):
    """Base models (``BertModel``, ``GPT2Model``): what an ``EncoderDecoderModel`` uses as encoder."""

    _mapping = MODEL_MAPPING
    _role = "base model"


class AutoModelForCausalLM(_AutoFactory):
    """Causal LMs (``BertLMHeadModel``, ``GPT2LMHeadModel``): what it uses as decoder."""

    _mapping = MODEL_FOR_CAUSAL_LM_MAPPING
    _role = "causal LM"
