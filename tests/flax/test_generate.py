"""``FlaxEncoderDecoderModel.generate`` (one jitted loop) against the reference's PyTorch ``generate``.

Our Flax model (tiny bert2bert / bert2gpt2, deterministic weights) saves a folder that the oracle's
``transformers.EncoderDecoderModel.from_pretrained`` loads. Processors run in groups (one compile
each): our tokens and scores equal the reference's with the group on, and for every processor of the
group the reference's output without it differs, so leaving any processor out fails a test. Every
distinct setting or shape is one XLA compile, so the tests share settings where they can (tiny
models: compiles dominate the time).
"""

import collections

import numpy as np
import pytest

from encdec.naming.schema import schema_for
from encdec.testing import deterministic_state_dict, tiny_config, tiny_inputs
from encdec_flax import FlaxEncoderDecoderModel
from encdec_flax.generation import trace_count

SCORE_TOL = 1e-5
# The settings of test_greedy_equals_reference; tests that need a plain greedy run reuse them, so its
# compiled function (one per settings and shape) is reused too.
GREEDY = dict(max_new_tokens=12, return_dict_in_generate=True, output_scores=True)
ARCHS = ("bert2bert", "bert2gpt2")


def _build(arch):
    config = tiny_config(arch)
    model = FlaxEncoderDecoderModel(config, _do_init=False)
    model.load_state_dict(deterministic_state_dict(schema_for(config), seed=1))
    return model


def _inputs(config, batch=2):
    data = tiny_inputs(config, batch=batch)
    return data["input_ids"], data["attention_mask"]


_OURS = {}


def _ours(arch):
    if arch not in _OURS:
        _OURS[arch] = _build(arch)
    return _OURS[arch]


@pytest.fixture(scope="module", params=ARCHS)
def ours(request):
    return _ours(request.param)


@pytest.fixture(scope="module")
def bert2bert():
    return _ours("bert2bert")


_REFS = {}


def _pair(arch, tmp_path_factory):
    """(ours, reference) with the same weights; the reference reads the folder our model saved."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    model = _ours(arch)
    if arch not in _REFS:
        folder = tmp_path_factory.mktemp(f"flax-gen-{arch}")
        model.save_pretrained(str(folder))
        _REFS[arch] = transformers.EncoderDecoderModel.from_pretrained(str(folder)).eval()
    return model, _REFS[arch]


@pytest.fixture(scope="module", params=ARCHS)
def pair(request, tmp_path_factory):
    return _pair(request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def pair_bert2bert(tmp_path_factory):
    return _pair("bert2bert", tmp_path_factory)


def _ref_generate(ref, ids, mask, **kw):
    import torch

    with torch.no_grad():
        out = ref.generate(torch.from_numpy(np.asarray(ids, dtype=np.int64)),
                           attention_mask=torch.from_numpy(np.asarray(mask, dtype=np.int64)), use_cache=True, **kw)
    return out


def _np(x):
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


def _assert_same_tokens(a, b):
    a, b = _np(a), _np(b)
    assert a.shape == b.shape, f"shape {a.shape} vs reference {b.shape}"
    assert np.array_equal(a, b), f"tokens differ:\nours\n{a}\nreference\n{b}"


def _assert_scores_close(a, b):
    assert len(a) == len(b), f"{len(a)} score steps vs reference {len(b)}"
    for x, y in zip(a, b):
        x, y = _np(x), _np(y)
        assert np.array_equal(np.isinf(x), np.isinf(y))
        finite = np.isfinite(x)
        assert float(np.abs(x[finite] - y[finite]).max()) <= SCORE_TOL


# --- greedy and beam search vs the reference ------------------------------------------------------
@pytest.mark.oracle
def test_greedy_equals_reference(pair):
    ours, ref = pair
    ids, mask = _inputs(ours.config)
    a = ours.generate(ids, attention_mask=mask, **GREEDY)
    b = _ref_generate(ref, ids, mask, **GREEDY)
    _assert_same_tokens(a.sequences, b.sequences)
    _assert_scores_close(a.scores, b.scores)


BEAM = dict(max_new_tokens=12, num_beams=3, num_return_sequences=2, return_dict_in_generate=True, output_scores=True)


def _check_beams(ours, ref, kw):
    ids, mask = _inputs(ours.config)
    a = ours.generate(ids, attention_mask=mask, **kw)
    b = _ref_generate(ref, ids, mask, **kw)
    _assert_same_tokens(a.sequences, b.sequences)
    assert a.sequences.shape[0] == 2 * ids.shape[0]
    assert float(np.abs(a.sequences_scores - _np(b.sequences_scores)).max()) <= SCORE_TOL
    _assert_scores_close(a.scores, b.scores)
    assert np.array_equal(a.beam_indices, _np(b.beam_indices).astype(a.beam_indices.dtype))


@pytest.mark.oracle
def test_beam_search_equals_reference(pair):
    """3 beams, 2 returned, length penalty, n-gram blocking: sequences, sequences_scores, scores, beam indices."""
    ours, ref = pair
    kw = dict(BEAM, length_penalty=0.7, no_repeat_ngram_size=2)
    _check_beams(ours, ref, kw)
    ids, mask = _inputs(ours.config)
    without = dict(kw, no_repeat_ngram_size=0)
    assert _differs(_ref_generate(ref, ids, mask, **without).sequences, _ref_generate(ref, ids, mask, **kw).sequences)


@pytest.mark.oracle
@pytest.mark.parametrize("extra", [dict(length_penalty=1.5, early_stopping="never"),
                                   dict(length_penalty=1.0, early_stopping=True)], ids=["never", "early"])
def test_beam_search_early_stopping_equals_reference(pair_bert2bert, extra):
    ours, ref = pair_bert2bert
    _check_beams(ours, ref, dict(BEAM, **extra))


# --- every processor: equal to the reference with it on, and it changes the output -------------------
# One compile per group: the processors run together, our tokens equal the reference's, and for each
# processor the reference's output without it differs, so leaving any of them out fails the test.
def _differs(a, b) -> bool:
    a, b = _np(a), _np(b)
    return a.shape != b.shape or not np.array_equal(a, b)


def _greedy_processors(ref, ids, mask):
    """repetition_penalty, bad_words_ids (one single-token and one two-token sequence), min_new_tokens
    (eos := a token the plain run emits at step 2) and forced_eos, with tokens chosen so each bites."""
    plain = _np(_ref_generate(ref, ids, mask, max_new_tokens=10))
    first, second = int(plain[0, 1]), int(plain[0, 2])
    kw = dict(max_new_tokens=10, repetition_penalty=1.5, bad_words_ids=[[first]], eos_token_id=second,
              min_new_tokens=5, forced_eos_token_id=(second + 1) % 99)
    out = _np(_ref_generate(ref, ids, mask, **kw))
    kw["bad_words_ids"] = [[first], [int(out[1, 2]), int(out[1, 3])]]
    return kw


GREEDY_OPTIONS = ("repetition_penalty", "min_new_tokens", "forced_eos_token_id")


@pytest.mark.oracle
def test_greedy_processors_equal_reference_and_each_bites(pair_bert2bert):
    ours, ref = pair_bert2bert
    ids, mask = _inputs(ours.config)
    kw = _greedy_processors(ref, ids, mask)
    a = ours.generate(ids, attention_mask=mask, return_dict_in_generate=True, output_scores=True, **kw)
    b = _ref_generate(ref, ids, mask, return_dict_in_generate=True, output_scores=True, **kw)
    _assert_same_tokens(a.sequences, b.sequences)
    _assert_scores_close(a.scores, b.scores)
    for name in GREEDY_OPTIONS:
        without = {k: v for k, v in kw.items() if k != name}
        assert _differs(_ref_generate(ref, ids, mask, **without), b.sequences), f"{name} does not bite"
    for drop in range(2):  # each banned sequence bites
        without = dict(kw, bad_words_ids=[seq for i, seq in enumerate(kw["bad_words_ids"]) if i != drop])
        assert _differs(_ref_generate(ref, ids, mask, **without), b.sequences), f"bad word {drop} does not bite"


@pytest.mark.oracle
def test_min_length_is_min_new_tokens_plus_the_start_token(pair_bert2bert):
    """min_length=1+N resolves to the settings of min_new_tokens=N: same tokens, no new compile."""
    ours, ref = pair_bert2bert
    ids, mask = _inputs(ours.config)
    kw = _greedy_processors(ref, ids, mask)
    a = ours.generate(ids, attention_mask=mask, **kw)
    before = trace_count()
    kw_length = {k: v for k, v in kw.items() if k != "min_new_tokens"}
    b = ours.generate(ids, attention_mask=mask, min_length=kw["min_new_tokens"] + 1, **kw_length)
    assert np.array_equal(a, b)
    assert trace_count() == before
    assert _differs(_ref_generate(ref, ids, mask, **kw_length), a), "min_length does not bite"


BEAM_PROCESSORS = dict(max_new_tokens=10, num_beams=3, repetition_penalty=3.0)


@pytest.mark.oracle
def test_beam_processors_equal_reference_and_each_bites(pair_bert2bert):
    """repetition_penalty and forced_bos under beam search (log-softmax scores); n-gram blocking is in
    test_beam_search_equals_reference."""
    ours, ref = pair_bert2bert
    ids, mask = _inputs(ours.config)
    plain = _np(_ref_generate(ref, ids, mask, max_new_tokens=10))
    kw = dict(BEAM_PROCESSORS, forced_bos_token_id=(int(plain[0, 1]) + 1) % 99)
    a = ours.generate(ids, attention_mask=mask, **kw).sequences
    b = _ref_generate(ref, ids, mask, **kw)
    _assert_same_tokens(a, b)
    for name in ("repetition_penalty", "forced_bos_token_id"):
        without = {k: v for k, v in kw.items() if k != name}
        assert _differs(_ref_generate(ref, ids, mask, **without), b), f"{name} does not bite"


# --- sampling ---------------------------------------------------------------------------------------
SAMPLE = dict(do_sample=True, max_new_tokens=10, num_return_sequences=2, temperature=1.3, top_k=10, top_p=0.9,
              return_dict_in_generate=True, output_scores=True)


@pytest.mark.oracle
def test_sampling_reproducible_and_warpers_equal_reference(pair_bert2bert):
    """The same key gives the same samples, another key others. The first step's processed scores
    depend on no sample: they equal the reference's, and each warper changes them."""
    import jax
    import torch

    ours, ref = pair_bert2bert
    ids, mask = _inputs(ours.config)
    a = ours.generate(ids, attention_mask=mask, prng_key=jax.random.PRNGKey(7), **SAMPLE)
    b = ours.generate(ids, attention_mask=mask, prng_key=jax.random.PRNGKey(7), **SAMPLE)
    c = ours.generate(ids, attention_mask=mask, prng_key=jax.random.PRNGKey(8), **SAMPLE)
    assert a.sequences.shape[0] == 2 * ids.shape[0]
    assert np.array_equal(a.sequences, b.sequences)
    assert not np.array_equal(a.sequences, c.sequences), "another key gave the same samples"
    torch.manual_seed(0)
    ref_first = _ref_generate(ref, ids, mask, **SAMPLE).scores[0]
    _assert_scores_close(a.scores[:1], [ref_first])
    for name, neutral in (("temperature", 1.0), ("top_k", 0), ("top_p", 1.0)):
        torch.manual_seed(0)
        other = _ref_generate(ref, ids, mask, **dict(SAMPLE, **{name: neutral})).scores[0]
        assert _differs(other, ref_first), f"{name} does not change the scores"


def test_top_k_one_samples_the_greedy_tokens(bert2bert):
    import jax

    ids, mask = _inputs(bert2bert.config)
    greedy = bert2bert.generate(ids, attention_mask=mask, **GREEDY).sequences
    out = bert2bert.generate(ids, attention_mask=mask, prng_key=jax.random.PRNGKey(3), do_sample=True, top_k=1,
                             **GREEDY)
    assert np.array_equal(out.sequences, greedy)
    for step in out.scores:
        assert (np.isfinite(step).sum(axis=-1) == 1).all()


# --- masks, encoder outputs, compilation ----------------------------------------------------------
@pytest.mark.parametrize("kw", [dict(GREEDY, return_dict_in_generate=False), BEAM_PROCESSORS], ids=["greedy", "beam"])
def test_padded_batch_rows_equal_single_rows(bert2bert, kw):
    ids, mask = _inputs(bert2bert.config)
    assert mask[1].min() == 0, "row 1 of tiny_inputs is padded"
    batch = bert2bert.generate(ids, attention_mask=mask, **kw).sequences
    length = int(mask[1].sum())
    alone = bert2bert.generate(ids[1:2, :length], attention_mask=mask[1:2, :length], **kw).sequences
    row = batch[1][: alone.shape[1]]
    assert np.array_equal(row, alone[0])
    pad = bert2bert.generation_config.pad_token_id or 0
    assert (batch[1][alone.shape[1]:] == pad).all()


def test_encoder_outputs_are_reused(bert2bert):
    ids, mask = _inputs(bert2bert.config)
    kw = dict(GREEDY, return_dict_in_generate=False)
    encoder_outputs = bert2bert.encode(ids, attention_mask=mask)
    a = bert2bert.generate(ids, attention_mask=mask, **kw).sequences
    b = bert2bert.generate(encoder_outputs=encoder_outputs, attention_mask=mask, **kw).sequences
    assert np.array_equal(a, b)
    c = bert2bert.generate(encoder_outputs=(encoder_outputs.last_hidden_state,), attention_mask=mask, **kw).sequences
    assert np.array_equal(a, c)
    # The encoder is not run: other encoder outputs give other tokens.
    zeroed = bert2bert.generate(encoder_outputs=encoder_outputs.last_hidden_state * 0.0, attention_mask=mask,
                                **kw).sequences
    assert not np.array_equal(a, zeroed), "the given encoder outputs were ignored"


def test_second_call_with_the_same_shapes_does_not_retrace(bert2bert):
    ids, mask = _inputs(bert2bert.config)
    kw = BEAM_PROCESSORS
    first = bert2bert.generate(ids, attention_mask=mask, **kw).sequences
    before = trace_count()
    other_ids = (ids + 1) % bert2bert.config.encoder.vocab_size
    bert2bert.generate(other_ids, attention_mask=mask, **kw)
    again = bert2bert.generate(ids, attention_mask=mask, return_dict_in_generate=True, **kw)
    assert trace_count() == before, "generate traced again for the same shapes and settings"
    assert np.array_equal(first, again.sequences)
    bert2bert.generate(ids[:1], attention_mask=mask[:1], **kw)  # a new shape compiles once
    assert trace_count() == before + 1


def test_other_params_are_used_by_the_same_compiled_function():
    """A different params tree gives its own tokens, and the model's own params theirs again, from
    one compiled function."""
    import jax

    model = _ours("bert2gpt2")
    ids, mask = _inputs(model.config)
    own = model.generate(ids, attention_mask=mask, **BEAM_PROCESSORS).sequences
    other_params = jax.tree_util.tree_map(lambda x: x * 1.5, model.params)
    before = trace_count()
    other = model.generate(ids, attention_mask=mask, params=other_params, **BEAM_PROCESSORS).sequences
    again = model.generate(ids, attention_mask=mask, **BEAM_PROCESSORS).sequences
    assert trace_count() == before
    assert _differs(own, other)
    assert np.array_equal(own, again)


def test_a_new_signature_reuses_the_traced_encoder_and_cross_cache(monkeypatch):
    """Beam search after greedy search on the same source shape traces a new loop but not the
    encoder nor the cross-attention cache pass again; a new source length traces both."""
    from encdec_flax.encoder_decoder import FlaxEncoderDecoderModule

    model = _build("bert2gpt2")  # its own compiled functions and traces, whatever ran before
    traced = collections.Counter()
    for name in ("encode", "decode"):
        original = getattr(FlaxEncoderDecoderModule, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            traced[_name, bool(kwargs.get("init_cache"))] += 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(FlaxEncoderDecoderModule, name, counted)
    ids, mask = _inputs(model.config)
    greedy = model.generate(ids, attention_mask=mask, max_new_tokens=4)
    assert traced == {("encode", False): 1, ("decode", True): 1, ("decode", False): 1}
    beams = model.generate(ids, attention_mask=mask, max_new_tokens=4, num_beams=2)
    assert traced == {("encode", False): 1, ("decode", True): 1, ("decode", False): 2}
    model.generate(ids[:, :-1], attention_mask=mask[:, :-1], max_new_tokens=4)
    assert traced == {("encode", False): 2, ("decode", True): 2, ("decode", False): 3}
    assert greedy.sequences.shape == beams.sequences.shape == (2, 5)


def test_lengths_count_the_start_token(bert2bert):
    """max_new_tokens=12: the start token and 12 new ones (this model emits no eos), one score per new token."""
    ids, mask = _inputs(bert2bert.config)
    out = bert2bert.generate(ids, attention_mask=mask, **GREEDY)
    assert out.sequences.shape == (2, 13)
    assert len(out.scores) == 12 and out.scores[0].shape == (2, bert2bert.config.decoder.vocab_size)
    assert (out.sequences[:, 0] == bert2bert.config.decoder_start_token_id).all()


@pytest.mark.parametrize("kw, match", [
    (dict(num_return_sequences=2), "greedy"),
    (dict(num_beams=2, num_return_sequences=3), "num_return_sequences"),
    (dict(bad_words_ids=[[500]]), "bad_words_ids"),
    (dict(max_new_tokens=1000), "max_position_embeddings"),
    (dict(foo=1), "foo"),
])
def test_bad_settings_raise(bert2bert, kw, match):
    ids, mask = _inputs(bert2bert.config)
    with pytest.raises((ValueError, NotImplementedError), match=match):
        bert2bert.generate(ids, attention_mask=mask, **kw)


def test_adapter_generate_returns_numpy(bert2bert):
    import sys
    import os

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    from tests.adapters.flax import Adapter

    ids, mask = _inputs(bert2bert.config)
    out = Adapter().generate(bert2bert, {"input_ids": ids, "attention_mask": mask}, **GREEDY)
    assert isinstance(out, np.ndarray) and out.dtype == np.int64
    assert np.array_equal(out, bert2bert.generate(ids, attention_mask=mask, **GREEDY).sequences)


# --- the loop's layouts: (in, out) copies of GPT-2's kernels, cross keys/values as (N, H, S, D) ----
def _captured_call(model, monkeypatch, *args, **kwargs):
    """Run ``model.generate`` and return (its output, the (jitted, python) function pair it ran, that
    function's arguments)."""
    import encdec_flax.generation.utils as generation_utils

    seen = {}
    original = generation_utils._run

    def run(fns, signature, call_args):
        out = original(fns, signature, call_args)  # which makes the entry (jitted, python function)
        seen["fn"], seen["args"] = fns[signature], call_args
        return out

    monkeypatch.setattr(generation_utils, "_run", run)
    out = model.generate(*args, **kwargs)
    monkeypatch.setattr(generation_utils, "_run", original)
    return out, seen["fn"], seen["args"]


def test_prepacked_kernels_are_every_conv1d_of_a_decoding_step():
    """The kernels generate copies as (in, out) are exactly those of the FlaxConv1D modules a cached
    decoding step calls (so the schema's conv1d kinds and the record's cross key/value projections
    cannot fall behind the model), and for a BERT decoder none."""
    import flax.linen as nn
    import jax.numpy as jnp

    from encdec_flax.encoder_decoder import FlaxEncoderDecoderModule
    from encdec_flax.models.gpt2 import FlaxConv1D

    model = _ours("bert2gpt2")
    ids, mask = _inputs(model.config)
    hidden = jnp.zeros(ids.shape + (model.config.decoder.hidden_size,), jnp.float32)
    variables = {"params": model.params}
    _, cache = model.module.apply(variables, jnp.ones((ids.shape[0], 1), "i4"), hidden, encoder_attention_mask=mask,
                                  init_cache=True, mutable=["cache"], method=FlaxEncoderDecoderModule.decode)
    called = set()

    def interceptor(next_fun, args, kwargs, context):
        if isinstance(context.module, FlaxConv1D) and context.method_name == "__call__":
            called.add("/".join(context.module.path) + "/kernel")
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):
        model.module.apply(dict(variables, cache=cache["cache"]), jnp.ones((ids.shape[0], 1), "i4"), hidden,
                           encoder_attention_mask=mask, decoder_position_ids=jnp.zeros((ids.shape[0], 1), "i4"),
                           mutable=["cache"], method=FlaxEncoderDecoderModule.decode)
    packed = model._prepacked_kernels(model._expand(model.params))
    assert called and set(packed) == called
    for key, kernel in packed.items():
        node = model.params
        for name in key.split("/"):
            node = node[name]
        assert kernel.shape == node.shape[::-1] and np.array_equal(np.asarray(kernel), np.asarray(node).T)
    assert _ours("bert2bert")._prepacked_kernels(_ours("bert2bert").params) == {}


@pytest.mark.parametrize("kw", [dict(BEAM_PROCESSORS, return_dict_in_generate=True, output_scores=True),
                                dict(GREEDY)], ids=["beams", "greedy-batch-2"])
def test_prepacked_kernels_give_the_same_tokens_and_scores(kw):
    model = _ours("bert2gpt2")
    ids, mask = _inputs(model.config)
    plain = model.generate(ids, attention_mask=mask, prepack_weights=False, **kw)
    packed = model.generate(ids, attention_mask=mask, **kw)  # the default with 2+ rows on CPU
    _assert_same_tokens(packed.sequences, plain.sequences)
    _assert_scores_close(packed.scores, plain.scores)


def test_the_loop_multiplies_by_the_prepacked_kernels(monkeypatch):
    """In the compiled loop, every Conv1D product reads its kernel as (in, out) (contracting dimension 0)
    with prepacking and as stored, (out, in), without: XLA folded the transpose back into the product
    instead of transposing the kernel at each step."""
    import re

    model = _ours("bert2gpt2")
    ids, mask = _inputs(model.config)
    kw = dict(BEAM_PROCESSORS)
    for prepack, contracting in ((None, "0"), (False, "1")):
        _, (jitted, _), args = _captured_call(model, monkeypatch, ids, attention_mask=mask, prepack_weights=prepack,
                                              **kw)
        hlo = jitted.lower(*args).compile().as_text()
        dims = re.findall(r" dot\([^\n]*rhs_contracting_dims=\{(\d)\}[^\n]*op_name=\"[^\"]*while/body[^\"]*"
                          r"/(?:c_attn|q_attn|c_proj|c_fc)/", hlo)
        layers = model.config.decoder.num_hidden_layers
        assert len(dims) == 6 * layers, f"found {len(dims)} Conv1D products in the loop"
        assert set(dims) == {contracting}, (prepack, dims)


@pytest.mark.parametrize("arch", ["bert2gpt2", "bert2bert"])
def test_the_loop_transposes_no_keys_or_values(arch, monkeypatch):
    """The cache holds every key/value buffer as (N, H, T, D), the layout the attention's products
    read (as PyTorch and TensorFlow do): the while loop carries them so, and its compiled body has no
    transpose (with (N, T, H, D) buffers XLA copied every self-attention key and value buffer into
    another layout at each step: 24 copies a step for the base bert2gpt2)."""
    import jax

    model = _ours(arch)
    ids, mask = _inputs(model.config)
    _, (jitted, function), args = _captured_call(model, monkeypatch, ids, attention_mask=mask, **BEAM_PROCESSORS)
    jaxpr = jax.make_jaxpr(function)(*args)
    loops = [eqn for eqn in jaxpr.jaxpr.eqns if eqn.primitive.name == "while"]
    assert len(loops) == 1
    shapes = [tuple(v.aval.shape) for v in loops[0].invars if len(v.aval.shape) == 4]
    decoder = model.config.decoder
    heads, rows = decoder.num_attention_heads, ids.shape[0] * BEAM_PROCESSORS["num_beams"]
    head_dim, layers = decoder.hidden_size // heads, decoder.num_hidden_layers
    max_length = 1 + BEAM_PROCESSORS["max_new_tokens"]
    assert shapes.count((rows, heads, ids.shape[1], head_dim)) == 2 * layers, shapes  # cross
    assert shapes.count((rows, heads, max_length, head_dim)) == 2 * layers, shapes  # self
    hlo = jitted.lower(*args).compile().as_text()
    in_loop = [line for line in hlo.splitlines() if "while/body" in line and " transpose(" in line]
    assert not in_loop, "\n".join(in_loop[:4])


def test_prepacked_kernels_follow_the_params_and_can_be_freed():
    """The copies are made once per params tree: kept for the same leaves, made again for new ones
    (another params= or updated model.params, which are not kept alive), freed by
    clear_prepacked_weights."""
    import gc
    import weakref

    import jax

    model = _build("bert2gpt2")
    ids, mask = _inputs(model.config)
    kw = dict(max_new_tokens=4, num_beams=2)
    model.generate(ids, attention_mask=mask, **kw)
    store = model.__dict__["_prepacked_store"]
    first = dict(store.packed)
    model.generate(ids, attention_mask=mask, **kw)
    assert all(store.packed[k] is v for k, v in first.items()), "packed again for the same params"
    old_kernel = weakref.ref(model.params["decoder"]["transformer"]["h"]["0"]["mlp"]["c_fc"]["kernel"])
    model.params = jax.tree_util.tree_map(lambda x: x * 1.5, model.params)
    gc.collect()
    assert old_kernel() is None, "the copies keep the old params alive"
    scaled = model.generate(ids, attention_mask=mask, **kw)
    assert all(store.packed[k] is not v for k, v in first.items())
    assert np.array_equal(scaled, model.generate(ids, attention_mask=mask, prepack_weights=False, **kw))
    model.clear_prepacked_weights()
    assert store.packed == {} and store.sources == ()
    with pytest.raises(ValueError, match="prepack_weights"):
        model.generate(ids, attention_mask=mask, prepack_weights="yes", **kw)
