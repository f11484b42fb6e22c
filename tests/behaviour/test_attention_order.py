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


# --------------------------------------------------------------------------------------------
# The one attention computation per framework (`attend`), which every architecture calls

H, D = 2, 4
NEG = np.finfo(np.float32).min  # the additive bias of a masked position, as the models build it


def _attention_inputs():
    rng = np.random.default_rng(1)
    query = rng.standard_normal((B, Q, H, D)).astype(np.float32)  # (B, Q, H, D)
    key = rng.standard_normal((B, H, S, D)).astype(np.float32)  # (B, H, S, D)
    value = rng.standard_normal((B, H, S, D)).astype(np.float32)
    keep = np.ones((B, 1, 1, S), np.float32)
    keep[1, ..., -2:] = 0.0  # the second row's last two keys are padding
    return query, key, value, np.where(keep > 0, 0.0, NEG).astype(np.float32)


def _attend(framework, query, key, value, mask, scale, rate, training, probs_after_dropout):
    """The framework's ``attend`` on numpy arrays -> (context (B, Q, H*D), probs (B, H, Q, S)) in numpy."""
    if framework == "pt":
        import torch

        from encdec_pt.modeling_utils import attend

        torch.manual_seed(0)
        t = torch.from_numpy
        context, probs = attend(t(query), t(key), t(value), t(mask), None, scale, rate if training else 0.0,
                                output_attentions=True, probs_after_dropout=probs_after_dropout)
        return context.numpy(), probs.numpy()
    if framework == "tf":
        import tensorflow as tf

        from encdec_tf.layers import Dropout
        from encdec_tf.modeling_utils import attend

        # TF's queries are heads-first, (B, H, Q, D)
        context, probs = attend(tf.constant(query.transpose(0, 2, 1, 3)), tf.constant(key), tf.constant(value),
                                tf.constant(mask), scale, Dropout(rate, seed=0), training,
                                probs_after_dropout=probs_after_dropout)
        return context.numpy(), probs.numpy()
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from encdec_flax.layers import attend

    class Attend(nn.Module):
        @nn.compact
        def __call__(self, query, key, value, mask):
            return attend(query, key, value, mask, scale, nn.Dropout(rate=rate), not training, jnp.float32,
                          probs_after_dropout=probs_after_dropout)

    context, probs = Attend().apply({}, query, key, value, mask, rngs={"dropout": jax.random.PRNGKey(0)})
    return np.asarray(context), np.asarray(probs)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_attend_equals_the_float64_computation(framework):
    """Scores scaled, bias added, softmax over the keys, probabilities times values, heads merged."""
    pytest.importorskip(PACKAGES[framework])
    query, key, value, mask = _attention_inputs()
    scale = 0.3
    scores = np.einsum("bqhd,bhkd->bhqk", query.astype(np.float64), key.astype(np.float64)) * scale + mask
    expected_probs = np.exp(scores - scores.max(-1, keepdims=True))
    expected_probs /= expected_probs.sum(-1, keepdims=True)
    expected_context = np.einsum("bhqk,bhkd->bqhd", expected_probs, value.astype(np.float64)).reshape(B, Q, H * D)

    context, probs = _attend(framework, query, key, value, mask, scale, rate=0.5, training=False,
                             probs_after_dropout=True)

    np.testing.assert_allclose(probs, expected_probs, atol=1e-6)
    np.testing.assert_allclose(context, expected_context, atol=1e-6)
    assert np.all(probs[1, ..., -2:] == 0.0), "a padded key got attention"


@pytest.mark.parametrize("probs_after_dropout", [True, False], ids=["bert-gpt2", "bart"])
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_attend_returns_the_probabilities_of_the_architecture(framework, probs_after_dropout):
    """In training, BERT and GPT-2 return the probabilities the context was made of (dropout
    applied), BART those before dropout, as the reference's three frameworks do."""
    pytest.importorskip(PACKAGES[framework])
    query, key, value, mask = _attention_inputs()
    _, plain = _attend(framework, query, key, value, mask, 0.3, rate=0.5, training=False, probs_after_dropout=True)

    context, probs = _attend(framework, query, key, value, mask, 0.3, rate=0.5, training=True,
                             probs_after_dropout=probs_after_dropout)

    if probs_after_dropout:
        assert np.any((probs == 0.0) & (plain > 0.0)), "dropout dropped nothing"
        np.testing.assert_allclose(context, np.einsum("bhqk,bhkd->bqhd", probs, value).reshape(B, Q, H * D),
                                   atol=1e-6)
    else:
        np.testing.assert_allclose(probs, plain, atol=1e-7)
        assert not np.allclose(context, np.einsum("bhqk,bhkd->bqhd", probs, value).reshape(B, Q, H * D),
                               atol=1e-3), "the context was not made of dropped-out probabilities"


def test_no_model_computes_attention_itself():
    """Every architecture's attention goes through its framework's ``attend``: no model file has a
    softmax of its own."""
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2]
    own = [str(path.relative_to(root)) for path in sorted(root.glob("encdec_*/models/*.py"))
           if "softmax" in path.read_text()]
    assert not own, f"attention written outside attend(): {own}"
