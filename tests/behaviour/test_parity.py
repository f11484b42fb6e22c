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
