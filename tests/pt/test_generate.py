"""What PyTorch's ``EncoderDecoderModel.generate`` has of its own: the cache variants (no cache, static
cache, plain layers) give the same tokens, the static step compiles whole, the loop runs in inference
mode, and prepacked oneDNN weights. The behaviours every framework shares (search and processors
against the reference, sampling, padding, ``encoder_outputs=``, errors) are
tests/behaviour/test_generate_shared.py.
"""

import pytest
import torch

from encdec.naming.schema import schema_for
from encdec.testing import deterministic_state_dict, tiny_config, tiny_inputs
from encdec_pt import EncoderDecoderModel
from encdec_pt.generation.prepacked import prepacking_available
from encdec_pt.layers import Conv1D

ARCHS = ("bert2bert", "bert2gpt2")


def _build(arch):
    config = tiny_config(arch)
    model = EncoderDecoderModel(config)
    model.load_canonical(deterministic_state_dict(schema_for(config), seed=1))
    return model.eval()


def _inputs(config, batch=2):
    data = tiny_inputs(config, batch=batch)
    return torch.from_numpy(data["input_ids"]), torch.from_numpy(data["attention_mask"])


@pytest.fixture(scope="module", params=ARCHS)
def ours(request):
    return _build(request.param)


# --- cache variants, static step, inference mode ---------------------------------------------------
@pytest.mark.parametrize("kw", [dict(max_new_tokens=10), dict(max_new_tokens=10, num_beams=3, num_return_sequences=2)],
                         ids=["greedy", "beam"])
def test_cache_variants_give_the_same_tokens(ours, kw):
    ids, mask = _inputs(ours.config)
    dynamic = ours.generate(ids, attention_mask=mask, **kw)
    assert torch.equal(ours.generate(ids, attention_mask=mask, use_cache=False, **kw), dynamic)
    assert torch.equal(ours.generate(ids, attention_mask=mask, cache_implementation="static", **kw), dynamic)
    assert torch.equal(ours.generate(ids, attention_mask=mask, prepack_weights=False, **kw), dynamic)


def test_static_step_is_captured_whole(ours):
    """The fixed-shape step compiles with fullgraph=True (cheap backend) and gives the same tokens."""
    ids, mask = _inputs(ours.config)
    kw = dict(attention_mask=mask, max_new_tokens=6, num_beams=2)
    expected = ours.generate(ids, **kw)
    torch._dynamo.reset()
    got = ours.generate(ids, cache_implementation="static", compile_backend="aot_eager", **kw)
    assert torch.equal(got, expected)


def test_generate_runs_in_inference_mode_and_returns_ordinary_tensors(ours):
    """The loop runs under ``torch.inference_mode()`` (faster than ``no_grad``), and the caller
    gets ordinary tensors: editable in place and usable with autograd, as a ``no_grad`` result was."""
    ids, mask = _inputs(ours.config)
    modes = []
    handle = ours.decoder.register_forward_hook(lambda *_: modes.append(torch.is_inference_mode_enabled()))
    try:
        out = ours.generate(ids, attention_mask=mask, max_new_tokens=4, num_beams=2, num_return_sequences=2,
                            return_dict_in_generate=True, output_scores=True)
    finally:
        handle.remove()
    assert modes and all(modes)
    tensors = [out.sequences, out.sequences_scores, out.beam_indices, *out.scores]
    assert not any(t.is_inference() for t in tensors)
    out.sequences[:, 0] = 0  # in place: refused for an inference tensor outside inference mode
    (out.scores[0].clone().requires_grad_() * 2.0).sum().backward()
    assert not ours.generate(ids, attention_mask=mask, max_new_tokens=4).is_inference()
    with torch.inference_mode():  # the caller's own inference mode: left as it is
        assert ours.generate(ids, attention_mask=mask, max_new_tokens=4).is_inference()


# --- prepacked decoder weights (oneDNN, CPU float32) ------------------------------------------------
needs_onednn = pytest.mark.skipif(not prepacking_available(), reason="this torch has no oneDNN linear ops")


def _linear_layers(module):
    return [m for m in module.modules() if isinstance(m, (torch.nn.Linear, Conv1D))]


@needs_onednn
def test_prepacked_weights_are_used_then_the_layers_restored(ours):
    ids, mask = _inputs(ours.config)
    ours.clear_prepacked_weights()
    plain = ours.generate(ids, attention_mask=mask, max_new_tokens=8, num_beams=2, prepack_weights=False)
    assert len(ours._prepacked_weights()) == 0
    packed = ours.generate(ids, attention_mask=mask, max_new_tokens=8, num_beams=2)
    assert torch.equal(packed, plain)
    # The encoder's layers and the decoder's (tiny models have no enc_to_dec_proj).
    assert ours.enc_to_dec_proj is None
    assert len(ours._prepacked_weights()) == len(_linear_layers(ours)) > len(_linear_layers(ours.decoder)) > 0
    assert not [m for m in ours.modules() if "forward" in m.__dict__], "a layer kept its generate-time forward"
    # An error inside the loop restores the layers too.
    with pytest.raises(ValueError, match="encoder_outputs"):
        ours.generate(encoder_outputs=torch.zeros(2, 3), max_new_tokens=4)
    assert not [m for m in ours.modules() if "forward" in m.__dict__]
    ours.clear_prepacked_weights()
    assert len(ours._prepacked_weights()) == 0


@needs_onednn
def test_one_row_products_run_the_plain_layer_and_more_rows_the_packed_copy(monkeypatch):
    """One row (a greedy step at batch 1) multiplies by the weight as stored (the plain layer, to
    the bit); two or more rows and the encoder's positions by the packed copy."""
    from encdec_pt.generation.prepacked import PrepackedWeights, prepacked_linears

    torch.manual_seed(0)
    layers = torch.nn.ModuleList([torch.nn.Linear(16, 24), Conv1D(24, 16)])
    calls = []
    packed_op = torch.ops.mkldnn._linear_pointwise
    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", lambda *a: calls.append(a[0].shape) or packed_op(*a),
                        raising=False)
    with torch.no_grad():
        for rows in (1, 2, 5):
            for layer in layers:
                x = torch.randn(1, rows, 16)  # Conv1D(nf=24, nx=16): 16 in, 24 out, as the Linear
                plain = layer(x)
                calls.clear()
                with prepacked_linears(layers, PrepackedWeights()) as switched:
                    got = layer(x)
                assert switched == 2
                if rows == 1:
                    assert calls == [] and torch.equal(got, plain)
                else:
                    assert calls == [x.shape] and torch.allclose(got, plain, atol=1e-5)


@needs_onednn
def test_one_packed_copy_serves_every_call(ours):
    """Greedy and beam calls, batch 1 and 2, sampling: every call gives the plain layers' tokens; a
    layer is packed on its first product of several rows (a greedy call at batch 1 packs the
    encoder's layers, not the decoder's that see one row a step) and never again."""
    ids, mask = _inputs(ours.config)
    store = ours._prepacked_weights()
    ours.clear_prepacked_weights()
    encoder_layers, decoder_layers = _linear_layers(ours.encoder), _linear_layers(ours.decoder)
    copies = {}
    for batch, kw in [(1, {}), (1, dict(num_beams=2)), (2, {}), (1, dict(do_sample=True, seed=3))]:
        kw = dict(attention_mask=mask[:batch], max_new_tokens=6, **kw)
        plain = ours.generate(ids[:batch], prepack_weights=False, **kw)
        assert torch.equal(ours.generate(ids[:batch], **kw), plain), (batch, kw)
        if not copies:  # after the greedy call at batch 1 (the pooler too saw one row)
            assert all(m in store for m in _linear_layers(ours.encoder.encoder))
            assert not all(m in store for m in decoder_layers)
        for m in encoder_layers + decoder_layers:
            if m in store:
                assert copies.setdefault(m, store.packed(m)) is store.packed(m), (batch, kw)
    assert len(store) == len(copies) == len(encoder_layers + decoder_layers)


@needs_onednn
@pytest.mark.parametrize("arch", ARCHS)
def test_prepacked_weights_follow_training_steps(arch):
    """Generate, train, generate: the second call must see the new weights (the packed copies are
    rebuilt when a weight changes in place), as the plain layers do."""
    model = _build(arch)
    ids, mask = _inputs(model.config)
    kw = dict(attention_mask=mask, max_new_tokens=8, num_beams=2)
    before = model.generate(ids, **kw)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.05)
    model.train()
    labels = torch.arange(3, 3 + 8).repeat(ids.shape[0], 1)  # a target unlike the untrained output
    for _ in range(3):
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    after = model.generate(ids, **kw)
    assert torch.equal(after, model.generate(ids, prepack_weights=False, **kw))
    assert not torch.equal(after, before), "the training steps did not change the output: the test cannot bite"


class _ShiftedLinear(torch.nn.Linear):
    """A subclass with its own forward (as adapters such as LoRA have): must not be replaced."""

    def forward(self, x):
        return super().forward(x) + torch.arange(self.out_features, dtype=x.dtype) * 0.05


@needs_onednn
def test_linear_subclasses_keep_their_forward():
    model = _build("bert2gpt2")
    ids, mask = _inputs(model.config)
    kw = dict(attention_mask=mask, max_new_tokens=8)
    before = model.generate(ids, **kw)
    head = model.decoder.lm_head
    shifted = _ShiftedLinear(head.in_features, head.out_features, bias=False)
    shifted.weight = head.weight
    model.decoder.lm_head = shifted
    plain = model.generate(ids, prepack_weights=False, **kw)
    assert not torch.equal(plain, before), "the subclass does not change the output: the test cannot bite"
    assert torch.equal(model.generate(ids, **kw), plain)


@needs_onednn
def test_enc_to_dec_proj_runs_packed():
    """Encoder and decoder of different widths: the projection between them is packed too."""
    from encdec_pt.models.gpt2 import GPT2LMHeadModel

    base = _build("bert2gpt2")
    decoder_config = base.config.decoder.to_dict()
    decoder_config.update(n_embd=2 * base.config.decoder.n_embd)
    decoder = GPT2LMHeadModel(type(base.config.decoder)(**decoder_config))
    model = EncoderDecoderModel(encoder=base.encoder, decoder=decoder).eval()
    model.config.decoder_start_token_id = base.config.decoder_start_token_id
    model.config.pad_token_id = base.config.pad_token_id
    assert model.enc_to_dec_proj is not None
    ids, mask = _inputs(model.config)
    kw = dict(attention_mask=mask, max_new_tokens=6, num_beams=2)
    plain = model.generate(ids, prepack_weights=False, **kw)
    assert torch.equal(model.generate(ids, **kw), plain)
    assert model.enc_to_dec_proj in model._prepacked_weights()


@needs_onednn
def test_a_layer_patched_on_the_instance_keeps_its_forward(ours):
    """A forward set on a layer instance (by the caller, or by an enclosing packing block) is left
    alone while generate runs, and is still there afterwards."""
    ids, mask = _inputs(ours.config)
    kw = dict(attention_mask=mask, max_new_tokens=6)
    before = ours.generate(ids, prepack_weights=False, **kw)
    layer = _linear_layers(ours.encoder)[0]
    plain_forward = layer.forward

    def shifted(x):
        return plain_forward(x) + torch.linspace(-10.0, 10.0, layer.out_features)

    layer.forward = shifted
    try:
        plain = ours.generate(ids, prepack_weights=False, **kw)
        assert not torch.equal(plain, before), "the patch does not change the output: the test cannot bite"
        assert torch.equal(ours.generate(ids, **kw), plain)
        assert layer.__dict__["forward"] is shifted
    finally:
        del layer.forward


@needs_onednn
def test_prepacked_model_copies_and_pickles(ours, tmp_path):
    import copy

    ids, mask = _inputs(ours.config)
    expected = ours.generate(ids, attention_mask=mask, max_new_tokens=6)
    clone = copy.deepcopy(ours)
    assert len(clone._prepacked_weights()) == 0
    assert torch.equal(clone.generate(ids, attention_mask=mask, max_new_tokens=6), expected)
    torch.save(ours, tmp_path / "model.pt")
    loaded = torch.load(tmp_path / "model.pt", weights_only=False)
    assert torch.equal(loaded.generate(ids, attention_mask=mask, max_new_tokens=6), expected)


def test_without_onednn_generate_runs_the_plain_layers(monkeypatch):
    from encdec_pt.generation import utils

    model = _build("bert2gpt2")
    ids, mask = _inputs(model.config)
    monkeypatch.setattr(utils, "prepacking_available", lambda: False)
    expected = model.generate(ids, attention_mask=mask, max_new_tokens=6, prepack_weights=False)
    assert torch.equal(model.generate(ids, attention_mask=mask, max_new_tokens=6), expected)
    assert len(model._prepacked_weights()) == 0
    with pytest.raises(ValueError, match="prepack_weights=True needs torch built with oneDNN"):
        model.generate(ids, attention_mask=mask, max_new_tokens=6, prepack_weights=True)


def test_prepack_with_compile_backend_raises(ours):
    ids, mask = _inputs(ours.config)
    with pytest.raises(ValueError, match="prepack_weights=True and compile_backend"):
        ours.generate(ids, attention_mask=mask, cache_implementation="static", compile_backend="aot_eager",
                      prepack_weights=True)
