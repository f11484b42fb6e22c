"""Configs: the HF config.json schema both ways, aliases, composition without mutation."""

import json

import pytest

from encdec import AutoConfig, BertConfig, EncoderDecoderConfig, GPT2Config
from encdec.generation_config import GenerationConfig
from encdec.testing import minilm_path, tiny_bert_config, tiny_config, tiny_gpt2_config


def test_aliases_and_unknown_keys_round_trip(tmp_path):
    c = GPT2Config(n_embd=48, hidden_size=64, my_custom_key={"a": 1})
    assert c.n_embd == 64 and c.hidden_size == 64  # the alias writes the real field
    c.num_attention_heads = 8
    assert c.n_head == 8
    c.save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    assert data["n_embd"] == 64 and "hidden_size" not in data and data["my_custom_key"] == {"a": 1}
    back = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(back, GPT2Config) and back == c


def test_composite_takes_objects_or_dicts_without_mutating():
    enc, dec = tiny_bert_config(), tiny_gpt2_config()
    before = (enc.to_dict(), dec.to_dict())
    c = EncoderDecoderConfig.from_encoder_decoder_configs(enc, dec, decoder_start_token_id=2)
    assert (enc.to_dict(), dec.to_dict()) == before  # the reference flips flags on the caller's object
    assert c.decoder.is_decoder and c.decoder.add_cross_attention and not c.encoder.is_decoder
    assert c.decoder is not dec
    d_enc, d_dec = enc.to_dict(), dec.to_dict()
    c2 = EncoderDecoderConfig(encoder=d_enc, decoder=d_dec)
    assert d_enc == enc.to_dict() and "model_type" in d_dec  # dicts untouched (the reference pops)
    assert isinstance(c2.decoder, GPT2Config)
    assert c.vocab_size == 99 and c.hidden_size == 32


def test_composite_needs_both_halves():
    with pytest.raises(ValueError, match="decoder=missing"):
        EncoderDecoderConfig(encoder=tiny_bert_config())


def test_unknown_model_type_is_named():
    with pytest.raises(ValueError, match="'llama'"):
        AutoConfig.for_dict({"model_type": "llama"})


def test_generation_config_falls_back_to_decoder():
    c = tiny_config("bert2gpt2")
    c.eos_token_id = None
    g = GenerationConfig.from_model_config(c)
    assert g.decoder_start_token_id == 2 and g.eos_token_id == c.decoder.eos_token_id == 3


@pytest.mark.oracle
@pytest.mark.parametrize("arch", ["bert2bert", "bert2gpt2", "bert2gpt2_proj", "bert2bert_tied"])
def test_config_json_both_ways_with_oracle(tmp_path, arch):
    transformers = pytest.importorskip("transformers")
    ours = tiny_config(arch)
    ours.save_pretrained(tmp_path / "ours")
    theirs = transformers.AutoConfig.from_pretrained(tmp_path / "ours")
    assert type(theirs).__name__ == "EncoderDecoderConfig"
    for side in ("encoder", "decoder"):
        for key, value in getattr(ours, side).to_dict().items():
            # HF fills classification labels (id2label) by default; no seq2seq model uses them.
            if key in ("model_type", "dtype", "id2label", "label2id") or key.startswith("_"):
                continue
            assert getattr(getattr(theirs, side), key) == value, (side, key)
    assert theirs.decoder_start_token_id == 2 and theirs.tie_encoder_decoder == ours.tie_encoder_decoder
    theirs.save_pretrained(tmp_path / "theirs")
    back = AutoConfig.from_pretrained(tmp_path / "theirs")
    assert isinstance(back, EncoderDecoderConfig)
    for side in ("encoder", "decoder"):
        a, b = getattr(ours, side).to_dict(), getattr(back, side).to_dict()
        for key in a:
            if key in ("dtype", "transformers_version") or key.startswith("_"):
                continue
            assert a[key] == b.get(key, a[key]), (side, key)


@pytest.mark.oracle
def test_real_minilm_config_loads_like_the_oracle():
    transformers = pytest.importorskip("transformers")
    ours = AutoConfig.from_pretrained(minilm_path())
    theirs = transformers.AutoConfig.from_pretrained(minilm_path())
    assert isinstance(ours, BertConfig)
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size",
                "layer_norm_eps", "max_position_embeddings", "pad_token_id"):
        assert getattr(ours, key) == getattr(theirs, key)
    assert ours.gradient_checkpointing is False  # unknown keys kept
