"""Thin per-framework adapters used by the shared cross-framework tests.

Each module (``pt``, ``tf``, ``flax``) defines ``Adapter`` with:

- ``name``: ``"pt"`` | ``"tf"`` | ``"flax"``
- ``build(config, state)``: a model with the canonical numpy weights ``state`` loaded, in eval mode
- ``forward(model, inputs, **kw)``: dict of numpy outputs among ``loss``, ``logits``,
  ``encoder_last_hidden_state``, ``encoder_hidden_states``, ``encoder_attentions``,
  ``decoder_hidden_states``, ``decoder_attentions``, ``cross_attentions`` (lists for tuples)
- ``step_logits(model, inputs)``: decoder inputs fed one token at a time through the cache, (B, T, V)
- ``grads(model, inputs)``: d loss / d parameter for every owned canonical name, canonical layout
- ``state_dict(model)``: the owned canonical tensors
- ``save(model, path)`` / ``load(path)``
- ``generate(model, inputs, **kwargs)``: sequences as a numpy array
- ``generate_output(model, inputs, **kwargs)``: with ``return_dict_in_generate=True``, a dict of numpy
  arrays (``sequences``, and ``sequences_scores`` / ``beam_indices`` for beam search)
"""

import importlib

import numpy as np
import pytest

FRAMEWORKS = ("pt", "tf", "flax")


def load_adapter(framework: str):
    """The adapter of ``framework``, or a skip naming the framework package that is missing."""
    module_names = {"pt": "torch", "tf": "tensorflow", "flax": "flax"}
    pytest.importorskip(module_names[framework])
    return importlib.import_module(f"adapters.{framework}").Adapter()


def generate_output_arrays(out, to_numpy) -> dict:
    """A ``return_dict_in_generate=True`` result of any framework as numpy arrays: ``sequences``
    (int64), and ``sequences_scores`` / ``beam_indices`` where present (tuples such as ``scores`` are left out)."""
    result = {}
    for name in ("sequences", "sequences_scores", "beam_indices"):
        value = getattr(out, name, None)
        if value is not None:
            result[name] = to_numpy(value)
    result["sequences"] = result["sequences"].astype(np.int64)
    return result
