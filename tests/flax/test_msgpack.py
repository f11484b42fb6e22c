"""The Hugging Face ``flax_model.msgpack`` format: our numpy reader/writer, and files exchanged
with the reference ``FlaxEncoderDecoderModel`` (transformers, test-only oracle)."""

import json
import os

import numpy as np
import pytest

from _flax_helpers import TOL, hf_config, max_diff
from encdec.formats.hf_flax_msgpack import (
    FlaxMsgpackError,
    msgpack_restore,
    msgpack_serialize,
    read_flax_msgpack,
    write_flax_msgpack,
)

ORACLE_ARCHS = ["bert2bert", "bert2gpt2_proj"]


@pytest.mark.parametrize("arch", ["bert2bert", "bert2gpt2_proj", "bert2bert_tied"])
def test_write_read_round_trip_is_bit_exact(built, tmp_path, arch):
    b = built(arch)
    write_flax_msgpack(b.state, b.schema, str(tmp_path / "flax_model.msgpack"))
    back = read_flax_msgpack([str(tmp_path / "flax_model.msgpack")], b.schema)
    for name, value in b.state.items():
        assert back[name].dtype == value.dtype and np.array_equal(back[name], value), name
    if arch == "bert2bert_tied":  # HF Flax has no tie: the encoder's copies are written too
        assert "encoder.embeddings.word_embeddings.weight" in back
    else:
        assert set(back) == set(b.state)


def test_sharded_write_read_and_loading(built, tmp_path):
    b = built("bert2gpt2")
    files = write_flax_msgpack(b.state, b.schema, str(tmp_path), max_shard_size="20KB")
    index = json.loads((tmp_path / "flax_model.msgpack.index.json").read_text())
    assert len(files) > 3 and "decoder/transformer/h/0/attn/c_attn/kernel" in index["weight_map"]
    shards = sorted(str(tmp_path / f) for f in set(index["weight_map"].values()))
    back = read_flax_msgpack(shards, b.schema)
    assert all(np.array_equal(back[k], v) for k, v in b.state.items())
    # from_pretrained finds the shards through the index, with no flag
    from encdec_flax import FlaxEncoderDecoderModel

    b.config.save_pretrained(str(tmp_path))
    loaded = FlaxEncoderDecoderModel.from_pretrained(str(tmp_path))
    assert all(np.array_equal(v, b.state[k]) for k, v in loaded.state_dict().items())


def test_bfloat16_and_chunked_leaves_decode():
    tree = {"a": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}}
    assert np.array_equal(msgpack_restore(msgpack_serialize(tree))["a"]["kernel"], tree["a"]["kernel"])
    import msgpack

    # bfloat16 as flax writes it: the top 16 bits of float32
    values = np.array([1.5, -2.0, 3.25], dtype=np.float32)
    raw = (values.view(np.uint32) >> 16).astype("<u2").tobytes()
    ext = msgpack.ExtType(1, msgpack.packb(([3], "bfloat16", raw), use_bin_type=True))
    assert np.array_equal(msgpack_restore(msgpack.packb({"w": ext}))["w"], values)
    chunked = {"w": {"__msgpack_chunked_array__": True, "shape": {"0": 2, "1": 2},
                     "chunks": {"0": np.array([1.0, 2.0]), "1": np.array([3.0, 4.0])}}}
    assert msgpack_restore(msgpack_serialize(chunked))["w"].tolist() == [[1.0, 2.0], [3.0, 4.0]]


def test_unknown_key_and_corrupt_file_raise_naming_them(built, tmp_path):
    b = built("bert2bert")
    path = tmp_path / "flax_model.msgpack"
    tree = {"encoder": {"embeddings": {"word_embeddings": {"embedding": np.zeros((99, 32), np.float32)}},
                        "mystery": {"kernel": np.zeros((2, 2), np.float32)}}}
    path.write_bytes(msgpack_serialize(tree))
    with pytest.raises(FlaxMsgpackError, match=r"flax_model\.msgpack.*encoder/mystery/kernel"):
        read_flax_msgpack([str(path)], b.schema)
    path.write_bytes(msgpack_serialize(tree)[:100])
    with pytest.raises(FlaxMsgpackError, match="flax_model.msgpack"):
        read_flax_msgpack([str(path)], b.schema)


# --------------------------------------------------------------------------------------------
# With the reference Flax classes


@pytest.fixture(scope="module")
def hf_flax(built):
    cache = {}

    def get(arch):
        if arch not in cache:
            transformers = pytest.importorskip("transformers")
            b = built(arch)
            model = transformers.FlaxEncoderDecoderModel(hf_config(b.config), seed=3)
            i = b.inputs
            out = model(i["input_ids"], attention_mask=i["attention_mask"], decoder_input_ids=i["decoder_input_ids"],
                        decoder_attention_mask=i["decoder_attention_mask"], output_hidden_states=True)
            cache[arch] = (model, out)
        return cache[arch]

    return get


def _ours(model, inputs):
    keys = ("input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask")
    return model(**{k: inputs[k] for k in keys}, output_hidden_states=True)


@pytest.mark.oracle
@pytest.mark.parametrize("arch", ORACLE_ARCHS)
@pytest.mark.parametrize("shard", [None, "30KB"], ids=["single", "sharded"])
def test_reference_msgpack_loads_with_equal_outputs(built, hf_flax, tmp_path, arch, shard):
    from encdec_flax import FlaxEncoderDecoderModel

    b = built(arch)
    ref_model, ref = hf_flax(arch)
    ref_model.save_pretrained(str(tmp_path), **({"max_shard_size": shard} if shard else {}))
    assert os.path.exists(tmp_path / ("flax_model.msgpack.index.json" if shard else "flax_model.msgpack"))
    model = FlaxEncoderDecoderModel.from_pretrained(str(tmp_path))
    out = _ours(model, b.inputs)
    assert max_diff(out.logits, ref.logits) < TOL
    assert max_diff(out.encoder_last_hidden_state, ref.encoder_last_hidden_state) < TOL
    assert max_diff(out.decoder_hidden_states, ref.decoder_hidden_states) < TOL


@pytest.mark.oracle
@pytest.mark.parametrize("arch", ORACLE_ARCHS)
def test_written_msgpack_loads_in_reference(built, tmp_path, arch):
    transformers = pytest.importorskip("transformers")
    b = built(arch)
    write_flax_msgpack(b.state, b.schema, str(tmp_path))
    hf_config(b.config).save_pretrained(str(tmp_path))
    ref_model = transformers.FlaxEncoderDecoderModel.from_pretrained(str(tmp_path))
    i = b.inputs
    ref = ref_model(i["input_ids"], attention_mask=i["attention_mask"], decoder_input_ids=i["decoder_input_ids"],
                    decoder_attention_mask=i["decoder_attention_mask"])
    assert max_diff(_ours(b.model, b.inputs).logits, ref.logits) < TOL


@pytest.mark.oracle
def test_encode_equals_reference_call_encoder_output(built, hf_flax, tmp_path):
    """The reference's own encode() is broken for BERT (position ids in the token-type slot);
    ours must equal the encoder part of its __call__."""
    from encdec_flax import FlaxEncoderDecoderModel

    ref_model, ref = hf_flax("bert2bert")
    model = FlaxEncoderDecoderModel(built("bert2bert").config, _do_init=False)
    ref_model.save_pretrained(str(tmp_path))
    model, params = FlaxEncoderDecoderModel.from_pretrained(str(tmp_path), _do_init=False)
    i = built("bert2bert").inputs
    encoded = model.encode(i["input_ids"], attention_mask=i["attention_mask"], params=params)
    assert max_diff(encoded.last_hidden_state, ref.encoder_last_hidden_state) < TOL


@pytest.mark.oracle
def test_reference_bert_msgpack_as_encoder_and_decoder(tmp_path):
    """A base-model Flax file (no ``bert`` level, with pooler) read for both sides: the pooler is
    dropped from the decoder with a report, the encoder equals the reference model."""
    transformers = pytest.importorskip("transformers")
    from encdec.testing import tiny_bert_config
    from encdec_flax import FlaxEncoderDecoderModel

    ref = transformers.FlaxBertModel(transformers.BertConfig(**tiny_bert_config().to_dict()), seed=2)
    ref.save_pretrained(str(tmp_path))
    model = FlaxEncoderDecoderModel.from_encoder_decoder_pretrained(str(tmp_path), str(tmp_path))
    assert model.loading_info["report"][0].startswith("cross-attention: 20 tensors newly initialised")
    assert sorted(model.loading_info["unexpected_keys"]) == ["decoder.bert.pooler.dense.bias",
                                                             "decoder.bert.pooler.dense.weight"]
    ids = np.array([[5, 6, 7, 8, 9]])
    assert max_diff(model.encode(ids).last_hidden_state, ref(ids).last_hidden_state) < TOL
