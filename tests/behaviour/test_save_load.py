"""save_pretrained / from_pretrained in every framework x pair: the files (canonical names, metadata,
config), and a bit-exact round trip, sharded or not. (Loading another framework's folder:
tests/equivalence; the reference's folders: tests/behaviour/test_oracle.py.)"""

import json
import os

import numpy as np
import pytest
from safetensors import safe_open

from adapters import FRAMEWORKS, built_cache
from encdec.testing import START, pair_params


@pytest.fixture(scope="module")
def built():
    return built_cache()


def _assert_same_model(b, loaded):
    got = b.adapter.state_dict(loaded)
    assert sorted(got) == sorted(b.state)
    changed = [k for k in b.state if not np.array_equal(got[k], b.state[k])]
    assert not changed, f"{changed[:5]} changed"
    np.testing.assert_array_equal(b.adapter.forward(loaded, b.inputs)["logits"], b.plain_logits)


@pytest.mark.parametrize("framework,pair", pair_params(FRAMEWORKS))
def test_save_writes_canonical_files_and_loads_bit_exact(built, tmp_path, framework, pair):
    b = built(framework, pair)
    b.adapter.save(b.model, tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["config.json", "generation_config.json", "model.safetensors"]
    with safe_open(str(tmp_path / "model.safetensors"), "np") as f:
        assert f.metadata()["format"] == "pt"
        assert sorted(f.keys()) == sorted(spec.name for spec in b.schema.owned())
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_type"] == "encoder-decoder" and config["architectures"] == ["EncoderDecoderModel"]
    assert config["decoder"]["add_cross_attention"] is True
    assert json.loads((tmp_path / "generation_config.json").read_text())["decoder_start_token_id"] == START
    loaded = b.adapter.load(tmp_path)
    saved, original = loaded.config.to_dict(), b.config.to_dict()
    saved.pop("architectures", None), original.pop("architectures", None)  # the file names the reference's class
    assert saved == original
    _assert_same_model(b, loaded)


@pytest.mark.parametrize("framework,pair", pair_params(FRAMEWORKS))
def test_sharded_save_loads_bit_exact(built, tmp_path, framework, pair):
    b = built(framework, pair)
    b.adapter.save(b.model, tmp_path, max_shard_size="20KB")
    names = set(os.listdir(tmp_path))
    assert "model.safetensors.index.json" in names and "model.safetensors" not in names
    assert len([n for n in names if n.endswith(".safetensors")]) > 1
    _assert_same_model(b, b.adapter.load(tmp_path))
