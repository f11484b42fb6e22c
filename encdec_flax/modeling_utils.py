"""Flax plumbing shared by every model: activations, masks, the params <-> canonical-name walk,
dtype casts, loading and saving.

The params tree mirrors the PyTorch attribute tree (submodules named like the PT attributes,
layer indices as string keys), so one generic walk maps it to canonical names: a leaf at
``("encoder", "layer", "0", "attention", "self", "query", "kernel")`` is the canonical
``encoder.layer.0.attention.self.query.weight``, with the leaf rename and transpose given by the
parameter's kind (``encdec.naming.layout``). There are no per-model name tables.
"""

from __future__ import annotations

import logging
import os
from functools import partial
from typing import Any, Callable, Dict, List, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from encdec.configuration import PretrainedConfig
from encdec.files import FLAX_WEIGHTS_NAME
from encdec.formats.hf_flax_msgpack import write_flax_msgpack
from encdec.formats.safetensors import release_pages, save_state_dict
from encdec.generation_config import GenerationConfig
from encdec.loading import load_pretrained
from encdec.modeling_utils import check_token_ids
from encdec.naming.layout import framework_path, framework_rule, from_framework
from encdec.naming.schema import ParamSpec, Schema, schema_for

logger = logging.getLogger("encdec_flax")

ACT2FN: Dict[str, Callable] = {
    "gelu": partial(jax.nn.gelu, approximate=False),  # erf form, as torch's default GELU
    "gelu_new": partial(jax.nn.gelu, approximate=True),
    "gelu_pytorch_tanh": partial(jax.nn.gelu, approximate=True),
    "gelu_fast": partial(jax.nn.gelu, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
    "swish": jax.nn.silu,
    "tanh": jnp.tanh,
}

# --------------------------------------------------------------------------------------------
# Masks


def normal_init(config: PretrainedConfig) -> Callable:
    """N(0, ``config.initializer_range``): the init of every dense and embedding weight."""
    return jax.nn.initializers.normal(stddev=config.initializer_range)


def causal_mask(query_length: int, key_length: int, cache_index=None):
    """(1, 1, q, k) boolean, True = attend. With a cache the queries sit at ``cache_index``
    onward in a preallocated key buffer, so key slots not written yet are masked as well."""
    query_positions = jnp.arange(query_length)
    if cache_index is not None:
        query_positions = query_positions + cache_index
    key_positions = jnp.arange(key_length)
    return (key_positions[None, :] <= query_positions[:, None])[None, None]


def attention_bias(mask, dtype):
    """0 where ``mask`` is True, ``finfo(dtype).min`` elsewhere (never -inf)."""
    return jnp.where(mask, jnp.array(0.0, dtype), jnp.array(jnp.finfo(dtype).min, dtype))


def self_attention_bias(attention_mask, query_length: int, causal: bool, self_cache=None):
    """The additive float32 bias (B|1, 1, Q, K) of every self-attention layer of a model, built once
    at its top; None when nothing is masked. ``attention_mask`` (B, K) is 1 for a key to attend.

    ``self_cache`` is the first layer's self-attention entry of the ``"cache"`` collection while
    decoding with a cache (every layer's is alike): its ``cached_key`` (B, H, L, D) gives the L key
    slots and its ``cache_index`` where this call's queries sit, so slots not written yet are masked.
    """
    mask = None
    if causal:
        if self_cache is None:
            mask = causal_mask(query_length, query_length)
        else:
            mask = causal_mask(query_length, self_cache["cached_key"].shape[2], self_cache["cache_index"])
    if attention_mask is not None:
        pad = attention_mask[:, None, None, :].astype(bool)  # (B, 1, 1, K)
        mask = pad if mask is None else mask & pad
    return None if mask is None else attention_bias(mask, jnp.float32)


def cross_attention_bias(encoder_attention_mask):
    """The additive float32 bias (B, 1, 1, S) of every cross-attention layer; None for None."""
    if encoder_attention_mask is None:
        return None
    return attention_bias(encoder_attention_mask[:, None, None, :].astype(bool), jnp.float32)


# --------------------------------------------------------------------------------------------
# Params <-> canonical names


def params_to_state_dict(params: Any, schema: Schema) -> Dict[str, np.ndarray]:
    """The owned canonical tensors (PyTorch names and layout, schema order) of a params tree.

    Total: a leaf the schema has no name for, or an owned name with no leaf, raises.
    """
    index = {framework_path(spec, "flax"): spec for spec in schema.owned()}
    out: Dict[str, np.ndarray] = {}
    for path, value in flatten_dict(dict(params)).items():
        spec = index.get(tuple(path))
        if spec is None:
            raise KeyError(f"params leaf {'/'.join(path)} has no canonical name in the model's schema")
        array = np.asarray(jax.device_get(value))
        if array.dtype == jnp.bfloat16:  # numpy / safetensors-numpy have no bfloat16
            array = array.astype(np.float32)
        _, out[spec.name] = from_framework(spec.kind, path[-1], array, "flax")
    absent = [spec.name for spec in schema.owned() if spec.name not in out]
    if absent:
        raise KeyError(f"params have no leaf for {absent[:8]} ({len(absent)} in all)")
    return {spec.name: out[spec.name] for spec in schema.owned()}


def state_dict_to_params(state: Dict[str, np.ndarray], schema: Schema) -> Dict[str, Any]:
    """The nested params tree (as ``jnp`` arrays) of the owned canonical tensors in ``state``."""
    flat = {}
    for spec in schema.owned():
        if spec.name not in state:
            raise KeyError(f"state has no tensor for {spec.name!r}")
        flat[framework_path(spec, "flax")] = to_param(spec, state[spec.name])
    return unflatten_dict(flat)


def to_param(spec: ParamSpec, array: np.ndarray) -> jax.Array:
    """One canonical tensor as its Flax leaf: one copy to the device (``jax.device_put``; ``jnp.asarray``
    of a numpy array copied on the host first), then XLA's transpose for a kernel."""
    _, transpose = framework_rule(spec, "flax", array)
    value = jax.device_put(np.asarray(array))
    return jnp.transpose(value) if transpose else value


def cast_floating(params: Any, dtype, mask: Any = None) -> Any:
    """``params`` with every floating leaf (where ``mask`` is True, if given) cast to ``dtype``."""

    def cast(leaf, keep=True):
        if keep and jnp.issubdtype(leaf.dtype, jnp.floating):
            return leaf.astype(dtype)
        return leaf

    if mask is None:
        return jax.tree_util.tree_map(cast, params)
    return jax.tree_util.tree_map(cast, params, mask)


def check_ids(vocab_size: int, **named_ids: Any) -> None:
    """Host-side token id check before a jitted call (JAX clamps out-of-range gathers silently).

    Skipped for tracers: under the caller's own ``jax.jit`` the values are not known; use
    ``encdec_flax.training.make_train_step`` (it checks each batch on the host) or check first.
    """
    for name, ids in named_ids.items():
        if ids is None or isinstance(ids, jax.core.Tracer):
            continue
        check_token_ids(np.asarray(ids), vocab_size, name)


def check_labels(labels: Any, vocab_size: int) -> None:
    if labels is None or isinstance(labels, jax.core.Tracer):
        return
    labels = np.asarray(labels)
    check_token_ids(np.where(labels == -100, 0, labels), vocab_size, "labels")


def check_positions(config: PretrainedConfig, ids: Any = None, position_ids: Any = None,
                    token_type_ids: Any = None, prefix: str = "") -> None:
    """Host-side checks of what JAX would clamp silently: sequence length and position ids against
    ``max_position_embeddings``, token types against ``type_vocab_size``."""
    limit = config.max_position_embeddings
    if token_type_ids is not None and getattr(config, "type_vocab_size", None) is None:
        raise ValueError(f"{prefix}token_type_ids given, but {config.model_type} has no token type embeddings")
    if position_ids is None and ids is not None and not isinstance(ids, jax.core.Tracer):
        length = np.shape(ids)[-1]
        if length > limit:
            raise ValueError(
                f"{prefix}input_ids has length {length}, longer than {prefix.rstrip('_') or 'the model'}'s "
                f"max_position_embeddings={limit}"
            )
    for name, values, bound in (
        (f"{prefix}position_ids", position_ids, limit),
        (f"{prefix}token_type_ids", token_type_ids, getattr(config, "type_vocab_size", None)),
    ):
        if values is None or bound is None or isinstance(values, jax.core.Tracer):
            continue
        arr = np.asarray(values)
        bad = (arr < 0) | (arr >= bound)
        if bad.any():
            pos = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"{name} holds {int(arr[pos])} at position {pos}, outside [0, {bound})")


# --------------------------------------------------------------------------------------------
# Base class of the functional models


class FlaxPreTrainedModel:
    """A Flax module behind the functional API: ``model.params``, ``model(…, params=…)``.

    Subclasses set ``config_class``, ``module_class``, ``base_model_prefix`` and ``schema_head``.

    Args:
        config: the model's config.
        input_shape: the dummy input shape used to create the params (default ``(1, 1)``).
        seed: the PRNG seed of the random init.
        dtype: the computation dtype; params stay float32 (cast them with ``to_bf16`` / ``to_fp16``).
        _do_init: False creates no params: ``model.params`` is None, pass ``params=`` to calls
            (``init_weights`` makes a fresh tree).
        gradient_checkpointing: recompute each layer in the backward pass (``nn.remat``).
        **module_kwargs: extra module fields (``add_pooling_layer`` for BERT).
    """

    config_class = PretrainedConfig
    module_class: Any = None
    base_model_prefix = ""
    schema_head = "base"

    def __init__(
        self,
        config: PretrainedConfig,
        input_shape: Optional[Tuple[int, ...]] = None,
        seed: int = 0,
        dtype: Any = jnp.float32,
        _do_init: bool = True,
        gradient_checkpointing: bool = False,
        **module_kwargs: Any,
    ):
        self.config = config
        self.dtype = dtype
        self.input_shape = input_shape if input_shape is not None else self._default_input_shape()
        self.key = jax.random.PRNGKey(seed)
        self._module_kwargs = dict(module_kwargs)
        self.module = self._make_module(gradient_checkpointing)
        self.generation_config = GenerationConfig.from_model_config(config) if self.can_generate() else None
        self.loading_info: Dict[str, Any] = {}
        self._params = self.init_weights(self.key, self.input_shape) if _do_init else None

    # --- construction ------------------------------------------------------------------------
    def _default_input_shape(self):
        return (1, 1)

    def _make_module(self, gradient_checkpointing: bool):
        return self.module_class(
            config=self.config, dtype=self.dtype, gradient_checkpointing=gradient_checkpointing,
            **self._module_kwargs,
        )

    def can_generate(self) -> bool:
        return self.schema_head == "causal_lm"

    def enable_gradient_checkpointing(self) -> None:
        """Rebuild the module with ``nn.remat`` around every layer; the params are unchanged."""
        self.module = self._make_module(True)

    def schema(self) -> Schema:
        return schema_for(self.config, head=self.schema_head, **self._schema_kwargs())

    def _schema_kwargs(self) -> Dict[str, Any]:
        if "add_pooling_layer" in self._module_kwargs:
            return {"add_pooling_layer": self._module_kwargs["add_pooling_layer"]}
        return {}

    def _dummy_inputs(self, input_shape):
        input_ids = jnp.zeros(input_shape, dtype="i4")
        kwargs = {"attention_mask": jnp.ones_like(input_ids)}
        if getattr(self.config, "add_cross_attention", False):
            width = getattr(self.config, "cross_attention_hidden_size", None) or self.config.hidden_size
            kwargs["encoder_hidden_states"] = jnp.zeros(input_shape + (width,), dtype=jnp.float32)
            kwargs["encoder_attention_mask"] = jnp.ones(input_shape, dtype="i4")
        return (input_ids,), kwargs

    def init_weights(self, rng, input_shape, params: Any = None) -> Dict[str, Any]:
        """A random params tree (its leaves replaced by ``params``' where given)."""
        params_rng, dropout_rng = jax.random.split(rng)
        args, kwargs = self._dummy_inputs(input_shape)
        random_params = self.module.init({"params": params_rng, "dropout": dropout_rng}, *args, **kwargs)["params"]
        random_params = self._compact(dict(random_params))
        if params is None:
            return random_params
        flat = flatten_dict(random_params)
        flat.update(flatten_dict(dict(params)))
        return unflatten_dict(flat)

    def _compact(self, params):
        return params

    def _expand(self, params):
        return params

    # --- params ------------------------------------------------------------------------------
    @property
    def params(self):
        return self._params

    @params.setter
    def params(self, params):
        self._params = params

    def _params_or_raise(self, params):
        params = params if params is not None else self._params
        if params is None:
            raise ValueError(
                f"{type(self).__name__} was created with _do_init=False and holds no params: "
                "pass params=... (for example from `model.init_weights(rng, input_shape)`)"
            )
        return params

    def to_bf16(self, params: Any, mask: Any = None) -> Any:
        """A copy of ``params`` with floating leaves cast to bfloat16 (``mask``: a tree of bools)."""
        return cast_floating(params, jnp.bfloat16, mask)

    def to_fp16(self, params: Any, mask: Any = None) -> Any:
        return cast_floating(params, jnp.float16, mask)

    def to_fp32(self, params: Any, mask: Any = None) -> Any:
        return cast_floating(params, jnp.float32, mask)

    def state_dict(self, params: Any = None) -> Dict[str, np.ndarray]:
        """The owned canonical tensors (PyTorch names and layout)."""
        return params_to_state_dict(self._params_or_raise(params), self.schema())

    def load_state_dict(self, state: Dict[str, np.ndarray]) -> Dict[str, Any]:
        """Set (and return) ``params`` from owned canonical tensors."""
        self._params = state_dict_to_params(state, self.schema())
        return self._params

    # --- calling -----------------------------------------------------------------------------
    def _rngs(self, train: bool, dropout_rng):
        if not train:
            return {}
        if dropout_rng is None:
            raise ValueError("train=True applies dropout and needs dropout_rng=jax.random.PRNGKey(...)")
        return {"dropout": dropout_rng}

    def __call__(
        self,
        input_ids,
        attention_mask=None,
        token_type_ids=None,
        position_ids=None,
        encoder_hidden_states=None,
        encoder_attention_mask=None,
        past_key_values=None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        train: bool = False,
        params: Any = None,
        dropout_rng=None,
    ):
        cfg = self.config
        output_attentions = cfg.output_attentions if output_attentions is None else output_attentions
        output_hidden_states = cfg.output_hidden_states if output_hidden_states is None else output_hidden_states
        return_dict = cfg.return_dict if return_dict is None else return_dict
        check_ids(cfg.vocab_size, input_ids=input_ids)
        check_positions(cfg, input_ids, position_ids, token_type_ids)
        input_ids = jnp.asarray(input_ids)
        if attention_mask is None:
            attention_mask = jnp.ones_like(input_ids)
        variables = {"params": self._expand(self._params_or_raise(params))}
        mutable = False
        if past_key_values is not None:
            if position_ids is None:
                raise ValueError("Make sure to provide position_ids when passing past_key_values.")
            variables["cache"] = past_key_values
            mutable = ["cache"]
        # token_type_ids only when given: modules of architectures without token types (GPT-2,
        # BART) have no such argument
        token_types = {} if token_type_ids is None else {"token_type_ids": jnp.asarray(token_type_ids)}
        outputs = self.module.apply(
            variables,
            jnp.asarray(input_ids),
            attention_mask=jnp.asarray(attention_mask),
            **token_types,
            position_ids=None if position_ids is None else jnp.asarray(position_ids),
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            deterministic=not train,
            rngs=self._rngs(train, dropout_rng),
            mutable=mutable,
        )
        if past_key_values is not None:
            outputs, cache = outputs
            outputs = outputs.replace(past_key_values=cache["cache"])
        return outputs if return_dict else outputs.to_tuple()

    def init_cache(self, batch_size: int, max_length: int, params: Any = None, encoder_hidden_states=None):
        """The ``"cache"`` collection for incremental decoding of up to ``max_length`` tokens."""
        input_ids = jnp.ones((batch_size, max_length), dtype="i4")
        kwargs = {}
        if encoder_hidden_states is not None:
            kwargs["encoder_hidden_states"] = encoder_hidden_states
        _, cache = self.module.apply(
            {"params": self._expand(self._params_or_raise(params))}, input_ids, init_cache=True, mutable=["cache"],
            **kwargs,
        )
        return cache["cache"]

    # --- saving and loading ------------------------------------------------------------------
    def save_pretrained(self, save_directory: str, params: Any = None, max_shard_size: Any = "5GB",
                        safe_serialization: bool = True) -> List[str]:
        """Write ``config.json``, ``generation_config.json`` and ``model.safetensors`` (canonical
        PyTorch names and layout, owned tensors only; sharded past ``max_shard_size``).
        ``safe_serialization=False`` writes the reference's ``flax_model.msgpack`` instead (its
        Flax tree, sharded past ``max_shard_size``), which the reference's Flax classes load."""
        if os.path.isfile(save_directory):
            raise ValueError(f"save_pretrained needs a directory, but {save_directory!r} is a file")
        state = self.state_dict(params)
        os.makedirs(save_directory, exist_ok=True)
        self.config.save_pretrained(save_directory)
        generation_config = self.generation_config or GenerationConfig.from_model_config(self.config)
        generation_config.save_pretrained(save_directory)
        if not safe_serialization:
            return write_flax_msgpack(state, self.schema(), os.path.join(save_directory, FLAX_WEIGHTS_NAME),
                                      max_shard_size=max_shard_size)
        return save_state_dict(state, save_directory, max_shard_size=max_shard_size)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str,
        config: Optional[PretrainedConfig] = None,
        dtype: Any = jnp.float32,
        input_shape: Optional[Tuple[int, ...]] = None,
        seed: int = 0,
        _do_init: bool = True,
        from_pt: bool = False,
        from_flax: bool = False,
        from_tf: bool = False,
        gradient_checkpointing: bool = False,
        **kwargs: Any,
    ):
        """Load any checkpoint of this library or of Hugging Face: ``model.safetensors`` (single or
        sharded), ``pytorch_model.bin`` (no flag needed), ``flax_model.msgpack`` (single or sharded),
        ``tf_model.h5`` (the one loading path, ``encdec.loading.load_pretrained``). ``from_pt`` /
        ``from_flax`` / ``from_tf`` only choose which file wins when a folder holds several (at most
        one may be set). Remaining kwargs override config fields (``add_pooling_layer`` for BERT is
        a module option). Weights the checkpoint lacks are initialised and reported (also in
        ``model.loading_info``); a shape mismatch raises a ``CheckpointError``.

        Returns the model, or with ``_do_init=False`` ``(model, params)``; with
        ``output_loading_info=True`` the load-info dict comes last in either.
        """
        loader = FlaxLoader(dtype=dtype, input_shape=input_shape, seed=seed,
                            gradient_checkpointing=gradient_checkpointing)
        flags = {"from_pt": from_pt, "from_flax": from_flax, "from_tf": from_tf}
        loaded, args = load_pretrained(loader, cls, pretrained_model_name_or_path, (),
                                       dict(kwargs, config=config, **flags), ("add_pooling_layer",))
        model = loaded.model
        model.generation_config = (
            GenerationConfig.for_model(pretrained_model_name_or_path, model.config, **args.hub)
            if model.can_generate() else None
        )
        return _flax_result(model, loaded, _do_init, args.output_loading_info)


def _flax_result(model: "FlaxPreTrainedModel", loaded: Any, do_init: bool, output_loading_info: bool):
    """The Flax idiom: ``_do_init=False`` hands the params back instead of keeping them."""
    model.loading_info = dict(loaded.info, report=loaded.report)
    if do_init:
        out = (model,)
    else:
        params, model.params = model.params, None
        out = (model, params)
    if output_loading_info:
        out += (loaded.info,)
    return out[0] if len(out) == 1 else out


_ASSIGN_CHUNK = 64 * 2**20


def _finish_copies(pending: List[Tuple[jax.Array, np.ndarray]]) -> None:
    """Wait for the device copies of ``pending``, give their sources' file pages back, and clear it."""
    for value, array in pending:
        value.block_until_ready()
        release_pages(array)
    pending.clear()


class FlaxLoader:
    """Flax's part of the loading path (``encdec.loading``): build with ``_do_init=False`` (no
    params), draw the random init only when the checkpoint lacks something, put the checkpoint's
    tensors into the params tree.

    Args:
        **init_kwargs: constructor arguments (``dtype``, ``input_shape``, ``seed``, ...).
    """

    def __init__(self, **init_kwargs: Any):
        self.init_kwargs = init_kwargs

    def build(self, model_class: Any, config: PretrainedConfig, *model_args: Any,
              **init_kwargs: Any) -> "FlaxPreTrainedModel":
        instances = sorted(set(init_kwargs) & {"encoder", "decoder"})
        if instances:
            raise ValueError(
                f"{model_class.__name__} is built from configs and takes no ready {' or '.join(instances)} instance; "
                "pass the checkpoint paths instead"
            )
        if model_args:
            raise TypeError(f"{model_class.__name__}.from_pretrained takes no positional model arguments")
        return model_class(config, _do_init=False, **{**self.init_kwargs, **init_kwargs})

    def initialise_missing(self, model: "FlaxPreTrainedModel", names: List[str]) -> None:
        if names:
            model.params = model.init_weights(model.key, model.input_shape)

    def assign(self, model: "FlaxPreTrainedModel", tensors: Dict[str, np.ndarray]) -> None:
        # ``state_dict_to_params``'s loop over the drawn params (if any), giving back each tensor's
        # file pages once the device holds a copy: otherwise the load would hold the weights twice.
        schema = model.schema()
        flat = {tuple(path): leaf for path, leaf in flatten_dict(dict(model.params)).items()} \
            if model.params is not None else {}
        pending: List[Tuple[jax.Array, np.ndarray]] = []
        for spec in schema.owned():
            if spec.name in tensors:
                value = flat[framework_path(spec, "flax")] = to_param(spec, tensors[spec.name])
                pending.append((value, tensors[spec.name]))
                # JAX dispatches asynchronously: a loop that never waits holds every tensor's
                # untransposed copy at once. Waiting every _ASSIGN_CHUNK bytes bounds that, and the
                # pages of a tensor go only once its copy is done.
                if sum(array.nbytes for _, array in pending) >= _ASSIGN_CHUNK:
                    _finish_copies(pending)
        _finish_copies(pending)
        absent = [spec.name for spec in schema.owned() if framework_path(spec, "flax") not in flat]
        if absent:
            raise KeyError(f"no tensor for {absent[:8]} ({len(absent)} in all)")
        model.params = unflatten_dict(flat)
