"""The dense and LayerNorm layers of the TF models: the variables of ``keras.layers.Dense`` and
``keras.layers.LayerNormalization`` (same names, shapes, order and initializers, so checkpoints
and the canonical-name walk are unchanged) with a ``call`` written in a few TensorFlow ops.

Why not the Keras layers: generate traces the whole model into one graph and XLA compiles it, and
both cost time per graph op. ``keras.ops`` adds casts, conversions and shape arithmetic (Dense 13
ops vs 9 here, LayerNormalization 26 vs 21). ``tf.matmul`` rather than ``tf.einsum``: the same XLA
dot, but the TF-to-XLA bridge converts an einsum more slowly. Static reshapes in the attention
layers shrink the graph further (docs/performance.md has the trace and bridge times). The
arithmetic is Keras's, in the same order. Outside XLA the dense layers keep the 2-D MatMul (``matmul_last``), so eager forward and
backward passes are not slower than with Keras's layers.

Also here: ``split_heads`` / ``merge_heads`` (the (b, h, t, d) attention layout, transposes only
where t > 1), and ``XLATraceCall``, which lets generate's trace call the layers without Keras's
``__call__`` (also mixed into ``Embedding`` and ``Dropout``, Keras's own layers otherwise).
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, Dict, Iterable, Iterator, List, Tuple, Union

import keras
import tensorflow as tf

try:  # XLA's optimization barrier (identity); the public API does not export it
    from tensorflow.compiler.tf2xla.python.xla import optimization_barrier as _optimization_barrier
except ImportError:  # pragma: no cover - a TensorFlow without it: products may be fused with their bias
    _optimization_barrier = None


def static_shape(x: tf.Tensor) -> List[Union[int, tf.Tensor]]:
    """The dimensions of ``x``: Python ints where the static shape knows them, scalar tensors
    elsewhere (one ``tf.shape`` op, only when a dimension is unknown)."""
    static = x.shape.as_list()
    if all(d is not None for d in static):
        return static
    dynamic = tf.shape(x)
    return [dynamic[i] if d is None else d for i, d in enumerate(static)]


def split_heads(x: tf.Tensor, num_heads: int) -> tf.Tensor:
    """(b, t, e) -> (b, h, t, d), the layout attention and the caches use. With one position (a
    decoding step) the two layouts hold the same numbers in the same order: a reshape alone, and no
    transposes in the compiled loop."""
    b, t, e = static_shape(x)  # t a tensor when the length is not known while tracing
    if isinstance(t, int) and t == 1:
        return tf.reshape(x, (b, num_heads, 1, e // num_heads))
    return tf.transpose(tf.reshape(x, (b, t, num_heads, e // num_heads)), (0, 2, 1, 3))


def merge_heads(x: tf.Tensor) -> tf.Tensor:
    """(b, h, t, d) -> (b, t, h * d); the inverse of ``split_heads``."""
    b, h, t, d = static_shape(x)
    if isinstance(t, int) and t == 1:
        return tf.reshape(x, (b, 1, h * d))
    return tf.reshape(tf.transpose(x, (0, 2, 1, 3)), (b, t, h * d))


_IN_XLA_TRACE = contextvars.ContextVar("encdec_tf_in_xla_trace", default=False)


@contextlib.contextmanager
def xla_trace():
    """Marks the tracing of a function that XLA compiles (``generate``). Inside it ``matmul_last`` is
    one broadcasting matmul (elsewhere, eager or ``tf.function`` without XLA, a 2-D MatMul between
    two reshapes), and ``XLATraceCall`` layers are called without Keras's ``__call__``."""
    token = _IN_XLA_TRACE.set(True)
    try:
        yield
    finally:
        _IN_XLA_TRACE.reset(token)


class XLATraceCall:
    """Mixin for the models' layers: while generate traces for XLA (``xla_trace``), ``layer(...)`` is
    ``layer.call(...)``. Keras's ``__call__`` (input conversion, name and autocast scopes, the training
    flag from context) adds only Python work there, and generate's trace makes hundreds of layer
    calls (docs/performance.md). The graph is the same. Everywhere else Keras's ``__call__`` runs as usual;
    the model is built before generate, and generation never trains (every ``call`` defaults
    ``training`` to False)."""

    def __call__(self, *args: Any, **kwargs: Any):
        if self.built and _IN_XLA_TRACE.get():
            return self.call(*args, **kwargs)
        return super().__call__(*args, **kwargs)


def matmul_last(x: tf.Tensor, kernel: tf.Tensor, transpose_b: bool = False) -> tf.Tensor:
    """``x (..., e) @ kernel (e, f)`` (``kernel (f, e)`` with ``transpose_b``).

    Under ``xla_trace`` it is one broadcasting ``tf.matmul`` (XLA makes it the same dot as the
    reshapes would; the graph is smaller). TensorFlow's own kernel for that op is slow, so eagerly and
    in graphs TensorFlow runs itself it is a 2-D MatMul between two reshapes (docs/performance.md)."""
    if _IN_XLA_TRACE.get():
        y = tf.matmul(x, kernel, transpose_b=transpose_b)
        rows = x.shape[:-1]
        return unfused_product(y) if rows.is_fully_defined() and rows.num_elements() == 1 else y
    if x.shape.rank == 2:
        return tf.matmul(x, kernel, transpose_b=transpose_b)
    shape = static_shape(x)
    y = tf.matmul(tf.reshape(x, (-1, shape[-1])), kernel, transpose_b=transpose_b)
    return tf.reshape(y, shape[:-1] + [kernel.shape[0 if transpose_b else -1]])


def unfused_product(y: tf.Tensor) -> tf.Tensor:
    """``y``, the result of a one-row weight product, behind an XLA optimization barrier (an identity).

    XLA on CPU fuses a matrix-vector product with the ``+ bias`` that follows it into one kernel of
    its own code, which runs on one thread; without the fusion the product is a dot of its own,
    which XLA runs with Eigen on all threads and the add joins the next elementwise kernel. Only
    one-row products fuse (greedy search and sampling at batch 1, in every decoding step), so
    ``matmul_last`` puts the barrier only there; products of several rows compile as before
    (docs/performance.md has the loop's times with and without it)."""
    if _optimization_barrier is None:
        return y
    return _optimization_barrier(y)[0]


_DEFERRED_INIT: contextvars.ContextVar = contextvars.ContextVar("encdec_tf_deferred_init", default=None)


@contextlib.contextmanager
def deferred_initialisers() -> Iterator[Dict[int, Tuple[keras.Variable, Any]]]:
    """Within the block, the models' weights are created as zeros and their initializers recorded:
    ``{id(variable): (variable, initializer)}``. ``from_pretrained`` builds the model this way and
    runs the recorded initializers only for the weights the checkpoint lacks
    (``run_initialisers``): random numbers for weights the checkpoint then overwrites are a large
    part of a load's time (docs/performance.md, "Loading")."""
    registry: Dict[int, Tuple[keras.Variable, Any]] = {}
    token = _DEFERRED_INIT.set(registry)
    try:
        yield registry
    finally:
        _DEFERRED_INIT.reset(token)


def run_initialisers(registry: Dict[int, Tuple[keras.Variable, Any]], variables: Iterable[keras.Variable]) -> int:
    """Give ``variables`` the values their recorded initializers draw; returns how many."""
    count = 0
    for variable in variables:
        entry = registry.get(id(variable))
        if entry is not None:
            initializer = keras.initializers.get(entry[1])
            variable.assign(initializer(tuple(variable.shape), dtype=variable.dtype))
            count += 1
    return count


class DeferredInit:
    """Mixin of the layers that own weights: ``add_weight`` under ``deferred_initialisers``."""

    def add_weight(self, *args: Any, **kwargs: Any):
        registry = _DEFERRED_INIT.get()
        initializer = kwargs.get("initializer")
        if registry is None or initializer is None or len(args) > 1:
            return super().add_weight(*args, **kwargs)
        variable = super().add_weight(*args, **{**kwargs, "initializer": "zeros"})
        registry[id(variable)] = (variable, initializer)
        return variable


class Dense(DeferredInit, XLATraceCall, keras.layers.Layer):
    """``y = x @ kernel + bias`` on the last axis; ``kernel`` (in, units) and ``bias`` (units,)
    as ``keras.layers.Dense`` creates them."""

    def __init__(self, units: int, use_bias: bool = True, kernel_initializer: Any = "glorot_uniform",
                 bias_initializer: Any = "zeros", **kwargs: Any):
        super().__init__(**kwargs)
        self.units, self.use_bias = units, use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(input_shape[-1], self.units),
                                      initializer=self.kernel_initializer)
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer=self.bias_initializer) \
            if self.use_bias else None

    def call(self, x):
        y = matmul_last(x, self.kernel)  # (..., e) @ (e, f)
        return y + self.bias if self.use_bias else y


class LayerNorm(DeferredInit, XLATraceCall, keras.layers.Layer):
    """Layer normalisation over the last axis with ``gamma`` and ``beta`` (ones / zeros), computed
    as Keras computes it: ``x * inv + (beta - mean * inv)`` with ``inv = rsqrt(var + eps) * gamma``."""

    def __init__(self, epsilon: float = 1e-3, **kwargs: Any):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    def build(self, input_shape):
        self.gamma = self.add_weight(name="gamma", shape=(input_shape[-1],), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(input_shape[-1],), initializer="zeros")

    def call(self, x):
        mean = tf.reduce_mean(x, axis=-1, keepdims=True)
        variance = tf.reduce_mean(tf.math.squared_difference(x, tf.stop_gradient(mean)), axis=-1, keepdims=True)
        inv = tf.math.rsqrt(variance + self.epsilon) * self.gamma
        return x * inv + (self.beta - mean * inv)


class Embedding(DeferredInit, XLATraceCall, keras.layers.Embedding):
    """``keras.layers.Embedding`` (same variable), looked up with one gather (Keras's ``ops.take``
    adds index arithmetic for negative ids, which ``check_ids`` rejects before any lookup)."""

    def call(self, inputs):
        if inputs.dtype not in (tf.int32, tf.int64):
            inputs = tf.cast(inputs, tf.int32)
        return tf.gather(self.embeddings, inputs)


class Dropout(XLATraceCall, keras.layers.Dropout):
    """``keras.layers.Dropout``; under ``xla_trace`` called without Keras's ``__call__``."""
