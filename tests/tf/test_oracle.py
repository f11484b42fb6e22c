"""Against the reference (transformers 4.57.6, PyTorch and tf-keras classes): equal numbers on
the same weights, HF ``tf_model.h5`` files both ways, PyTorch folders with and without the
documented workaround."""

import logging

import numpy as np
import pytest
import tensorflow as tf

from encdec.formats.hf_tf_h5 import TFH5Error, read_tf_h5, write_tf_h5
from encdec.naming.schema import schema_for
from encdec.testing import ARCHS, minilm_path
from encdec_tf import TFBertModel, TFEncoderDecoderModel

pytestmark = pytest.mark.oracle
TOL = 1e-5


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


@pytest.mark.parametrize("arch", ARCHS)
def test_outputs_equal_the_reference(tiny, oracle, arch):
    config, _, inputs, model = tiny(arch)
    ref = oracle_forward(oracle(arch), inputs, output_attentions=True, output_hidden_states=True)
    out = model(**inputs, output_attentions=True, output_hidden_states=True)
    for field in ("loss", "logits", "decoder_hidden_states", "decoder_attentions", "cross_attentions",
                  "encoder_last_hidden_state", "encoder_hidden_states", "encoder_attentions"):
        assert max_diff(getattr(out, field), getattr(ref, field)) < TOL, field
    assert out.loss.shape == ()


@pytest.mark.parametrize("arch", ["bert2bert", "bert2gpt2_proj"])
def test_cache_steps_equal_the_reference(tiny, oracle, arch):
    import torch

    _, _, inputs, model = tiny(arch)
    ref_model = oracle(arch)
    ids = inputs["decoder_input_ids"]
    past, ref_past, steps, ref_steps = None, None, [], []
    encoder_outputs = model.get_encoder()(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    with torch.no_grad():
        ref_encoder_outputs = ref_model.get_encoder()(input_ids=torch.from_numpy(inputs["input_ids"]),
                                                      attention_mask=torch.from_numpy(inputs["attention_mask"]))
        for i in range(ids.shape[1]):
            out = model(attention_mask=inputs["attention_mask"], encoder_outputs=encoder_outputs,
                        decoder_input_ids=ids[:, i:i + 1], past_key_values=past, use_cache=True)
            ref = ref_model(attention_mask=torch.from_numpy(inputs["attention_mask"]), encoder_outputs=ref_encoder_outputs,
                            decoder_input_ids=torch.from_numpy(ids[:, i:i + 1]), past_key_values=ref_past, use_cache=True)
            past, ref_past = out.past_key_values, ref.past_key_values
            steps.append(out.logits.numpy())
            ref_steps.append(ref.logits.numpy())
    assert max_diff(np.concatenate(steps, 1), np.concatenate(ref_steps, 1)) < TOL
    legacy = ref_past.to_legacy_cache() if hasattr(ref_past, "to_legacy_cache") else ref_past
    for layer, ref_layer in zip(past, legacy):
        assert max_diff(layer, ref_layer) < TOL


@pytest.mark.parametrize("arch", ["bert2bert_tied", "bert2gpt2_proj"])
def test_gradients_equal_the_reference(tiny, oracle, arch):
    import torch

    from adapters.tf import Adapter

    config, _, inputs, model = tiny(arch)
    ref_model = oracle(arch)
    ref_model.zero_grad(set_to_none=True)
    ref_model(**{k: torch.from_numpy(v) for k, v in inputs.items()}, use_cache=False).loss.backward()
    ref_params = dict(ref_model.named_parameters(remove_duplicate=False))
    grads = Adapter().grads(model, inputs)
    assert sorted(grads) == sorted(p.name for p in schema_for(config).owned())
    for name, grad in grads.items():
        ref = ref_params[name].grad
        ref = np.zeros_like(grad) if ref is None else ref.numpy()
        # Absolute: some true gradients are 0 (a key bias shifts every score of a query equally).
        assert np.abs(grad - ref).max() < TOL, name


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


def test_direct_pytorch_loading_with_projection(tiny, oracle, pt_folders):
    _, _, inputs, _ = tiny("bert2gpt2_proj")
    model = TFEncoderDecoderModel.from_pretrained(str(pt_folders("bert2gpt2_proj") / "composite"))
    assert max_diff(model(**inputs).logits, oracle_forward(oracle("bert2gpt2_proj"), inputs).logits) < TOL


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
