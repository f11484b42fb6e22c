"""PyTorch's from_pretrained maps model.safetensors: its parameters are the file's pages, copy-on-write."""

import numpy as np
import torch

from encdec.formats.safetensors import save_state_dict
from encdec.naming.schema import schema_for
from encdec.testing import deterministic_state_dict, tiny_config
from encdec_pt import EncoderDecoderModel


def test_parameters_share_the_file_mapping_and_writes_stay_private(tmp_path):
    config = tiny_config("bert2gpt2")
    state = deterministic_state_dict(schema_for(config))
    config.save_pretrained(str(tmp_path))
    save_state_dict(state, str(tmp_path))
    before = (tmp_path / "model.safetensors").read_bytes()

    model = EncoderDecoderModel.from_pretrained(str(tmp_path))
    params = dict(model.named_parameters())
    name = "encoder.encoder.layer.0.attention.self.query.weight"
    # The parameter's memory is a view of a numpy array whose base is a np.memmap of the file.
    array = params[name].detach().numpy()
    base = array
    while isinstance(base, np.ndarray) and not isinstance(base, np.memmap):
        base = base.base
    assert isinstance(base, np.memmap) and base.filename == str(tmp_path / "model.safetensors")
    start = base.__array_interface__["data"][0]
    for param in model.parameters():  # every parameter lies in the mapping, none overlaps another
        assert start <= param.data_ptr() < start + base.nbytes
    ranges = sorted((p.data_ptr(), p.data_ptr() + p.nbytes) for p in model.parameters())
    assert all(end <= next_start for (_, end), (next_start, _) in zip(ranges, ranges[1:]))

    with torch.no_grad():
        params[name].fill_(7.0)
    assert torch.all(params[name] == 7.0)
    assert (tmp_path / "model.safetensors").read_bytes() == before
    fresh = dict(EncoderDecoderModel.from_pretrained(str(tmp_path)).named_parameters())
    assert np.array_equal(fresh[name].detach().numpy(), state[name])
