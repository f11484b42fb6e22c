"""``TFEncoderDecoderModel.generate`` (one XLA-compiled loop) against the reference's PyTorch ``generate``.

The oracle (transformers' PyTorch ``EncoderDecoderModel``) loads the folder our TF model saved
(tiny bert2bert / bert2gpt2, deterministic weights). XLA compiles cost about a second each on the
tiny models, so the oracle comparisons of greedy and beam search run compiled (and eagerly: the
tokens must be equal), while the per-processor cases run eagerly (``use_xla=False``, the same
function) and one run with every processor on checks XLA == eager for all of them at once.
Every processor has a case that (a) equals the reference with the option on and (b) changes the output.
"""

import numpy as np
import pytest
import tensorflow as tf

from encdec.naming.schema import schema_for
from encdec.testing import deterministic_state_dict, tiny_config, tiny_inputs
from encdec_tf import TFEncoderDecoderModel
from encdec_tf.generation import logits_process

SCORE_TOL = 1e-5
ARCHS = ("bert2bert", "bert2gpt2")
_MODELS = {}


def _model(arch):
    """One model per arch for the whole module: its compiled functions are reused across tests."""
    if arch not in _MODELS:
        config = tiny_config(arch)
        model = TFEncoderDecoderModel(config)
        model.load_state_dict(deterministic_state_dict(schema_for(config), seed=1))
        _MODELS[arch] = model
    return _MODELS[arch]


def _inputs(config, batch=2):
    data = tiny_inputs(config, batch=batch)
    return data["input_ids"], data["attention_mask"]


@pytest.fixture(scope="module", params=ARCHS)
def ours(request):
    return _model(request.param)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """arch -> (ours, reference) with the same weights; the reference reads our saved folder."""
    transformers = pytest.importorskip("transformers")
    cache = {}

    def get(arch):
        if arch not in cache:
            model = _model(arch)
            folder = tmp_path_factory.mktemp(f"tf-gen-{arch}")
            model.save_pretrained(str(folder))
            cache[arch] = model, transformers.EncoderDecoderModel.from_pretrained(str(folder)).eval()
        return cache[arch]

    return get


@pytest.fixture(scope="module", params=ARCHS)
def pair(request, pairs):
    return pairs(request.param)


def _ref_generate(ref, ids, mask, **kw):
    import torch

    with torch.no_grad():
        out = ref.generate(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), use_cache=True, **kw)
    if hasattr(out, "sequences"):
        return out
    return out.numpy()


def _np(x):
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


def _assert_same_tokens(a, b):
    a, b = _np(a), _np(b)
    assert a.shape == b.shape, f"shape {a.shape} vs reference {b.shape}"
    assert np.array_equal(a, b), f"tokens differ:\nours\n{a}\nreference\n{b}"


def _assert_scores_close(a, b, tol=SCORE_TOL):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        x, y = _np(x), _np(y)
        assert np.array_equal(np.isinf(x), np.isinf(y))
        finite = np.isfinite(x)
        assert float(np.abs(x[finite] - y[finite]).max()) <= tol


# --- greedy and beam search vs the reference, compiled and eager ----------------------------------
@pytest.mark.oracle
def test_greedy_equals_reference_compiled_and_eager(pair):
    ours, ref = pair
    ids, mask = _inputs(ours.config)
    kw = dict(max_new_tokens=12, return_dict_in_generate=True, output_scores=True)
    a = ours.generate(ids, attention_mask=mask, **kw)
    b = _ref_generate(ref, ids, mask, **kw)
    _assert_same_tokens(a.sequences, b.sequences)
    _assert_scores_close(a.scores, b.scores)
    eager = ours.generate(ids, attention_mask=mask, use_xla=False, **kw)
    _assert_same_tokens(eager.sequences, a.sequences)
    _assert_scores_close(eager.scores, a.scores)


@pytest.mark.oracle
def test_beam_search_equals_reference_compiled_and_eager(pair):
    ours, ref = pair
    ids, mask = _inputs(ours.config)
    kw = dict(max_new_tokens=12, num_beams=3, num_return_sequences=2, length_penalty=0.7, no_repeat_ngram_size=2,
              return_dict_in_generate=True, output_scores=True)
    a = ours.generate(ids, attention_mask=mask, **kw)
    b = _ref_generate(ref, ids, mask, **kw)
    _assert_same_tokens(a.sequences, b.sequences)
    assert a.sequences.shape[0] == 2 * ids.shape[0]
    assert float(np.abs(_np(a.sequences_scores) - b.sequences_scores.numpy()).max()) <= SCORE_TOL
    _assert_scores_close(a.scores, b.scores)
    assert np.array_equal(_np(a.beam_indices), b.beam_indices.numpy())
    eager = ours.generate(ids, attention_mask=mask, use_xla=False, **kw)
    _assert_same_tokens(eager.sequences, a.sequences)
    assert float(np.abs(_np(eager.sequences_scores) - _np(a.sequences_scores)).max()) <= SCORE_TOL


@pytest.mark.oracle
@pytest.mark.parametrize("extra", [dict(length_penalty=1.5, early_stopping="never"),
                                   dict(length_penalty=1.0, early_stopping=True)], ids=["never", "early"])
def test_beam_early_stopping_equals_reference(pairs, extra):
    ours, ref = pairs("bert2bert")
    ids, mask = _inputs(ours.config)
    kw = dict(max_new_tokens=10, num_beams=3, num_return_sequences=2, return_dict_in_generate=True,
              output_scores=True, **extra)
    a = ours.generate(ids, attention_mask=mask, use_xla=False, **kw)
    b = _ref_generate(ref, ids, mask, **kw)
    _assert_same_tokens(a.sequences, b.sequences)
    assert float(np.abs(_np(a.sequences_scores) - b.sequences_scores.numpy()).max()) <= SCORE_TOL


# --- every processor: equal to the reference with it on, and it changes the output -------------------
def _processor_cases(plain):
    """(name, kwargs with the option, kwargs without it); tokens are chosen from the plain output so
    that each option bites on this model."""
    first, second = int(plain[0, 1]), int(plain[0, 2])
    base = dict(max_new_tokens=8)
    beam = dict(max_new_tokens=10, num_beams=3)
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
        ("beam_repetition_penalty", dict(beam, repetition_penalty=3.0), beam),
        ("beam_no_repeat_ngram", dict(beam, no_repeat_ngram_size=1), beam),
    ]


@pytest.mark.oracle
def test_each_processor_equals_reference_and_bites(pairs):
    """On bert2gpt2 (eager: one compile per option would cost more than the whole loop)."""
    ours, ref = pairs("bert2gpt2")
    ids, mask = _inputs(ours.config)
    plain_runs = {}
    plain = _np(ours.generate(ids, attention_mask=mask, max_new_tokens=8, use_xla=False))
    for name, with_option, without in _processor_cases(plain):
        a = _np(ours.generate(ids, attention_mask=mask, use_xla=False, **with_option))
        _assert_same_tokens(a, _ref_generate(ref, ids, mask, **with_option))
        key = repr(sorted(without.items()))
        if key not in plain_runs:
            plain_runs[key] = _np(ours.generate(ids, attention_mask=mask, use_xla=False, **without))
        other = plain_runs[key]
        assert a.shape != other.shape or not np.array_equal(a, other), f"{name} did not change the output"


@pytest.mark.oracle
def test_all_processors_compiled_equal_eager_and_reference(pairs):
    """Every processor at once, under XLA (n-gram blocking and bad words included)."""
    ours, ref = pairs("bert2gpt2")
    ids, mask = _inputs(ours.config)
    kw = dict(max_new_tokens=10, repetition_penalty=1.5, no_repeat_ngram_size=2, bad_words_ids=[[5], [7, 8]],
              min_new_tokens=4, forced_bos_token_id=11, forced_eos_token_id=3, num_beams=2)
    compiled = _np(ours.generate(ids, attention_mask=mask, **kw))
    _assert_same_tokens(compiled, _np(ours.generate(ids, attention_mask=mask, use_xla=False, **kw)))
    _assert_same_tokens(compiled, _ref_generate(ref, ids, mask, **kw))


# --- sampling ------------------------------------------------------------------------------------
@pytest.mark.oracle
def test_warpers_equal_the_reference_warpers():
    torch = pytest.importorskip("torch")
    generation = pytest.importorskip("transformers.generation.logits_process")
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(3, 99)).astype(np.float32) * 3
    ids = torch.zeros((3, 1), dtype=torch.long)
    cases = [
        (logits_process.temperature(tf.constant(scores), 0.7), generation.TemperatureLogitsWarper(0.7)),
        (logits_process.top_k(tf.constant(scores), 5), generation.TopKLogitsWarper(5)),
        (logits_process.top_p(tf.constant(scores), 0.6), generation.TopPLogitsWarper(0.6)),
    ]
    for ours, warper in cases:
        expected = warper(ids, torch.from_numpy(scores)).numpy()
        _assert_scores_close([ours], [expected])
        assert not np.array_equal(_np(ours), scores)


def test_sampling_is_reproducible_and_compiled_equals_eager():
    model = _model("bert2bert")
    ids, mask = _inputs(model.config)
    kw = dict(do_sample=True, max_new_tokens=10, attention_mask=mask, num_return_sequences=2)
    a = _np(model.generate(ids, seed=7, **kw))
    assert np.array_equal(a, _np(model.generate(ids, seed=7, **kw)))
    assert not np.array_equal(a, _np(model.generate(ids, seed=8, **kw)))
    assert np.array_equal(a, _np(model.generate(ids, seed=7, use_xla=False, **kw)))


def test_sampling_warpers_bite():
    """top_k=1 sampling is greedy search; temperature scales the recorded scores; top_p cuts the tail."""
    model = _model("bert2bert")
    ids, mask = _inputs(model.config)
    kw = dict(attention_mask=mask, max_new_tokens=6, use_xla=False)
    greedy = _np(model.generate(ids, **kw))
    _assert_same_tokens(model.generate(ids, do_sample=True, top_k=1, seed=3, **kw), greedy)
    scored = dict(kw, do_sample=True, top_k=0, seed=3, return_dict_in_generate=True, output_scores=True)
    plain = model.generate(ids, **scored)
    hot = model.generate(ids, temperature=0.5, **scored)
    np.testing.assert_allclose(_np(hot.scores[0]), 2 * _np(plain.scores[0]), rtol=1e-6)
    assert not np.isinf(_np(plain.scores[0])).any()
    assert np.isinf(_np(model.generate(ids, top_p=0.5, **scored).scores[0])).any()


# --- inputs: padding, encoder_outputs, compiled-function reuse -------------------------------------
@pytest.mark.parametrize("kw", [dict(max_new_tokens=8), dict(max_new_tokens=8, num_beams=3)], ids=["greedy", "beam"])
def test_padded_batch_rows_equal_single_rows(ours, kw):
    ids, mask = _inputs(ours.config)
    assert int(mask[1].sum()) < ids.shape[1], "tiny_inputs pads row 1"
    batch = _np(ours.generate(ids, attention_mask=mask, use_xla=False, **kw))
    for row in range(ids.shape[0]):
        n = int(mask[row].sum())
        single = _np(ours.generate(ids[row:row + 1, :n], attention_mask=mask[row:row + 1, :n], use_xla=False, **kw))[0]
        assert np.array_equal(batch[row, :single.shape[0]], single)
        # Past its own end a row holds only filler (pad for greedy, the reference's fill for beams).
        assert np.unique(batch[row, single.shape[0]:]).size <= 1


def test_encoder_outputs_are_reused(monkeypatch):
    model = _model("bert2gpt2")
    ids, mask = _inputs(model.config)
    kw = dict(attention_mask=mask, max_new_tokens=8, num_beams=2)
    expected = _np(model.generate(ids, use_xla=False, **kw))
    encoder_outputs = model.get_encoder()(input_ids=ids, attention_mask=mask)

    def fail(*args, **kwargs):
        raise AssertionError("the encoder ran although encoder_outputs were given")

    monkeypatch.setattr(model.encoder, "call", fail)
    for given in (encoder_outputs, (encoder_outputs.last_hidden_state,)):
        _assert_same_tokens(model.generate(encoder_outputs=given, **kw), expected)  # compiled
    _assert_same_tokens(model.generate(encoder_outputs=encoder_outputs.last_hidden_state, use_xla=False, **kw),
                        expected)


def test_second_call_with_the_same_shapes_does_not_retrace():
    model = _model("bert2gpt2")
    ids, mask = _inputs(model.config)
    kw = dict(attention_mask=mask, max_new_tokens=12, return_dict_in_generate=True, output_scores=True)
    model.generate(ids, **kw)  # compiled already by the oracle test, or here
    traces, functions = model._generate_traces, len(model._generate_functions)
    other_ids = (ids + 1) % model.config.encoder.vocab_size
    model.generate(other_ids, **kw)
    model.generate(ids, **kw)
    assert (model._generate_traces, len(model._generate_functions)) == (traces, functions)


@pytest.mark.parametrize("arch", ARCHS)
def test_the_xla_trace_is_lean(monkeypatch, arch):
    """What generate traces for XLA: no Keras ``__call__`` (its Python work is about a third of the
    trace of a base model) and no transposes in the loop body (the step's one position lets heads be
    split and merged by a reshape, and the cache is kept in the attention layout). The tokens are
    eager's (the compiled-vs-eager tests above) whatever the graph."""
    import dataclasses

    import keras

    from encdec.generation_utils import resolve_generation_settings

    model = _model(arch)
    ids, mask = _inputs(model.config)
    settings, _ = resolve_generation_settings(model.config, model.generation_config,
                                              vocab_size=model.config.decoder.vocab_size, max_new_tokens=4)
    keras_calls = []
    original = keras.layers.Layer.__call__

    def counting_call(layer, *args, **kwargs):
        keras_calls.append(layer.name)
        return original(layer, *args, **kwargs)

    monkeypatch.setattr(keras.layers.Layer, "__call__", counting_call)
    signature = ("ids", tuple(ids.shape), "int32", (), dataclasses.replace(settings, return_dict_in_generate=False))
    function = model._generate_function(signature, use_xla=True)
    graph = function.get_concrete_function(tf.constant(ids, tf.int32), tf.constant(mask, tf.int32), {},
                                           tf.fill((ids.shape[0], 1), model.config.decoder_start_token_id),
                                           tf.constant([0, 0], tf.int32)).graph
    assert keras_calls == []
    bodies = [f for f in graph.as_graph_def().library.function if "while_body" in f.signature.name]
    assert len(bodies) == 1
    body_ops = [node.op for node in bodies[0].node_def]
    assert body_ops.count("BatchMatMulV2") > 0 and "Transpose" not in body_ops


def test_lengths_count_the_start_token():
    model = _model("bert2bert")
    ids, mask = _inputs(model.config)
    out = _np(model.generate(ids, attention_mask=mask, max_new_tokens=5, eos_token_id=None, use_xla=False))
    assert out.shape == (2, 6)
    assert bool((out[:, 0] == model.config.decoder_start_token_id).all())


# --- errors come from the shared resolution ---------------------------------------------------------
@pytest.mark.parametrize("kw, match", [
    (dict(num_beams=2, num_return_sequences=3), "num_return_sequences=3 cannot exceed num_beams=2"),
    (dict(num_return_sequences=2), "greedy search returns one sequence"),
    (dict(forced_bos_token_id=500), "forced_bos_token_id contains token id 500"),
    (dict(max_new_tokens=1000), "max_position_embeddings=64"),
    (dict(foo=1), "neither generation settings nor encoder inputs"),
], ids=["nrs>beams", "greedy-nrs", "oov", "too-long", "unknown"])
def test_bad_settings_raise(kw, match):
    model = _model("bert2bert")
    ids, mask = _inputs(model.config)
    with pytest.raises((ValueError, NotImplementedError), match=match):
        model.generate(ids, attention_mask=mask, **kw)


def test_adapter_generate_returns_numpy():
    from tests.adapters.tf import Adapter

    model = _model("bert2gpt2")
    ids, mask = _inputs(model.config)
    out = Adapter().generate(model, {"input_ids": ids, "attention_mask": mask}, max_new_tokens=12,
                             return_dict_in_generate=True, output_scores=True)
    assert isinstance(out, np.ndarray) and out.dtype == np.int64
    expected = model.generate(ids, attention_mask=mask, max_new_tokens=12, return_dict_in_generate=True,
                              output_scores=True).sequences
    _assert_same_tokens(out, expected)
