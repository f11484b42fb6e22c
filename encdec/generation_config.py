"""``GenerationConfig``: the decoding defaults stored in ``generation_config.json``.

Resolution order for every value used by ``generate`` (documented in docs/generation.md):
argument to ``generate`` > generation config > top-level model config > decoder sub-config.
``GenerationConfig.from_model_config`` performs the last two steps once, when a model is built
or loaded without a ``generation_config.json``.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any, Dict, Optional

from encdec.configuration import ENCDEC_VERSION, PretrainedConfig, read_json
from encdec.files import atomic_write_text

GENERATION_CONFIG_NAME = "generation_config.json"

GENERATION_DEFAULTS: Dict[str, Any] = {
    "max_length": 20,
    "max_new_tokens": None,
    "min_length": 0,
    "min_new_tokens": None,
    "early_stopping": False,
    "do_sample": False,
    "num_beams": 1,
    "temperature": 1.0,
    "top_k": 50,
    "top_p": 1.0,
    "typical_p": 1.0,
    "repetition_penalty": 1.0,
    "length_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "bad_words_ids": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "num_return_sequences": 1,
    "num_beam_groups": 1,
    "diversity_penalty": 0.0,
    "stop_strings": None,
    "max_time": None,
    "output_scores": False,
    "return_dict_in_generate": False,
    "use_cache": True,
    "pad_token_id": None,
    "bos_token_id": None,
    "eos_token_id": None,
    "decoder_start_token_id": None,
}

TOKEN_KEYS = ("pad_token_id", "bos_token_id", "eos_token_id", "decoder_start_token_id")

# Bookkeeping, not settings: never compared, hashed or written (``_from_model_config`` is written
# when True, as the reference does, so a reloaded model keeps honouring its config).
_METADATA = ("_from_model_config", "_original_object_hash", "_transformers_version")


class GenerationConfig:
    """Decoding settings. Unknown keys are kept and written back.

    Args:
        **kwargs: any of ``GENERATION_DEFAULTS`` (``max_length``, ``num_beams``, token ids, ...).
    """

    def __init__(self, **kwargs: Any):
        self._from_model_config = bool(kwargs.pop("_from_model_config", False))
        # The version of the library that wrote the file (None: this one): decides how a
        # `generation_config=` passed to generate is completed (``prepare_generation_config``).
        self._transformers_version = kwargs.pop("_transformers_version", None)
        for key, value in GENERATION_DEFAULTS.items():
            setattr(self, key, copy.deepcopy(value))
        for key, value in kwargs.items():
            setattr(self, key, value)
        self.validate()
        # Set where the reference sets it (from a model config or a file): whether the instance
        # was modified since is part of the legacy rule of ``prepare_generation_config``.
        self._original_object_hash = None

    def validate(self) -> None:
        if self.early_stopping not in (True, False, "never"):
            raise ValueError(f"early_stopping must be True, False or 'never', got {self.early_stopping!r}")
        if self.num_beams < 1:
            raise ValueError(f"num_beams must be >= 1, got {self.num_beams}")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")

    @classmethod
    def from_model_config(cls, config: PretrainedConfig) -> "GenerationConfig":
        """Token ids and generation fields from the top-level config, else the decoder's."""
        sources = [config]
        decoder = getattr(config, "decoder", None)
        if isinstance(decoder, PretrainedConfig):
            sources.append(decoder)
        values: Dict[str, Any] = {}
        for key, default in GENERATION_DEFAULTS.items():
            for source in sources:
                value = source.__dict__.get(key, default)
                if value != default:
                    values[key] = value
                    break
        config = cls(_from_model_config=True, **values)
        config._original_object_hash = hash(config)
        return config

    def update(self, **kwargs: Any) -> Dict[str, Any]:
        """Set the known keys; return the ones that are not generation settings."""
        unused = {}
        for key, value in kwargs.items():
            if key in GENERATION_DEFAULTS or hasattr(self, key):
                setattr(self, key, value)
            else:
                unused[key] = value
        self.validate()
        return unused

    def to_dict(self) -> Dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in self.__dict__.items() if k == "_from_model_config" or k not in _METADATA}

    def settings_dict(self) -> Dict[str, Any]:
        """Every setting, no bookkeeping: what equality and the hash compare."""
        return {k: v for k, v in self.to_dict().items() if k not in _METADATA}

    def to_diff_dict(self) -> Dict[str, Any]:
        out = {}
        for key, value in self.to_dict().items():
            if key == "_from_model_config":
                if value:
                    out[key] = True
                continue
            if key in GENERATION_DEFAULTS and GENERATION_DEFAULTS[key] == value:
                continue
            out[key] = value
        return out

    def to_json_string(self) -> str:
        return json.dumps(self.to_diff_dict(), indent=2, sort_keys=True) + "\n"

    def save_pretrained(self, save_directory: str) -> None:
        os.makedirs(save_directory, exist_ok=True)
        data = self.to_diff_dict()
        data.setdefault("encdec_version", ENCDEC_VERSION)
        atomic_write_text(
            os.path.join(save_directory, GENERATION_CONFIG_NAME), json.dumps(data, indent=2, sort_keys=True) + "\n"
        )

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "GenerationConfig":
        data = dict(data)
        data["_transformers_version"] = data.pop("transformers_version", None)
        data.pop("encdec_version", None)
        config = cls(**data)
        config._original_object_hash = hash(config)
        return config

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str, **hub_kwargs: Any) -> "GenerationConfig":
        from encdec.hub import resolve_file

        path = str(pretrained_model_name_or_path)
        file = path if os.path.isfile(path) else resolve_file(path, GENERATION_CONFIG_NAME, **hub_kwargs)
        return cls.from_dict(read_json(file))

    @classmethod
    def for_model(cls, pretrained_model_name_or_path: Optional[str], config: PretrainedConfig,
                  **hub_kwargs: Any) -> "GenerationConfig":
        """The saved ``generation_config.json`` if the checkpoint has one, else from the config."""
        if pretrained_model_name_or_path is not None:
            from encdec.hub import resolve_file_optional

            path = str(pretrained_model_name_or_path)
            file = resolve_file_optional(path, GENERATION_CONFIG_NAME, **hub_kwargs)
            if file is not None:
                return cls.from_dict(read_json(file))
        return cls.from_model_config(config)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GenerationConfig) and self.settings_dict() == other.settings_dict()

    def __hash__(self) -> int:
        return hash(json.dumps(self.settings_dict(), sort_keys=True, default=repr))

    def __repr__(self) -> str:
        return f"GenerationConfig {self.to_json_string()}"
