"""Generate's search, processors, sampling and inputs, once for every framework, against the oracle
(transformers 4.57.6's PyTorch ``generate`` on the folder each framework's model saved; tiny
bert2bert / bert2gpt2 on the deterministic weights).

Greedy and beam search give the reference's tokens, scores, sequence scores and beam indices in
every way a framework runs its loop (``Adapter.GENERATE_MODES``: TensorFlow compiled and eager).
Every logits processor equals the reference with it on and changes the output (so a missing
processor fails); sampling warpers give the reference's first-step scores (PyTorch: every token,
its draws follow the reference's seed). Padded rows, ``encoder_outputs=``, lengths, errors and the
adapter's numpy output are checked in every framework too.

What is specific to one framework stays in tests/pt, tests/tf, tests/flax: PyTorch's prepacked
oneDNN weights, static cache, step capture and inference mode; TensorFlow's compiled-vs-eager run
of every processor at once, XLA trace and retracing; Flax's retracing, params reuse and prepacked
kernels. Each setting and shape is one XLA compile in TensorFlow's compiled mode and in Flax, so
the tests share settings (``GREEDY``, ``BEAMS``, ``SAMPLE``) where they can, TensorFlow runs
eagerly (``Adapter.CHEAP_MODE``) where a test is not about compiling, and the CI runs the cases the
per-framework files ran before this module; the others are marked slow (``--runslow``).
"""

import numpy as np
import pytest

from adapters import built_cache, quick_generate_compiles, reference_model
from encdec.testing import TOLERANCE, pair_params, tiny_inputs

TOL = TOLERANCE["float32"]["abs"]
PAIRS = ("bert2bert", "bert2gpt2")
GREEDY = dict(max_new_tokens=12, return_dict_in_generate=True, output_scores=True)
BEAM = dict(max_new_tokens=12, num_beams=3, num_return_sequences=2, return_dict_in_generate=True, output_scores=True)
# name -> (extra beam settings, run in every mode): the early-stopping variants run in the cheap mode
# only, the compiled-vs-eager check is the first one's.
BEAMS = {
    "lp0.7-ngram2": (dict(length_penalty=0.7, no_repeat_ngram_size=2), True),
    "never": (dict(length_penalty=1.5, early_stopping="never"), False),
    "early": (dict(length_penalty=1.0, early_stopping=True), False),
}
SAMPLE = dict(do_sample=True, max_new_tokens=10, top_k=0, num_return_sequences=2, return_dict_in_generate=True,
              output_scores=True)
WARPERS = {"temperature": dict(temperature=0.7), "top_k": dict(top_k=5), "top_p": dict(top_p=0.6),
           "all": dict(temperature=1.3, top_k=10, top_p=0.9)}
NEUTRAL = dict(temperature=1.0, top_k=0, top_p=1.0)  # each warper's value that leaves the scores alone


def cases(*leading, ci, pairs=PAIRS):
    """``pair_params`` over ``PAIRS``: a pair outside ``ci`` is slow. The CI runs the cases the
    per-framework files ran before this module."""
    return pair_params(*leading, pairs=pairs, ci=ci)


@pytest.fixture(scope="module", autouse=True)
def _quick_compiles():
    with quick_generate_compiles():
        yield


@pytest.fixture(scope="module")
def built():
    return built_cache()


@pytest.fixture(scope="module")
def reference(built, tmp_path_factory):
    """(framework, pair) -> the oracle reading the folder that framework's model saved."""
    cache = {}

    def get(framework, pair):
        if (framework, pair) not in cache:
            b = built(framework, pair)
            folder = tmp_path_factory.mktemp(f"generate-{framework}-{pair}")
            b.adapter.save(b.model, folder)
            cache[(framework, pair)] = reference_model(folder)
        return cache[(framework, pair)]

    return get


def _inputs(b, batch=2):
    data = tiny_inputs(b.config, batch=batch)  # row 1 of 2 is padded
    return {"input_ids": data["input_ids"], "attention_mask": data["attention_mask"]}


def _ref_generate(ref, inputs, seed=None, **kw):
    """The reference's generate on numpy inputs: numpy sequences, or a dict as ``Adapter.generate_output``."""
    import torch

    from adapters import generate_output_arrays

    if seed is not None:
        torch.manual_seed(seed)
    with torch.no_grad():
        out = ref.generate(torch.from_numpy(inputs["input_ids"]),
                           attention_mask=torch.from_numpy(inputs["attention_mask"]), use_cache=True, **kw)
    if hasattr(out, "sequences"):
        return generate_output_arrays(out, lambda t: t.numpy())
    return out.numpy()


def _cheap(b):
    return b.adapter.GENERATE_MODES[b.adapter.CHEAP_MODE]


def _differs(a, b) -> bool:
    return a.shape != b.shape or not np.array_equal(a, b)


def _assert_same_tokens(a, b, what="tokens"):
    assert a.shape == b.shape, f"{what}: shape {a.shape} vs {b.shape}"
    assert np.array_equal(a, b), f"{what} differ:\n{a}\nvs\n{b}"


def _assert_scores_close(a, b, what="scores"):
    """Per step: the same -inf pattern, finite values within the tolerance table's ``abs``."""
    assert len(a) == len(b), f"{what}: {len(a)} steps vs {len(b)}"
    for step, (x, y) in enumerate(zip(a, b)):
        assert x.shape == y.shape, f"{what}[{step}]: shape {x.shape} vs {y.shape}"
        assert np.array_equal(np.isinf(x), np.isinf(y)), f"{what}[{step}]: -inf patterns differ"
        finite = np.isfinite(x)
        diff = float(np.abs(x[finite] - y[finite]).max()) if finite.any() else 0.0
        assert diff <= TOL, f"{what}[{step}]: max abs diff {diff:.3g} > {TOL}"


def _assert_same_output(got, want, what="output"):
    """Sequences equal; scores, sequences_scores close; beam indices equal (where ``want`` has them)."""
    _assert_same_tokens(got["sequences"], want["sequences"], f"{what} sequences")
    if "scores" in want:
        _assert_scores_close(got["scores"], want["scores"], f"{what} scores")
    if "sequences_scores" in want:
        _assert_scores_close([got["sequences_scores"]], [want["sequences_scores"]], f"{what} sequences_scores")
    if "beam_indices" in want:
        _assert_same_tokens(got["beam_indices"], want["beam_indices"].astype(got["beam_indices"].dtype),
                            f"{what} beam_indices")


def _every_mode_equals(b, inputs, want, modes, **kw):
    """Each mode's output equals ``want`` (the reference's) and the first mode's; returns the first."""
    first = None
    for mode in modes:
        got = b.adapter.generate_output(b.model, inputs, **b.adapter.GENERATE_MODES[mode], **kw)
        _assert_same_output(got, want, f"{b.framework} {mode}")
        if first is not None:
            _assert_same_output(got, first, f"{b.framework} {mode} vs {modes[0]}")
        first = first or got
    return first


# --- greedy and beam search ---------------------------------------------------------------------------------
@pytest.mark.oracle
@pytest.mark.parametrize("framework,batch,pair", (
    cases(("pt",), (1, 2), ci=PAIRS)  # PyTorch packs the decoder's weights for one row: a case of its own
    + cases(("tf", "flax"), (2,), ci=PAIRS) + cases(("tf", "flax"), (1,), ci=())))
def test_greedy_equals_reference(built, reference, framework, batch, pair):
    b = built(framework, pair)
    inputs = _inputs(b, batch)
    want = _ref_generate(reference(framework, pair), inputs, **GREEDY)
    _every_mode_equals(b, inputs, want, list(b.adapter.GENERATE_MODES), **GREEDY)


@pytest.mark.oracle
@pytest.mark.parametrize("framework,search,pair", (
    cases(("pt",), tuple(BEAMS), ci=PAIRS) + cases(("tf", "flax"), ("lp0.7-ngram2",), ci=PAIRS)
    + cases(("tf", "flax"), ("never", "early"), ci=("bert2bert",))))
def test_beam_search_equals_reference(built, reference, framework, search, pair):
    """3 beams, 2 returned: sequences, sequences_scores, every step's scores and the beam indices."""
    b, ref = built(framework, pair), reference(framework, pair)
    inputs = _inputs(b)
    extra, all_modes = BEAMS[search]
    kw = dict(BEAM, **extra)
    want = _ref_generate(ref, inputs, **kw)
    modes = list(b.adapter.GENERATE_MODES) if all_modes else [b.adapter.CHEAP_MODE]
    got = _every_mode_equals(b, inputs, want, modes, **kw)
    assert got["sequences"].shape[0] == 2 * inputs["input_ids"].shape[0]
    if extra.get("no_repeat_ngram_size"):
        without = _ref_generate(ref, inputs, **dict(kw, no_repeat_ngram_size=0))
        assert _differs(without["sequences"], want["sequences"]), "no_repeat_ngram_size does not bite"


@pytest.mark.oracle
@pytest.mark.parametrize("framework,pair", cases(("pt",), ci=PAIRS) + cases(("tf", "flax"), ci=()))
def test_several_eos_ids_equal_reference(built, reference, framework, pair):
    """A list of eos ids (beam search then keeps (1 + n_eos) * num_beams candidates per step)."""
    b, ref = built(framework, pair), reference(framework, pair)
    inputs = _inputs(b)
    plain = _ref_generate(ref, inputs, max_new_tokens=10)
    eos = sorted({3, int(plain[0, 3]), int(plain[1, 2])})
    for search in (dict(), dict(num_beams=3, num_return_sequences=2, length_penalty=0.5)):
        kw = dict(search, max_new_tokens=10, eos_token_id=eos, return_dict_in_generate=True, output_scores=True)
        want = _ref_generate(ref, inputs, **kw)
        got = b.adapter.generate_output(b.model, inputs, **_cheap(b), **kw)
        _assert_same_output(got, want)
        if not search:
            # Row 0 now ends at its token 3 and is padded after it.
            assert (got["sequences"][0, 4:] == b.config.pad_token_id).all()
            assert not (plain[0, 4:] == b.config.pad_token_id).all()


# --- every processor: equal to the reference with it on, and it changes the output ---------------------------
def _processor_case(name, ref, inputs):
    """(settings, what must bite) for a case of PROCESSOR_CASES. Tokens are chosen from the reference's
    plain output so that each option bites on this model; a bite is an entry of the settings, or
    (``bad_words_ids``, i) for one banned sequence of several."""
    plain = _ref_generate(ref, inputs, max_new_tokens=10)
    first, second = int(plain[0, 1]), int(plain[0, 2])
    base, beam = dict(max_new_tokens=10), dict(max_new_tokens=10, num_beams=3)
    singles = {
        "repetition_penalty": dict(base, repetition_penalty=3.0),
        "no_repeat_ngram_size": dict(base, no_repeat_ngram_size=1),
        "bad_words_ids": dict(base, bad_words_ids=[[first], [first, second]]),
        "bad_words_ids_multi": dict(base, bad_words_ids=[[first, second]]),
        # eos := a token the plain run emits at step 2; min_new_tokens forbids stopping there.
        "min_new_tokens": dict(base, eos_token_id=second, min_new_tokens=6),
        "min_length": dict(base, eos_token_id=second, min_length=7),
        "forced_bos_token_id": dict(base, forced_bos_token_id=(first + 1) % 99),
        "forced_eos_token_id": dict(base, forced_eos_token_id=(second + 1) % 99),
        "beam_repetition_penalty": dict(beam, repetition_penalty=3.0),
        "beam_no_repeat_ngram": dict(beam, no_repeat_ngram_size=1),
    }
    if name in singles:
        settings = singles[name]
        option = {"bad_words_ids_multi": "bad_words_ids", "beam_repetition_penalty": "repetition_penalty",
                  "beam_no_repeat_ngram": "no_repeat_ngram_size"}.get(name, name)
        return settings, [option]
    if name == "beam_group":  # n-gram blocking under beam search: test_beam_search_equals_reference
        return dict(beam, repetition_penalty=3.0, forced_bos_token_id=(first + 1) % 99), [
            "repetition_penalty", "forced_bos_token_id"]
    # greedy_group(_min_length): several processors in one run (one compile in Flax), min_length=1+N
    # standing for min_new_tokens=N; the second banned sequence is one the group would emit.
    settings = dict(base, repetition_penalty=1.5, bad_words_ids=[[first]], eos_token_id=second, min_new_tokens=5,
                    forced_eos_token_id=(second + 1) % 99)
    out = _ref_generate(ref, inputs, **settings)
    settings["bad_words_ids"] = [[first], [int(out[1, 2]), int(out[1, 3])]]
    if name == "greedy_group_min_length":
        del settings["min_new_tokens"]
        settings["min_length"] = 6
    length = "min_length" if "min_length" in settings else "min_new_tokens"
    return settings, ["repetition_penalty", length, "forced_eos_token_id", ("bad_words_ids", 0), ("bad_words_ids", 1)]


SINGLES = ("repetition_penalty", "no_repeat_ngram_size", "bad_words_ids", "bad_words_ids_multi", "min_new_tokens",
           "min_length", "forced_bos_token_id", "forced_eos_token_id", "beam_repetition_penalty",
           "beam_no_repeat_ngram")
GROUPS = ("greedy_group", "greedy_group_min_length", "beam_group")


def _without(settings, bite):
    if isinstance(bite, tuple):
        key, index = bite
        return dict(settings, **{key: [seq for i, seq in enumerate(settings[key]) if i != index]})
    return {k: v for k, v in settings.items() if k != bite}


@pytest.mark.oracle
@pytest.mark.parametrize("framework,case,pair", (
    cases(("pt",), SINGLES, ci=PAIRS)
    + cases(("tf",), SINGLES, ci=("bert2gpt2",))  # eagerly: one compile per case would cost more than the loop
    + cases(("flax",), SINGLES, ci=())
    # The groups' tokens are chosen so that each processor bites on bert2bert (on bert2gpt2 min_new_tokens
    # does not); one compile per case in Flax: the groups are its CI cases.
    + cases(("pt", "flax"), GROUPS, ci=("bert2bert",), pairs=("bert2bert",))
    + cases(("tf",), GROUPS, ci=(), pairs=("bert2bert",))))
def test_processors_equal_reference_and_each_bites(built, reference, framework, case, pair):
    b, ref = built(framework, pair), reference(framework, pair)
    inputs = _inputs(b)
    settings, bites = _processor_case(case, ref, inputs)
    kw = dict(settings, return_dict_in_generate=True, output_scores=True)
    want = _ref_generate(ref, inputs, **kw)
    got = b.adapter.generate_output(b.model, inputs, **_cheap(b), **kw)
    if "num_beams" in settings:
        # Tokens only: with repetition_penalty=3.0 the beams' log-probabilities reach magnitudes where
        # float32 rounding differs by about the `abs` entry (Flax: 1.1e-5); test_beam_search_equals_reference
        # holds beam scores to it.
        want = {"sequences": want["sequences"]}
    _assert_same_output(got, want)
    for bite in bites:
        without = _ref_generate(ref, inputs, **_without(settings, bite))
        assert _differs(without, want["sequences"]), f"{bite} does not change the output"


# --- sampling -------------------------------------------------------------------------------------------------
@pytest.mark.oracle
@pytest.mark.parametrize("framework,option,pair", (
    cases(("pt",), tuple(WARPERS), ci=PAIRS) + cases(("tf", "flax"), ("all",), ci=("bert2bert",))
    + cases(("tf", "flax"), ("temperature", "top_k", "top_p"), ci=())))
def test_sampling_warpers_equal_reference_and_bite(built, reference, framework, option, pair):
    """The first step's warped scores depend on no draw: they equal the reference's, and each warper
    changes them. Where the framework draws as the reference does (PyTorch), every token and score is
    the reference's under the same seed, and the warpers change the tokens."""
    b, ref = built(framework, pair), reference(framework, pair)
    inputs = _inputs(b)
    kw = dict(SAMPLE, **WARPERS[option])
    want = _ref_generate(ref, inputs, seed=123, **kw)
    got = b.adapter.generate_output(b.model, inputs, **_cheap(b), **b.adapter.seeded(123)[0], **kw)
    assert got["sequences"].shape[0] == 2 * inputs["input_ids"].shape[0]
    if b.adapter.DRAWS_LIKE_REFERENCE:
        _assert_same_output(got, want)
        plain = _ref_generate(ref, inputs, seed=123, **dict(kw, **NEUTRAL))
        assert _differs(got["sequences"], plain["sequences"]), f"{option} did not change the samples"
    else:
        _assert_scores_close(got["scores"][:1], want["scores"][:1], "first step's scores")
    for name in WARPERS[option]:
        neutral = _ref_generate(ref, inputs, seed=123, **dict(kw, **{name: NEUTRAL[name]}))
        assert _differs(neutral["scores"][0], want["scores"][0]), f"{name} does not change the scores"


@pytest.mark.parametrize("framework,pair", cases(("pt",), ci=PAIRS) + cases(("tf", "flax"), ci=("bert2bert",)))
def test_sampling_is_reproducible_from_the_seed(built, framework, pair):
    """The same seed draws the same tokens in every mode and by every way of seeding; another seed others."""
    b = built(framework, pair)
    inputs = _inputs(b)
    kw = dict(SAMPLE, **WARPERS["all"])  # test_sampling_warpers_equal_reference_and_bite's "all": one compile
    first = None
    for mode, extra in b.adapter.GENERATE_MODES.items():
        for seeding in b.adapter.seeded(7):
            draws = b.adapter.generate(b.model, inputs, **extra, **seeding, **kw)
            if first is None:
                first = draws
                _assert_same_tokens(b.adapter.generate(b.model, inputs, **extra, **seeding, **kw), first, "seed 7 again")
                other = b.adapter.generate(b.model, inputs, **extra, **b.adapter.seeded(8)[0], **kw)
                assert not np.array_equal(first, other), "another seed drew the same tokens"
            _assert_same_tokens(draws, first, f"{mode} {sorted(seeding)}")


@pytest.mark.parametrize("framework,pair", cases(("pt",), ci=PAIRS) + cases(("tf", "flax"), ci=("bert2bert",)))
def test_top_k_one_samples_the_greedy_tokens(built, framework, pair):
    b = built(framework, pair)
    inputs = _inputs(b)
    greedy = b.adapter.generate(b.model, inputs, **GREEDY)  # compiled by test_greedy_equals_reference
    out = b.adapter.generate_output(b.model, inputs, **_cheap(b), **b.adapter.seeded(3)[0], do_sample=True, top_k=1,
                                    **GREEDY)
    _assert_same_tokens(out["sequences"], greedy)
    for step in out["scores"]:
        assert (np.isfinite(step).sum(axis=-1) == 1).all()


# --- inputs: padding, encoder outputs, lengths -----------------------------------------------------------------
SEARCHES = {"greedy": GREEDY, "beam": dict(BEAM, **BEAMS["lp0.7-ngram2"][0])}  # the settings tested above


@pytest.mark.parametrize("framework,search,row,pair", (
    cases(("pt", "tf"), tuple(SEARCHES), (0, 1), ci=PAIRS)
    # Flax compiles once per shape: the padded row in CI.
    + cases(("flax",), tuple(SEARCHES), (1,), ci=("bert2bert",)) + cases(("flax",), tuple(SEARCHES), (0,), ci=())))
def test_padded_batch_rows_equal_single_rows(built, framework, search, row, pair):
    """Row 1 of the inputs is padded, row 0 is not: each row of the batch is the row generated alone."""
    b = built(framework, pair)
    inputs = _inputs(b)
    mask = inputs["attention_mask"]
    assert int(mask[1].sum()) < mask.shape[1], "tiny_inputs pads row 1"
    kw = SEARCHES[search]
    returned = kw.get("num_return_sequences", 1)
    # The batch in the default mode, compiled by the search tests above; each row alone in the cheap one.
    batch = b.get(("generate", search), lambda: b.adapter.generate(b.model, inputs, **kw))
    batch = batch[row * returned:(row + 1) * returned]
    n = int(mask[row].sum())
    alone = b.adapter.generate(b.model, {k: v[row:row + 1, :n] for k, v in inputs.items()}, **_cheap(b), **kw)
    _assert_same_tokens(batch[:, :alone.shape[1]], alone, f"row {row}")
    assert (batch[:, alone.shape[1]:] == b.config.pad_token_id).all(), "past its end a row holds only pad"


ENCODER_SEARCHES = {"greedy": GREEDY, "beam": dict(max_new_tokens=8, num_beams=2)}


@pytest.mark.parametrize("framework,search,pair", (
    cases(("pt",), ("beam",), ci=PAIRS) + cases(("tf",), ("beam",), ci=("bert2gpt2",))
    + cases(("flax",), ("greedy",), ci=("bert2bert",))
    + cases(("pt", "tf"), ("greedy",), ci=()) + cases(("flax",), ("beam",), ci=())))
def test_encoder_outputs_are_reused(built, framework, search, pair, monkeypatch):
    """Given as the output object, a tuple or the bare hidden states (in every mode: the bare hidden
    states), the encoder does not run, and other encoder outputs give other tokens."""
    b = built(framework, pair)
    inputs = _inputs(b)
    kw = ENCODER_SEARCHES[search]
    expected = b.adapter.generate(b.model, inputs, **_cheap(b), **kw)
    encoded = b.adapter.encode(b.model, inputs)
    hidden = encoded.last_hidden_state
    b.adapter.forbid_encoder(b.model, monkeypatch)
    mask = {"attention_mask": inputs["attention_mask"]}
    forms = (("object", encoded), ("tuple", (hidden,)), ("array", hidden))
    for i, (mode, extra) in enumerate(b.adapter.GENERATE_MODES.items()):
        for form, given in forms if i == 0 else forms[-1:]:
            got = b.adapter.generate(b.model, mask, encoder_outputs=given, **extra, **kw)
            _assert_same_tokens(got, expected, f"{mode} {form}")
    zeroed = b.adapter.generate(b.model, mask, encoder_outputs=hidden * 0.0, **_cheap(b), **kw)
    assert _differs(zeroed, expected), "the given encoder outputs were ignored"


@pytest.mark.parametrize("framework,pair", cases(("pt",), ci=PAIRS) + cases(("tf", "flax"), ci=("bert2bert",)))
def test_lengths_count_the_start_token(built, framework, pair):
    """max_new_tokens=12: the start token and 12 new ones (these models emit no eos in 12 tokens), one
    score per new token; max_length=13 is the same."""
    b = built(framework, pair)
    inputs = _inputs(b)
    out = b.adapter.generate_output(b.model, inputs, **GREEDY)  # compiled by test_greedy_equals_reference
    assert not (out["sequences"] == b.config.eos_token_id).any(), "an eos ended the run: pick other inputs"
    assert out["sequences"].shape == (2, 13)
    assert len(out["scores"]) == 12 and out["scores"][0].shape == (2, b.config.decoder.vocab_size)
    assert (out["sequences"][:, 0] == b.config.decoder_start_token_id).all()
    by_length = dict(GREEDY, max_length=13)
    del by_length["max_new_tokens"]
    _assert_same_tokens(b.adapter.generate(b.model, inputs, **by_length), out["sequences"], "max_length")


# --- errors come from the shared resolution -----------------------------------------------------------------
BAD_SETTINGS = {
    "nrs>beams": (dict(num_beams=2, num_return_sequences=3), "num_return_sequences=3 cannot exceed num_beams=2"),
    "greedy-nrs": (dict(num_return_sequences=2), "greedy search returns one sequence"),
    "oov-forced-bos": (dict(forced_bos_token_id=500), "forced_bos_token_id contains token id 500"),
    "oov-bad-words": (dict(bad_words_ids=[[500]]), "bad_words_ids contains token id 500"),
    "early_stopping": (dict(early_stopping="sometimes"), "early_stopping"),
    "too-long": (dict(max_new_tokens=1000), "max_position_embeddings=64"),
    "unknown": (dict(foo=1), "neither generation settings nor encoder inputs"),
}


@pytest.mark.parametrize("framework,case,pair", (
    cases(("pt",), tuple(BAD_SETTINGS), ci=PAIRS) + cases(("tf", "flax"), tuple(BAD_SETTINGS), ci=("bert2bert",))))
def test_bad_settings_raise(built, framework, case, pair):
    b = built(framework, pair)
    kw, match = BAD_SETTINGS[case]
    with pytest.raises((ValueError, NotImplementedError), match=match):
        b.adapter.generate(b.model, _inputs(b), **_cheap(b), **kw)


@pytest.mark.parametrize("framework,pair", cases(("pt",), ci=("bert2gpt2",)) + cases(("tf", "flax"), ci=()))
def test_missing_start_token_names_what_to_set(built, framework, pair):
    b = built(framework, pair)
    model = b.adapter.build(b.config.__class__.from_dict(b.config.to_dict()), b.state)  # its configs change here
    for config in (model.config, model.config.decoder):
        config.decoder_start_token_id = None
        config.bos_token_id = None
    model.generation_config = None
    with pytest.raises(ValueError, match="decoder_start_token_id"):
        b.adapter.generate(model, _inputs(b), **_cheap(b))


@pytest.mark.oracle
@pytest.mark.parametrize("framework,pair", (
    cases(("pt",), ci=PAIRS) + cases(("tf",), ci=("bert2gpt2",)) + cases(("flax",), ci=("bert2bert",))))
def test_adapter_generate_returns_numpy(built, reference, framework, pair):
    """``Adapter.generate`` (the other behaviour tests' way in) hands back int64 numpy sequences, the
    reference's tokens, whatever generate returned."""
    b = built(framework, pair)
    inputs = _inputs(b)
    out = b.adapter.generate(b.model, inputs, **GREEDY)
    assert isinstance(out, np.ndarray) and out.dtype == np.int64
    _assert_same_tokens(out, _ref_generate(reference(framework, pair), inputs, **GREEDY)["sequences"])
