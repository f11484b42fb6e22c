"""PyTorch's from_pretrained maps model.safetensors: its parameters are the file's pages, copy-on-write."""

import os

import numpy as np
import pytest
import torch

from encdec.formats.safetensors import save_state_dict
from encdec.naming.schema import schema_for
from encdec.testing import deterministic_state_dict, tiny_config
from encdec_pt import EncoderDecoderModel
from encdec_pt.modeling_utils import _no_initialisers


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


def test_an_optimizer_step_on_a_loaded_model_updates_it_and_not_the_file(tmp_path):
    """Parameters that are the file's copy-on-write pages train like any others: an SGD step
    moves each by exactly -lr * grad, no step leaks into another parameter, the file keeps its bytes."""
    config = tiny_config("bert2gpt2")
    state = deterministic_state_dict(schema_for(config))
    config.save_pretrained(str(tmp_path))
    save_state_dict(state, str(tmp_path))
    before = (tmp_path / "model.safetensors").read_bytes()

    model = EncoderDecoderModel.from_pretrained(str(tmp_path))
    model.train()
    for module in model.modules():  # a deterministic step: no dropout
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    params = dict(model.named_parameters())
    old = {name: param.detach().clone() for name, param in params.items()}
    lr = 0.5
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    input_ids = torch.tensor([[5, 17, 33, 2, 61, 8, 90], [44, 3, 71, 29, 12, 6, 1]])
    labels = torch.tensor([[62, 69, 43, 91, 7], [92, 85, 41, 11, -100]])
    model(input_ids=input_ids, labels=labels).loss.backward()
    grads = {name: param.grad.clone() for name, param in params.items() if param.grad is not None}
    assert sum(bool(torch.any(g != 0)) for g in grads.values()) > len(params) // 2
    optimizer.step()

    for name, param in params.items():
        expected = old[name].add(grads[name], alpha=-lr) if name in grads else old[name]
        assert torch.equal(param.detach(), expected), name
    assert any(not torch.equal(param.detach(), old[name]) for name, param in params.items())
    assert (tmp_path / "model.safetensors").read_bytes() == before
    fresh = {k: v.detach().numpy() for k, v in EncoderDecoderModel.from_pretrained(str(tmp_path)).named_parameters()}
    assert all(np.array_equal(fresh[name], state[name]) for name in fresh)


def test_building_on_the_meta_device_leaves_other_models_initialised():
    """TorchLoader.build turns torch.nn.init's initialisers off process-wide, but only for meta
    tensors: a model another thread builds meanwhile on the CPU gets its usual initial values."""
    torch.manual_seed(3)
    expected = torch.nn.Linear(37, 11).weight.detach()  # kept alive: an uninitialised weight must not reuse its memory
    torch.manual_seed(3)
    with _no_initialisers():
        meta = torch.nn.Linear(37, 11, device="meta")
        real = torch.nn.Linear(37, 11).weight.detach()
    assert meta.weight.device.type == "meta" and torch.equal(real, expected)
