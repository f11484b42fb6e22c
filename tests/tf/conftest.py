"""Fixtures of the TF tests: tiny models on deterministic weights, built once per module, and
the reference's PyTorch twin of each (the oracle, only where transformers is installed)."""

import numpy as np
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


def oracle_pt_model(config, state):
    """The reference's ``EncoderDecoderModel`` (eager attention) holding ``state``."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    hf_config = transformers.EncoderDecoderConfig.from_dict(config.to_dict())
    hf_config.encoder._attn_implementation = hf_config.decoder._attn_implementation = "eager"
    model = transformers.EncoderDecoderModel(config=hf_config).eval()
    schema = schema_for(config)
    full = {spec.name: torch.from_numpy(state[spec.tied_to or spec.name]) for spec in schema}
    missing, unexpected = model.load_state_dict(full, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    return model


def oracle_forward(model, inputs, **kw):
    import torch

    with torch.no_grad():
        return model(**{k: torch.from_numpy(np.asarray(v)) for k, v in inputs.items()}, **kw)


def max_diff(a, b) -> float:
    if isinstance(a, (tuple, list)):
        assert len(a) == len(b), f"{len(a)} vs {len(b)} items"
        return max(max_diff(x, y) for x, y in zip(a, b))
    a = np.asarray(a)
    b = b.detach().numpy() if hasattr(b, "detach") else np.asarray(b)
    assert a.shape == b.shape, f"shape {a.shape} vs {b.shape}"
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
