"""Fixtures of the TF tests: tiny models on deterministic weights, built once per module."""

import pytest

from encdec.naming.schema import schema_for
from encdec.testing import deterministic_state_dict, tiny_config, tiny_inputs


@pytest.fixture(scope="module")
def tiny():
    """arch -> (config, canonical state, inputs, TFEncoderDecoderModel with that state)."""
    from encdec_tf import TFEncoderDecoderModel

    cache = {}

    def get(arch):
        if arch not in cache:
            config = tiny_config(arch)
            state = deterministic_state_dict(schema_for(config), seed=3)
            model = TFEncoderDecoderModel(config)
            model.load_state_dict(state)
            cache[arch] = (config, state, tiny_inputs(config), model)
        return cache[arch]

    return get

