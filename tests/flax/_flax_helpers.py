"""Helpers of the Flax tests (imported by its conftest and test modules)."""

import numpy as np
import pytest

from encdec.naming.schema import schema_for
from encdec.testing import TOLERANCE, deterministic_state_dict, tiny_config, tiny_inputs

TOL = TOLERANCE["float32"]["abs"]


class Built:
    """A tiny model of ``arch`` with the deterministic canonical weights, and its inputs."""

    def __init__(self, arch):
        from encdec_flax import FlaxEncoderDecoderModel

        self.arch = arch
        self.config = tiny_config(arch)
        self.schema = schema_for(self.config)
        self.state = deterministic_state_dict(self.schema, seed=1)
        self.model = FlaxEncoderDecoderModel(self.config, _do_init=False)
        self.model.load_state_dict(self.state)
        self.inputs = tiny_inputs(self.config)


def max_diff(a, b) -> float:
    if isinstance(b, (list, tuple)):
        assert len(a) == len(b), f"{len(a)} vs {len(b)} items"
        return max(max_diff(x, y) for x, y in zip(a, b))
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, f"shape {a.shape} vs {b.shape}"
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def hf_config(config):
    transformers = pytest.importorskip("transformers")
    hcfg = transformers.EncoderDecoderConfig.from_dict(config.to_dict())
    hcfg.encoder._attn_implementation = "eager"
    hcfg.decoder._attn_implementation = "eager"
    return hcfg

