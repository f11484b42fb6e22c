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


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """The oracle's PyTorch runs next to TensorFlow's thread pools: with its default threads it
    contends with them (tiny generate calls went from 0.01 s to 4 s); one thread is fastest."""
    try:
        import torch
    except ImportError:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
