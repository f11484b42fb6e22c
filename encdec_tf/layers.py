"""The dense and LayerNorm layers of the TF models: the variables of ``keras.layers.Dense`` and
``keras.layers.LayerNormalization`` (same names, shapes, order and initializers, so checkpoints
and the canonical-name walk are unchanged) with a ``call`` written in a few TensorFlow ops.

Why not the Keras layers: generate traces the whole model into one graph and XLA compiles it, and
on the 2-core CI machine both cost time per graph op. ``keras.ops`` adds casts, conversions and
shape arithmetic (Dense 13 ops vs 9 here, LayerNormalization 26 vs 21). ``tf.matmul`` rather than
``tf.einsum``: the same XLA dot, but the TF-to-XLA bridge converts an einsum about twice as slowly
(a BERT-base encoder: 1.3 s vs 0.7 s). With static reshapes in the attention layers, the greedy
graph of the base bert2gpt2 went from 5,700 ops to 3,850, its trace from 4.6-5.1 s to 2.5-3.2 s
and the bridge from 2.9 s to 1.6-2.0 s (old and new code interleaved; docs/performance.md). The arithmetic is Keras's, in the
same order. Outside XLA the dense layers keep the 2-D MatMul (``matmul_last``), so eager forward and
backward passes are not slower than with Keras's layers.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Any, List, Union

import keras
import tensorflow as tf


def static_shape(x: tf.Tensor) -> List[Union[int, tf.Tensor]]:
    """The dimensions of ``x``: Python ints where the static shape knows them, scalar tensors
    elsewhere (one ``tf.shape`` op, only when a dimension is unknown)."""
    static = x.shape.as_list()
    if all(d is not None for d in static):
        return static
    dynamic = tf.shape(x)
    return [dynamic[i] if d is None else d for i, d in enumerate(static)]


_IN_XLA_TRACE = contextvars.ContextVar("encdec_tf_in_xla_trace", default=False)


@contextlib.contextmanager
def xla_trace():
    """While tracing a function that XLA compiles (``generate``), ``matmul_last`` is one broadcasting
    matmul; elsewhere (eager, ``tf.function`` without XLA) a 2-D MatMul between two reshapes."""
    token = _IN_XLA_TRACE.set(True)
    try:
        yield
    finally:
        _IN_XLA_TRACE.reset(token)


def matmul_last(x: tf.Tensor, kernel: tf.Tensor, transpose_b: bool = False) -> tf.Tensor:
    """``x (..., e) @ kernel (e, f)`` (``kernel (f, e)`` with ``transpose_b``).

    Under ``xla_trace`` it is one broadcasting ``tf.matmul`` (XLA makes it the same dot as the
    reshapes would; the graph is smaller). TensorFlow's own kernel for that op is slow, so eagerly and
    in graphs TensorFlow runs itself it is a 2-D MatMul between two reshapes: a base bert2gpt2
    forward+backward took 9.5 s with the broadcasting op against 6.0 s."""
    if x.shape.rank == 2 or _IN_XLA_TRACE.get():
        return tf.matmul(x, kernel, transpose_b=transpose_b)
    shape = static_shape(x)
    y = tf.matmul(tf.reshape(x, (-1, shape[-1])), kernel, transpose_b=transpose_b)
    return tf.reshape(y, shape[:-1] + [kernel.shape[0 if transpose_b else -1]])


class Dense(keras.layers.Layer):
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


class LayerNorm(keras.layers.Layer):
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
