"""The architecture records and the mechanism the frameworks register their classes by."""

from __future__ import annotations

import dataclasses

import pytest

from encdec import EncoderDecoderConfig
from encdec.modeling_utils import group_new_weights
from encdec.naming.schema import schema_for
from encdec.registry import (
    ARCHITECTURES,
    DECODER,
    ENCODER,
    ModelRegistry,
    architecture,
    check_decoder_contract,
    register_architecture,
    records,
)
from encdec.testing import tiny_arch_config


@pytest.fixture
def encoder_only():
    """A registered copy of BERT's record that may only be an encoder (its model_type removed after)."""
    record = dataclasses.replace(architecture("bert"), model_type="bert-encoder-only", decoder=None,
                                 causal_lm_schema=None)

    class EncoderOnlyConfig(record.config_class):
        model_type = "bert-encoder-only"

    record = dataclasses.replace(record, config_class=EncoderOnlyConfig)
    register_architecture(record)
    yield record
    del ARCHITECTURES["bert-encoder-only"]


def test_every_record_is_registered_under_each_model_type_and_builds_its_tiny_schema():
    for record in records():
        for model_type in record.model_types:
            assert ARCHITECTURES[model_type] is record
        config = record.tiny_config()
        assert type(config) is record.config_class and config.model_type == record.model_type
        assert len(schema_for(config)) > 0
        if DECODER in record.roles:
            decoder = record.tiny_config(is_decoder=True, add_cross_attention=True)
            names = schema_for(decoder, head="causal_lm").names()
            assert any(record.word_embeddings in n for n in names)
            added = [n for n in names if n not in schema_for(record.tiny_config(), head="causal_lm")]
            groups, unexpected = group_new_weights(added)
            # What add_cross_attention adds, by the record; BART's decoder layers always hold `encoder_attn`.
            assert (list(groups) == ["cross-attention"] or not added) and not unexpected


def test_a_second_record_for_a_model_type_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_architecture(dataclasses.replace(architecture("bert"), config_class=dict))


def test_an_unknown_model_type_names_the_registered_ones():
    with pytest.raises(ValueError, match=r"unsupported model_type 'nope'.*'bert'.*'gpt2'"):
        architecture("nope")


def test_an_encoder_only_architecture_is_refused_as_decoder_naming_it(encoder_only):
    config = EncoderDecoderConfig.from_encoder_decoder_configs(tiny_arch_config("bert"),
                                                              encoder_only.config_class(**encoder_only.tiny))
    with pytest.raises(ValueError, match="'bert-encoder-only' cannot be the decoder.*cross-attention"):
        schema_for(config)
    registry = ModelRegistry("Test")
    with pytest.raises(ValueError, match="no decoder role"):
        registry.register("bert-encoder-only", decoder=object)
    registry.register("bert-encoder-only", encoder=dict)
    assert registry.lookup(config.decoder, ENCODER) is dict
    with pytest.raises(ValueError, match="'bert-encoder-only' cannot be the decoder"):
        registry.lookup(config.decoder, DECODER)


def test_a_decoder_lacking_a_contract_method_is_refused_naming_it():
    class HalfDecoder:
        config = tiny_arch_config("gpt2")

        def decoder_embed(self, input_ids, position_ids):
            return input_ids

    with pytest.raises(ValueError, match=r"HalfDecoder \('gpt2'\) cannot be the decoder.*decoder_layers, decoder_logits"):
        check_decoder_contract(HalfDecoder(), ("decoder_embed", "decoder_layers", "decoder_logits"))
