"""``EncoderDecoderModel.generate`` (PyTorch) against the reference's PyTorch ``generate``.

Both models load the same folder (tiny bert2bert / bert2gpt2, deterministic weights). Every
processor has a test that (a) equals the reference with the option on and (b) changes the output,
so it fails when the processor is missing. Sampling is compared with the reference under the same
seed: ours draws from a ``torch.Generator``, the reference from the global generator seeded alike.
"""

import numpy as np
import pytest
import torch

from encdec.naming.schema import schema_for
from encdec.testing import deterministic_state_dict, tiny_config, tiny_inputs
from encdec_pt import EncoderDecoderModel
from encdec_pt.generation.prepacked import prepacking_available
from encdec_pt.layers import Conv1D

SCORE_TOL = 1e-5
ARCHS = ("bert2bert", "bert2gpt2")


def _transformers():
    return pytest.importorskip("transformers")


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


@pytest.fixture(scope="module", params=ARCHS)
def pair(request, tmp_path_factory):
    """(ours, reference) with the same weights; the reference reads our saved folder."""
    transformers = _transformers()
    model = _build(request.param)
    folder = tmp_path_factory.mktemp(f"gen-{request.param}")
    model.save_pretrained(str(folder))
    ref = transformers.EncoderDecoderModel.from_pretrained(str(folder)).eval()
    return EncoderDecoderModel.from_pretrained(str(folder)), ref


def _ref_generate(ref, ids, mask, seed=None, **kw):
    if seed is not None:
        torch.manual_seed(seed)
    with torch.no_grad():
        return ref.generate(ids, attention_mask=mask, use_cache=True, **kw)


def _assert_same_tokens(a, b):
    assert tuple(a.shape) == tuple(b.shape), f"shape {tuple(a.shape)} vs reference {tuple(b.shape)}"
    assert torch.equal(a, b), f"tokens differ:\nours\n{a}\nreference\n{b}"


def _assert_scores_close(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.equal(torch.isinf(x), torch.isinf(y))
        finite = torch.isfinite(x)
        assert float((x[finite] - y[finite]).abs().max()) <= SCORE_TOL


# --- greedy and beam search vs the reference ------------------------------------------------------
@pytest.mark.oracle
@pytest.mark.parametrize("batch", [1, 2])  # one row: the decoder's weights are laid out for one row
def test_greedy_equals_reference(pair, batch):
    ours, ref = pair
    ids, mask = _inputs(ours.config, batch=batch)
    a = ours.generate(ids, attention_mask=mask, max_new_tokens=12, return_dict_in_generate=True, output_scores=True)
    b = _ref_generate(ref, ids, mask, max_new_tokens=12, return_dict_in_generate=True, output_scores=True)
    _assert_same_tokens(a.sequences, b.sequences)
    _assert_scores_close(a.scores, b.scores)


@pytest.mark.oracle
@pytest.mark.parametrize("extra", [
    dict(length_penalty=0.7, no_repeat_ngram_size=2),
    dict(length_penalty=1.5, early_stopping="never"),
    dict(length_penalty=1.0, early_stopping=True),
], ids=["lp0.7-ngram2", "never", "early"])
def test_beam_search_equals_reference(pair, extra):
    ours, ref = pair
    ids, mask = _inputs(ours.config)
    kw = dict(max_new_tokens=12, num_beams=3, num_return_sequences=2, return_dict_in_generate=True,
              output_scores=True, **extra)
    a = ours.generate(ids, attention_mask=mask, **kw)
    b = _ref_generate(ref, ids, mask, **kw)
    _assert_same_tokens(a.sequences, b.sequences)
    assert a.sequences.shape[0] == 2 * ids.shape[0]
    assert float((a.sequences_scores - b.sequences_scores).abs().max()) <= SCORE_TOL
    _assert_scores_close(a.scores, b.scores)
    assert torch.equal(a.beam_indices, b.beam_indices.to(a.beam_indices.dtype))


@pytest.mark.oracle
def test_several_eos_ids_equal_reference(pair):
    """A list of eos ids (beam search then keeps (1 + n_eos) * num_beams candidates per step)."""
    ours, ref = pair
    ids, mask = _inputs(ours.config)
    plain = ours.generate(ids, attention_mask=mask, max_new_tokens=10)
    eos = sorted({3, int(plain[0, 3]), int(plain[1, 2])})
    for kw in (dict(), dict(num_beams=3, num_return_sequences=2, length_penalty=0.5)):
        kw = dict(kw, max_new_tokens=10, eos_token_id=eos, return_dict_in_generate=True, output_scores=True)
        a = ours.generate(ids, attention_mask=mask, **kw)
        b = _ref_generate(ref, ids, mask, **kw)
        _assert_same_tokens(a.sequences, b.sequences)
        if "num_beams" in kw:
            assert float((a.sequences_scores - b.sequences_scores).abs().max()) <= SCORE_TOL
        else:
            # Row 0 now ends at its token 3 and is padded after it.
            assert bool((a.sequences[0, 4:] == ours.config.pad_token_id).all())
            assert not bool((plain[0, 4:] == ours.config.pad_token_id).all())


# --- every processor: equal to the reference with it on, and it changes the output -------------------
def _processor_cases(ours, ids, mask):
    """(name, kwargs with the option, kwargs without it); tokens are chosen from the plain output so
    that each option bites on this model."""
    plain = ours.generate(ids, attention_mask=mask, max_new_tokens=10)
    first, second = int(plain[0, 1]), int(plain[0, 2])
    base = dict(max_new_tokens=10)
    return [
        ("repetition_penalty", dict(base, repetition_penalty=3.0), base),
        ("no_repeat_ngram_size", dict(base, no_repeat_ngram_size=1), base),
        ("bad_words_ids", dict(base, bad_words_ids=[[first], [first, second]]), base),
        ("bad_words_ids_multi", dict(base, bad_words_ids=[[first, second]]), base),
        # eos := a token the plain run emits at step 2; min_new_tokens forbids stopping there.
        ("min_new_tokens", dict(base, eos_token_id=second, min_new_tokens=6), dict(base, eos_token_id=second)),
        ("min_length", dict(base, eos_token_id=second, min_length=7), dict(base, eos_token_id=second)),
        ("forced_bos_token_id", dict(base, forced_bos_token_id=(first + 1) % 99), base),
        ("forced_eos_token_id", dict(base, forced_eos_token_id=(second + 1) % 99), base),
        ("beam_repetition_penalty", dict(base, num_beams=3, repetition_penalty=3.0), dict(base, num_beams=3)),
        ("beam_no_repeat_ngram", dict(base, num_beams=3, no_repeat_ngram_size=1), dict(base, num_beams=3)),
    ]


@pytest.mark.oracle
def test_each_processor_equals_reference_and_bites(pair):
    ours, ref = pair
    ids, mask = _inputs(ours.config)
    for name, with_option, without in _processor_cases(ours, ids, mask):
        a = ours.generate(ids, attention_mask=mask, **with_option)
        b = _ref_generate(ref, ids, mask, **with_option)
        _assert_same_tokens(a, b)
        plain = ours.generate(ids, attention_mask=mask, **without)
        assert a.shape != plain.shape or not torch.equal(a, plain), f"{name} did not change the output"


@pytest.mark.oracle
@pytest.mark.parametrize("option", [
    dict(temperature=0.7), dict(top_k=5), dict(top_p=0.6), dict(temperature=1.3, top_k=10, top_p=0.9),
], ids=["temperature", "top_k", "top_p", "all"])
def test_sampling_warpers_equal_reference_and_bite(pair, option):
    ours, ref = pair
    ids, mask = _inputs(ours.config)
    kw = dict(do_sample=True, max_new_tokens=10, top_k=0, num_return_sequences=2, return_dict_in_generate=True,
              output_scores=True)
    kw.update(option)
    a = ours.generate(ids, attention_mask=mask, seed=123, **kw)
    b = _ref_generate(ref, ids, mask, seed=123, **kw)
    _assert_same_tokens(a.sequences, b.sequences)
    _assert_scores_close(a.scores, b.scores)
    plain = ours.generate(ids, attention_mask=mask, seed=123, do_sample=True, max_new_tokens=10, top_k=0,
                          num_return_sequences=2)
    assert not torch.equal(a.sequences, plain), f"{option} did not change the samples"


def test_sampling_reproducible(ours):
    ids, mask = _inputs(ours.config)
    kw = dict(do_sample=True, max_new_tokens=10, attention_mask=mask)
    a = ours.generate(ids, seed=7, **kw)
    b = ours.generate(ids, generator=torch.Generator().manual_seed(7), **kw)
    c = ours.generate(ids, seed=8, **kw)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


# --- inputs: padding, encoder_outputs, cache variants ----------------------------------------------
@pytest.mark.parametrize("kw", [dict(max_new_tokens=10), dict(max_new_tokens=10, num_beams=3)], ids=["greedy", "beam"])
def test_padded_batch_rows_equal_single_rows(ours, kw):
    ids, mask = _inputs(ours.config)
    assert int(mask[1].sum()) < ids.shape[1], "tiny_inputs pads row 1"
    batch = ours.generate(ids, attention_mask=mask, **kw)
    for row in range(ids.shape[0]):
        n = int(mask[row].sum())
        single = ours.generate(ids[row:row + 1, :n], attention_mask=mask[row:row + 1, :n], **kw)[0]
        assert torch.equal(batch[row, :single.shape[0]], single)
        # Past its own end a row holds only filler (pad for greedy, the reference's fill for beams).
        assert batch[row, single.shape[0]:].unique().numel() <= 1


def test_encoder_outputs_are_reused(ours, monkeypatch):
    ids, mask = _inputs(ours.config)
    expected = ours.generate(ids, attention_mask=mask, max_new_tokens=8, num_beams=2)
    with torch.no_grad():
        encoder_outputs = ours.get_encoder()(input_ids=ids, attention_mask=mask)

    def fail(*args, **kwargs):
        raise AssertionError("the encoder ran although encoder_outputs were given")

    monkeypatch.setattr(ours.encoder, "forward", fail)
    for given in (encoder_outputs, (encoder_outputs.last_hidden_state,)):
        got = ours.generate(encoder_outputs=given, attention_mask=mask, max_new_tokens=8, num_beams=2)
        assert torch.equal(got, expected)


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


def test_lengths_count_the_start_token(ours):
    ids, mask = _inputs(ours.config)
    out = ours.generate(ids, attention_mask=mask, max_new_tokens=5, min_new_tokens=5)
    assert out.shape == (2, 6)
    assert torch.equal(ours.generate(ids, attention_mask=mask, max_length=6, min_length=6), out)
    assert bool((out[:, 0] == ours.config.decoder_start_token_id).all())


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
def test_one_packed_copy_serves_every_call(ours):
    """Greedy and beam calls, batch 1 and 2, sampling: every call gives the plain layers' tokens and
    uses the copies the first call packed (encoder and decoder), with no repacking."""
    ids, mask = _inputs(ours.config)
    store = ours._prepacked_weights()
    ours.clear_prepacked_weights()
    layers = _linear_layers(ours.encoder) + _linear_layers(ours.decoder)
    first = None
    for batch, kw in [(1, {}), (1, dict(num_beams=2)), (2, {}), (1, dict(do_sample=True, seed=3))]:
        kw = dict(attention_mask=mask[:batch], max_new_tokens=6, **kw)
        plain = ours.generate(ids[:batch], prepack_weights=False, **kw)
        assert torch.equal(ours.generate(ids[:batch], **kw), plain), (batch, kw)
        assert len(store) == len(layers) and all(m in store for m in layers)
        copies = [store.packed(m) for m in layers]
        first = first or copies
        assert all(a is b for a, b in zip(copies, first)), (batch, kw)


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
    from encdec_pt.models.bert import BertModel
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


# --- errors come from the shared resolution ---------------------------------------------------------
@pytest.mark.parametrize("kw, match", [
    (dict(num_beams=2, num_return_sequences=3), "num_return_sequences=3 cannot exceed num_beams=2"),
    (dict(num_return_sequences=2), "greedy search returns one sequence"),
    (dict(forced_bos_token_id=500), "forced_bos_token_id contains token id 500"),
    (dict(early_stopping="sometimes"), "early_stopping"),
    (dict(max_new_tokens=1000), "max_position_embeddings=64"),
    (dict(foo=1), "neither generation settings nor encoder inputs"),
], ids=["nrs>beams", "greedy-nrs", "oov", "early_stopping", "too-long", "unknown"])
def test_bad_settings_raise(ours, kw, match):
    ids, mask = _inputs(ours.config)
    with pytest.raises((ValueError, NotImplementedError), match=match):
        ours.generate(ids, attention_mask=mask, **kw)


def test_missing_start_token_names_what_to_set():
    model = _build("bert2gpt2")
    ids, mask = _inputs(model.config)
    model.config.decoder_start_token_id = None
    model.config.bos_token_id = None
    model.config.decoder.bos_token_id = None
    model.config.decoder.decoder_start_token_id = None
    model.generation_config = None
    with pytest.raises(ValueError, match="decoder_start_token_id"):
        model.generate(ids, attention_mask=mask)


def test_adapter_generate_returns_numpy(ours):
    from adapters.pt import Adapter

    data = tiny_inputs(ours.config)
    out = Adapter().generate(ours, {"input_ids": data["input_ids"], "attention_mask": data["attention_mask"]},
                             max_new_tokens=4)
    assert isinstance(out, np.ndarray) and out.shape[0] == 2 and out.dtype == np.int64
