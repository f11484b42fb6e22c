"""TensorFlow adapter for the shared parity tests (interface in tests/adapters/__init__.py)."""

from __future__ import annotations

import contextlib
from typing import Dict

import numpy as np
import tensorflow as tf

from adapters import encoder_must_not_run, generate_output_arrays
from encdec.naming.layout import from_framework
from encdec_tf import TFEncoderDecoderModel

OUTPUT_FIELDS = (
    "loss",
    "logits",
    "encoder_last_hidden_state",
    "encoder_hidden_states",
    "encoder_attentions",
    "decoder_hidden_states",
    "decoder_attentions",
    "cross_attentions",
)


def _to_tf(inputs: Dict[str, np.ndarray]) -> Dict[str, tf.Tensor]:
    return {k: tf.convert_to_tensor(np.asarray(v)) for k, v in inputs.items() if v is not None}


def _to_numpy(value):
    if isinstance(value, (tuple, list)):
        return [_to_numpy(v) for v in value]
    return np.asarray(value)


class Adapter:
    name = "tf"
    # One loop function, run XLA-compiled (the default) or eagerly: both must give the same result.
    GENERATE_MODES = {"compiled": {}, "eager": {"use_xla": False}}
    CHEAP_MODE = "eager"  # no XLA compile (about a second per setting and shape on the tiny models)
    DRAWS_LIKE_REFERENCE = False

    def seeded(self, seed):
        return [dict(seed=seed)]

    def encode(self, model, inputs):
        t = _to_tf(inputs)
        return model.get_encoder()(input_ids=t["input_ids"], attention_mask=t["attention_mask"])

    def forbid_encoder(self, model, monkeypatch):
        monkeypatch.setattr(model.encoder, "call", encoder_must_not_run)

    def quick_compiles(self):
        return contextlib.nullcontext()

    def build(self, config, state):
        model = TFEncoderDecoderModel(config)
        model.load_state_dict(state)
        return model

    def forward(self, model, inputs, **kw):
        out = model(**_to_tf(inputs), use_cache=False, return_dict=True, training=False, **kw)
        return {k: _to_numpy(getattr(out, k)) for k in OUTPUT_FIELDS if getattr(out, k) is not None}

    def step_logits(self, model, inputs):
        t = _to_tf(inputs)
        decoder_input_ids = t["decoder_input_ids"]
        decoder_mask = t.get("decoder_attention_mask", tf.ones_like(decoder_input_ids))
        encoder_outputs = model.get_encoder()(input_ids=t["input_ids"], attention_mask=t["attention_mask"])
        past, steps = None, []
        for i in range(decoder_input_ids.shape[1]):
            out = model(
                attention_mask=t["attention_mask"],
                encoder_outputs=encoder_outputs,
                decoder_input_ids=decoder_input_ids[:, i:i + 1],
                decoder_attention_mask=decoder_mask[:, :i + 1],
                past_key_values=past,
                use_cache=True,
            )
            past = out.past_key_values
            steps.append(out.logits)
        return tf.concat(steps, axis=1).numpy()  # (B, T, V)

    def cache(self, model, inputs):
        out = model(**_to_tf(inputs), use_cache=True, training=False)
        return _to_numpy(out.past_key_values)

    def grads(self, model, inputs):
        schema = model.schema()
        variables = model.canonical_variables()
        owned = schema.owned()
        with tf.GradientTape() as tape:
            out = model(**_to_tf(inputs), use_cache=False, training=False)
        grads = tape.gradient(out.loss, [variables[spec.name] for spec in owned])
        result = {}
        for spec, grad in zip(owned, grads):
            if grad is None:
                result[spec.name] = np.zeros(spec.shape, np.float32)
                continue
            _, result[spec.name] = from_framework(spec.kind, variables[spec.name].name, np.asarray(tf.convert_to_tensor(grad)), "tf")
        return result

    def generate_output(self, model, inputs, **kwargs):
        """``model.generate(..., return_dict_in_generate=True)`` -> dict of numpy arrays."""
        out = model.generate(**_to_tf(inputs), **kwargs)
        return generate_output_arrays(out, np.asarray)

    def state_dict(self, model):
        return model.state_dict()

    def save(self, model, path, **kwargs):
        model.save_pretrained(str(path), **kwargs)

    def load(self, path):
        return TFEncoderDecoderModel.from_pretrained(str(path))

    def generate(self, model, inputs, **kwargs):
        """``model.generate`` (XLA-compiled) on numpy inputs (input_ids, attention_mask, ...) -> sequences as int64 numpy."""
        out = model.generate(**_to_tf(inputs), **kwargs)
        sequences = out.sequences if hasattr(out, "sequences") else out
        return np.asarray(sequences).astype(np.int64)
