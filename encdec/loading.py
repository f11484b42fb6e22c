"""One loading path: ``from_pretrained`` and ``from_encoder_decoder_pretrained`` of every framework.

The steps are framework-free and written once here: argument splitting, config resolution, the
warm-start rules, file discovery and reading (``encdec.checkpoint``), alignment to the model's
schema, one load report and one load-info dict. A framework supplies a ``Loader`` (a small object,
one per call) with three methods:

- ``build(model_class, config, *model_args, **init_kwargs)``: the model with no weight values worth
  keeping (PyTorch on the meta device, TF with deferred initialisers, Flax with ``_do_init=False``);
- ``initialise_missing(model, names)``: give the owned canonical ``names`` the checkpoint lacks the
  values the model's own initialisation gives them (called before ``assign``, also with no names,
  so that a framework can finish building);
- ``assign(model, tensors)``: put canonical numpy tensors (owned names, PyTorch layout) into the
  model, copying nothing it need not.

One rule for what a checkpoint may hold: a shape mismatch raises a ``CheckpointError`` naming key
and shapes; an owned weight it lacks is initialised and reported (one report, see
``encdec.modeling_utils.newly_initialised_report``); a tensor the model has no place for is
reported (``unexpected_keys``) and dropped.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Dict, Iterable, List, Optional, Protocol, Tuple

import numpy as np

from encdec.checkpoint import align_to_schema, load_checkpoint
from encdec.configuration import AutoConfig, EncoderDecoderConfig, PretrainedConfig
from encdec.files import CheckpointError
from encdec.hub import HUB_KWARGS
from encdec.modeling_utils import newly_initialised_report, split_prefixed_kwargs
from encdec.naming.schema import Schema, schema_for
from encdec.registry import architecture

logger = logging.getLogger("encdec")

# `from_pt` / `from_tf` / `from_flax` -> the format `encdec.checkpoint.load_checkpoint` prefers.
PREFER_FLAGS = {"from_pt": "pt", "from_tf": "tf", "from_flax": "flax"}
# Keys of a side's kwargs in `from_encoder_decoder_pretrained` that are not config fields.
_SIDE_LOAD_KEYS = frozenset({"model", "config"}) | frozenset(PREFER_FLAGS) | HUB_KWARGS


class Loader(Protocol):
    """What a framework supplies to the loading path (see the module docstring)."""

    def build(self, model_class: Any, config: PretrainedConfig, *model_args: Any, **init_kwargs: Any) -> Any: ...

    def initialise_missing(self, model: Any, names: List[str]) -> None: ...

    def assign(self, model: Any, tensors: Dict[str, np.ndarray]) -> None: ...


@dataclasses.dataclass
class Loaded:
    """The result of a load: the model, ``info`` (``missing_keys``, ``unexpected_keys``,
    ``mismatched_keys``, ``ignored_keys``) and the report lines that were logged."""

    model: Any
    info: Dict[str, Any]
    report: List[str]


# --------------------------------------------------------------------------------------------
# Arguments


def prefer_from_flags(flags: Dict[str, Any], where: str = "") -> Optional[str]:
    """The format that ``from_pt`` / ``from_tf`` / ``from_flax`` ask for (None when none is set).

    A flag only chooses which file wins when a folder holds several (a folder with only one kind
    loads without any flag). Setting two of them is ambiguous and raises ``ValueError``, in every
    framework: there is no precedence between them.
    """
    chosen = [flag for flag in PREFER_FLAGS if flags.get(flag)]
    if len(chosen) > 1:
        raise ValueError(
            f"{where}{' and '.join(chosen)} are both set; each chooses which weights file wins when a folder "
            "holds several, so pass at most one"
        )
    return PREFER_FLAGS[chosen[0]] if chosen else None


@dataclasses.dataclass
class LoadArguments:
    """``from_pretrained`` keywords sorted by what they do."""

    config: Optional[PretrainedConfig]
    prefer: Optional[str]
    hub: Dict[str, Any]
    init: Dict[str, Any]
    overrides: Dict[str, Any]
    output_loading_info: bool


def split_load_kwargs(kwargs: Dict[str, Any], init_kwarg_names: Iterable[str] = (), where: str = "") -> LoadArguments:
    """``config``, ``output_loading_info``, the prefer flags, hub arguments (``encdec.hub.HUB_KWARGS``),
    constructor arguments (``init_kwarg_names``, e.g. ``add_pooling_layer``); the rest override
    config fields."""
    kwargs = dict(kwargs)
    config = kwargs.pop("config", None)
    output_loading_info = bool(kwargs.pop("output_loading_info", False))
    prefer = prefer_from_flags({flag: kwargs.pop(flag, False) for flag in PREFER_FLAGS}, where)
    hub = {k: kwargs.pop(k) for k in list(kwargs) if k in HUB_KWARGS}
    names = set(init_kwarg_names)
    init = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
    return LoadArguments(config, prefer, hub, init, kwargs, output_loading_info)


def resolve_config(
    path: Optional[str],
    config: Optional[PretrainedConfig],
    overrides: Dict[str, Any],
    hub: Dict[str, Any],
    config_class: type = PretrainedConfig,
    who: str = "the model",
) -> PretrainedConfig:
    """A copy of ``config`` (or the folder's ``config.json``) with ``overrides`` set on it.

    Raises ``ValueError`` when ``config_class`` is specific and the config is of another class.
    """
    if config is None:
        if path is None:
            raise ValueError(f"{who}: pass a checkpoint path or hub id, or a config")
        config = AutoConfig.from_pretrained(path, **hub, **overrides)
    else:
        if not isinstance(config, PretrainedConfig):
            raise TypeError(f"{who}: config must be a config object, got {type(config).__name__}")
        config = config.copy()
        for key, value in overrides.items():
            setattr(config, key, value)
    if config_class is not PretrainedConfig and not isinstance(config, config_class):
        raise ValueError(
            f"{who} needs a {config_class.__name__}, but {path or 'config='} holds a {type(config).__name__} "
            f"(model_type {config.model_type!r})"
        )
    return config


# --------------------------------------------------------------------------------------------
# Reading and aligning


def reading_schema(config: PretrainedConfig) -> Schema:
    """The names a checkpoint of ``config``'s architecture may hold: the composite's, or for a part
    its base model (with pooler) merged with its causal LM, so that TF/Flax files of either head
    can be read; alignment then keeps what the model has and reports the rest."""
    if isinstance(config, EncoderDecoderConfig):
        return schema_for(config)
    return schema_for(config, head="base", add_pooling_layer=True).merge(schema_for(config, head="causal_lm"))


def _base_model_prefix(config: PretrainedConfig) -> Optional[str]:
    """``bert`` / ``transformer``: a base-model file loads into a model with a head and back.
    None for the composite, whose names never move."""
    if isinstance(config, EncoderDecoderConfig):
        return None
    return architecture(config).base_model_prefix or None


def read_aligned(path: str, config: PretrainedConfig, schema: Schema, prefer: Optional[str], hub: Dict[str, Any]):
    """The checkpoint at ``path`` matched to ``schema``. Shape mismatches raise a
    ``CheckpointError`` naming key and shapes; missing and unexpected keys are returned."""
    checkpoint = load_checkpoint(path, schema=reading_schema(config), prefer=prefer, **hub)
    aligned = align_to_schema(checkpoint.state, schema, source=checkpoint.source,
                              base_model_prefix=_base_model_prefix(config))
    aligned.raise_for_errors(allow_missing=lambda name: True, allow_unexpected=True)
    return aligned


def load_info(missing: List[str], unexpected: List[str], mismatched: List[Any], ignored: Dict[str, str]) -> Dict[str, Any]:
    return {
        "missing_keys": list(missing),
        "unexpected_keys": list(unexpected),
        "mismatched_keys": list(mismatched),
        "ignored_keys": dict(ignored),
    }


def _finish(loader: Loader, model: Any, schema: Schema, tensors: Dict[str, np.ndarray], info: Dict[str, Any],
            name: str) -> Loaded:
    """Initialise what is missing, assign what was read, log the one report."""
    owned = [spec.name for spec in schema.owned()]
    tensors = {n: tensors[n] for n in owned if n in tensors}
    missing = [n for n in owned if n not in tensors]
    loader.initialise_missing(model, missing)
    loader.assign(model, tensors)
    report = newly_initialised_report(missing, name)
    for line in report:
        logger.warning(line)
    if info["unexpected_keys"]:
        logger.info("%s: %d checkpoint tensors not used: %s", name, len(info["unexpected_keys"]),
                    ", ".join(info["unexpected_keys"][:8]))
    return Loaded(model, info, report)


# --------------------------------------------------------------------------------------------
# The two entry points


def load_pretrained(
    loader: Loader,
    model_class: Any,
    path: str,
    model_args: Tuple[Any, ...] = (),
    kwargs: Optional[Dict[str, Any]] = None,
    init_kwarg_names: Iterable[str] = (),
) -> Tuple[Loaded, LoadArguments]:
    """``model_class.from_pretrained(path, *model_args, **kwargs)``: build from the config, read any
    weight format of the folder or hub repo, initialise and report what it lacks.

    Returns the ``Loaded`` result and the sorted arguments (for ``output_loading_info`` and hub
    arguments the caller still needs, such as those of ``generation_config.json``).
    """
    args = split_load_kwargs(kwargs or {}, init_kwarg_names)
    config = resolve_config(path, args.config, args.overrides, args.hub,
                            getattr(model_class, "config_class", PretrainedConfig), model_class.__name__)
    model = loader.build(model_class, config, *model_args, **args.init)
    schema = model.schema()
    aligned = read_aligned(path, config, schema, args.prefer, args.hub)
    info = load_info(aligned.missing, aligned.unexpected, aligned.mismatched, aligned.ignored)
    loaded = _finish(loader, model, schema, aligned.tensors, info, f"{model_class.__name__} from {path}")
    return loaded, args


def load_encoder_decoder_pretrained(
    loader: Loader,
    model_class: Any,
    encoder_path: Optional[str],
    decoder_path: Optional[str],
    model_args: Tuple[Any, ...] = (),
    kwargs: Optional[Dict[str, Any]] = None,
    init_kwarg_names: Iterable[str] = (),
) -> Tuple[Loaded, LoadArguments]:
    """Warm-start ``model_class`` (an encoder-decoder class) from a pretrained encoder and decoder.

    ``encoder_*`` / ``decoder_*`` keywords go to that side with the prefix stripped: ``model`` (a
    ready instance), ``config``, ``from_pt`` / ``from_tf`` / ``from_flax`` and hub arguments for
    reading its files, and config overrides (``encoder_hidden_dropout_prob=0.33``). Top-level
    names such as ``decoder_start_token_id`` stay top-level and go to the ``EncoderDecoderConfig``,
    except the constructor arguments ``init_kwarg_names`` and ``output_loading_info``.

    The rules: the encoder's config copy is reset to ``is_decoder=False`` and
    ``add_cross_attention=False``; the decoder's copy gets ``is_decoder=True`` and
    ``add_cross_attention=True`` (the reference's info message when they were off). The composite
    is built once; each side's checkpoint is aligned to that side's schema (a base-model file
    loads into the decoder's LM head and back), the weights no file holds (cross-attention,
    ``enc_to_dec_proj``, an absent LM head) are initialised by the framework and reported in ONE
    report, unused file tensors are listed in ``unexpected_keys``.
    """
    if model_args:
        raise TypeError(
            f"{model_class.__name__}.from_encoder_decoder_pretrained takes the two paths positionally and "
            "the rest by keyword (encoder_* / decoder_* for one side)"
        )
    encoder_kwargs, decoder_kwargs, top = split_prefixed_kwargs(dict(kwargs or {}))
    args = split_load_kwargs(top, init_kwarg_names, where="top-level ")
    if args.config is not None or args.prefer is not None or args.hub:
        given = (["config"] if args.config is not None else []) + ([f"from_{args.prefer}"] if args.prefer else []) \
            + sorted(args.hub)
        raise TypeError(
            f"from_encoder_decoder_pretrained: {given} belong to one side; pass them as encoder_<name> / decoder_<name>"
        )
    sides = {}
    for role, path, side_kwargs in (("encoder", encoder_path, encoder_kwargs),
                                    ("decoder", decoder_path, decoder_kwargs)):
        sides[role] = _side(role, path, side_kwargs, init_kwarg_names)

    config = EncoderDecoderConfig.from_encoder_decoder_configs(sides["encoder"]["config"], sides["decoder"]["config"],
                                                               **args.overrides)
    instances = {role: side["model"] for role, side in sides.items() if side["model"] is not None}
    model = loader.build(model_class, config, **instances, **args.init)
    schema = model.schema()

    tensors: Dict[str, np.ndarray] = {}
    unexpected: List[str] = []
    ignored: Dict[str, str] = {}
    for role, head in (("encoder", "base"), ("decoder", "causal_lm")):
        side = sides[role]
        if side["model"] is not None:
            continue
        # The composite's config of this side (after the role rules), not the file's.
        side_config = getattr(config, role)
        side_schema = schema_for(side_config, head=head)
        aligned = read_aligned(side["path"], side_config, side_schema, side["prefer"], side["hub"])
        unexpected += [f"{role}.{k}" for k in aligned.unexpected]
        ignored.update({f"{role}.{k}": v for k, v in aligned.ignored.items()})
        for name, value in aligned.tensors.items():
            if f"{role}.{name}" in schema:
                tensors[f"{role}.{name}"] = value
    owned = [spec.name for spec in schema.owned()]
    instance_names = [n for n in owned if n.split(".", 1)[0] in instances]
    missing = [n for n in owned if n not in tensors and n not in instance_names]
    info = load_info(missing, unexpected, [], ignored)
    name = (f"{model_class.__name__}({encoder_path or type(instances.get('encoder')).__name__}, "
            f"{decoder_path or type(instances.get('decoder')).__name__})")
    loaded = _finish(_SkipInstances(loader, instance_names), model, schema, tensors, info, name)
    return loaded, args


class _SkipInstances:
    """A loader that leaves the weights of ready instances (``encoder_model=``) alone."""

    def __init__(self, loader: Loader, names: List[str]):
        self.loader, self.names = loader, set(names)

    def initialise_missing(self, model: Any, names: List[str]) -> None:
        self.loader.initialise_missing(model, [n for n in names if n not in self.names])

    def assign(self, model: Any, tensors: Dict[str, np.ndarray]) -> None:
        self.loader.assign(model, tensors)


def _side(role: str, path: Optional[str], side_kwargs: Dict[str, Any], init_kwarg_names: Iterable[str]) -> Dict[str, Any]:
    """One side of a warm start: its ready instance, or its path, reading arguments and config."""
    instance = side_kwargs.pop("model", None)
    if instance is not None:
        return {"model": instance, "config": instance.config, "path": None, "prefer": None, "hub": {}}
    if path is None:
        raise ValueError(
            f"pass {role}_pretrained_model_name_or_path (a folder or hub id), or a ready {role} as {role}_model="
        )
    not_here = sorted(set(side_kwargs) & (set(init_kwarg_names) | {"dtype", "torch_dtype", "output_loading_info"}))
    if not_here:
        raise TypeError(
            f"from_encoder_decoder_pretrained: {[f'{role}_{k}' for k in not_here]} apply to the whole model; "
            f"pass them without the {role}_ prefix"
        )
    args = split_load_kwargs(side_kwargs, where=f"{role}_")
    config = resolve_config(path, args.config, args.overrides, args.hub, who=f"the {role}")
    wanted = role == "decoder"
    if bool(config.is_decoder) != wanted or bool(config.add_cross_attention) != wanted:
        if wanted:
            logger.info(
                "Initializing %s as a decoder model. Cross attention layers are added to %s and randomly "
                "initialized if %s's architecture allows for cross attention layers.", path, path, path,
            )
        else:
            logger.info("Initializing %s as an encoder model from a decoder model. Cross-attention and causal mask "
                        "are disabled.", path)
        config.is_decoder = wanted
        config.add_cross_attention = wanted
    return {"model": None, "config": config, "path": path, "prefer": args.prefer, "hub": args.hub}


__all__ = [
    "CheckpointError",
    "LoadArguments",
    "Loaded",
    "Loader",
    "PREFER_FLAGS",
    "load_encoder_decoder_pretrained",
    "load_info",
    "load_pretrained",
    "prefer_from_flags",
    "read_aligned",
    "reading_schema",
    "resolve_config",
    "split_load_kwargs",
]
