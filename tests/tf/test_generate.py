"""What TensorFlow's ``TFEncoderDecoderModel.generate`` (one loop function, run XLA-compiled or
eagerly) has of its own: every processor at once compiled equals eager and the reference, the
warper functions equal the reference's warpers, a second call with the same shapes does not retrace,
and the XLA trace is lean. The behaviours every framework shares (greedy and beam search compiled and
eager against the reference, each processor, sampling, padding, ``encoder_outputs=``, errors) are
tests/behaviour/test_generate_shared.py.
"""

import numpy as np
import pytest
import tensorflow as tf

from encdec.naming.schema import schema_for
from encdec.testing import TOLERANCE, deterministic_state_dict, tiny_config, tiny_inputs
from encdec_tf import TFEncoderDecoderModel
from encdec_tf.generation import logits_process

SCORE_TOL = TOLERANCE["float32"]["abs"]
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


def _ref_generate(ref, ids, mask, **kw):
    import torch

    with torch.no_grad():
        out = ref.generate(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), use_cache=True, **kw)
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


# --- every processor at once, compiled and eager --------------------------------------------------
ALL_PROCESSORS = dict(max_new_tokens=10, repetition_penalty=1.5, no_repeat_ngram_size=2, bad_words_ids=[[5], [7, 8]],
                      min_new_tokens=4, forced_bos_token_id=11, forced_eos_token_id=3, num_beams=2)


@pytest.mark.oracle
def test_all_processors_compiled_equal_eager_and_reference(pairs):
    """Every processor at once, under XLA (n-gram blocking and bad words included)."""
    ours, ref = pairs("bert2gpt2")
    ids, mask = _inputs(ours.config)
    kw = ALL_PROCESSORS
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


# --- compiled-function reuse and the XLA trace -------------------------------------------------------
def test_second_call_with_the_same_shapes_does_not_retrace():
    model = _model("bert2gpt2")
    ids, mask = _inputs(model.config)
    kw = dict(ALL_PROCESSORS, attention_mask=mask)
    model.generate(ids, **kw)  # compiled already by test_all_processors_compiled_equal_eager_and_reference, or here
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
