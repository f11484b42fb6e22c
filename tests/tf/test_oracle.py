"""Against the reference (transformers 4.57.6, PyTorch and tf-keras classes): HF ``tf_model.h5`` files
both ways, PyTorch part folders through the documented workaround, the warm start from MiniLM.
Outputs, cache, gradients and the reference's PyTorch folders, in every framework x pair:
tests/behaviour/test_oracle.py."""

import logging

import numpy as np
import pytest
import tensorflow as tf

from encdec.formats.hf_tf_h5 import TFH5Error, read_tf_h5, write_tf_h5
from encdec.naming.schema import schema_for
from encdec.testing import TOLERANCE, minilm_path
from encdec_tf import TFBertModel, TFEncoderDecoderModel

pytestmark = pytest.mark.oracle
TOL = TOLERANCE["float32"]["abs"]


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


@pytest.fixture(scope="module")
def oracle(tiny):
    """arch -> the reference's PyTorch model holding the same weights as ``tiny(arch)``."""
    pytest.importorskip("transformers")
    cache = {}

    def get(arch):
        if arch not in cache:
            config, state, _, _ = tiny(arch)
            cache[arch] = oracle_pt_model(config, state)
        return cache[arch]

    return get


@pytest.fixture(scope="module")
def pt_folders(tmp_path_factory, tiny, oracle):
    """arch -> folder of the reference's PyTorch composite, plus `encoder` / `decoder` folders
    saved by its `.encoder.save_pretrained` / `.decoder.save_pretrained` (the documented workaround)."""
    cache = {}

    def get(arch):
        if arch not in cache:
            root = tmp_path_factory.mktemp(arch)
            ref = oracle(arch)
            ref.save_pretrained(str(root / "composite"))
            ref.save_pretrained(str(root / "composite_bin"), safe_serialization=False)
            ref.encoder.save_pretrained(str(root / "encoder"))
            ref.decoder.save_pretrained(str(root / "decoder"))
            cache[arch] = root
        return cache[arch]

    return get


# Not bert2gpt2_proj: its `enc_to_dec_proj` lives in neither part's folder, so the workaround
# starts it from scratch (in the reference too); the direct path is checked on it below.
@pytest.mark.parametrize("arch", ["bert2bert", "bert2gpt2"])
def test_workaround_and_direct_pytorch_loading_agree(tiny, oracle, pt_folders, arch, caplog):
    config, _, inputs, _ = tiny(arch)
    root = pt_folders(arch)
    ref_logits = oracle_forward(oracle(arch), inputs).logits
    with caplog.at_level(logging.WARNING):
        workaround = TFEncoderDecoderModel.from_encoder_decoder_pretrained(
            str(root / "encoder"), str(root / "decoder"), encoder_from_pt=True, decoder_from_pt=True
        )
    workaround.config.decoder_start_token_id = config.decoder_start_token_id
    workaround.config.pad_token_id = config.pad_token_id
    direct = TFEncoderDecoderModel.from_pretrained(str(root / "composite"))
    from_bin = TFEncoderDecoderModel.from_pretrained(str(root / "composite_bin"), from_pt=True)
    for model in (workaround, direct, from_bin):
        assert max_diff(model(**inputs).logits, ref_logits) < TOL
    # The decoder folder already had cross-attention: nothing new to report.
    assert not [r for r in caplog.records if "newly initialised" in r.getMessage()]


def test_warm_start_applies_overrides_and_reports_new_cross_attention(tmp_path, caplog):
    transformers = pytest.importorskip("transformers")
    path = minilm_path()
    with caplog.at_level(logging.WARNING):
        model = TFEncoderDecoderModel.from_encoder_decoder_pretrained(
            path, path, encoder_hidden_dropout_prob=0.33, decoder_attention_probs_dropout_prob=0.2,
            decoder_start_token_id=101,
        )
    assert model.config.encoder.hidden_dropout_prob == 0.33
    assert model.config.decoder.attention_probs_dropout_prob == 0.2
    assert model.config.decoder_start_token_id == 101
    assert model.config.decoder.is_decoder and model.config.decoder.add_cross_attention
    lines = [r.getMessage() for r in caplog.records if "cross-attention" in r.getMessage()]
    assert lines == [f"cross-attention: 60 tensors newly initialised in TFEncoderDecoderModel({path}, {path}) "
                     "(expected; fine-tune before use)"], lines
    # MiniLM has no LM head: said once, as a warning naming the weights.
    assert any(r.getMessage().startswith("5 weights in TFEncoderDecoderModel") for r in caplog.records)
    model.save_pretrained(str(tmp_path))  # no dummy call needed
    # The encoder is the real MiniLM: equal to the reference's BertModel on the same text.
    import torch

    ref = transformers.BertModel.from_pretrained(path, attn_implementation="eager").eval()
    ids = np.array([[101, 7592, 2088, 2003, 1037, 3231, 102]])
    with torch.no_grad():
        ref_hidden = ref(input_ids=torch.from_numpy(ids)).last_hidden_state
    assert max_diff(model.encoder(input_ids=ids).last_hidden_state, ref_hidden) < 1e-4
    assert max_diff(TFBertModel.from_pretrained(path)(input_ids=ids).last_hidden_state, ref_hidden) < 1e-4


@pytest.fixture(scope="module")
def reference_tf_folders(tmp_path_factory, pt_folders):
    """arch -> folder with the reference TF class's own `tf_model.h5` and a sharded copy."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("tf_keras")
    cache = {}

    def get(arch):
        if arch not in cache:
            root = tmp_path_factory.mktemp(arch + "_tf")
            tf_model = transformers.TFEncoderDecoderModel.from_pretrained(str(pt_folders(arch) / "composite"), from_pt=True)
            tf_model.save_pretrained(str(root / "single"))
            tf_model.save_pretrained(str(root / "sharded"), max_shard_size="20KB")
            cache[arch] = root
        return cache[arch]

    return get


@pytest.mark.parametrize("arch", ["bert2bert", "bert2gpt2_proj"])
@pytest.mark.parametrize("layout", ["single", "sharded"])
def test_reference_tf_h5_loads_with_equal_outputs(tiny, oracle, reference_tf_folders, arch, layout):
    config, state, inputs, _ = tiny(arch)
    folder = reference_tf_folders(arch) / layout
    model = TFEncoderDecoderModel.from_pretrained(str(folder))
    got = model.state_dict()
    assert all(np.array_equal(got[k], state[k]) for k in state)
    assert max_diff(model(**inputs).logits, oracle_forward(oracle(arch), inputs).logits) < TOL


@pytest.mark.parametrize("arch", ["bert2bert", "bert2gpt2_proj"])
def test_written_tf_h5_loads_in_the_reference(tiny, oracle, tmp_path, arch):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("tf_keras")
    config, state, inputs, _ = tiny(arch)
    config.save_pretrained(str(tmp_path))
    write_tf_h5(state, schema_for(config), str(tmp_path / "tf_model.h5"))
    ref_tf = transformers.TFEncoderDecoderModel.from_pretrained(str(tmp_path))
    # The reference's TF class builds no decoder mask from labels: pass ours explicitly.
    ref_out = ref_tf(**{k: tf.constant(v) for k, v in inputs.items()})
    assert max_diff(ref_out.logits.numpy(), oracle_forward(oracle(arch), inputs).logits) < TOL
    # ... and our reader gives back exactly what was written.
    again = read_tf_h5([str(tmp_path / "tf_model.h5")], schema_for(config))
    assert all(np.array_equal(again[k], state[k]) for k in state)


def test_unknown_h5_key_raises_naming_file_and_key(tiny, tmp_path):
    import h5py

    config, state, _, _ = tiny("bert2bert")
    path = str(tmp_path / "tf_model.h5")
    write_tf_h5(state, schema_for(config), path)
    with h5py.File(path, "a") as h5:
        names = [n if isinstance(n, bytes) else n.encode() for n in h5["decoder"].attrs["weight_names"]]
        extra = b"tf_encoder_decoder_model/decoder/bert/encoder/layer_._0/adapter/kernel:0"
        h5["decoder"].create_dataset(extra.decode(), data=np.zeros((2, 2), np.float32))
        h5["decoder"].attrs["weight_names"] = names + [extra]
    with pytest.raises(TFH5Error, match=r"tf_model\.h5: key 'decoder/bert/encoder/layer_\._0/adapter/kernel'"):
        read_tf_h5([path], schema_for(config))
