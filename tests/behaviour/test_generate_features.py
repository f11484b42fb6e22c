"""The generate features of the reference beyond search and sampling, in every framework where the
concept exists, against the oracle (transformers 4.57.6's PyTorch ``generate`` on the same folder):
a decoder prompt (``decoder_input_ids=``), beam sampling, ``typical_p``, ``stop_strings``,
``max_time``, ``streamer=``, group beam search (refused, as the reference without the Hub), and
seeded sampling in TensorFlow and Flax (same seed, same tokens; the distribution of the first
token equals the reference's warped distribution).

Each framework's model is loaded once per module from one folder; the tests do not change it.
"""

import warnings

import numpy as np
import pytest

from adapters import FRAMEWORKS, load_adapter
from encdec.naming.schema import schema_for
from encdec.testing import deterministic_state_dict, tiny_config, tiny_inputs

ARCH = "bert2gpt2"
# TensorFlow runs generate eagerly here (the same function as compiled, tests/tf show equal tokens);
# the tests named *_compiled run it under XLA.
EXTRA = {"tf": dict(use_xla=False)}

pytestmark = pytest.mark.oracle


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    pytest.importorskip("torch")  # the folder is written by the PyTorch model
    from encdec_pt import EncoderDecoderModel

    config = tiny_config(ARCH)
    model = EncoderDecoderModel(config)
    model.load_canonical(deterministic_state_dict(schema_for(config), seed=1))
    path = tmp_path_factory.mktemp("generate-features")
    model.save_pretrained(str(path))
    return str(path)


@pytest.fixture(scope="module")
def inputs(folder):
    data = tiny_inputs(tiny_config(ARCH), batch=2)
    return data["input_ids"], data["attention_mask"]


_MODELS = {}


@pytest.fixture(scope="module")
def models(folder):
    """framework -> our model, loaded on first use; "ref" -> the oracle's."""
    def get(framework):
        if framework not in _MODELS:
            if framework == "ref":
                transformers = pytest.importorskip("transformers")
                _MODELS[framework] = transformers.EncoderDecoderModel.from_pretrained(folder).eval()
            else:
                _MODELS[framework] = load_adapter(framework).load(folder)
        return _MODELS[framework]

    yield get
    _MODELS.clear()


def _as_framework(framework, array):
    if array is None:
        return None
    if framework == "pt":
        import torch

        return torch.from_numpy(np.asarray(array))
    if framework == "tf":
        import tensorflow as tf

        return tf.constant(array)
    return np.asarray(array)


def _generate(framework, model, ids, mask, extra=None, **kw):
    """``model.generate(ids, attention_mask=mask, **kw)`` on the framework's arrays (array kwargs converted)."""
    kw = {k: _as_framework(framework, v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.generate(_as_framework(framework, ids), attention_mask=_as_framework(framework, mask),
                              **(EXTRA.get(framework, {}) if extra is None else extra), **kw)


def _ref_generate(ref, ids, mask, **kw):
    import torch

    kw = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ref.generate(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), **kw)


def _np(value):
    if hasattr(value, "detach"):
        value = value.detach().cpu()
    return np.asarray(value)


def _sequences(out):
    return _np(getattr(out, "sequences", out)).astype(np.int64)


# --- 1. a decoder prompt: decoder_input_ids= ------------------------------------------------------------
# Rows of the prompt: without the start token (it is prepended, as the reference does), and with it.
PROMPTS = {
    "no-start": np.array([[11, 12, 13], [21, 22, 23]], dtype=np.int64),
    "with-start": None,  # filled from the config's start token
}


def _prompt(kind, config):
    if kind == "with-start":
        start = config.decoder_start_token_id
        return np.array([[start, 31, 32], [start, 41, 42]], dtype=np.int64)
    return PROMPTS[kind]


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("kind", sorted(PROMPTS))
@pytest.mark.parametrize("search", [dict(), dict(num_beams=3, num_return_sequences=2)], ids=["greedy", "beam"])
def test_decoder_prompt_continues_like_reference(framework, models, inputs, kind, search):
    ids, mask = inputs
    ours, ref = models(framework), models("ref")
    prompt = _prompt(kind, ours.config)
    kw = dict(decoder_input_ids=prompt, max_new_tokens=5, min_new_tokens=2, repetition_penalty=1.3,
              return_dict_in_generate=True, output_scores=True, **search)
    got = _generate(framework, ours, ids, mask, **kw)
    expected = _ref_generate(ref, ids, mask, **kw)
    np.testing.assert_array_equal(_sequences(got), _sequences(expected))
    n = _sequences(got).shape[0] // prompt.shape[0]
    start = 0 if kind == "with-start" else 1
    np.testing.assert_array_equal(_sequences(got)[:, start:start + prompt.shape[1]], np.repeat(prompt, n, axis=0))
    assert len(got.scores) == len(expected.scores)  # one per generated token, the prompt's not included
    for a, b in zip(got.scores, expected.scores):
        np.testing.assert_allclose(_np(a), b.numpy(), atol=1e-4)
    if search:
        np.testing.assert_allclose(_np(got.sequences_scores), expected.sequences_scores.numpy(), atol=1e-5)


def test_decoder_prompt_compiled_tf_equals_reference(models, inputs):
    ids, mask = inputs
    prompt = _prompt("no-start", None)
    for search in (dict(), dict(num_beams=2)):
        got = _generate("tf", models("tf"), ids, mask, extra={}, decoder_input_ids=prompt, max_new_tokens=4, **search)
        expected = _ref_generate(models("ref"), ids, mask, decoder_input_ids=prompt, max_new_tokens=4, **search)
        np.testing.assert_array_equal(_sequences(got), _sequences(expected))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_decoder_prompt_errors_name_the_problem(framework, models, inputs):
    ids, mask = inputs
    ours = models(framework)
    with pytest.raises(ValueError, match="decoder_input_ids has 1 rows"):
        _generate(framework, ours, ids, mask, decoder_input_ids=np.array([[5, 6]]), max_new_tokens=2)
    with pytest.raises(ValueError, match="decoder_input_ids contains token id 500"):
        _generate(framework, ours, ids, mask, decoder_input_ids=np.array([[5, 500], [5, 6]]), max_new_tokens=2)
    with pytest.raises(ValueError, match="decoder prompt of 4 tokens"):
        _generate(framework, ours, ids, mask, decoder_input_ids=_prompt("no-start", None), max_length=4)


# --- 2. beam sampling: num_beams > 1 with do_sample ------------------------------------------------------
BEAM_SAMPLE = dict(do_sample=True, num_beams=3, num_return_sequences=2, max_new_tokens=5, top_k=7, top_p=0.9,
                   temperature=1.5)


def test_beam_sampling_pt_equals_reference_with_the_same_seed(models, inputs):
    import torch

    ids, mask = inputs
    for seed in (0, 1, 2):
        torch.manual_seed(seed)
        expected = _ref_generate(models("ref"), ids, mask, return_dict_in_generate=True, output_scores=True,
                                 **BEAM_SAMPLE)
        got = _generate("pt", models("pt"), ids, mask, seed=seed, return_dict_in_generate=True, output_scores=True,
                        **BEAM_SAMPLE)
        np.testing.assert_array_equal(_sequences(got), _sequences(expected))
        np.testing.assert_allclose(_np(got.sequences_scores), expected.sequences_scores.numpy(), atol=1e-5)


def _seed(framework, seed):
    if framework == "flax":
        import jax

        return dict(prng_key=jax.random.PRNGKey(seed))
    return dict(seed=seed)


@pytest.mark.parametrize("framework", ["tf", "flax"])
def test_beam_sampling_is_reproducible_from_the_seed(framework, models, inputs):
    """TensorFlow's and Flax's random streams are not torch's: the same seed gives the same tokens,
    another seed other tokens, and every first token is one the reference's warpers allow. (A flatter
    distribution than BEAM_SAMPLE's: with it the tiny model's beams end alike for most seeds.)"""
    ids, mask = inputs
    settings = dict(BEAM_SAMPLE, top_k=20, top_p=1.0, temperature=3.0)
    ours = models(framework)
    runs = {seed: _sequences(_generate(framework, ours, ids, mask, **_seed(framework, seed), **settings))
            for seed in (0, 1, 2)}
    again = _sequences(_generate(framework, ours, ids, mask, **_seed(framework, 0), **settings))
    np.testing.assert_array_equal(runs[0], again)
    assert not (np.array_equal(runs[0], runs[1]) and np.array_equal(runs[0], runs[2]))
    expected = _ref_generate(models("ref"), ids, mask, max_new_tokens=1, output_scores=True,
                             return_dict_in_generate=True, **{k: v for k, v in settings.items()
                                                              if k != "max_new_tokens"})
    allowed = np.isfinite(expected.scores[0].numpy())  # (B * num_beams, V): every beam starts alike
    for seq in runs.values():
        for row, token in enumerate(seq[:, 1]):
            assert allowed[(row // 2) * 3, token], (row, token)


# --- 3. typical_p; group beam search ---------------------------------------------------------------------
@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("search", [dict(), dict(num_beams=2)], ids=["sample", "beam-sample"])
def test_typical_p_warps_like_reference(framework, models, inputs, search):
    """The warped scores of the first step (sampling: no token drawn yet, so every framework sees the
    same logits) equal the reference's, -inf pattern included; PyTorch's tokens equal the reference's
    with the same seed."""
    import torch

    ids, mask = inputs
    kw = dict(do_sample=True, typical_p=0.6, temperature=0.7, top_k=0, output_scores=True,
              return_dict_in_generate=True, **search)
    torch.manual_seed(3)
    expected = _ref_generate(models("ref"), ids, mask, max_new_tokens=4, **kw)
    got = _generate(framework, models(framework), ids, mask, max_new_tokens=4,
                    **(dict(seed=3) if framework == "pt" else {}), **kw)
    first, reference_first = _np(got.scores[0]), expected.scores[0].numpy()
    np.testing.assert_array_equal(np.isfinite(first), np.isfinite(reference_first))
    assert 1 < np.isfinite(first).sum(axis=1).min() < first.shape[1] // 2  # the warper did cut
    np.testing.assert_allclose(first[np.isfinite(first)], reference_first[np.isfinite(first)], atol=1e-4)
    if framework == "pt":
        np.testing.assert_array_equal(_sequences(got), _sequences(expected))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_group_beam_search_is_refused_as_the_reference_refuses_it(framework, models, inputs):
    """transformers 4.57.6 runs group beam search only from a Hub repository (custom_generate with
    trust_remote_code=True); without that it raises. So do we, saying where it went."""
    ids, mask = inputs
    with pytest.raises(ValueError, match="trust_remote_code"):
        _ref_generate(models("ref"), ids, mask, num_beams=4, num_beam_groups=2, diversity_penalty=0.5)
    with pytest.raises(NotImplementedError, match="group beam search.*transformers-community/group-beam-search"):
        _generate(framework, models(framework), ids, mask, num_beams=4, num_beam_groups=2, diversity_penalty=0.5)


# --- streamer= and max_time: a host call at every step ---------------------------------------------------
class RecordingStreamer:
    """What ``put`` and ``end`` receive, in order (the reference's BaseStreamer interface)."""

    def __init__(self):
        self.calls = []

    def put(self, value):
        self.calls.append(("put", np.asarray(value).tolist()))

    def end(self):
        self.calls.append(("end",))


@pytest.mark.parametrize("prompt", [False, True], ids=["start", "prompt"])
def test_streamer_gets_what_the_reference_gives_it(models, inputs, prompt):
    ids, mask = inputs
    kw = dict(max_new_tokens=4, **(dict(decoder_input_ids=_prompt("no-start", None)) if prompt else {}))
    ours, theirs = RecordingStreamer(), RecordingStreamer()
    got = _generate("pt", models("pt"), ids, mask, streamer=ours, **kw)
    expected = _ref_generate(models("ref"), ids, mask, streamer=theirs, **kw)
    np.testing.assert_array_equal(_sequences(got), _sequences(expected))
    assert ours.calls == theirs.calls
    assert ours.calls[-1] == ("end",) and len(ours.calls) == 2 + _sequences(got).shape[1] - (4 if prompt else 1)


@pytest.mark.parametrize("search", [dict(), dict(num_beams=2)], ids=["greedy", "beam"])
def test_max_time_stops_like_reference(models, inputs, search):
    """max_time=0: the time is up after the first step, in the reference and here."""
    ids, mask = inputs
    got = _generate("pt", models("pt"), ids, mask, max_new_tokens=6, max_time=0.0, **search)
    expected = _ref_generate(models("ref"), ids, mask, max_new_tokens=6, max_time=0.0, **search)
    np.testing.assert_array_equal(_sequences(got), _sequences(expected))
    assert _sequences(got).shape[1] == 2
    assert _sequences(_generate("pt", models("pt"), ids, mask, max_new_tokens=6, max_time=60.0, **search)).shape[1] == 7


@pytest.mark.parametrize("framework", ["tf", "flax"])
def test_host_call_features_are_refused_by_the_compiled_loops(framework, models, inputs):
    ids, mask = inputs
    with pytest.raises(NotImplementedError, match="streamer need a host call at every decoding step"):
        _generate(framework, models(framework), ids, mask, streamer=RecordingStreamer(), max_new_tokens=2)
    with pytest.raises(NotImplementedError, match="max_time need a host call"):
        _generate(framework, models(framework), ids, mask, max_time=1.0, max_new_tokens=2)


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_streamer_with_beams_is_refused_as_in_the_reference(framework, models, inputs):
    ids, mask = inputs
    with pytest.raises(ValueError, match="`streamer` cannot be used with beam search"):
        _ref_generate(models("ref"), ids, mask, streamer=RecordingStreamer(), num_beams=2, max_new_tokens=2)
    with pytest.raises(ValueError, match="`streamer` cannot be used with beam search"):
        _generate(framework, models(framework), ids, mask, streamer=RecordingStreamer(), num_beams=2, max_new_tokens=2)


# --- 4. sampling in TensorFlow and Flax: reproducible from the seed, distributed as the reference ---------
DRAWS = 2000


@pytest.mark.parametrize("framework", ["tf", "flax"])
@pytest.mark.parametrize("warper", [dict(top_k=5), dict(top_k=0, top_p=0.7)], ids=["top_k", "top_p"])
def test_sampling_is_seeded_and_distributed_as_the_reference(framework, models, inputs, warper):
    """2000 draws of the first token (one input, num_return_sequences=2000, one call): their support is
    the set the reference's warpers allow and each frequency is within 5 binomial standard deviations
    of the reference's probability; the same seed gives the same tokens, another seed others."""
    ids, mask = inputs
    ids, mask = ids[:1], mask[:1]
    kw = dict(do_sample=True, max_new_tokens=1, temperature=1.3, **warper)
    expected = _ref_generate(models("ref"), ids, mask, output_scores=True, return_dict_in_generate=True, **kw)
    probs = np.exp(expected.scores[0].double().log_softmax(-1).numpy()[0])  # (V,), 0 where warped out
    ours = models(framework)
    draws = _sequences(_generate(framework, ours, ids, mask, num_return_sequences=DRAWS, **_seed(framework, 0), **kw))
    tokens = draws[:, 1]
    assert set(np.unique(tokens)) == set(np.flatnonzero(probs > 0))  # every allowed token drawn, no other
    counts = np.bincount(tokens, minlength=probs.size) / DRAWS
    tolerance = 5 * np.sqrt(probs * (1 - probs) / DRAWS) + 1e-9
    assert (np.abs(counts - probs) <= tolerance).all(), np.c_[counts, probs][probs > 0]
    same = _sequences(_generate(framework, ours, ids, mask, num_return_sequences=DRAWS, **_seed(framework, 0), **kw))
    other = _sequences(_generate(framework, ours, ids, mask, num_return_sequences=DRAWS, **_seed(framework, 1), **kw))
    np.testing.assert_array_equal(draws, same)
    assert (draws != other).any()
