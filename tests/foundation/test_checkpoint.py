"""Checkpoint files: round trips, sharding, atomic saves, clear errors, hub cache offline."""

import json
import os
import pickle

import numpy as np
import pytest

from encdec.checkpoint import align_to_schema, load_checkpoint
from encdec.files import CheckpointError, parse_size
from encdec.formats.safetensors import save_state_dict
from encdec.hub import resolve_file
from encdec.naming.schema import schema_for
from encdec.testing import deterministic_state_dict, minilm_path, tiny_bert_config, tiny_config


@pytest.fixture(scope="module")
def b2b():
    schema = schema_for(tiny_config("bert2bert"))
    return schema, deterministic_state_dict(schema)


def _equal(a, b):
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


@pytest.mark.parametrize("shard", ["5GB", "60KB"])
def test_round_trip_bit_exact_single_and_sharded(tmp_path, b2b, shard):
    schema, state = b2b
    names = save_state_dict(state, tmp_path, max_shard_size=shard)
    assert (len(names) == 1) == (shard == "5GB")
    loaded = load_checkpoint(tmp_path)
    assert loaded.format == "safetensors"
    _equal(loaded.state, state)
    if shard == "60KB":
        index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
        assert index["metadata"]["total_size"] == sum(v.nbytes for v in state.values())
        assert set(index["weight_map"]) == set(state)


def test_resave_removes_stale_files(tmp_path, b2b):
    _, state = b2b
    save_state_dict(state, tmp_path, max_shard_size="60KB")
    save_state_dict(state, tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["model.safetensors"]
    save_state_dict(state, tmp_path, max_shard_size="60KB")
    assert "model.safetensors" not in os.listdir(tmp_path)


def test_interrupted_save_leaves_previous_checkpoint(tmp_path, b2b, monkeypatch):
    _, state = b2b
    save_state_dict(state, tmp_path)
    import safetensors.numpy

    calls = []

    def failing(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(tensors, filename, metadata=metadata)

    real = safetensors.numpy.save_file
    monkeypatch.setattr(safetensors.numpy, "save_file", failing)
    changed = {k: v + 1 for k, v in state.items()}
    with pytest.raises(OSError, match="disk full"):
        save_state_dict(changed, tmp_path, max_shard_size="60KB")
    assert sorted(os.listdir(tmp_path)) == ["model.safetensors"]  # no temp files, no half index
    _equal(load_checkpoint(tmp_path).state, state)


def test_truncated_file_is_named(tmp_path, b2b):
    _, state = b2b
    save_state_dict(state, tmp_path)
    path = tmp_path / "model.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="model.safetensors is not a readable safetensors file"):
        load_checkpoint(tmp_path)


def test_missing_shard_and_bad_index_are_named(tmp_path, b2b):
    _, state = b2b
    save_state_dict(state, tmp_path, max_shard_size="60KB")
    (tmp_path / "model-00002-of-00004.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model-00002-of-00004.safetensors"):
        load_checkpoint(tmp_path)
    (tmp_path / "model.safetensors.index.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="cannot read shard index"):
        load_checkpoint(tmp_path)


def test_no_weights_names_the_files_looked_for(tmp_path):
    with pytest.raises(OSError, match="model.safetensors.*pytorch_model.bin.*tf_model.h5.*flax_model.msgpack"):
        load_checkpoint(tmp_path)


def test_foreign_format_metadata_is_refused(tmp_path):
    from safetensors.numpy import save_file

    save_file({"decoder/bert/embeddings/LayerNorm/beta:0": np.zeros(3, np.float32)}, str(tmp_path / "model.safetensors"),
              metadata={"format": "tf"})
    with pytest.raises(CheckpointError, match="format='tf'"):
        load_checkpoint(tmp_path)


def test_align_reports_unknown_missing_and_mismatched_keys(b2b):
    schema, state = b2b
    bad = dict(state)
    bad["encoder.bogus.weight"] = np.zeros(2, np.float32)
    del bad["decoder.cls.predictions.bias"]
    bad["encoder.pooler.dense.weight"] = np.zeros((3, 3), np.float32)
    aligned = align_to_schema(bad, schema, source="x/model.safetensors")
    assert aligned.unexpected == ["encoder.bogus.weight"]
    assert aligned.missing == ["decoder.cls.predictions.bias"]
    assert aligned.mismatched == [("encoder.pooler.dense.weight", (3, 3), (32, 32))]
    with pytest.raises(CheckpointError) as err:
        aligned.raise_for_errors()
    msg = str(err.value)
    assert "x/model.safetensors" in msg and "encoder.bogus.weight" in msg and "(3, 3) vs (32, 32)" in msg
    assert "decoder.cls.predictions.bias" in msg


def test_align_fills_ties_renames_legacy_and_drops_buffers(b2b):
    schema, state = b2b
    legacy = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta"): v
              for k, v in state.items()}
    legacy["encoder.embeddings.position_ids"] = np.arange(64)[None]
    aligned = align_to_schema(legacy, schema)
    assert not aligned.missing and not aligned.unexpected
    assert "encoder.embeddings.position_ids" in aligned.ignored
    assert aligned.tensors["decoder.cls.predictions.decoder.weight"] is aligned.tensors[
        "decoder.bert.embeddings.word_embeddings.weight"]


def test_real_minilm_into_base_and_lm_head_schemas():
    loaded = load_checkpoint(minilm_path())
    from encdec.configuration import AutoConfig

    config = AutoConfig.from_pretrained(minilm_path())
    base = align_to_schema(loaded.state, schema_for(config), loaded.source, base_model_prefix="bert")
    assert not base.missing and not base.unexpected and not base.mismatched
    config.is_decoder = config.add_cross_attention = True
    lm_schema = schema_for(config, head="causal_lm")
    head = align_to_schema(loaded.state, lm_schema, loaded.source, base_model_prefix="bert")
    assert all(k.startswith("bert.") or k in lm_schema.ties() for k in head.tensors)
    assert {k.split(".")[4] for k in head.missing if k.startswith("bert.")} == {"crossattention"}
    assert "cls.predictions.bias" in head.missing
    assert head.unexpected == ["bert.pooler.dense.bias", "bert.pooler.dense.weight"]


def test_torch_bin_read_and_malicious_pickle_refused(tmp_path, b2b):
    torch = pytest.importorskip("torch")
    _, state = b2b
    torch.save({k: torch.from_numpy(v) for k, v in state.items()}, tmp_path / "pytorch_model.bin")
    _equal(load_checkpoint(tmp_path).state, state)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with open(tmp_path / "pytorch_model.bin", "wb") as f:
        pickle.dump({"a": Evil()}, f)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(tmp_path)


def test_parse_size():
    assert parse_size("5GB") == 5 * 10**9 and parse_size("10MiB") == 10 * 2**20 and parse_size(7) == 7
    with pytest.raises(ValueError, match="cannot read size"):
        parse_size("lots")


def _fake_hub_cache(cache, repo_id, files):
    """The layout huggingface_hub uses: models--org--name/{refs/main, snapshots/<sha>/...}."""
    sha = "0" * 40
    root = cache / ("models--" + repo_id.replace("/", "--"))
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(sha)
    snap = root / "snapshots" / sha
    snap.mkdir(parents=True)
    for name, data in files.items():
        (snap / name).write_bytes(data)
    return snap


def test_hub_id_resolves_from_cache_offline(tmp_path, b2b, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _, state = b2b
    save_state_dict(state, tmp_path / "src")
    tiny_bert_config().save_pretrained(tmp_path / "src")
    _fake_hub_cache(tmp_path / "cache", "org/tiny", {n: (tmp_path / "src" / n).read_bytes()
                                                     for n in ("config.json", "model.safetensors")})
    from encdec.configuration import AutoConfig

    config = AutoConfig.from_pretrained("org/tiny", cache_dir=str(tmp_path / "cache"))
    assert config.hidden_size == 32
    _equal(load_checkpoint("org/tiny", cache_dir=str(tmp_path / "cache")).state, state)
    with pytest.raises(OSError, match="has no file named 'vocab.txt'"):
        resolve_file("org/tiny", "vocab.txt", cache_dir=str(tmp_path / "cache"))
    with pytest.raises(OSError, match="not in the Hugging Face cache"):
        resolve_file("org/absent", "config.json", cache_dir=str(tmp_path / "cache"))
