"""Configs that read and write the Hugging Face ``config.json`` schema.

Plain, mutable Python objects (users set ``model.config.decoder_start_token_id = ...`` after
loading). Unknown keys are kept as attributes and written back, so a config round-trips through
this library without losing anything another tool put there. No framework is imported here.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any, ClassVar, Dict, Type

from encdec.files import atomic_write_text
from encdec.registry import ARCHITECTURES

CONFIG_NAME = "config.json"

# Keys every Hugging Face config may carry, with the defaults of its `PretrainedConfig`.
# They are accepted by every config class here and written only when they differ from these.
COMMON_DEFAULTS: Dict[str, Any] = {
    "return_dict": True,
    "output_hidden_states": False,
    "output_attentions": False,
    "torchscript": False,
    "dtype": None,
    "tie_word_embeddings": True,
    "chunk_size_feed_forward": 0,
    "is_encoder_decoder": False,
    "is_decoder": False,
    "cross_attention_hidden_size": None,
    "add_cross_attention": False,
    "tie_encoder_decoder": False,
    "architectures": None,
    "finetuning_task": None,
    "id2label": None,
    "label2id": None,
    "tokenizer_class": None,
    "prefix": None,
    "bos_token_id": None,
    "pad_token_id": None,
    "eos_token_id": None,
    "sep_token_id": None,
    "decoder_start_token_id": None,
    "task_specific_params": None,
    "problem_type": None,
}

# Keys we never write back (derived or private).
_NOT_SERIALISED = {"_name_or_path", "_commit_hash", "_attn_implementation", "name_or_path"}

ENCDEC_VERSION = "0.1.0"

# The generation attributes every reference config carries with these defaults (its
# `PretrainedConfig._get_global_generation_defaults`). Read through `config.max_length` etc. when
# not set; a value set on the config (or read from `config.json`) is stored, written back, and
# honoured by `generate` while the model's generation config is the one derived from the config
# (`encdec.generation_utils.prepare_generation_config`).
LEGACY_GENERATION_DEFAULTS: Dict[str, Any] = {
    "max_length": 20,
    "min_length": 0,
    "do_sample": False,
    "early_stopping": False,
    "num_beams": 1,
    "temperature": 1.0,
    "top_k": 50,
    "top_p": 1.0,
    "typical_p": 1.0,
    "repetition_penalty": 1.0,
    "length_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "bad_words_ids": None,
    "num_return_sequences": 1,
    "output_scores": False,
    "return_dict_in_generate": False,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "remove_invalid_values": False,
    "exponential_decay_length_penalty": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "num_beam_groups": 1,
    "diversity_penalty": 0.0,
}


class PretrainedConfig:
    """Base of every config: HF ``config.json`` fields as attributes.

    Subclasses declare ``model_type``, ``defaults`` (their own fields with default values) and
    ``attribute_map`` (aliases such as GPT-2's ``hidden_size -> n_embd``).

    Args:
        **kwargs: any field of the schema; unknown keys are kept and written back.
    """

    model_type: ClassVar[str] = ""
    defaults: ClassVar[Dict[str, Any]] = {}
    attribute_map: ClassVar[Dict[str, str]] = {}

    def __init__(self, **kwargs: Any):
        # `torch_dtype` is the pre-4.56 name of `dtype`; both are read, `dtype` is written.
        if "torch_dtype" in kwargs:
            legacy = kwargs.pop("torch_dtype")
            kwargs.setdefault("dtype", legacy)
        kwargs.pop("model_type", None)
        # Which library version wrote the file: informative only, never part of the config.
        kwargs.pop("transformers_version", None)
        kwargs.pop("encdec_version", None)
        for key, value in COMMON_DEFAULTS.items():
            object.__setattr__(self, key, copy.deepcopy(value))
        for key, value in self.defaults.items():
            object.__setattr__(self, key, copy.deepcopy(value))
        for key, value in kwargs.items():
            setattr(self, key, value)
        if self.id2label is not None:
            self.id2label = {int(k): v for k, v in self.id2label.items()}

    # --- aliases ---------------------------------------------------------------------------
    def __setattr__(self, key: str, value: Any) -> None:
        key = type(self).attribute_map.get(key, key)
        object.__setattr__(self, key, value)

    def __getattr__(self, key: str) -> Any:
        # Only called when normal lookup fails: resolve aliases, else a clear AttributeError.
        amap = type(self).attribute_map
        if key in amap:
            return getattr(self, amap[key])
        if key in LEGACY_GENERATION_DEFAULTS:
            return copy.deepcopy(LEGACY_GENERATION_DEFAULTS[key])
        raise AttributeError(f"{type(self).__name__} has no attribute {key!r}")

    def update(self, config_dict: Dict[str, Any]) -> None:
        """Set every key of ``config_dict`` as an attribute (aliases resolved), as the reference does."""
        for key, value in config_dict.items():
            setattr(self, key, value)

    def update_from_string(self, update_str: str) -> None:
        """``"n_embd=10,resid_pdrop=0.2,scale_attn_weights=false"``: each value is parsed to the type
        of the attribute it replaces (bool, int, float or str), as the reference does."""
        for item in update_str.split(","):
            key, sep, text = item.partition("=")
            if not sep:
                raise ValueError(f"update_from_string needs key=value pairs separated by commas, got {item!r}")
            if not hasattr(self, key):
                raise ValueError(f"key {key!r} in {update_str!r} is not an attribute of {type(self).__name__}")
            old = getattr(self, key)
            if isinstance(old, bool):
                if text.lower() not in ("true", "1", "y", "yes", "false", "0", "n", "no"):
                    raise ValueError(f"can't parse {text!r} as a bool for key {key!r}")
                value: Any = text.lower() in ("true", "1", "y", "yes")
            elif isinstance(old, int):
                value = int(text)
            elif isinstance(old, float):
                value = float(text)
            elif isinstance(old, str):
                value = text
            else:
                raise ValueError(f"can't set {key!r} from a string: its value {old!r} is not a bool, int, float or str")
            setattr(self, key, value)

    def get_text_config(self, decoder: bool = True) -> "PretrainedConfig":
        """The config of the text part: the config itself for a single model."""
        return self

    def _get_non_default_generation_parameters(self) -> Dict[str, Any]:
        """The legacy generation attributes set on this config (top level) to a value other than
        the default; None means "no opinion" and is never reported (the reference's rule)."""
        out = {}
        for key, default in LEGACY_GENERATION_DEFAULTS.items():
            value = self.__dict__.get(key)
            if value is not None and value != default:
                out[key] = value
        return out

    # --- derived values --------------------------------------------------------------------
    @property
    def use_return_dict(self) -> bool:
        return bool(self.return_dict) and not self.torchscript

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    # --- dict / json -----------------------------------------------------------------------
    def to_dict(self) -> Dict[str, Any]:
        """Every field, including defaults and unknown keys, plus ``model_type``."""
        out: Dict[str, Any] = {}
        for key, value in self.__dict__.items():
            if key in _NOT_SERIALISED:
                continue
            if isinstance(value, PretrainedConfig):
                value = value.to_dict()
            out[key] = copy.deepcopy(value)
        out["model_type"] = self.model_type
        return out

    def to_diff_dict(self) -> Dict[str, Any]:
        """The fields worth writing: model fields always, common fields when not default."""
        out: Dict[str, Any] = {}
        for key, value in self.to_dict().items():
            if key in COMMON_DEFAULTS and value == COMMON_DEFAULTS[key] and key != "is_encoder_decoder":
                continue
            if isinstance(getattr(self, key, None), PretrainedConfig):
                value = getattr(self, key).to_diff_dict()
            out[key] = value
        return out

    def to_json_string(self, use_diff: bool = True) -> str:
        data = self.to_diff_dict() if use_diff else self.to_dict()
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    def to_json_file(self, path: str, use_diff: bool = True) -> None:
        atomic_write_text(path, self.to_json_string(use_diff=use_diff))

    @classmethod
    def from_dict(cls, config_dict: Dict[str, Any], **kwargs: Any) -> "PretrainedConfig":
        data = copy.deepcopy(dict(config_dict))
        mt = data.get("model_type")
        if cls.model_type and mt not in (None, cls.model_type):
            raise ValueError(
                f"{cls.__name__} expects model_type {cls.model_type!r} but the config says {mt!r}; "
                f"use AutoConfig to pick the class from the file"
            )
        data.update(kwargs)
        return cls(**data)

    @classmethod
    def from_json_file(cls, path: str) -> "PretrainedConfig":
        return cls.from_dict(read_json(path))

    def save_pretrained(self, save_directory: str) -> None:
        if os.path.isfile(save_directory):
            raise ValueError(f"save_pretrained needs a directory, but {save_directory!r} is a file")
        os.makedirs(save_directory, exist_ok=True)
        data = self.to_diff_dict()
        data.setdefault("encdec_version", ENCDEC_VERSION)
        atomic_write_text(
            os.path.join(save_directory, CONFIG_NAME), json.dumps(data, indent=2, sort_keys=True) + "\n"
        )

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str, **kwargs: Any) -> "PretrainedConfig":
        """Read ``config.json`` from a folder, a file, or a hub id (see ``encdec.hub``).

        Hub keywords (``revision``, ``cache_dir``, ``local_files_only``, ``token``, ...) are taken
        out of ``kwargs``; the rest override config fields.
        """
        from encdec.hub import HUB_KWARGS, resolve_file

        hub_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in HUB_KWARGS}
        path = str(pretrained_model_name_or_path)
        if os.path.isfile(path):
            config_file = path
        else:
            config_file = resolve_file(path, CONFIG_NAME, **hub_kwargs)
        data = read_json(config_file)
        if cls is PretrainedConfig or cls is AutoConfig:
            return AutoConfig.for_dict(data, **kwargs)
        config = cls.from_dict(data, **kwargs)
        config._name_or_path = path
        return config

    # --- comparison ------------------------------------------------------------------------
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PretrainedConfig):
            return NotImplemented
        return type(self) is type(other) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"

    def copy(self) -> "PretrainedConfig":
        return copy.deepcopy(self)


def read_json(path: str) -> Dict[str, Any]:
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e


# Top-level names that `from_encoder_decoder_pretrained` must not route by their
# `encoder_` / `decoder_` prefix (the reference routes `decoder_start_token_id` to the decoder
# and crashes, see reference B7).
RESERVED_TOP_LEVEL_KEYS = frozenset(
    {"decoder_start_token_id", "encoder_no_repeat_ngram_size", "decoder_attention_mask"}
)


class EncoderDecoderConfig(PretrainedConfig):
    """Config of an encoder-decoder composite: ``encoder`` and ``decoder`` sub-configs.

    Args:
        encoder: a config object or a dict with ``model_type``.
        decoder: a config object or a dict with ``model_type``.
        **kwargs: top-level fields (``decoder_start_token_id``, ``pad_token_id``,
            ``eos_token_id``, ``tie_encoder_decoder``, ...).

    The caller's objects are copied, never mutated. ``vocab_size`` and ``hidden_size`` read
    through to the decoder, for tools that expect them on the top-level config.
    """

    model_type = "encoder-decoder"

    def __init__(self, encoder: Any = None, decoder: Any = None, **kwargs: Any):
        if encoder is None or decoder is None:
            raise ValueError(
                "EncoderDecoderConfig needs both an `encoder` and a `decoder` sub-config "
                f"(got encoder={'set' if encoder is not None else 'missing'}, "
                f"decoder={'set' if decoder is not None else 'missing'})"
            )
        kwargs.setdefault("is_encoder_decoder", True)
        # Derived from the decoder (read-only properties below); never stored twice.
        kwargs.pop("vocab_size", None)
        kwargs.pop("hidden_size", None)
        super().__init__(**kwargs)
        self.encoder = _as_config(encoder, "encoder")
        self.decoder = _as_config(decoder, "decoder")
        self.is_encoder_decoder = True

    @classmethod
    def from_encoder_decoder_configs(
        cls, encoder_config: Any, decoder_config: Any, **kwargs: Any
    ) -> "EncoderDecoderConfig":
        """Compose two configs; the decoder copy gets ``is_decoder`` and ``add_cross_attention``."""
        decoder = _as_config(decoder_config, "decoder")
        decoder.is_decoder = True
        decoder.add_cross_attention = True
        return cls(encoder=encoder_config, decoder=decoder, **kwargs)

    @classmethod
    def from_dict(cls, config_dict: Dict[str, Any], **kwargs: Any) -> "EncoderDecoderConfig":
        data = copy.deepcopy(dict(config_dict))
        data.pop("model_type", None)
        data.update(kwargs)
        return cls(**data)

    @property
    def vocab_size(self) -> int:
        return self.decoder.vocab_size

    @vocab_size.setter
    def vocab_size(self, value: int) -> None:
        # The reference's own example sets `model.config.vocab_size = model.config.decoder.vocab_size`;
        # that is accepted. Any other value would make the config disagree with the decoder's weights.
        if value != self.decoder.vocab_size:
            raise ValueError(
                f"vocab_size of an EncoderDecoderConfig is the decoder's ({self.decoder.vocab_size}); "
                f"got {value}. Resize the decoder's embeddings (resize_token_embeddings) to change it"
            )

    @property
    def hidden_size(self) -> int:
        return self.decoder.hidden_size

    def get_text_config(self, decoder: bool = True) -> PretrainedConfig:
        return self.decoder if decoder else self.encoder

    def to_dict(self) -> Dict[str, Any]:
        out = super().to_dict()
        out["encoder"] = self.encoder.to_dict()
        out["decoder"] = self.decoder.to_dict()
        return out

    def to_diff_dict(self) -> Dict[str, Any]:
        out = super().to_diff_dict()
        out["encoder"] = self.encoder.to_diff_dict()
        out["decoder"] = self.decoder.to_diff_dict()
        # HF writes `architectures` for the composite; keep the reference's name so its
        # Auto classes dispatch our files to the right class.
        out.setdefault("architectures", ["EncoderDecoderModel"])
        return out


def _as_config(value: Any, role: str) -> PretrainedConfig:
    if isinstance(value, PretrainedConfig):
        return copy.deepcopy(value)
    if isinstance(value, dict):
        return AutoConfig.for_dict(value)
    raise TypeError(f"the {role} sub-config must be a config object or a dict, got {type(value).__name__}")


class AutoConfig:
    """Picks the config class from ``model_type``: the architecture records (``encdec.registry``),
    then classes added with ``AutoConfig.register``."""

    def __init__(self) -> None:
        raise EnvironmentError("AutoConfig is a factory: use AutoConfig.from_pretrained or AutoConfig.for_model")

    @staticmethod
    def for_model(model_type: str, **kwargs: Any) -> PretrainedConfig:
        return _config_class(model_type)(**kwargs)

    @staticmethod
    def for_dict(config_dict: Dict[str, Any], **kwargs: Any) -> PretrainedConfig:
        if "model_type" not in config_dict:
            raise ValueError(
                "config has no `model_type`; cannot tell which architecture it describes "
                f"(keys: {sorted(config_dict)[:12]})"
            )
        return _config_class(config_dict["model_type"]).from_dict(config_dict, **kwargs)

    @staticmethod
    def from_pretrained(pretrained_model_name_or_path: str, **kwargs: Any) -> PretrainedConfig:
        return PretrainedConfig.from_pretrained.__func__(AutoConfig, pretrained_model_name_or_path, **kwargs)

    @staticmethod
    def register(model_type: str, config_class: Type[PretrainedConfig]) -> None:
        """A config class for a model_type that has no architecture record (configs only: building a
        model needs a record, ``encdec.registry.register_architecture``)."""
        if model_type in ARCHITECTURES:
            raise ValueError(f"model_type {model_type!r} already has an architecture record")
        _REGISTERED_CONFIGS[model_type] = config_class


# Config classes of `AutoConfig.register` (model_types without an architecture record).
_REGISTERED_CONFIGS: Dict[str, Type[PretrainedConfig]] = {}


def _config_class(model_type: str) -> Type[PretrainedConfig]:
    if model_type == EncoderDecoderConfig.model_type:
        return EncoderDecoderConfig
    if model_type in ARCHITECTURES:
        return ARCHITECTURES[model_type].config_class
    try:
        return _REGISTERED_CONFIGS[model_type]
    except KeyError:
        raise ValueError(
            f"unsupported model_type {model_type!r}; supported: "
            f"{sorted(list(ARCHITECTURES) + list(_REGISTERED_CONFIGS) + [EncoderDecoderConfig.model_type])}"
        ) from None
