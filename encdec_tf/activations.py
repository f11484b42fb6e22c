"""Activation functions by the names configs use (``hidden_act``, ``activation_function``)."""

from __future__ import annotations

import math
from typing import Callable, Dict

import tensorflow as tf


def gelu(x: tf.Tensor) -> tf.Tensor:
    """Exact (erf) GELU, BERT's ``"gelu"``."""
    return tf.nn.gelu(x, approximate=False)


def gelu_new(x: tf.Tensor) -> tf.Tensor:
    """The tanh approximation of GELU, written as GPT-2 and the reference write it."""
    return 0.5 * x * (1.0 + tf.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * tf.pow(x, 3.0))))


def gelu_fast(x: tf.Tensor) -> tf.Tensor:
    return 0.5 * x * (1.0 + tf.tanh(x * 0.7978845608 * (1.0 + 0.044715 * x * x)))


def quick_gelu(x: tf.Tensor) -> tf.Tensor:
    return x * tf.sigmoid(1.702 * x)


ACT2FN: Dict[str, Callable[[tf.Tensor], tf.Tensor]] = {
    "gelu": gelu,
    "gelu_new": gelu_new,
    "gelu_fast": gelu_fast,
    "gelu_pytorch_tanh": lambda x: tf.nn.gelu(x, approximate=True),
    "quick_gelu": quick_gelu,
    "relu": tf.nn.relu,
    "silu": tf.nn.silu,
    "swish": tf.nn.silu,
    "tanh": tf.tanh,
    "sigmoid": tf.sigmoid,
}


def get_activation(name: str) -> Callable[[tf.Tensor], tf.Tensor]:
    try:
        return ACT2FN[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; supported: {sorted(ACT2FN)}") from None
