"""``conversion.convert`` and ``encdec-convert`` without the reference: every layout written and
read back bit-exactly, sharding as the reference lays it out, mismatched files refused by name."""

import json
import os

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from conversion import ConversionError, convert, read_canonical
from conversion.cli import build_parser, main
from encdec.checkpoint import load_checkpoint, owned_only
from encdec.files import CheckpointError
from encdec.formats.safetensors import save_state_dict
from encdec.naming.schema import schema_for
from encdec.testing import ARCHS, deterministic_state_dict, pair_params, tiny_config

# (to, format, max_shard_size or None) -> (files a single save writes, file a sharded save's index has)
LAYOUTS = [
    ("pt", "safetensors", None, "model.safetensors"),
    ("pt", "safetensors", "20KB", "model.safetensors.index.json"),
    ("pt", "bin", None, "pytorch_model.bin"),
    ("pt", "bin", "20KB", "pytorch_model.bin.index.json"),
    ("tf", "h5", None, "tf_model.h5"),
    ("tf", "h5", "20KB", "tf_model.h5.index.json"),
    ("tf", "safetensors", None, "model.safetensors"),
    ("tf", "safetensors", "20KB", "model.safetensors.index.json"),
    ("flax", "msgpack", None, "flax_model.msgpack"),
    ("flax", "msgpack", "20KB", "flax_model.msgpack.index.json"),
    ("flax", "safetensors", None, "model.safetensors"),
]
# What Checkpoint.format reads back for each target.
READ_FORMAT = {("pt", "safetensors"): "safetensors", ("pt", "bin"): "pt", ("tf", "h5"): "tf",
               ("tf", "safetensors"): "tf", ("flax", "msgpack"): "flax", ("flax", "safetensors"): "flax"}


@pytest.fixture(scope="module")
def canonical(tmp_path_factory):
    """arch -> (folder with config.json + canonical model.safetensors, config, schema, state)."""
    cache = {}

    def get(arch):
        if arch not in cache:
            config = tiny_config(arch)
            schema = schema_for(config)
            state = deterministic_state_dict(schema, seed=1)
            folder = tmp_path_factory.mktemp(arch)
            config.save_pretrained(str(folder))
            save_state_dict(owned_only(state, schema), str(folder))
            cache[arch] = (str(folder), config, schema, state)
        return cache[arch]

    return get


def _assert_exact(got, state):
    assert sorted(k for k in state) == sorted(k for k in got if k in state)
    changed = [k for k in state if not np.array_equal(got[k], state[k]) or got[k].dtype != state[k].dtype]
    assert not changed, changed[:5]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("to,fmt,shard,marker", LAYOUTS, ids=[f"{t}-{f}-{s or 'single'}" for t, f, s, _ in LAYOUTS])
def test_round_trip_through_every_layout_is_bit_exact(canonical, tmp_path, arch, to, fmt, shard, marker):
    src, config, schema, state = canonical(arch)
    result = convert(src, str(tmp_path / "x"), to=to, format=fmt, max_shard_size=shard or "5GB")
    assert os.path.exists(tmp_path / "x" / marker)
    assert os.path.exists(tmp_path / "x" / "config.json")
    _, _, checkpoint, got, _ = read_canonical(str(tmp_path / "x"))
    assert checkpoint.format == READ_FORMAT[(to, fmt)]
    _assert_exact(got, state)
    # ... and back to canonical model.safetensors: the same bytes of every tensor.
    convert(str(tmp_path / "x"), str(tmp_path / "back"), to="safetensors")
    _assert_exact(load_file(str(tmp_path / "back" / "model.safetensors")), owned_only(state, schema))
    assert result.num_tensors == len(schema.owned())


def test_sharded_layouts_follow_the_reference(canonical, tmp_path):
    src, config, schema, state = canonical("bert2bert")
    convert(src, str(tmp_path / "tf"), to="tf", max_shard_size="20KB")
    index = json.loads((tmp_path / "tf" / "tf_model.h5.index.json").read_text())
    assert set(index) == {"metadata", "weight_map"} and set(index["metadata"]) == {"total_size"}
    # weight_map keys are full variable names, model name included; the datasets are stripped names.
    key = "tf_encoder_decoder_model/decoder/bert/embeddings/LayerNorm/beta:0"
    shard = index["weight_map"][key]
    assert shard.startswith("tf_model-00") and shard.endswith(".h5")
    import h5py

    with h5py.File(tmp_path / "tf" / shard, "r") as h5:
        names = [n.decode() for n in h5.attrs["layer_names"]]
        assert "decoder/bert/embeddings/LayerNorm/beta:0" in names and names == sorted(names)
        assert h5["decoder/bert/embeddings/LayerNorm/beta:0"].shape == (32,)

    convert(src, str(tmp_path / "flax"), to="flax", max_shard_size="20KB")
    index = json.loads((tmp_path / "flax" / "flax_model.msgpack.index.json").read_text())
    assert "decoder/bert/embeddings/LayerNorm/scale" in index["weight_map"]

    convert(src, str(tmp_path / "bin"), to="pt", format="bin", max_shard_size="20KB")
    index = json.loads((tmp_path / "bin" / "pytorch_model.bin.index.json").read_text())
    assert "decoder.cls.predictions.decoder.weight" in index["weight_map"]  # the reference's bin keeps tied keys


def test_format_safetensors_names_and_metadata(canonical, tmp_path):
    src, config, schema, state = canonical("bert2gpt2")
    convert(src, str(tmp_path / "tf"), to="tf", format="safetensors")
    convert(src, str(tmp_path / "flax"), to="flax", format="safetensors")
    from safetensors import safe_open

    with safe_open(str(tmp_path / "tf" / "model.safetensors"), "np") as f:
        assert f.metadata()["format"] == "tf"
        keys = set(f.keys())
        assert "decoder/transformer/h_._0/attn/c_attn/bias:0" in keys
        assert f.get_tensor("decoder/transformer/h_._0/attn/c_attn/bias:0").shape == (1, 96)  # TF Conv1D bias
        assert "encoder/bert/embeddings/word_embeddings/weight:0" in keys
    with safe_open(str(tmp_path / "flax" / "model.safetensors"), "np") as f:
        assert f.metadata()["format"] == "flax"
        kernel = f.get_tensor("decoder.transformer.h.0.attn.c_attn.kernel")
        np.testing.assert_array_equal(kernel, state["decoder.transformer.h.0.attn.c_attn.weight"].T)
        assert "encoder.embeddings.LayerNorm.scale" in set(f.keys())


def _retag(folder, metadata):
    file = os.path.join(folder, "model.safetensors")
    tensors = load_file(file)
    save_file(tensors, file, metadata=metadata)
    return file


@pytest.mark.parametrize("written,claimed", [("tf", "flax"), ("flax", "tf"), ("tf", "pt"), ("flax", "pt")])
def test_names_that_do_not_match_the_format_raise_naming_file_and_keys(canonical, tmp_path, written, claimed):
    src, config, schema, state = canonical("bert2bert")
    convert(src, str(tmp_path), to=written, format="safetensors")
    file = _retag(str(tmp_path), {"format": claimed})
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(str(tmp_path), schema=schema)
    message = str(info.value)
    assert file in message
    assert ("decoder/bert" in message) if written == "tf" else ("decoder.bert" in message or "encoder." in message)
    # The model classes refuse it too (the reference loads such files as random weights).
    from encdec_pt import EncoderDecoderModel

    with pytest.raises(CheckpointError, match="model.safetensors"):
        EncoderDecoderModel.from_pretrained(str(tmp_path))


def test_missing_tensor_and_unknown_key_raise(canonical, tmp_path):
    src, config, schema, state = canonical("bert2bert")
    partial = owned_only(state, schema)
    del partial["decoder.cls.predictions.bias"]
    partial["encoder.bogus.weight"] = np.zeros(3, np.float32)
    config.save_pretrained(str(tmp_path / "src"))
    save_state_dict(partial, str(tmp_path / "src"))
    with pytest.raises(CheckpointError, match=r"missing keys: decoder\.cls\.predictions\.bias.*unexpected keys: encoder\.bogus\.weight"):
        convert(str(tmp_path / "src"), str(tmp_path / "dst"), to="tf")
    assert not os.path.exists(tmp_path / "dst" / "tf_model.h5")


def test_refuses_mixed_layouts_and_bad_arguments(canonical, tmp_path):
    src, *_ = canonical("bert2bert")
    convert(src, str(tmp_path), to="flax")
    with pytest.raises(ConversionError, match="flax_model.msgpack"):
        convert(src, str(tmp_path), to="tf")
    with pytest.raises(ConversionError, match="h5 or safetensors"):
        convert(src, str(tmp_path / "y"), to="tf", format="msgpack")
    with pytest.raises(ConversionError, match="cannot be sharded"):
        convert(src, str(tmp_path / "z"), to="flax", format="safetensors", max_shard_size="20KB")
    with pytest.raises(ConversionError, match="source folder"):
        convert(src, src, to="pt")


def test_cli_help_and_exit_codes(canonical, tmp_path, capsys):
    help_text = build_parser().format_help()
    for needle in ("examples:", "--verify", "--max-shard-size", "tf_model.h5", "flax_model.msgpack", "exit status"):
        assert needle in help_text
    src, *_ = canonical("bert2gpt2_proj")
    assert main([src, str(tmp_path / "ok"), "--to", "flax", "--format", "safetensors", "--quiet"]) == 0
    assert "model.safetensors" in capsys.readouterr().out
    assert main([src, str(tmp_path / "bad"), "--to", "flax", "--format", "h5", "--quiet"]) == 2
    assert "error:" in capsys.readouterr().err
    assert main([str(tmp_path / "nothing"), str(tmp_path / "bad2"), "--to", "tf", "--quiet"]) == 2


@pytest.mark.parametrize("arch", pair_params())
def test_cli_verify_passes_for_every_pair(canonical, tmp_path, arch):
    """`encdec-convert --verify` (the converted model's outputs against the source's) for every
    pair (CI: the covering pairs), to TF and Flax in turn."""
    pytest.importorskip("torch")
    to = ("tf", "flax")[ARCHS.index(arch) % 2]
    pytest.importorskip("tensorflow" if to == "tf" else "flax")
    src, *_ = canonical(arch)
    assert main([src, str(tmp_path / "out"), "--to", to, "--verify", "--quiet"]) == 0


def test_cli_verify_prints_diffs_and_fails_above_tolerance(canonical, tmp_path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("flax")
    src, *_ = canonical("bert2gpt2_proj")
    assert main([src, str(tmp_path / "a"), "--to", "flax", "--verify", "--quiet"]) == 0
    out = capsys.readouterr().out
    for name in ("logits", "encoder_last_hidden_state", "decoder_hidden_states", "verified: pt vs flax"):
        assert name in out
    # The same conversion at a tolerance no float32 computation meets: exit 1, the outputs named.
    assert main([src, str(tmp_path / "b"), "--to", "flax", "--verify", "--tolerance", "1e-12", "--quiet"]) == 1
    captured = capsys.readouterr()
    assert "FAIL" in captured.out and "verification failed" in captured.err and "logits" in captured.err
