"""EncoderDecoderModel behaviour of the PyTorch API: shift_tokens_right, routing, tuples, errors, files.
Labels, loss and bad ids in every framework: tests/semantics."""

import logging
import os

import numpy as np
import pytest
import torch
from torch import nn

from encdec.modeling_utils import shift_tokens_right_np
from encdec.naming.schema import schema_for
from encdec.testing import deterministic_state_dict, tiny_bert_config, tiny_config, tiny_gpt2_config, tiny_inputs
from encdec_pt import (
    BertLMHeadModel,
    BertModel,
    EncoderDecoderModel,
    GPT2LMHeadModel,
    GPT2Model,
    shift_tokens_right,
)


def _model(arch="bert2bert", seed=0):
    config = tiny_config(arch)
    model = EncoderDecoderModel(config)
    model.load_canonical(deterministic_state_dict(schema_for(config), seed=seed))
    return model.eval()


def _inputs(model, **kw):
    return {k: torch.from_numpy(v) for k, v in tiny_inputs(model.config, **kw).items()}


# --- labels, loss, derived mask ----------------------------------------------------------------


def test_shift_tokens_right_reference_example():
    labels = torch.tensor([[62, 69, 43, 91, 7], [92, 85, 41, -100, -100]])
    assert shift_tokens_right(labels, 0, 2).tolist() == [[2, 62, 69, 43, 91], [2, 92, 85, 41, 0]]
    assert np.array_equal(shift_tokens_right(labels, 0, 2).numpy(), shift_tokens_right_np(labels.numpy(), 0, 2))


def test_shift_tokens_right_names_missing_ids():
    labels = torch.tensor([[5, 6]])
    with pytest.raises(ValueError, match="decoder_start_token_id"):
        shift_tokens_right(labels, 0, None)
    with pytest.raises(ValueError, match="pad_token_id"):
        shift_tokens_right(labels, None, 2)


# --- routing, tuples, encoder outputs ---------------------------------------------------------


def test_kwargs_routing():
    model = _model()
    inputs = _inputs(model)
    base = dict(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                decoder_input_ids=inputs["decoder_input_ids"])
    ones_src = torch.ones_like(inputs["input_ids"])
    ones_tgt = torch.ones_like(inputs["decoder_input_ids"])
    with torch.no_grad():
        plain = model(**base)
        enc = model(**base, token_type_ids=ones_src)
        dec = model(**base, decoder_token_type_ids=ones_tgt)
        direct_encoder = model.encoder(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                       token_type_ids=ones_src)
    assert torch.equal(enc.encoder_last_hidden_state, direct_encoder.last_hidden_state)
    assert not torch.allclose(enc.encoder_last_hidden_state, plain.encoder_last_hidden_state)
    assert torch.equal(dec.encoder_last_hidden_state, plain.encoder_last_hidden_state)
    assert not torch.allclose(dec.logits, plain.logits)
    with pytest.raises(TypeError, match="bogus"):
        model(**base, bogus=1)


def test_tuple_output_order():
    model = _model()
    inputs = _inputs(model)
    with torch.no_grad():
        out = model(**inputs, return_dict=False)
        obj = model(**inputs)
    # (loss, logits, cache, encoder last hidden state, pooler output), as the reference.
    assert len(out) == 5
    assert out[0].shape == () and out[1].shape == (2, 5, 99)
    assert isinstance(out[2], tuple) and len(out[2]) == 2 and len(out[2][0]) == 4
    assert out[3].shape == (2, 7, 32) and out[4].shape == (2, 32)
    assert torch.equal(out[3], obj.encoder_last_hidden_state)
    with torch.no_grad():
        out = model(**{k: v for k, v in inputs.items() if k != "labels"}, return_dict=False, use_cache=False,
                    output_attentions=True, output_hidden_states=True)
    # logits, decoder hidden states, decoder attentions, cross-attentions, encoder last, pooler,
    # encoder hidden states, encoder attentions: the reference's 8 items.
    assert len(out) == 8
    assert [len(x) if isinstance(x, tuple) else x.dim() for x in out] == [3, 3, 2, 2, 3, 2, 3, 2]
    fields = list(obj.keys())
    assert fields == ["loss", "logits", "past_key_values", "encoder_last_hidden_state"]


def test_encoder_outputs_as_object_tuple_or_tensor():
    model = _model("bert2gpt2_proj")
    inputs = _inputs(model)
    rest = dict(attention_mask=inputs["attention_mask"], decoder_input_ids=inputs["decoder_input_ids"])
    with torch.no_grad():
        full = model(input_ids=inputs["input_ids"], **rest)
        enc = model.get_encoder()(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        for given in (enc, enc.to_tuple(), enc.last_hidden_state):
            out = model(encoder_outputs=given, **rest)
            assert torch.equal(out.logits, full.logits)
        out = model(encoder_outputs=enc.to_tuple(), return_dict=False, use_cache=False, **rest)
        assert len(out) == 3  # logits + the tuple as given


def test_inputs_embeds_match_ids():
    model = _model()
    inputs = _inputs(model)
    with torch.no_grad():
        ids = model(input_ids=inputs["input_ids"], decoder_input_ids=inputs["decoder_input_ids"])
        embeds = model(inputs_embeds=model.encoder.embeddings.word_embeddings(inputs["input_ids"]),
                       decoder_inputs_embeds=model.decoder.bert.embeddings.word_embeddings(inputs["decoder_input_ids"]))
    assert torch.allclose(ids.logits, embeds.logits, atol=1e-6)


def test_accessors():
    model = _model("bert2gpt2")
    assert model.get_encoder() is model.encoder and model.get_decoder() is model.decoder
    assert model.get_input_embeddings() is model.encoder.embeddings.word_embeddings
    assert model.get_output_embeddings() is model.decoder.lm_head
    new = nn.Linear(32, 99, bias=False)
    model.config.decoder.tie_word_embeddings = False
    model.set_output_embeddings(new)
    assert model.get_output_embeddings() is new


@pytest.mark.parametrize("side", ["decoder", "encoder"])
@pytest.mark.parametrize("arch", ["bert2bert", "bert2gpt2", "bert2bert_tied"])
def test_resize_token_embeddings_per_side(arch, side):
    model = _model(arch)
    old_dec = model.decoder.get_input_embeddings().weight.detach().clone()
    old_enc = model.encoder.get_input_embeddings().weight.detach().clone()
    model.resize_token_embeddings(103, side=side)
    tied = arch == "bert2bert_tied"
    resized_dec = side == "decoder" or tied
    resized_enc = side == "encoder" or tied
    assert model.config.decoder.vocab_size == (103 if resized_dec else 99)
    assert model.config.encoder.vocab_size == (103 if resized_enc else 99)
    if resized_dec:
        emb = model.decoder.get_input_embeddings().weight
        assert emb.shape == (103, 32) and torch.equal(emb[:99], old_dec)
        assert model.get_output_embeddings().weight is emb
        if arch != "bert2gpt2":
            assert model.decoder.cls.predictions.bias.shape == (103,)
            assert model.decoder.cls.predictions.decoder.bias is model.decoder.cls.predictions.bias
    if resized_enc:
        assert torch.equal(model.encoder.get_input_embeddings().weight[:99], old_enc)
    if tied:
        assert model.encoder.get_input_embeddings().weight is model.decoder.get_input_embeddings().weight
    _assert_matches(model)
    ids = torch.tensor([[102, 5]])
    out = model(input_ids=ids if resized_enc else ids % 99, decoder_input_ids=ids if resized_dec else ids % 99)
    assert out.logits.shape[-1] == (103 if resized_dec else 99)


def _assert_matches(model):
    schema = schema_for(model.config)
    state = model.state_dict()
    assert sorted(state) == sorted(schema.names())
    assert all(tuple(state[k].shape) == schema[k].shape for k in state)


# --- bad input ------------------------------------------------------------------------------


def test_part_models_name_out_of_vocabulary_ids():
    """The parts on their own (the composite: tests/semantics)."""
    with pytest.raises(ValueError, match="token id 500"):
        BertModel(tiny_bert_config())(input_ids=torch.tensor([[500]]))
    with pytest.raises(ValueError, match="token id 500"):
        GPT2Model(tiny_gpt2_config())(input_ids=torch.tensor([[500]]))


def test_batch_mismatch_and_wrong_rank_raise_with_shapes():
    model = _model()
    inputs = _inputs(model)
    with pytest.raises(ValueError, match=r"batch size.*input_ids \(2, 7\).*decoder_input_ids \(1, 5\)"):
        model(input_ids=inputs["input_ids"], decoder_input_ids=inputs["decoder_input_ids"][:1])
    with pytest.raises(ValueError, match=r"batch size.*labels \(1, 5\)"):
        model(input_ids=inputs["input_ids"], labels=inputs["labels"][:1])
    with pytest.raises(ValueError, match=r"input_ids must have 2 dimensions.*\(7,\)"):
        model(input_ids=inputs["input_ids"][0], decoder_input_ids=inputs["decoder_input_ids"])
    with pytest.raises(ValueError, match=r"decoder_input_ids must have 2 dimensions.*\(2, 5, 1\)"):
        model(input_ids=inputs["input_ids"], decoder_input_ids=inputs["decoder_input_ids"][..., None])
    with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 6\).*\(2, 7\)"):
        model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"][:, :6],
              decoder_input_ids=inputs["decoder_input_ids"])
    with pytest.raises(ValueError, match=r"labels have shape \(2, 5\).*decoder input has shape \(2, 4\)"):
        model(input_ids=inputs["input_ids"], decoder_input_ids=inputs["decoder_input_ids"][:, :4],
              labels=inputs["labels"])


def test_constructor_errors():
    with pytest.raises(ValueError, match="Either a configuration or an encoder and a decoder"):
        EncoderDecoderModel()
    decoder = BertLMHeadModel(tiny_bert_config(is_decoder=True, add_cross_attention=True))
    with pytest.raises(ValueError, match="should not have a LM head"):
        EncoderDecoderModel(encoder=BertLMHeadModel(tiny_bert_config(is_decoder=True)), decoder=decoder)

    class NoCrossDecoder(GPT2LMHeadModel):
        def forward(self, input_ids=None, attention_mask=None):
            return super().forward(input_ids=input_ids, attention_mask=attention_mask)

    with pytest.raises(ValueError, match="not prepared for the encoder hidden states"):
        EncoderDecoderModel(encoder=BertModel(tiny_bert_config()), decoder=NoCrossDecoder(tiny_gpt2_config()))
    with pytest.raises(ValueError, match="no cross-attention layers"):
        EncoderDecoderModel(encoder=BertModel(tiny_bert_config()), decoder=GPT2LMHeadModel(tiny_gpt2_config()))
    with pytest.raises(ValueError, match="EncoderDecoderConfig"):
        EncoderDecoderModel(config=tiny_bert_config())


def test_built_from_instances():
    encoder = BertModel(tiny_bert_config())
    decoder = GPT2LMHeadModel(tiny_gpt2_config(n_embd=48, add_cross_attention=True, is_decoder=True))
    model = EncoderDecoderModel(encoder=encoder, decoder=decoder)
    assert model.encoder is encoder and model.decoder is decoder
    assert model.enc_to_dec_proj is not None
    assert encoder.config is model.config.encoder and decoder.config is model.config.decoder
    _assert_matches(model)


# --- files ------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["bert2bert", "bert2bert_tied"])
def test_loaded_model_is_in_eval_mode_with_shared_tied_parameters(arch, tmp_path):
    """What only PyTorch has (files and round trip in every framework: tests/behaviour/test_save_load.py)."""
    model = _model(arch, seed=3)
    model.save_pretrained(str(tmp_path))
    loaded = EncoderDecoderModel.from_pretrained(str(tmp_path))
    assert not loaded.training
    if arch == "bert2bert_tied":
        params = loaded._all_parameters()
        for tied, owner in schema_for(loaded.config).ties().items():
            assert params[tied] is params[owner], tied


def test_bin_files_load(tmp_path):
    """``safe_serialization=False`` writes pytorch_model.bin (sharded safetensors: tests/behaviour/test_save_load.py)."""
    model = _model("bert2gpt2", seed=4)
    model.save_pretrained(str(tmp_path / "bin"), safe_serialization=False)
    assert (tmp_path / "bin" / "pytorch_model.bin").exists()
    expected = model.canonical_state_dict()
    got = EncoderDecoderModel.from_pretrained(str(tmp_path / "bin")).canonical_state_dict()
    assert all(np.array_equal(got[k], expected[k]) for k in expected)


@pytest.mark.parametrize("dtype_kw", [{"torch_dtype": torch.float16}, {"dtype": "bfloat16"}, {"torch_dtype": "auto"}])
def test_dtype_choice(dtype_kw, tmp_path):
    model = _model("bert2gpt2")
    model.save_pretrained(str(tmp_path))
    loaded = EncoderDecoderModel.from_pretrained(str(tmp_path), **dtype_kw)
    expected = {torch.float16: torch.float16, "bfloat16": torch.bfloat16, "auto": torch.float32}[
        next(iter(dtype_kw.values()))]
    assert {p.dtype for p in loaded.parameters()} == {expected}
    out = loaded(**_inputs(model))
    assert out.logits.dtype == expected and torch.isfinite(out.logits).all()


def test_part_models_round_trip_and_cross_load(tmp_path):
    """A BertLMHeadModel folder loads into BertModel (head dropped) and a BertModel folder into BertLMHeadModel."""
    config = tiny_bert_config(is_decoder=True)
    lm = BertLMHeadModel(config).eval()
    lm.save_pretrained(str(tmp_path / "lm"))
    assert BertLMHeadModel.from_pretrained(str(tmp_path / "lm")).canonical_state_dict().keys() == \
        lm.canonical_state_dict().keys()
    base, info = BertModel.from_pretrained(str(tmp_path / "lm"), add_pooling_layer=False, output_loading_info=True)
    assert not info["missing_keys"] and any(k.startswith("cls.") for k in info["unexpected_keys"])
    assert torch.equal(base.encoder.layer[1].output.dense.weight, lm.bert.encoder.layer[1].output.dense.weight)
    base.save_pretrained(str(tmp_path / "base"))
    lm2, info = BertLMHeadModel.from_pretrained(str(tmp_path / "base"), output_loading_info=True)
    assert sorted(info["missing_keys"]) == ["cls.predictions.bias", "cls.predictions.transform.LayerNorm.bias",
                                            "cls.predictions.transform.LayerNorm.weight",
                                            "cls.predictions.transform.dense.bias",
                                            "cls.predictions.transform.dense.weight"]
    assert lm2.cls.predictions.decoder.weight is lm2.bert.embeddings.word_embeddings.weight


# --- warm start -------------------------------------------------------------------------------


@pytest.fixture
def part_folders(tmp_path):
    torch.manual_seed(0)
    BertModel(tiny_bert_config()).save_pretrained(str(tmp_path / "bert"))
    GPT2LMHeadModel(tiny_gpt2_config(n_embd=48)).save_pretrained(str(tmp_path / "gpt2"))
    return str(tmp_path / "bert"), str(tmp_path / "gpt2")


def test_from_encoder_decoder_pretrained_routing_and_report(part_folders, caplog):
    bert, gpt2 = part_folders
    with caplog.at_level(logging.INFO, logger="encdec"):
        model = EncoderDecoderModel.from_encoder_decoder_pretrained(
            bert, gpt2, decoder_start_token_id=2, pad_token_id=0,
            encoder_hidden_dropout_prob=0.33, decoder_resid_pdrop=0.25,
        )
    warnings = [r.getMessage() for r in caplog.records if r.name == "encdec" and r.levelno == logging.WARNING]
    assert warnings == [
        f"cross-attention: 16 tensors newly initialised in EncoderDecoderModel({bert}, {gpt2}) "
        "(expected; fine-tune before use)",
        f"enc_to_dec_proj: 2 tensors newly initialised in EncoderDecoderModel({bert}, {gpt2}) "
        "(expected; fine-tune before use)",
    ]
    assert not model.training
    assert model.config.decoder_start_token_id == 2 and model.config.pad_token_id == 0
    assert model.config.encoder.hidden_dropout_prob == 0.33
    assert model.config.decoder.resid_pdrop == 0.25 and model.decoder.transformer.h[0].mlp.dropout.p == 0.25
    assert model.config.decoder.is_decoder and model.config.decoder.add_cross_attention
    loss = model(input_ids=torch.tensor([[5, 6, 7]]), labels=torch.tensor([[8, 9]])).loss
    assert torch.isfinite(loss)
    # Every module of each side reads the composite's sub-config (so a resize is seen everywhere).
    assert all(getattr(m, "config", model.config.decoder) is model.config.decoder for m in model.decoder.modules())
    model.resize_token_embeddings(101)
    assert model(input_ids=torch.tensor([[5]]), labels=torch.tensor([[100, 9]])).logits.shape == (1, 2, 101)


def test_tensors_a_checkpoint_lacks_get_the_models_initialisation(part_folders):
    """from_pretrained builds the model on the meta device and initialises only what the checkpoint
    lacks, by the rules construction applies: the cross-attention a GPT-2 checkpoint lacks (its
    c_proj with GPT-2's residual scaling), a lone bias missing beside a loaded weight, and nothing
    that was loaded is touched."""
    from safetensors.numpy import load_file, save_file

    _, gpt2 = part_folders
    state = load_file(os.path.join(gpt2, "model.safetensors"))
    del state["transformer.h.0.attn.c_proj.bias"]
    save_file(state, os.path.join(gpt2, "model.safetensors"), metadata={"format": "pt"})
    config = tiny_gpt2_config(n_embd=48, is_decoder=True, add_cross_attention=True)
    model, info = GPT2LMHeadModel.from_pretrained(gpt2, config=config, output_loading_info=True)
    assert "transformer.h.0.attn.c_proj.bias" in info["missing_keys"]
    assert all(p.device.type == "cpu" and p.requires_grad for p in model.parameters())
    params = dict(model.named_parameters())
    for name, array in state.items():  # loaded exactly, the scaled c_proj weights included
        assert np.array_equal(params[name].detach().numpy(), array), name
    assert torch.count_nonzero(model.transformer.h[0].attn.c_proj.bias) == 0
    std = config.initializer_range
    for block in model.transformer.h:
        cross = block.crossattention
        assert abs(cross.c_attn.weight.std().item() / std - 1) < 0.1
        assert abs(cross.q_attn.weight.std().item() / std - 1) < 0.1
        scaled = std / np.sqrt(2 * config.n_layer)
        assert abs(cross.c_proj.weight.std().item() / scaled - 1) < 0.1
        for bias in (cross.c_attn.bias, cross.q_attn.bias, cross.c_proj.bias, block.ln_cross_attn.bias):
            assert torch.count_nonzero(bias) == 0
        assert torch.equal(block.ln_cross_attn.weight, torch.ones_like(block.ln_cross_attn.weight))
    assert model.lm_head.weight is model.transformer.wte.weight
    # A fresh model and the loaded one train alike (leaf parameters, finite loss and gradients).
    loss = model(input_ids=torch.tensor([[5, 6, 7]]), encoder_hidden_states=torch.ones(1, 2, 48),
                 labels=torch.tensor([[5, 6, 7]])).loss
    loss.backward()
    assert torch.isfinite(loss) and all(torch.isfinite(p.grad).all() for p in model.parameters()
                                        if p.grad is not None)


def test_assigned_parameters_never_share_memory():
    """load_canonical(assign=True) takes arrays as parameters without a copy, but two names whose
    arrays share one buffer (the same array, or views of one) must not become aliased parameters."""
    model = _model("bert2gpt2")
    state = model.canonical_state_dict()
    query = "encoder.encoder.layer.0.attention.self.query.weight"
    key = "encoder.encoder.layer.0.attention.self.key.weight"
    both = np.stack([state[query], state[key] + 1.0])  # one buffer, two views
    state[query], state[key] = both[0], both[1]
    value = "encoder.encoder.layer.0.attention.self.value.weight"
    state["encoder.encoder.layer.1.attention.self.value.weight"] = state[value]  # the same array twice
    fresh = _model("bert2gpt2", seed=5)
    fresh.load_canonical(state, assign=True)
    params = dict(fresh.named_parameters())
    pointers = [params[n].data_ptr() for n in (query, key, value, "encoder.encoder.layer.1.attention.self.value.weight")]
    assert len(set(pointers)) == 4
    with torch.no_grad():
        params[query].add_(1.0)
    assert np.array_equal(params[key].detach().numpy(), state[key])
    assert np.array_equal(params[value].detach().numpy(), state[value])


def test_from_encoder_decoder_pretrained_warns_naming_unexpected_missing(part_folders, tmp_path, caplog):
    bert, _ = part_folders
    # A BERT base folder as decoder: its LM head is missing, which is not expected.
    with caplog.at_level(logging.WARNING, logger="encdec"):
        EncoderDecoderModel.from_encoder_decoder_pretrained(bert, bert, decoder_start_token_id=2)
    warnings = [r.getMessage() for r in caplog.records if r.name == "encdec"]
    assert len(warnings) == 2
    assert warnings[0].startswith("cross-attention: 20 tensors newly initialised")
    assert "decoder.cls.predictions.bias" in warnings[1] and "random" in warnings[1]


def test_from_encoder_decoder_pretrained_with_instances(part_folders):
    bert, gpt2 = part_folders
    encoder = BertModel.from_pretrained(bert)
    model = EncoderDecoderModel.from_encoder_decoder_pretrained(encoder_model=encoder,
                                                                decoder_pretrained_model_name_or_path=gpt2)
    assert model.encoder is encoder
    with pytest.raises(ValueError, match="encoder_pretrained_model_name_or_path"):
        EncoderDecoderModel.from_encoder_decoder_pretrained(None, gpt2)
