"""PyTorch's from_pretrained maps model.safetensors: its parameters are the file's pages, copy-on-write."""

import os

import numpy as np
import pytest
import torch

from encdec.formats.safetensors import save_state_dict
from encdec.naming.schema import schema_for
from encdec.testing import deterministic_state_dict, tiny_config
from encdec_pt import EncoderDecoderModel


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="reads the process's mappings from /proc (Linux)")
def test_parameters_share_the_file_mapping_and_writes_stay_private(tmp_path):
    config = tiny_config("bert2gpt2")
    state = deterministic_state_dict(schema_for(config))
    config.save_pretrained(str(tmp_path))
    save_state_dict(state, str(tmp_path))
    before = (tmp_path / "model.safetensors").read_bytes()

    model = EncoderDecoderModel.from_pretrained(str(tmp_path))
    params = dict(model.named_parameters())
    name = "encoder.encoder.layer.0.attention.self.query.weight"
    # Every parameter lies in a mapping of the file (Linux lists the process's mappings).
    path = os.path.realpath(tmp_path / "model.safetensors")
    with open("/proc/self/maps") as f:
        mapped = [tuple(int(a, 16) for a in line.split()[0].split("-")) for line in f if line.rstrip().endswith(path)]
    assert mapped
    for param in model.parameters():
        assert any(start <= param.data_ptr() and param.data_ptr() + param.nbytes <= end for start, end in mapped)
    ranges = sorted((p.data_ptr(), p.data_ptr() + p.nbytes) for p in model.parameters())
    assert all(end <= next_start for (_, end), (next_start, _) in zip(ranges, ranges[1:]))

    with torch.no_grad():
        params[name].fill_(7.0)
    assert torch.all(params[name] == 7.0)
    assert (tmp_path / "model.safetensors").read_bytes() == before
    fresh = dict(EncoderDecoderModel.from_pretrained(str(tmp_path)).named_parameters())
    assert np.array_equal(fresh[name].detach().numpy(), state[name])
