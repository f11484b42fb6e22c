"""The attention modules of the three frameworks return what their docstrings say, in one order:
PyTorch and TensorFlow ``(context, present, probs)``; Flax ``(context, probs)`` with ``present`` in
the ``"cache"`` collection. Each module is called on tiny inputs (cross-attention, so that the query
length Q=3 and the key length S=5 differ and a swapped axis shows)."""

from __future__ import annotations

import numpy as np
import pytest

from adapters import FRAMEWORKS
from encdec.registry import architecture

B, Q, S = 2, 3, 5

CROSS = {"is_cross_attention": True}
# framework -> model_type -> (module, attention class, constructor arguments of a cross-attention);
# PyTorch's BertSelfAttention and BartAttention are cross-attention when given encoder_hidden_states.
# RoBERTa and BertGeneration use BERT's attention.
MODULES = {
    "pt": {"bert": ("encdec_pt.models.bert", "BertSelfAttention", {}),
           "gpt2": ("encdec_pt.models.gpt2", "GPT2Attention", CROSS),
           "bart": ("encdec_pt.models.bart", "BartAttention", {})},
    "tf": {"bert": ("encdec_tf.models.bert", "TFBertSelfAttention", CROSS),
           "gpt2": ("encdec_tf.models.gpt2", "TFGPT2Attention", CROSS),
           "bart": ("encdec_tf.models.bart", "TFBartAttention", CROSS)},
    "flax": {"bert": ("encdec_flax.models.bert", "FlaxBertSelfAttention", CROSS),
             "gpt2": ("encdec_flax.models.gpt2", "FlaxGPT2Attention", CROSS),
             "bart": ("encdec_flax.models.bart", "FlaxBartAttention", CROSS)},
}
PACKAGES = {"pt": "torch", "tf": "tensorflow", "flax": "flax"}


def _inputs(config):
    rng = np.random.default_rng(0)
    hidden = rng.standard_normal((B, Q, config.hidden_size)).astype(np.float32)
    encoder_hidden = rng.standard_normal((B, S, config.hidden_size)).astype(np.float32)
    return hidden, encoder_hidden


def _call(framework, module, hidden, encoder_hidden):
    """The module's return value as a tuple of numpy arrays (nested tuples kept), and for Flax the
    ``"cache"`` collection made by the same call with ``init_cache=True``."""
    if framework == "pt":
        import torch

        with torch.no_grad():
            out = module.eval()(torch.from_numpy(hidden), encoder_hidden_states=torch.from_numpy(encoder_hidden),
                                output_attentions=True)
        return _numpy(out), None
    if framework == "tf":
        import tensorflow as tf

        out = module(tf.constant(hidden), encoder_hidden_states=tf.constant(encoder_hidden), output_attentions=True)
        return _numpy(out), None
    import jax

    variables = module.init(jax.random.PRNGKey(0), hidden, encoder_hidden_states=encoder_hidden)
    out, mutated = module.apply(variables, hidden, encoder_hidden_states=encoder_hidden, output_attentions=True,
                                init_cache=True, mutable=["cache"])
    return _numpy(out), jax.tree_util.tree_map(np.asarray, dict(mutated["cache"]))


def _numpy(value):
    if isinstance(value, (tuple, list)):
        return tuple(_numpy(v) for v in value)
    return np.asarray(value)


@pytest.mark.parametrize("model_type", ["bert", "gpt2", "bart"])
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_attention_returns_context_present_probs(framework, model_type):
    pytest.importorskip(PACKAGES[framework])
    import importlib

    module_name, class_name, kwargs = MODULES[framework][model_type]
    record = architecture(model_type)
    config = record.tiny_config(is_decoder=True, add_cross_attention=True)
    module = getattr(importlib.import_module(module_name), class_name)(config, **kwargs)
    heads = getattr(config, record.decoder.num_heads)
    head_dim = config.hidden_size // heads
    hidden, encoder_hidden = _inputs(config)

    out, cache = _call(framework, module, hidden, encoder_hidden)

    if framework == "flax":
        assert len(out) == 2
        context, probs = out
        present = (cache["cached_key"], cache["cached_value"])
    else:
        assert len(out) == 3
        context, present, probs = out
    assert context.shape == (B, Q, config.hidden_size)
    assert len(present) == 2
    assert [p.shape for p in present] == [(B, heads, S, head_dim)] * 2
    assert probs.shape == (B, heads, Q, S)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)
    # The present keys/values are the ones attended to: the heads' outputs are probs @ value.
    heads_context = np.einsum("bhqk,bhkd->bqhd", probs, present[1]).reshape(B, Q, -1)
    if model_type == "bert":
        np.testing.assert_allclose(context, heads_context, rtol=1e-4, atol=1e-5)
    else:
        # GPT-2's and BART's context goes through their output projection before it is returned
        assert not np.allclose(heads_context, 0.0)
