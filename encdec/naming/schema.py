"""The parameter schema of a model, derived from its config alone (each architecture's own part is in
its record, ``encdec/architectures``; the composite is built here).

Every parameter has one canonical name: its Hugging Face PyTorch state-dict key
(``encoder.encoder.layer.0.attention.self.query.weight``). A ``ParamSpec`` records the name, the
canonical (PyTorch) shape, the ``kind`` of module it belongs to (see ``layout.py``) and, for tied
parameters, the name of the tensor that owns the storage (the one written to ``model.safetensors``).
The three framework implementations are tested against this schema.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Dict, Iterable, List, Optional, Tuple

from encdec.configuration import EncoderDecoderConfig
from encdec.registry import DECODER, ENCODER, architecture, require_role

# Module kinds. Layout rules per framework are keyed by (kind, leaf) in layout.py.
LINEAR = "linear"  # nn.Linear: weight (out, in), bias (out,)
CONV1D = "conv1d"  # GPT-2 Conv1D: weight (in, out), bias (out,)
LAYERNORM = "layernorm"  # weight (n,), bias (n,)
EMBEDDING = "embedding"  # weight (num, dim)
BIAS = "bias"  # a bare parameter vector (BERT's `cls.predictions.bias`)
KINDS = (LINEAR, CONV1D, LAYERNORM, EMBEDDING, BIAS)


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    name: str
    shape: Tuple[int, ...]
    kind: str
    tied_to: Optional[str] = None  # the owner's canonical name when this tensor shares storage

    @property
    def leaf(self) -> str:
        return self.name.rsplit(".", 1)[-1]


@dataclasses.dataclass(frozen=True)
class IgnoredKey:
    """Keys that checkpoints may carry and models do not use, with the reason."""

    pattern: str  # an anchored regex over canonical names (without the model's outer prefix)
    reason: str

    def matches(self, name: str) -> bool:
        return re.search(self.pattern, name) is not None


class Schema:
    """An ordered set of ``ParamSpec`` plus the keys checkpoints may carry that are ignored."""

    def __init__(self, params: Iterable[ParamSpec] = (), ignored: Iterable[IgnoredKey] = ()):
        self.params: Dict[str, ParamSpec] = {}
        for p in params:
            self.add(p)
        self.ignored: List[IgnoredKey] = list(ignored)

    def add(self, spec: ParamSpec) -> None:
        if spec.name in self.params:
            raise ValueError(f"schema already has {spec.name!r}")
        self.params[spec.name] = spec

    def __contains__(self, name: str) -> bool:
        return name in self.params

    def __getitem__(self, name: str) -> ParamSpec:
        return self.params[name]

    def __iter__(self):
        return iter(self.params.values())

    def __len__(self) -> int:
        return len(self.params)

    def names(self) -> List[str]:
        return list(self.params)

    def owned(self) -> List[ParamSpec]:
        """The parameters that own storage: what ``model.safetensors`` holds."""
        return [p for p in self.params.values() if p.tied_to is None]

    def ties(self) -> Dict[str, str]:
        return {p.name: p.tied_to for p in self.params.values() if p.tied_to is not None}

    def shapes(self) -> Dict[str, Tuple[int, ...]]:
        return {p.name: p.shape for p in self.params.values()}

    def ignore_reason(self, name: str) -> Optional[str]:
        for rule in self.ignored:
            if rule.matches(name):
                return rule.reason
        return None

    def prefixed(self, prefix: str) -> "Schema":
        """The same schema under ``prefix`` (``"encoder."``); ignore rules are re-anchored."""
        params = [
            dataclasses.replace(p, name=prefix + p.name, tied_to=None if p.tied_to is None else prefix + p.tied_to)
            for p in self.params.values()
        ]
        ignored = [IgnoredKey(_reanchor(r.pattern, prefix), r.reason) for r in self.ignored]
        return Schema(params, ignored)

    def merge(self, other: "Schema") -> "Schema":
        out = Schema(list(self.params.values()), list(self.ignored))
        for p in other:
            out.add(p)
        out.ignored.extend(other.ignored)
        return out


def _reanchor(pattern: str, prefix: str) -> str:
    body = pattern[1:] if pattern.startswith("^") else "(?:.*\\.)?" + pattern
    return "^" + re.escape(prefix) + body


# --------------------------------------------------------------------------------------------
# Building blocks


def linear(name: str, out_features: int, in_features: int, bias: bool = True) -> List[ParamSpec]:
    specs = [ParamSpec(f"{name}.weight", (out_features, in_features), LINEAR)]
    if bias:
        specs.append(ParamSpec(f"{name}.bias", (out_features,), LINEAR))
    return specs


def conv1d(name: str, in_features: int, out_features: int) -> List[ParamSpec]:
    return [
        ParamSpec(f"{name}.weight", (in_features, out_features), CONV1D),
        ParamSpec(f"{name}.bias", (out_features,), CONV1D),
    ]


def layernorm(name: str, n: int) -> List[ParamSpec]:
    return [ParamSpec(f"{name}.weight", (n,), LAYERNORM), ParamSpec(f"{name}.bias", (n,), LAYERNORM)]


def embedding(name: str, num: int, dim: int) -> List[ParamSpec]:
    return [ParamSpec(f"{name}.weight", (num, dim), EMBEDDING)]


def needs_enc_to_dec_proj(config: Any) -> bool:
    """The reference's rule: project when hidden sizes differ and the decoder sets no
    ``cross_attention_hidden_size``. A set one must equal the encoder's hidden size."""
    cross = getattr(config.decoder, "cross_attention_hidden_size", None)
    if cross is not None:
        if cross != config.encoder.hidden_size:
            raise ValueError(
                f"decoder.cross_attention_hidden_size={cross} must equal encoder.hidden_size="
                f"{config.encoder.hidden_size} (or be unset to add `enc_to_dec_proj`)"
            )
        return False
    return config.encoder.hidden_size != config.decoder.hidden_size


def encoder_decoder_schema(config: Any) -> Schema:
    """``EncoderDecoderModel``: ``encoder.`` (base model, pooler included), ``decoder.``
    (causal LM with cross-attention), ``enc_to_dec_proj`` when hidden sizes differ, and the
    encoder->decoder ties of ``tie_encoder_decoder``."""
    enc_arch, dec_arch = require_role(config.encoder, ENCODER), require_role(config.decoder, DECODER)
    encoder = enc_arch.base_schema(config.encoder, add_pooling_layer=True).prefixed("encoder.")
    decoder = dec_arch.causal_lm_schema(config.decoder).prefixed("decoder.")
    if config.tie_encoder_decoder:
        encoder = _tie_encoder_to_decoder(config, encoder, decoder, dec_arch.base_model_prefix)
    schema = encoder.merge(decoder)
    if needs_enc_to_dec_proj(config):
        for p in linear("enc_to_dec_proj", config.decoder.hidden_size, config.encoder.hidden_size):
            schema.add(p)
    return schema


def _tie_encoder_to_decoder(config: Any, encoder: Schema, decoder: Schema, base_prefix: str) -> Schema:
    if config.encoder.model_type != config.decoder.model_type:
        raise ValueError(
            "tie_encoder_decoder=True needs encoder and decoder of the same model_type, got "
            f"{config.encoder.model_type!r} and {config.decoder.model_type!r}"
        )
    tied = []
    for p in encoder:
        owner = "decoder." + base_prefix + "." + p.name[len("encoder."):]
        if owner in decoder and decoder[owner].shape == p.shape:
            tied.append(dataclasses.replace(p, tied_to=owner))
        else:
            tied.append(p)  # e.g. the pooler: the decoder has none
    return Schema(tied, encoder.ignored)


def schema_for(config: Any, head: str = "base", add_pooling_layer: bool = True) -> Schema:
    """The schema of a model: ``EncoderDecoderConfig`` -> the composite; otherwise
    ``head="base"`` (``AutoModel``) or ``head="causal_lm"`` (``AutoModelForCausalLM``)."""
    if isinstance(config, EncoderDecoderConfig):
        return encoder_decoder_schema(config)
    arch = architecture(config)
    if head == "base":
        return arch.base_schema(config, add_pooling_layer=add_pooling_layer)
    if head == "causal_lm":
        return require_role(config, DECODER).causal_lm_schema(config)
    raise ValueError(f"head must be 'base' or 'causal_lm', got {head!r}")
