"""What every TF model class shares: the variable walk to canonical names, loading, saving,
masks, the loss and the checks on inputs.

The Keras layer tree mirrors the PyTorch attribute tree (every sublayer is created with
``name=`` equal to its PT attribute; list items are named ``layer_._{i}`` like the reference's
TF port, because Keras names may not be bare integers). So the canonical name of a variable is
its layer path joined with ``.`` plus the leaf that ``encdec.naming.layout`` maps back to the
PyTorch leaf: one generic walk, no per-model name tables.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Dict, Iterator, List, Optional, Tuple

import keras
import numpy as np
import tensorflow as tf

from encdec.checkpoint import owned_only
from encdec.configuration import AutoConfig, PretrainedConfig
from encdec.files import TF_WEIGHTS_NAME
from encdec.formats.hf_tf_h5 import tf_main_layer, write_tf_h5
from encdec.formats.safetensors import release_pages, save_state_dict
from encdec.generation_config import GenerationConfig
from encdec.loading import load_pretrained
from encdec.modeling_utils import check_token_ids, padded_vocab_size
from encdec.naming.layout import framework_path, framework_rule, from_framework
from encdec.naming.schema import ParamSpec, Schema
from encdec_tf.layers import XLATraceCall, deferred_initialisers, merge_heads, run_initialisers, split_heads

logger = logging.getLogger(__name__)

LIST_ITEM_SEPARATOR = "_._"  # `layer_._0` <-> `layer.0`


def normal_init(config: PretrainedConfig) -> keras.initializers.Initializer:
    """N(0, ``config.initializer_range``): the init of every dense and embedding weight."""
    return keras.initializers.RandomNormal(stddev=config.initializer_range)


# --------------------------------------------------------------------------------------------
# Masks and inputs


def additive_mask(keep: tf.Tensor, dtype: tf.DType = tf.float32) -> tf.Tensor:
    """1 = attend, 0 = masked -> 0 / finfo(dtype).min, to add to attention scores."""
    keep = tf.cast(keep, dtype)
    return (1.0 - keep) * dtype.min


def causal_keep(q_len: tf.Tensor, k_len: tf.Tensor) -> tf.Tensor:
    """(q, k) with 1 where key position k <= query position q; queries are the last q_len keys."""
    q_pos = tf.range(q_len)[:, None] + (k_len - q_len)
    k_pos = tf.range(k_len)[None, :]
    return tf.cast(k_pos <= q_pos, tf.int32)


def append_key_value(key: tf.Tensor, value: tf.Tensor, past_key_value: Any) -> Tuple[tf.Tensor, tf.Tensor]:
    """This call's keys and values (B, H, Q, D) after the cached ones: a preallocated (static) cache
    writes them at its position and returns its full length (B, H, L, D); a ``(key, value)`` pair is
    concatenated to (B, H, past + Q, D); without a cache they come back as they are."""
    if hasattr(past_key_value, "update"):
        return past_key_value.update(key, value)
    if past_key_value is not None:
        return tf.concat([past_key_value[0], key], axis=2), tf.concat([past_key_value[1], value], axis=2)
    return key, value


def keys_and_values(key_proj: keras.layers.Layer, value_proj: keras.layers.Layer, num_heads: int,
                    hidden_states: tf.Tensor, encoder_hidden_states: Optional[tf.Tensor], past_key_value: Any,
                    is_cross_attention: bool) -> Tuple[tf.Tensor, tf.Tensor]:
    """What an attention with separate key and value projections attends to, (B, H, K, D) each:
    self-attention's keys and values projected from ``hidden_states`` and put after the cached ones
    (``append_key_value``); cross-attention's projected from ``encoder_hidden_states``, or the cached
    ones once there are (the encoder's keys and values do not change while decoding)."""
    if is_cross_attention and past_key_value is not None:
        return past_key_value[0], past_key_value[1]  # (B, H, S, D)
    source = encoder_hidden_states if is_cross_attention else hidden_states
    # (B, K, E) -> (B, H, K, D)
    key = split_heads(key_proj(source), num_heads)
    value = split_heads(value_proj(source), num_heads)
    return append_key_value(key, value, past_key_value)  # (B, H, past + Q | L, D)


def attend(query: tf.Tensor, key: tf.Tensor, value: tf.Tensor, attention_mask: Optional[tf.Tensor], scale: float,
           dropout: keras.layers.Layer, training: bool, probs_after_dropout: bool = True) -> Tuple[tf.Tensor, tf.Tensor]:
    """Scaled dot-product attention of every architecture: query (B, H, Q, D), key and value
    (B, H, K, D) -> (context (B, Q, E), probs (B, H, Q, K)).

    ``attention_mask`` is an additive bias broadcastable to (B, H, Q, K); ``dropout`` is the
    attention's own ``Dropout`` layer (its seed generator is the layer's state). The returned
    probabilities are those the context was made of (BERT's and GPT-2's, ``probs_after_dropout``) or
    those before dropout (BART's), as in the reference.
    """
    # (B, H, Q, D) x (B, H, K, D) -> (B, H, Q, K), "bqhd,bhkd->bhqk" as a matmul (encdec_tf/layers.py says why)
    scores = tf.matmul(query, key, transpose_b=True) * scale
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = tf.nn.softmax(scores, axis=-1)
    weights = dropout(probs, training=training)
    # (B, H, Q, K) x (B, H, K, D) -> (B, Q, E), "bhqk,bhkd->bqhd" as a matmul, heads merged
    context = merge_heads(tf.matmul(weights, value))
    return context, (weights if probs_after_dropout else probs)


def check_ids(ids: Optional[tf.Tensor], vocab_size: int, name: str) -> Optional[tf.Tensor]:
    """Out-of-vocabulary ids raise ``ValueError`` naming the id (eager) or fail a
    ``tf.debugging`` assert with the same wording (inside ``tf.function``): a gather on GPU
    would silently return zeros. Returns ``ids``; in a graph, an identity that runs after the
    asserts, so that a lookup reading it cannot fail first with a less helpful message."""
    if ids is None:
        return None
    if tf.executing_eagerly():
        check_token_ids(np.asarray(ids), vocab_size, name)
        return ids
    message = f"{name} holds a token id outside the vocabulary [0, {vocab_size}) (vocab_size={vocab_size})"
    checks = [tf.debugging.assert_non_negative(ids, message=message),
              tf.debugging.assert_less(ids, tf.cast(vocab_size, ids.dtype), message=message)]
    with tf.control_dependencies(checks):
        return tf.identity(ids)


def check_labels(labels: Optional[tf.Tensor], vocab_size: int) -> None:
    """Labels are token ids or -100 (ignored)."""
    if labels is None:
        return
    check_ids(tf.where(labels == -100, tf.zeros_like(labels), labels), vocab_size, "labels")


def as_int_tensor(value: Any) -> Optional[tf.Tensor]:
    if value is None:
        return None
    return tf.convert_to_tensor(value)


def masked_lm_loss(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Mean cross-entropy over the tokens whose label is not -100; a scalar, shape ()."""
    labels = tf.cast(labels, tf.int32)
    active = labels != -100
    safe_labels = tf.where(active, labels, tf.zeros_like(labels))
    per_token = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=safe_labels, logits=tf.cast(logits, tf.float32))
    active_f = tf.cast(active, per_token.dtype)
    # max(count, 1): a batch whose labels are all -100 has loss 0, not NaN (as in every framework).
    return tf.reduce_sum(per_token * active_f) / tf.maximum(tf.reduce_sum(active_f), 1.0)


# --------------------------------------------------------------------------------------------
# The generic walk: Keras layer tree <-> canonical names


def own_variables(layer: keras.layers.Layer) -> List[keras.Variable]:
    """The variables a layer created itself (not those of its sublayers, not RNG states)."""
    return list(layer._trainable_variables) + list(layer._non_trainable_variables)


def child_layers(layer: keras.layers.Layer) -> List[keras.layers.Layer]:
    return list(layer._flatten_layers(include_self=False, recursive=False))


def framework_named_variables(layer: keras.layers.Layer, prefix: str = "") -> Iterator[Tuple[str, keras.Variable]]:
    """(``encoder.embeddings.LayerNorm.gamma``, variable) for every variable under ``layer``.
    A shared variable appears once per place it is used."""
    for variable in own_variables(layer):
        yield prefix + variable.name, variable
    for child in child_layers(layer):
        yield from framework_named_variables(child, prefix + child.name.replace(LIST_ITEM_SEPARATOR, ".") + ".")


def canonical_variables(model: keras.layers.Layer, schema: Schema) -> Dict[str, keras.Variable]:
    """Canonical name -> variable, for every schema name that has a variable of its own or a
    shared one (tied names whose framework drops them, such as a tied LM head, are absent).
    Raises when a variable has no place in the schema: the tree and the schema must agree."""
    by_path = {".".join(framework_path(spec, "tf")): spec for spec in schema}
    out: Dict[str, keras.Variable] = {}
    for path, variable in framework_named_variables(model):
        spec = by_path.get(path)
        if spec is None:
            raise ValueError(f"{type(model).__name__}: variable {path!r} has no canonical name in the schema")
        if tuple(variable.shape) != tuple(reversed(spec.shape)) and tuple(variable.shape) != tuple(spec.shape):
            raise ValueError(f"{path}: shape {tuple(variable.shape)} does not fit {spec.name} {spec.shape}")
        out[spec.name] = variable
    return out


def share_variables(layer: keras.layers.Layer, source: keras.layers.Layer) -> int:
    """Make ``layer`` use the variables of ``source`` (a layer of the same structure) wherever
    both have a variable at the same path; returns how many were shared. Keras has no public
    API for this: the layer's attribute and its tracked list both point to the source variable."""
    count = 0
    for mine, theirs in zip_layers(layer, source):
        by_name = {v.name: v for v in own_variables(theirs)}
        for i, variable in enumerate(list(mine._trainable_variables)):
            shared = by_name.get(variable.name)
            if shared is None or shared is variable:
                continue
            if tuple(shared.shape) != tuple(variable.shape):
                raise ValueError(f"cannot share {variable.path} {variable.shape} with {shared.path} {shared.shape}")
            for attr, value in list(vars(mine).items()):
                if value is variable:
                    object.__setattr__(mine, attr, shared)
            mine._trainable_variables[i] = shared
            count += 1
    return count


def zip_layers(layer: keras.layers.Layer, source: keras.layers.Layer) -> Iterator[Tuple[Any, Any]]:
    yield layer, source
    theirs = {c.name: c for c in child_layers(source)}
    for child in child_layers(layer):
        if child.name in theirs:
            yield from zip_layers(child, theirs[child.name])


# --------------------------------------------------------------------------------------------
# Base classes


def _build_by_first_call(layer, input_shape=None) -> None:
    """``build`` of a layer whose weights all live in sub-layers: nothing to create here. Each
    sub-layer builds itself (from the shapes it is given) during the layer's first call.

    Without a ``build`` of its own, Keras 3 builds such a layer by first tracing ``call`` on
    symbolic inputs, and it does so again at every level of nesting, which multiplied the time of a
    load (docs/performance.md). The variables, their paths and their order come out the
    same either way; ``tests/tf/test_models.py`` checks that each
    transformer layer runs once while a model is built."""


class ComposedLayer(XLATraceCall, keras.layers.Layer):
    """A layer made only of other layers (see ``_build_by_first_call``)."""

    build = _build_by_first_call


class TFPreTrainedModel(XLATraceCall, keras.Model):
    """Base of every TF model: config, schema, canonical state, ``from_pretrained`` /
    ``save_pretrained`` in this library's layout (and reading every HF layout).

    Subclasses set ``config_class``, ``base_model_prefix`` and ``schema_head`` and implement
    ``dummy_inputs``; they call ``self.build_now()`` at the end of ``__init__`` (``build=True``),
    so a fresh model has all its variables and can be saved straight away.
    """

    config_class: Any = PretrainedConfig
    base_model_prefix: str = ""
    schema_head: str = "base"
    main_input_name = "input_ids"

    def __init__(self, config: PretrainedConfig, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if not isinstance(config, PretrainedConfig):
            raise TypeError(f"{type(self).__name__} needs a config object, got {type(config).__name__}")
        self.config = config
        # As the reference: derived from the config at construction for a model that can generate
        # (replaced by the saved one in from_pretrained).
        self.generation_config = GenerationConfig.from_model_config(config) if self.can_generate() else None

    @classmethod
    def can_generate(cls) -> bool:
        """Whether ``generate`` is available (the composite models; their halves are not generated alone)."""
        return callable(getattr(cls, "generate", None))

    # --- construction helpers -------------------------------------------------------------
    def dummy_inputs(self) -> Dict[str, Any]:
        return {"input_ids": tf.zeros((1, 2), dtype=tf.int32)}

    build = _build_by_first_call

    def build_now(self) -> None:
        """Create every variable by one tiny eager forward pass (Keras builds layers lazily)."""
        self(**self.dummy_inputs(), training=False)

    @classmethod
    def from_config(cls, config: Any, **kwargs: Any) -> "TFPreTrainedModel":
        if isinstance(config, dict):
            config = AutoConfig.for_dict(config) if cls.config_class is PretrainedConfig else cls.config_class.from_dict(config)
        return cls(config, **kwargs)

    def get_config(self) -> Dict[str, Any]:
        return {"config": self.config.to_dict()}

    # --- what other libraries read (the reference's TFPreTrainedModel) ------------------------
    def num_parameters(self, only_trainable: bool = False) -> int:
        """Distinct weights (a tied weight counts once); ``only_trainable``: the trainable ones."""
        weights = self.trainable_weights if only_trainable else self.weights
        distinct = {id(w): w for w in weights}
        return int(sum(int(np.prod(w.shape)) for w in distinct.values()))

    def get_output_embeddings(self) -> Optional[keras.layers.Layer]:
        """The layer whose weights make the logits: for a language-model head tied to the word
        embeddings (the reference's TF heads always are), the input embeddings; None without a head."""
        if self.schema_head != "causal_lm":
            return None
        if getattr(self.config, "tie_word_embeddings", True):
            return self.get_input_embeddings()
        raise NotImplementedError(f"{type(self).__name__} with tie_word_embeddings=False: its output layer is not "
                                  "exposed (the reference's TF language-model heads are always tied)")

    def resize_token_embeddings(self, new_num_tokens: Optional[int] = None,
                                pad_to_multiple_of: Optional[int] = None) -> keras.layers.Embedding:
        """Grow or shrink the vocabulary (PyTorch's rule, ``encdec_pt``): old rows kept, new rows drawn
        like the model's init (N(0, initializer_range); zeros for an output bias), every tensor of
        vocabulary size resized (word embeddings, the LM head's bias), ties kept, ``config.vocab_size``
        updated. The variables are new objects: ``compile`` a Keras model again before ``fit``.
        Returns the input embedding layer."""
        embedding = self.get_input_embeddings()
        old_n = int(embedding.embeddings.shape[0])
        n = padded_vocab_size(old_n, new_num_tokens, pad_to_multiple_of)
        if n == old_n:
            return embedding
        old_schema, variables = self.schema(), self.canonical_variables()
        configs = {id(layer.config): layer.config for layer in self._flatten_layers(include_self=True)
                   if getattr(getattr(layer, "config", None), "vocab_size", None) == old_n}
        for config in configs.values():  # the model's and those its sub-layers were built with
            config.vocab_size = n
        new_schema = self.schema()
        rng = np.random.default_rng()
        replaced: Dict[int, keras.Variable] = {}
        for name, variable in variables.items():
            old_shape, new_shape = old_schema[name].shape, new_schema[name].shape
            if old_shape == new_shape or id(variable) in replaced:
                continue
            axis = next(i for i, (a, b) in enumerate(zip(old_shape, new_shape)) if a != b)
            if tuple(variable.shape) != tuple(old_shape):  # stored transposed
                axis = len(old_shape) - 1 - axis
            value = np.asarray(variable.numpy())
            shape = list(value.shape)
            shape[axis] = n
            std = getattr(self.config, "initializer_range", 0.02)
            new = (np.zeros(shape) if value.ndim == 1 else rng.normal(0.0, std, shape)).astype(value.dtype)
            keep = [slice(None)] * value.ndim
            keep[axis] = slice(0, min(n, old_n))
            new[tuple(keep)] = value[tuple(keep)]
            replaced[id(variable)] = keras.Variable(new, name=variable.name, trainable=variable.trainable,
                                                    dtype=variable.dtype)
        for layer in self._flatten_layers(include_self=True):
            for attr, value in list(vars(layer).items()):
                if id(value) in replaced and isinstance(value, keras.Variable):
                    object.__setattr__(layer, attr, replaced[id(value)])
            for tracked in (layer._trainable_variables, layer._non_trainable_variables):
                for i, value in enumerate(tracked):
                    if id(value) in replaced:
                        tracked[i] = replaced[id(value)]
            if isinstance(layer, keras.layers.Embedding) and int(layer.embeddings.shape[0]) == n:
                layer.input_dim = n
        return self.get_input_embeddings()

    # --- canonical weights ------------------------------------------------------------------
    def schema(self) -> Schema:
        from encdec.naming.schema import schema_for

        return schema_for(self.config, head=self.schema_head, add_pooling_layer=getattr(self, "add_pooling_layer", True))

    def canonical_variables(self) -> Dict[str, keras.Variable]:
        return canonical_variables(self, self.schema())

    def state_dict(self) -> Dict[str, np.ndarray]:
        """Owned canonical tensors (PyTorch names and layout), in schema order."""
        variables = self.canonical_variables()
        out = {}
        for spec in self.schema().owned():
            variable = variables[spec.name]
            _, out[spec.name] = from_framework(spec.kind, variable.name, np.asarray(variable.numpy()), "tf")
        return out

    def load_state_dict(self, state: Dict[str, np.ndarray], strict: bool = True) -> List[str]:
        """Assign canonical tensors; returns the owned names that ``state`` lacked (an error
        when ``strict``)."""
        schema = self.schema()
        variables = self.canonical_variables()
        missing = []
        for spec in schema.owned():
            if spec.name not in state:
                missing.append(spec.name)
                continue
            assign_canonical(variables[spec.name], spec, state[spec.name])
        if strict and missing:
            raise ValueError(f"{type(self).__name__}.load_state_dict: missing {missing[:8]} ({len(missing)} in all)")
        return missing

    # --- files ------------------------------------------------------------------------------
    def save_pretrained(self, save_directory: str, max_shard_size: Any = "5GB", safe_serialization: bool = True,
                        **kwargs: Any) -> None:
        """``config.json``, ``generation_config.json`` and ``model.safetensors`` (canonical names,
        owned tensors only, metadata ``format: pt``), each written atomically.
        ``safe_serialization=False`` writes the reference's ``tf_model.h5`` instead (its TF names and
        Keras layout, sharded past ``max_shard_size``), which the reference's TF classes load."""
        if kwargs:
            raise TypeError(f"save_pretrained got unexpected arguments {sorted(kwargs)}")
        if os.path.isfile(save_directory):
            raise ValueError(f"save_pretrained needs a directory, but {save_directory!r} is a file")
        os.makedirs(save_directory, exist_ok=True)
        schema = self.schema()
        self.config.save_pretrained(save_directory)
        generation_config = self.generation_config or GenerationConfig.for_model(None, self.config)
        generation_config.save_pretrained(save_directory)
        if safe_serialization:
            save_state_dict(owned_only(self.state_dict(), schema), save_directory, max_shard_size=max_shard_size)
        else:
            write_tf_h5(self.state_dict(), schema, os.path.join(save_directory, TF_WEIGHTS_NAME),
                        main_layer=tf_main_layer(self.config), max_shard_size=max_shard_size)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str, *model_args: Any, **kwargs: Any) -> "TFPreTrainedModel":
        """Load from a folder or hub id holding any layout this library reads: ``model.safetensors``
        (ours or PyTorch's), ``pytorch_model.bin``, HF ``tf_model.h5`` / ``flax_model.msgpack``,
        single or sharded (the one loading path, ``encdec.loading.load_pretrained``).

        ``from_pt`` / ``from_tf`` / ``from_flax`` only set which file wins when several are present
        (at most one may be set). ``name=`` names the Keras model; ``output_loading_info=True`` also
        returns ``{"missing_keys", "unexpected_keys", "mismatched_keys", "ignored_keys"}``. Weights the
        checkpoint lacks are initialised by their initializers and reported; a shape mismatch raises a
        ``CheckpointError``. Other keywords override config fields.
        """
        kwargs.pop("load_weight_prefix", None)  # the reference's TF plumbing; names here never depend on it
        loaded, args = load_pretrained(TFLoader(), cls, pretrained_model_name_or_path, model_args, kwargs, ("name",))
        model = loaded.model
        model.generation_config = GenerationConfig.for_model(pretrained_model_name_or_path, model.config, **args.hub)
        return (model, loaded.info) if args.output_loading_info else model


class TFLoader:
    """TensorFlow's part of the loading path (``encdec.loading``): build with every weight created
    as zeros and its initializer recorded (``deferred_initialisers``), run the initializers only for
    the weights the checkpoint lacks, assign the checkpoint's tensors."""

    def __init__(self) -> None:
        self.initialisers: Dict[int, Any] = {}

    def build(self, model_class: Any, config: PretrainedConfig, *model_args: Any, name: Optional[str] = None,
              **init_kwargs: Any) -> TFPreTrainedModel:
        if name:
            init_kwargs["name"] = name
        with deferred_initialisers() as initialisers:
            model = model_class(config, *model_args, **init_kwargs)
        self.initialisers = initialisers
        return model

    def initialise_missing(self, model: TFPreTrainedModel, names: List[str]) -> None:
        if names:
            variables = model.canonical_variables()
            run_initialisers(self.initialisers, [variables[name] for name in names if name in variables])

    def assign(self, model: TFPreTrainedModel, tensors: Dict[str, np.ndarray]) -> None:
        # ``load_state_dict``'s loop, giving back each tensor's file pages once the variable holds
        # a copy: otherwise the load would hold the weights twice, in the variables and the mapping.
        variables = model.canonical_variables()
        for spec in model.schema().owned():
            if spec.name in tensors:
                assign_canonical(variables[spec.name], spec, tensors[spec.name])
                release_pages(tensors[spec.name])


# Tensors above SMALL_BYTES are copied into their variable by blocks of rows through one aligned
# staging buffer of STAGING_BYTES, so that a load's peak memory is the variables plus one block.
SMALL_BYTES = 1 << 20
STAGING_BYTES = 16 << 20


def assign_canonical(variable: keras.Variable, spec: ParamSpec, array: np.ndarray) -> None:
    """``variable`` := the canonical ``array`` in TF's layout, without holding a second copy of it.

    Small tensors go through ``tf.convert_to_tensor``. A large one would pass through two TF-owned
    copies of its own size, and TF's CPU allocator keeps freed blocks for reuse, so the process
    would keep that memory: it is copied instead block of rows by block of rows into a 64-byte
    aligned staging buffer (TF's kernels require that alignment, which a tensor mapped from a file
    lacks), seen by TF without a copy (DLPack), transposed by TF when its layout wants it, and
    written into the variable's own buffer in place (strided-slice assignment).
    """
    _, transpose = framework_rule(spec, "tf", array)
    array = np.asarray(array)
    dtype = np.dtype(tf.as_dtype(variable.dtype).as_numpy_dtype)
    target = variable.value  # the tf.Variable behind the Keras variable
    # DLPack takes numpy's own float types only (a bfloat16 variable goes the first way), and a
    # variable mirrored over devices (tf.distribute) is written whole, on every device
    if (array.nbytes <= SMALL_BYTES or array.ndim != 2 or dtype.kind != "f"
            or isinstance(target, tf.distribute.DistributedValues)):
        value = tf.convert_to_tensor(array)
        value = tf.transpose(value) if transpose else value
        variable.assign(tf.cast(value, variable.dtype) if value.dtype != variable.dtype else value)
        return
    rows = max(1, STAGING_BYTES // (array.shape[1] * dtype.itemsize))
    raw = np.empty(rows * array.shape[1] * dtype.itemsize + 64, np.uint8)
    skip = -raw.ctypes.data % 64
    staging = raw[skip:skip + rows * array.shape[1] * dtype.itemsize].view(dtype).reshape(rows, array.shape[1])
    for start in range(0, array.shape[0], rows):
        block = array[start:start + rows]
        stage = staging[:len(block)]
        np.copyto(stage, block, casting="unsafe")
        release_pages(block)
        value = tf.experimental.dlpack.from_dlpack(stage.__dlpack__())
        # the raw op: ``target[a:b].assign`` also reads the variable back, and the tensor it returns
        # shares the buffer, so the next block's write would copy the whole variable first
        begin, end = ([0, start], [target.shape[0], start + len(block)]) if transpose else \
            ([start, 0], [start + len(block), target.shape[1]])
        tf.raw_ops.ResourceStridedSliceAssign(ref=target.handle, begin=begin, end=end, strides=[1, 1],
                                              value=tf.transpose(value) if transpose else value)
