"""What Flax's ``FlaxEncoderDecoderModel.generate`` (one jitted loop) has of its own: a second call
with the same shapes and settings does not retrace, other params reuse the compiled function, a new
signature reuses the traced encoder, and the loop's layouts (prepacked (in, out) Conv1D kernels, no
transposed keys or values). The behaviours every framework shares (search and processors against the
reference, sampling, padding, ``encoder_outputs=``, errors) are tests/behaviour/test_generate_shared.py.
Every distinct setting or shape is one XLA compile, so the tests share settings where they can.
"""

import collections

import numpy as np
import pytest

from encdec.naming.schema import schema_for
from encdec.testing import TOLERANCE, deterministic_state_dict, tiny_config, tiny_inputs
from encdec_flax import FlaxEncoderDecoderModel
from encdec_flax.generation import trace_count

SCORE_TOL = TOLERANCE["float32"]["abs"]
GREEDY = dict(max_new_tokens=12, return_dict_in_generate=True, output_scores=True)


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


@pytest.fixture(scope="module")
def bert2bert():
    return _ours("bert2bert")


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


def _differs(a, b) -> bool:
    a, b = _np(a), _np(b)
    return a.shape != b.shape or not np.array_equal(a, b)


BEAM_PROCESSORS = dict(max_new_tokens=10, num_beams=3, repetition_penalty=3.0)


# --- compilation ----------------------------------------------------------------------------------
def test_second_call_with_the_same_shapes_does_not_retrace(bert2bert):
    """Other ids, return_dict_in_generate, and min_length=1+N for min_new_tokens=N (the same resolved
    settings) trace nothing new; a new shape traces once."""
    ids, mask = _inputs(bert2bert.config)
    kw = dict(BEAM_PROCESSORS, min_new_tokens=4)
    first = bert2bert.generate(ids, attention_mask=mask, **kw).sequences
    before = trace_count()
    other_ids = (ids + 1) % bert2bert.config.encoder.vocab_size
    bert2bert.generate(other_ids, attention_mask=mask, **kw)
    again = bert2bert.generate(ids, attention_mask=mask, return_dict_in_generate=True, **kw)
    by_length = {k: v for k, v in kw.items() if k != "min_new_tokens"}
    length = bert2bert.generate(ids, attention_mask=mask, min_length=kw["min_new_tokens"] + 1, **by_length)
    assert trace_count() == before, "generate traced again for the same shapes and settings"
    assert np.array_equal(first, again.sequences)
    assert np.array_equal(first, length.sequences)
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
