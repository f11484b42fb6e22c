"""The weight-name schema equals, key for key and shape for shape, what the oracle holds and saves."""

import numpy as np
import pytest

from encdec.configuration import EncoderDecoderConfig
from encdec.naming import layout
from encdec.naming.schema import schema_for
from encdec.testing import ARCHS, tiny_bert_config, tiny_config, tiny_gpt2_config


def _cases():
    """(id, our config, builder of the oracle model from transformers)."""
    return [
        ("bert_pooler", tiny_bert_config(), dict(head="base", add_pooling_layer=True), "BertModel"),
        ("bert_no_pooler", tiny_bert_config(), dict(head="base", add_pooling_layer=False), "BertModel"),
        ("bert_lm_cross", tiny_bert_config(is_decoder=True, add_cross_attention=True), dict(head="causal_lm"),
         "BertLMHeadModel"),
        ("gpt2_lm", tiny_gpt2_config(), dict(head="causal_lm"), "GPT2LMHeadModel"),
        ("gpt2_lm_cross", tiny_gpt2_config(add_cross_attention=True), dict(head="causal_lm"), "GPT2LMHeadModel"),
        ("gpt2_untied", tiny_gpt2_config(tie_word_embeddings=False), dict(head="causal_lm"), "GPT2LMHeadModel"),
    ] + [(arch, tiny_config(arch), {}, "EncoderDecoderModel") for arch in ARCHS]


@pytest.mark.oracle
@pytest.mark.parametrize("case", _cases(), ids=lambda c: c[0])
def test_schema_equals_oracle_state_dict_and_saved_file(case, tmp_path):
    transformers = pytest.importorskip("transformers")
    from safetensors import safe_open

    name, config, kwargs, cls_name = case
    schema = schema_for(config, **kwargs)
    hf_config = transformers.AutoConfig.for_model(**config.to_dict()) if not isinstance(config, EncoderDecoderConfig) \
        else transformers.EncoderDecoderConfig(**config.to_dict())
    cls = getattr(transformers, cls_name)
    model = cls(hf_config, add_pooling_layer=kwargs["add_pooling_layer"]) if "add_pooling_layer" in kwargs \
        else cls(config=hf_config)
    # Every parameter (tied ones included), no buffer.
    params = {k: tuple(v.shape) for k, v in model.named_parameters(remove_duplicate=False)}
    assert schema.shapes() == params
    # What the oracle writes: the owners only.
    model.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "np") as f:
        saved = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    owned = {p.name: p.shape for p in schema.owned()}
    assert owned == saved
    # Buffers the oracle holds are all explained by an ignore rule.
    for key, _ in model.named_buffers():
        assert schema.ignore_reason(key) is not None, key


def test_ties_of_tied_bert2bert_point_from_encoder_to_decoder_base():
    schema = schema_for(tiny_config("bert2bert_tied"))
    ties = schema.ties()
    assert ties["encoder.embeddings.word_embeddings.weight"] == "decoder.bert.embeddings.word_embeddings.weight"
    assert "encoder.pooler.dense.weight" not in ties  # the decoder has no pooler
    assert not any("crossattention" in k for k in ties)


def test_projection_only_when_hidden_sizes_differ():
    assert "enc_to_dec_proj.weight" not in schema_for(tiny_config("bert2gpt2"))
    assert schema_for(tiny_config("bert2gpt2_proj"))["enc_to_dec_proj.weight"].shape == (48, 32)
    c = tiny_config("bert2gpt2_proj")
    c.decoder.cross_attention_hidden_size = 40
    with pytest.raises(ValueError, match="cross_attention_hidden_size=40"):
        schema_for(c)


@pytest.mark.parametrize("framework", layout.FRAMEWORKS)
def test_layout_rules_invert(framework):
    specs = list(schema_for(tiny_config("bert2gpt2_proj"))) + list(schema_for(tiny_config("bert2bert")))
    rng = np.random.default_rng(0)
    kinds = set()
    for spec in specs:
        value = rng.standard_normal(spec.shape).astype(np.float32)
        leaf, stored = layout.to_framework(spec, value, framework)
        assert stored.shape == layout.framework_shape(spec, framework)
        pt_leaf, back = layout.from_framework(spec.kind, leaf, stored, framework)
        assert pt_leaf == spec.leaf and np.array_equal(back, value)
        kinds.add(spec.kind)
    assert kinds == {"linear", "conv1d", "layernorm", "embedding", "bias"}


def test_layout_rejects_wrong_shape_and_unknown_leaf():
    spec = schema_for(tiny_config("bert2bert"))["encoder.pooler.dense.weight"]
    with pytest.raises(ValueError, match="encoder.pooler.dense.weight"):
        layout.to_framework(spec, np.zeros((3, 3)), "tf")
    with pytest.raises(ValueError, match="leaf 'kernelz'"):
        layout.from_framework("linear", "kernelz", np.zeros((3, 3)), "flax")
