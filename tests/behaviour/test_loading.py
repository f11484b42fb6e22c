"""The one loading path (``encdec.loading``), one behaviour per test over the three frameworks.

The frameworks used to drift: TF raised when a composite folder lacked encoder weights where
PyTorch initialised and reported them; Flax never reset the encoder config of a warm start; the
``from_pt`` / ``from_tf`` / ``from_flax`` precedence differed. Each test states the behaviour once
and checks it in every framework, the load-info dict included (equal to one expected dict computed
from the schema, so equal across frameworks).
"""

from __future__ import annotations

import importlib
import logging

import numpy as np
import pytest

from adapters import FRAMEWORKS
from encdec.configuration import EncoderDecoderConfig
from encdec.formats.safetensors import save_state_dict
from encdec.naming.schema import schema_for
from encdec.testing import deterministic_state_dict, tiny_bert_config, tiny_config, tiny_gpt2_config

_CLASSES = {"pt": ("torch", "encdec_pt", "EncoderDecoderModel"),
            "tf": ("tensorflow", "encdec_tf", "TFEncoderDecoderModel"),
            "flax": ("flax", "encdec_flax", "FlaxEncoderDecoderModel")}


class Framework:
    """The three calls these tests make, per framework: both loaders with ``output_loading_info``
    and the model's canonical weights."""

    def __init__(self, name: str):
        requirement, package, class_name = _CLASSES[name]
        pytest.importorskip(requirement)
        self.name = name
        self.cls = getattr(importlib.import_module(package), class_name)

    def from_pretrained(self, path, **kwargs):
        return self.cls.from_pretrained(str(path), output_loading_info=True, **kwargs)

    def from_encoder_decoder_pretrained(self, encoder, decoder, **kwargs):
        return self.cls.from_encoder_decoder_pretrained(str(encoder), str(decoder), output_loading_info=True, **kwargs)

    def state(self, model):
        return model.canonical_state_dict() if self.name == "pt" else model.state_dict()


@pytest.fixture(params=FRAMEWORKS)
def framework(request):
    return Framework(request.param)


def _save(folder, config, state):
    config.save_pretrained(str(folder))
    save_state_dict(state, str(folder))
    return folder


def _info(missing=(), unexpected=()):
    return {"missing_keys": list(missing), "unexpected_keys": list(unexpected), "mismatched_keys": [],
            "ignored_keys": {}}


def test_composite_folder_lacking_encoder_weights_loads_initialises_and_reports(framework, tmp_path, caplog):
    config = tiny_config("bert2gpt2")
    schema = schema_for(config)
    state = deterministic_state_dict(schema, seed=3)
    absent = ["encoder.encoder.layer.1.output.dense.weight", "encoder.pooler.dense.bias"]
    _save(tmp_path, config, {k: v for k, v in state.items() if k not in absent})

    with caplog.at_level(logging.WARNING, logger="encdec"):
        model, info = framework.from_pretrained(tmp_path)

    assert info == _info(missing=absent)
    loaded = framework.state(model)
    for name in state:
        if name not in absent:
            assert np.array_equal(loaded[name], state[name]), name
    # Initialised as construction does: N(0, initializer_range) weights, zero biases.
    weight = loaded["encoder.encoder.layer.1.output.dense.weight"]
    assert weight.shape == (32, 37) and abs(weight.std() / config.encoder.initializer_range - 1) < 0.15
    assert not loaded["encoder.pooler.dense.bias"].any()
    reports = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "random" in r.getMessage()]
    assert len(reports) == 1 and all(name in reports[0] for name in absent), reports


def test_warm_start_resets_an_encoder_saved_as_decoder(framework, tmp_path):
    """A BERT LM-head checkpoint saved with is_decoder=True and cross-attention, used as the encoder:
    the encoder config is reset (no causal mask, no cross-attention), its cross-attention and head
    tensors are unexpected, the pooler it lacks is new; the decoder keeps both flags."""
    saved = tiny_bert_config(is_decoder=True, add_cross_attention=True)
    file_schema = schema_for(saved, head="causal_lm")
    state = deterministic_state_dict(file_schema, seed=5)
    folder = _save(tmp_path / "decoder", saved, {s.name: state[s.name] for s in file_schema.owned()})

    model, info = framework.from_encoder_decoder_pretrained(folder, folder, decoder_start_token_id=2)

    assert (model.config.encoder.is_decoder, model.config.encoder.add_cross_attention) == (False, False)
    assert (model.config.decoder.is_decoder, model.config.decoder.add_cross_attention) == (True, True)
    encoder_names = set(schema_for(model.config.encoder, head="base").names())
    unexpected = sorted(
        "encoder." + name[len("bert."):] if name.startswith("bert.") else "encoder." + name
        for name in (s.name for s in file_schema.owned())
        if (name[len("bert."):] if name.startswith("bert.") else name) not in encoder_names
    )
    assert any(".crossattention." in k for k in unexpected) and any(k.startswith("encoder.cls.") for k in unexpected)
    assert info == _info(missing=["encoder.pooler.dense.weight", "encoder.pooler.dense.bias"], unexpected=unexpected)
    loaded = framework.state(model)
    key = "encoder.layer.0.attention.self.query.weight"
    assert np.array_equal(loaded["encoder." + key], state["bert." + key])
    assert np.array_equal(loaded["decoder.bert." + key], state["bert." + key])


def _write_every_format(folder, config, schema):
    """One composite folder with a different set of values in each weights file:
    model.safetensors seed 0, pytorch_model.bin seed 1, tf_model.h5 seed 2, flax_model.msgpack seed 3."""
    torch = pytest.importorskip("torch")
    from encdec.formats.hf_flax_msgpack import write_flax_msgpack
    from encdec.formats.hf_tf_h5 import write_tf_h5

    states = {fmt: deterministic_state_dict(schema, seed=seed)
              for seed, fmt in enumerate(("safetensors", "pt", "tf", "flax"))}
    _save(folder, config, states["safetensors"])
    torch.save({k: torch.from_numpy(v) for k, v in states["pt"].items()}, str(folder / "pytorch_model.bin"))
    write_tf_h5(states["tf"], schema, str(folder / "tf_model.h5"))
    write_flax_msgpack(states["flax"], schema, str(folder / "flax_model.msgpack"))
    return states


@pytest.mark.parametrize("flag", [None, "from_pt", "from_tf", "from_flax"])
def test_prefer_flags_pick_the_same_file_everywhere(framework, tmp_path, flag):
    config = tiny_config("bert2gpt2")
    schema = schema_for(config)
    states = _write_every_format(tmp_path, config, schema)
    model, info = framework.from_pretrained(tmp_path, **({flag: True} if flag else {}))
    expected = states[flag[len("from_"):] if flag else "safetensors"]
    loaded = framework.state(model)
    assert info == _info()
    assert all(np.array_equal(loaded[name], expected[name]) for name in expected)


@pytest.mark.parametrize("flags", [("from_pt", "from_tf"), ("from_tf", "from_flax"), ("from_pt", "from_flax")])
def test_two_prefer_flags_are_refused_everywhere(framework, tmp_path, flags):
    config = tiny_config("bert2gpt2")
    _write_every_format(tmp_path, config, schema_for(config))
    with pytest.raises(ValueError, match=rf"{flags[0]} and {flags[1]} are both set.*at most one"):
        framework.from_pretrained(tmp_path, **{flag: True for flag in flags})
    with pytest.raises(ValueError, match=rf"{flags[0]} and {flags[1]} are both set.*at most one"):
        framework.from_encoder_decoder_pretrained(tmp_path, tmp_path, **{"encoder_" + f: True for f in flags})


def test_shape_mismatch_raises_naming_key_and_shapes(framework, tmp_path):
    config = tiny_config("bert2gpt2")
    state = deterministic_state_dict(schema_for(config), seed=1)
    key = "decoder.transformer.h.0.mlp.c_fc.weight"
    state[key] = state[key][:, :-1].copy()
    _save(tmp_path, config, state)
    from encdec.files import CheckpointError

    with pytest.raises(CheckpointError, match=rf"{key}: \(32, 36\) vs \(32, 37\)"):
        framework.from_pretrained(tmp_path)


def test_warm_start_report_and_info_agree(framework, tmp_path, caplog):
    """BERT encoder + GPT-2 decoder of another width: the new cross-attention and enc_to_dec_proj
    are one report, the same load-info dict in every framework."""
    bert, gpt2 = tiny_bert_config(), tiny_gpt2_config(n_embd=48)
    bert_schema, gpt2_schema = schema_for(bert), schema_for(gpt2, head="causal_lm")
    _save(tmp_path / "bert", bert, deterministic_state_dict(bert_schema, seed=1))
    gpt2_state = deterministic_state_dict(gpt2_schema, seed=2)
    _save(tmp_path / "gpt2", gpt2, {s.name: gpt2_state[s.name] for s in gpt2_schema.owned()})
    with caplog.at_level(logging.WARNING, logger="encdec"):
        model, info = framework.from_encoder_decoder_pretrained(tmp_path / "bert", tmp_path / "gpt2",
                                                                decoder_start_token_id=2)
    composite = EncoderDecoderConfig.from_encoder_decoder_configs(bert, gpt2)
    new = [s.name for s in schema_for(composite).owned()
           if "crossattention" in s.name or "ln_cross_attn" in s.name or s.name.startswith("enc_to_dec_proj.")]
    assert info == _info(missing=new)
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [line.split(" in ")[0] for line in lines] == ["cross-attention: 16 tensors newly initialised",
                                                         "enc_to_dec_proj: 2 tensors newly initialised"], lines


def test_loaded_weights_equal_the_file_and_outlive_its_replacement(framework, tmp_path):
    """The weights equal the file's bit for bit in every framework, whether it maps the file
    (PyTorch) or copies from the mapping and gives its pages back (TF, Flax); saving over the
    folder afterwards (a new file renamed over the mapped one) leaves the loaded model as it was."""
    config = tiny_config("bert2gpt2")
    schema = schema_for(config)
    state = deterministic_state_dict(schema)
    _save(tmp_path, config, state)
    model, _ = framework.from_pretrained(tmp_path)
    save_state_dict(deterministic_state_dict(schema, seed=1), str(tmp_path))
    loaded = framework.state(model)
    assert sorted(loaded) == sorted(state)
    assert all(loaded[name].dtype == state[name].dtype and np.array_equal(loaded[name], state[name])
               for name in state)
