"""TensorFlow / Keras 3 implementation of the encdec models.

Keras 3 runs on several backends; these models are written against the TensorFlow backend
(``tf.einsum``, ``tf.function``, ``tf.data``), so the backend is pinned before ``keras`` is
imported and checked afterwards.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise ImportError(
        f"encdec_tf needs Keras on the TensorFlow backend, but keras.backend.backend() is "
        f"{keras.backend.backend()!r} (KERAS_BACKEND={os.environ.get('KERAS_BACKEND')!r}). "
        "Set KERAS_BACKEND=tensorflow before keras is first imported."
    )

from encdec_tf.models.auto import TFAutoModel, TFAutoModelForCausalLM  # noqa: E402
from encdec_tf.models.bert import TFBertLMHeadModel, TFBertModel  # noqa: E402
from encdec_tf.encoder_decoder import TFEncoderDecoderModel  # noqa: E402
from encdec_tf.models.gpt2 import TFGPT2LMHeadModel, TFGPT2Model  # noqa: E402

__all__ = [
    "TFAutoModel",
    "TFAutoModelForCausalLM",
    "TFBertLMHeadModel",
    "TFBertModel",
    "TFEncoderDecoderModel",
    "TFGPT2LMHeadModel",
    "TFGPT2Model",
]
