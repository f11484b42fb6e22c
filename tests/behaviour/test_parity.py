"""Structural parity: for every registered architecture and each role its record allows, the three
packages register a class, take the same constructor arguments, and hold exactly the parameters of
the schema (canonical names and shapes). A new architecture is covered by its record alone."""

from __future__ import annotations

import importlib
import inspect

import numpy as np
import pytest

from encdec.naming.schema import schema_for
from encdec.registry import DECODER, ENCODER, records

FRAMEWORK_MODULES = {"pt": ("torch", "encdec_pt.models.auto"), "tf": ("tensorflow", "encdec_tf.models.auto"),
                     "flax": ("flax", "encdec_flax.models.auto")}
CASES = [(record.model_type, role) for record in records() for role in record.roles]


def _registry(framework):
    pytest.importorskip(FRAMEWORK_MODULES[framework][0])
    return importlib.import_module(FRAMEWORK_MODULES[framework][1]).MODELS


def _config(model_type, role):
    from encdec.registry import architecture

    if role == DECODER:
        return architecture(model_type).tiny_config(is_decoder=True, add_cross_attention=True)
    return architecture(model_type).tiny_config()


def _canonical_state(framework, model):
    return model.canonical_state_dict() if framework == "pt" else model.state_dict()


@pytest.mark.parametrize("model_type,role", CASES, ids=[f"{t}-{r}" for t, r in CASES])
def test_every_framework_registers_the_role_with_the_schemas_parameters(model_type, role):
    config = _config(model_type, role)
    schema = schema_for(config, head="causal_lm" if role == DECODER else "base")
    expected = {spec.name: tuple(spec.shape) for spec in schema.owned()}
    signatures = {}
    for framework in FRAMEWORK_MODULES:
        model_class = _registry(framework).lookup(config, role)
        state = _canonical_state(framework, model_class(config))
        assert {k: tuple(np.shape(v)) for k, v in state.items()} == expected, (framework, model_type, role)
        parameters = inspect.signature(model_class.__init__).parameters
        signatures[framework] = [name for name in parameters if name in ("config", "add_pooling_layer")]
    assert len({tuple(v) for v in signatures.values()}) == 1, signatures


def test_the_three_registries_cover_the_same_records_and_roles():
    covered = {framework: {(t, r) for r in (ENCODER, DECODER) for t in _registry(framework).model_types(r)}
               for framework in FRAMEWORK_MODULES}
    expected = {(t, r) for record in records() for r in record.roles for t in record.model_types}
    assert all(found == expected for found in covered.values()), covered


def _call(framework, model, ids, encoder_hidden_states):
    """The part model on ``ids`` (and ``encoder_hidden_states`` for a decoder): its main output as
    numpy, the last hidden state of a base model or the logits of a causal LM."""
    kwargs = {} if encoder_hidden_states is None else {"encoder_hidden_states": encoder_hidden_states}
    if framework == "pt":
        import torch

        with torch.no_grad():
            out = model(input_ids=torch.from_numpy(ids), **{k: torch.from_numpy(v) for k, v in kwargs.items()})
    elif framework == "tf":
        out = model(input_ids=ids, training=False, **kwargs)
    else:
        out = model(ids, **kwargs)
    value = out.logits if encoder_hidden_states is not None else out.last_hidden_state
    return np.asarray(value)


@pytest.mark.parametrize("model_type,role", CASES, ids=[f"{t}-{r}" for t, r in CASES])
def test_every_framework_runs_the_role_like_pytorch(model_type, role, tmp_path):
    """Each registered part model on its own (not inside a composite), called as a user calls it,
    loads PyTorch's file and gives PyTorch's output."""
    from encdec.testing import TOLERANCE, deterministic_state_dict

    config = _config(model_type, role)
    schema = schema_for(config, head="causal_lm" if role == DECODER else "base")
    source = _registry("pt").lookup(config, role)(config)
    source.load_canonical(deterministic_state_dict(schema))
    source.eval().save_pretrained(str(tmp_path))
    rng = np.random.default_rng(0)
    ids = rng.integers(4, config.vocab_size, size=(2, 6)).astype(np.int64)
    states = rng.standard_normal((2, 5, config.hidden_size)).astype(np.float32) if role == DECODER else None
    expected = _call("pt", source, ids, states)
    for framework in ("tf", "flax"):
        model = _registry(framework).lookup(config, role).from_pretrained(str(tmp_path))
        got = _call(framework, model, ids, states)
        assert got.shape == expected.shape, (framework, got.shape, expected.shape)
        assert np.abs(got - expected).max() <= TOLERANCE["float32"]["abs"], (framework, np.abs(got - expected).max())


@pytest.mark.parametrize("model_type,role", [c for c in CASES if not hasattr(_config(*c), "type_vocab_size")],
                         ids=lambda v: str(v))
def test_flax_refuses_token_types_the_architecture_lacks(model_type, role):
    """The functional Flax API takes ``token_type_ids`` for every architecture; one without token
    type embeddings refuses them by name instead of dropping them."""
    config = _config(model_type, role)
    model = _registry("flax").lookup(config, role)(config)
    ids = np.full((1, 3), 5, dtype=np.int64)
    with pytest.raises(ValueError, match=f"token_type_ids given, but {model_type} has no token type"):
        model(ids, token_type_ids=np.zeros_like(ids))
