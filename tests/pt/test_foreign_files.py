"""``from_pretrained`` reads the reference's TF (``tf_model.h5``) and Flax (``flax_model.msgpack``)
files with no flag, through ``encdec.checkpoint.load_checkpoint`` (no TF or JAX import here)."""

import numpy as np
import pytest
import torch

from encdec.naming.schema import schema_for
from encdec.testing import ARCHS, deterministic_state_dict, tiny_config, tiny_inputs
from encdec_pt import EncoderDecoderModel


def _write(fmt, config, state, folder):
    config.save_pretrained(str(folder))
    schema = schema_for(config)
    if fmt == "tf":
        pytest.importorskip("h5py")
        from encdec.formats.hf_tf_h5 import write_tf_h5

        write_tf_h5(state, schema, str(folder / "tf_model.h5"))
    else:
        pytest.importorskip("msgpack")
        from encdec.formats.hf_flax_msgpack import write_flax_msgpack

        write_flax_msgpack(state, schema, str(folder / "flax_model.msgpack"))


@pytest.mark.parametrize("fmt", ["tf", "flax"])
@pytest.mark.parametrize("arch", ARCHS)
def test_tf_and_flax_files_load_bit_exact(fmt, arch, tmp_path):
    config = tiny_config(arch)
    state = deterministic_state_dict(schema_for(config), seed=5)
    _write(fmt, config, state, tmp_path)
    model = EncoderDecoderModel.from_pretrained(str(tmp_path))
    got = model.canonical_state_dict()
    assert sorted(got) == sorted(state)
    for k in state:
        assert np.array_equal(got[k], state[k]), k
    assert not model.training


def _reference_folder(tmp_path, arch):
    config = tiny_config(arch)
    ours = EncoderDecoderModel(config)
    ours.load_canonical(deterministic_state_dict(schema_for(config), seed=6))
    ours.eval()
    ours.save_pretrained(str(tmp_path / "pt"))
    return ours


@pytest.mark.oracle
def test_reference_flax_msgpack_loads_in_ours(tmp_path):
    pytest.importorskip("flax")
    transformers = pytest.importorskip("transformers")
    ours = _reference_folder(tmp_path, "bert2gpt2_proj")
    ref = transformers.FlaxEncoderDecoderModel.from_pretrained(str(tmp_path / "pt"), from_pt=True)
    ref.save_pretrained(str(tmp_path / "flax"))
    loaded = EncoderDecoderModel.from_pretrained(str(tmp_path / "flax"))
    expected, got = ours.canonical_state_dict(), loaded.canonical_state_dict()
    assert all(np.array_equal(got[k], expected[k]) for k in expected)
    inputs = {k: torch.from_numpy(v) for k, v in tiny_inputs(ours.config).items()}
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).logits, ours(**inputs).logits)
