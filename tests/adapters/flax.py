"""Flax adapter for the shared parity tests (interface in tests/adapters/__init__.py)."""

from __future__ import annotations

import contextlib
from typing import Dict

import jax
import jax.numpy as jnp
import numpy as np

from adapters import encoder_must_not_run, generate_output_arrays
from encdec_flax import FlaxEncoderDecoderModel

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


def _to_numpy(value):
    if isinstance(value, (tuple, list)):
        return [_to_numpy(v) for v in value]
    return np.asarray(value)


class Adapter:
    name = "flax"
    GENERATE_MODES = {"jit": {}}  # generate is always one jitted loop
    CHEAP_MODE = "jit"
    DRAWS_LIKE_REFERENCE = False

    def seeded(self, seed):
        return [dict(prng_key=jax.random.PRNGKey(seed))]

    def encode(self, model, inputs):
        return model.encode(inputs["input_ids"], attention_mask=inputs["attention_mask"])

    def forbid_encoder(self, model, monkeypatch):
        # The encoder runs inside the traced generate function: tracing it again must not call it.
        from encdec_flax.encoder_decoder import FlaxEncoderDecoderModule

        monkeypatch.setattr(FlaxEncoderDecoderModule, "encode", encoder_must_not_run)
        monkeypatch.setattr(model, "encode", encoder_must_not_run)

    @contextlib.contextmanager
    def quick_compiles(self):
        """XLA's backend optimisation level 0 about halves each generate compile of a tiny model (the
        tokens are the same; the parity tests check them against the reference)."""
        from encdec_flax.generation import utils

        saved = dict(utils.COMPILER_OPTIONS)
        utils.COMPILER_OPTIONS.update(xla_backend_optimization_level=0)
        try:
            yield
        finally:
            utils.COMPILER_OPTIONS.clear()
            utils.COMPILER_OPTIONS.update(saved)

    def build(self, config, state):
        model = FlaxEncoderDecoderModel(config, _do_init=False)
        model.load_state_dict(state)
        return model

    def forward(self, model, inputs, **kw):
        out = model(**{k: v for k, v in inputs.items() if v is not None}, return_dict=True, **kw)
        return {k: _to_numpy(getattr(out, k)) for k in OUTPUT_FIELDS if getattr(out, k) is not None}

    def step_logits(self, model, inputs):
        decoder_input_ids = np.asarray(inputs["decoder_input_ids"])
        batch, length = decoder_input_ids.shape
        decoder_mask = inputs.get("decoder_attention_mask")
        if decoder_mask is None:
            decoder_mask = np.ones_like(decoder_input_ids)
        encoder_outputs = model.encode(inputs["input_ids"], attention_mask=inputs["attention_mask"])
        past = model.init_cache(batch, length, encoder_outputs)
        steps = []
        for i in range(length):
            out = model.decode(
                decoder_input_ids[:, i:i + 1],
                encoder_outputs,
                encoder_attention_mask=inputs["attention_mask"],
                decoder_attention_mask=decoder_mask,  # (B, max_length): the cache is preallocated
                decoder_position_ids=np.full((batch, 1), i, dtype=np.int32),
                past_key_values=past,
            )
            past = out.past_key_values
            steps.append(np.asarray(out.logits))
        return np.concatenate(steps, axis=1)  # (B, T, V)

    def cache(self, model, inputs):
        return None  # adapters.CACHE_FORM

    def grads(self, model, inputs):
        batch = {k: jnp.asarray(v) for k, v in inputs.items() if v is not None}
        model.check_inputs(**batch)
        grads = jax.jit(jax.grad(lambda p, b: model(**b, params=p).loss))(model.params, batch)
        # Kernels map to PyTorch weights by the same transpose as the params (W = K.T => dL/dW = (dL/dK).T).
        return model.state_dict(grads)

    def generate(self, model, inputs, **kwargs):
        """``model.generate`` on numpy inputs (input_ids, attention_mask, ...) -> sequences as int64 numpy."""
        out = model.generate(**{k: v for k, v in inputs.items() if v is not None}, **kwargs)
        sequences = out.sequences if hasattr(out, "sequences") else out
        return np.asarray(sequences).astype(np.int64)

    def generate_output(self, model, inputs, **kwargs):
        """``model.generate(..., return_dict_in_generate=True)`` -> dict of numpy arrays."""
        out = model.generate(**{k: v for k, v in inputs.items() if v is not None}, **kwargs)
        return generate_output_arrays(out, np.asarray)

    def state_dict(self, model):
        return model.state_dict()

    def save(self, model, path, **kwargs):
        model.save_pretrained(str(path), **kwargs)

    def load(self, path):
        return FlaxEncoderDecoderModel.from_pretrained(str(path))
