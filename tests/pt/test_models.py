"""Structure of the PyTorch parts: canonical names and shapes, ties, init, attention paths, cache."""

import pytest
import torch
from torch import nn

from encdec.naming.schema import schema_for
from encdec.testing import ARCHS, deterministic_state_dict, tiny_bert_config, tiny_config, tiny_gpt2_config
from encdec_pt import (
    AutoModel,
    AutoModelForCausalLM,
    BertLMHeadModel,
    BertModel,
    EncoderDecoderModel,
    GPT2LMHeadModel,
    GPT2Model,
    Seq2SeqLMOutput,
)
from encdec_pt.modeling_utils import attention_bias


def _assert_matches_schema(model, schema):
    state = model.state_dict()
    assert sorted(state) == sorted(schema.names())
    for name, tensor in state.items():
        assert tuple(tensor.shape) == schema[name].shape, name


@pytest.mark.parametrize("arch", ARCHS)
def test_encoder_decoder_state_dict_is_the_schema(arch):
    config = tiny_config(arch)
    model = EncoderDecoderModel(config)
    _assert_matches_schema(model, schema_for(config))
    assert sorted(model.canonical_state_dict()) == sorted(p.name for p in schema_for(config).owned())


@pytest.mark.parametrize(
    "model_class,config,head,pool",
    [
        (BertModel, tiny_bert_config(), "base", True),
        (BertLMHeadModel, tiny_bert_config(is_decoder=True), "causal_lm", True),
        (BertLMHeadModel, tiny_bert_config(is_decoder=True, add_cross_attention=True), "causal_lm", True),
        (GPT2Model, tiny_gpt2_config(), "base", True),
        (GPT2LMHeadModel, tiny_gpt2_config(), "causal_lm", True),
        (GPT2LMHeadModel, tiny_gpt2_config(add_cross_attention=True), "causal_lm", True),
    ],
)
def test_part_state_dicts_are_the_schema(model_class, config, head, pool):
    _assert_matches_schema(model_class(config), schema_for(config, head=head, add_pooling_layer=pool))


def test_bert_without_pooler():
    config = tiny_bert_config()
    model = BertModel(config, add_pooling_layer=False)
    _assert_matches_schema(model, schema_for(config, add_pooling_layer=False))
    assert model(input_ids=torch.tensor([[5, 6]])).pooler_output is None


def test_lm_heads_are_tied():
    bert = BertLMHeadModel(tiny_bert_config(is_decoder=True))
    head = bert.cls.predictions
    assert head.decoder.weight is bert.bert.embeddings.word_embeddings.weight
    assert head.decoder.bias is head.bias
    gpt2 = GPT2LMHeadModel(tiny_gpt2_config())
    assert gpt2.lm_head.weight is gpt2.transformer.wte.weight


def test_tie_encoder_decoder_shares_parameter_objects():
    config = tiny_config("bert2bert_tied")
    model = EncoderDecoderModel(config)
    params = model._all_parameters()
    ties = {k: v for k, v in schema_for(config).ties().items() if k.startswith("encoder.")}
    assert len(ties) == 37  # every encoder tensor except the pooler (as the reference reports)
    for tied, owner in ties.items():
        assert params[tied] is params[owner], tied
    untied = EncoderDecoderModel(tiny_config("bert2bert"))
    assert model.num_parameters() < untied.num_parameters()
    # One optimizer step moves both names at once.
    model.load_canonical(deterministic_state_dict(schema_for(config)))
    with torch.no_grad():
        model.decoder.bert.embeddings.word_embeddings.weight.add_(1.0)
    shared = model.decoder.bert.embeddings.word_embeddings.weight
    assert torch.equal(model.encoder.embeddings.word_embeddings.weight, shared)


def test_enc_to_dec_proj_initialisation():
    torch.manual_seed(0)
    config = tiny_config("bert2gpt2_proj")
    config.decoder.initializer_range = 0.05
    model = EncoderDecoderModel(config)
    proj = model.enc_to_dec_proj
    assert tuple(proj.weight.shape) == (48, 32)
    assert torch.count_nonzero(proj.bias) == 0
    assert abs(proj.weight.std().item() - 0.05) < 0.005
    assert abs(proj.weight.mean().item()) < 0.005
    assert EncoderDecoderModel(tiny_config("bert2gpt2")).enc_to_dec_proj is None


def test_auto_registries():
    assert isinstance(AutoModel.from_config(tiny_bert_config()), BertModel)
    assert isinstance(AutoModel.from_config(tiny_gpt2_config()), GPT2Model)
    assert isinstance(AutoModelForCausalLM.from_config(tiny_bert_config(is_decoder=True)), BertLMHeadModel)
    assert isinstance(AutoModelForCausalLM.from_config(tiny_gpt2_config()), GPT2LMHeadModel)


def test_output_object_access():
    out = Seq2SeqLMOutput(logits=torch.ones(1), encoder_last_hidden_state=torch.zeros(2))
    assert out[0] is out.logits is out["logits"]
    assert out[1] is out.encoder_last_hidden_state
    assert out.to_tuple() == (out.logits, out.encoder_last_hidden_state)
    assert list(out.keys()) == ["logits", "encoder_last_hidden_state"]
    with pytest.raises(KeyError):
        out["loss"]


@pytest.mark.parametrize("arch", ARCHS)
def test_sdpa_path_equals_explicit_einsum_path(arch):
    config = tiny_config(arch)
    model = EncoderDecoderModel(config).eval()
    model.load_canonical(deterministic_state_dict(schema_for(config), seed=2))
    from encdec.testing import tiny_inputs

    inputs = {k: torch.from_numpy(v) for k, v in tiny_inputs(config).items()}
    with torch.no_grad():
        fast = model(**inputs)
        explicit = model(**inputs, output_attentions=True)
    assert (fast.logits - explicit.logits).abs().max() <= 1e-5
    assert fast.cross_attentions is None
    assert len(explicit.cross_attentions) == 2
    probs = explicit.decoder_attentions[0]  # (B, H, Q, K)
    assert torch.allclose(probs.sum(-1), torch.ones(()), atol=1e-6)
    assert torch.all(probs.triu(diagonal=1) == 0)  # causal


def test_masks_use_dtype_minimum_not_inf():
    keep = torch.tensor([[True, False]])
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        bias = attention_bias(keep, dtype)
        assert bias.dtype == dtype and bias[0, 1] == torch.finfo(dtype).min and torch.isfinite(bias).all()


@pytest.mark.parametrize(
    "model",
    [
        lambda: GPT2LMHeadModel(tiny_gpt2_config()),
        lambda: BertLMHeadModel(tiny_bert_config(is_decoder=True)),
    ],
)
def test_stand_alone_decoder_cache_equals_full_forward(model):
    torch.manual_seed(0)
    model = model().eval()
    ids = torch.randint(4, 99, (2, 6))
    mask = torch.ones_like(ids)
    mask[1, :2] = 0  # left padding
    with torch.no_grad():
        full = model(input_ids=ids, attention_mask=mask).logits
        out = model(input_ids=ids[:, :3], attention_mask=mask[:, :3], use_cache=True)
        assert len(out.past_key_values[0]) == 2  # (self_k, self_v): no cross-attention
        steps = [out.logits]
        past = out.past_key_values
        for t in range(3, 6):
            out = model(input_ids=ids[:, t:t + 1], attention_mask=mask[:, :t + 1], past_key_values=past, use_cache=True)
            past = out.past_key_values
            steps.append(out.logits)
    assert (torch.cat(steps, 1) - full)[:, 2:].abs().max() <= 1e-5
    assert past[0][0].shape == (2, 4, 6, 8)  # (B, H, T, Dh)


def test_gradient_checkpointing_gives_the_same_gradients():
    config = tiny_config("bert2gpt2")
    from encdec.testing import tiny_inputs

    inputs = {k: torch.from_numpy(v) for k, v in tiny_inputs(config).items()}
    grads = []
    for enable in (False, True):
        model = EncoderDecoderModel(config)
        model.load_canonical(deterministic_state_dict(schema_for(config)))
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0
        if enable:
            model.gradient_checkpointing_enable()
            assert model.is_gradient_checkpointing
        model.train()
        model(**inputs).loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert sorted(grads[0]) == sorted(grads[1])
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-6), name


def test_encoder_decoder_cache_grows_one_position_per_step():
    """The composite's cache is the reference's legacy layout: per layer (self k, self v, cross k,
    cross v), the self-attention entries one position longer after each step (values against the
    reference: tests/behaviour/test_oracle.py)."""
    from encdec.testing import tiny_inputs

    config = tiny_config("bert2bert")
    model = EncoderDecoderModel(config).eval()
    inputs = {k: torch.from_numpy(v) for k, v in tiny_inputs(config).items()}
    with torch.no_grad():
        encoder_outputs = model.get_encoder()(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        past = None
        for t in range(inputs["decoder_input_ids"].shape[1]):
            out = model(encoder_outputs=encoder_outputs, attention_mask=inputs["attention_mask"],
                        decoder_input_ids=inputs["decoder_input_ids"][:, t:t + 1],
                        decoder_attention_mask=inputs["decoder_attention_mask"][:, :t + 1],
                        past_key_values=past, use_cache=True)
            past = out.past_key_values
            assert len(past[0]) == 4 and past[0][0].shape[2] == t + 1 and past[0][2].shape[2] == 7
