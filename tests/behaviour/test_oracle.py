"""Every framework x pair against the reference (transformers 4.57.6's PyTorch ``EncoderDecoderModel``,
eager attention, a test-only oracle), on the same deterministic weights.

The reference reads the folder each framework's model saved (so the files are checked too): outputs
(loss, logits, hidden states, attentions, cross-attentions), the cache, cached step-by-step decoding
and gradients agree within the tolerance table of ``encdec.testing``; the folders the reference saves
(safetensors, sharded, ``pytorch_model.bin``) load in every framework with no flag. The reference
derives a different decoder mask from labels on purpose (it masks the start token when start == pad),
so it always gets the mask explicitly. The measured maxima are printed at the end of the module.
"""

import numpy as np
import pytest

from adapters import CACHE_FORM, FRAMEWORKS, built_cache, max_abs_diff, reference_model
from encdec.testing import TOLERANCE, pair_params

pytestmark = pytest.mark.oracle
TOL = TOLERANCE["float32"]
OUTPUTS = ("loss", "logits", "encoder_last_hidden_state", "encoder_hidden_states", "encoder_attentions",
           "decoder_hidden_states", "decoder_attentions", "cross_attentions")
# Reference folders the frameworks must read: save_pretrained's keyword arguments.
REFERENCE_LAYOUTS = {"safetensors": {}, "sharded": dict(max_shard_size="60KB"), "bin": dict(safe_serialization=False)}
MEASURED = []  # (framework, pair, what, max abs diff), printed at teardown


@pytest.fixture(scope="module")
def built():
    return built_cache()


@pytest.fixture(scope="module")
def reference(built, tmp_path_factory):
    """(framework, pair) -> (the reference reading the folder that framework saved, its torch inputs,
    its outputs with attentions and hidden states)."""
    cache = {}

    def get(framework, pair):
        if (framework, pair) not in cache:
            import torch

            b = built(framework, pair)
            folder = tmp_path_factory.mktemp(f"ours-{framework}-{pair}")
            b.adapter.save(b.model, folder)
            ref = reference_model(folder)
            inputs = {k: torch.from_numpy(v) for k, v in b.inputs.items()}
            with torch.no_grad():
                out = ref(**inputs, output_attentions=True, output_hidden_states=True)
            cache[(framework, pair)] = ref, inputs, out
        return cache[(framework, pair)]

    return get


@pytest.fixture(scope="module")
def reference_folders(reference, tmp_path_factory):
    """pair -> folder holding one sub-folder per REFERENCE_LAYOUTS entry, saved by the reference."""
    cache = {}

    def get(pair):
        if pair not in cache:
            ref, _, _ = reference("pt", pair)
            root = tmp_path_factory.mktemp(f"reference-{pair}")
            for layout, kwargs in REFERENCE_LAYOUTS.items():
                ref.save_pretrained(str(root / layout), **kwargs)
            cache[pair] = root
        return cache[pair]

    return get


def _check(framework, pair, what, ours, theirs, tol):
    diff = max_abs_diff(what, ours, theirs)
    MEASURED.append((framework, pair, what, diff))
    assert diff <= tol, f"{framework} {pair} {what}: max abs diff {diff:.3g} > {tol}"


@pytest.mark.parametrize("framework,pair", pair_params(FRAMEWORKS))
def test_outputs_and_cache_equal_reference(built, reference, framework, pair):
    b = built(framework, pair)
    _, inputs, ref = reference(framework, pair)
    assert np.asarray(b.outputs["loss"]).shape == ()
    for name in OUTPUTS:
        _check(framework, pair, name, b.outputs[name], getattr(ref, name), TOL["abs"])
    cache = b.adapter.cache(b.model, b.inputs)
    assert (cache is None) == (framework in CACHE_FORM)
    if cache is not None:
        import torch

        with torch.no_grad():
            ref_cache = reference(framework, pair)[0](**inputs, use_cache=True).past_key_values.to_legacy_cache()
        _check(framework, pair, "past_key_values", cache, ref_cache, TOL["abs"])


@pytest.mark.parametrize("framework,pair", pair_params(FRAMEWORKS))
def test_cached_steps_equal_reference_full_forward(built, reference, framework, pair):
    b = built(framework, pair)
    _, _, ref = reference(framework, pair)
    # Every position, the masked one of row 1 included: a step sees the decoder mask up to itself.
    _check(framework, pair, "cached step logits", b.step_logits, ref.logits, TOL["abs"])
    # With no decoder mask at all (every position attended), too.
    import torch

    unmasked = {k: v for k, v in b.inputs.items() if k not in ("decoder_attention_mask", "labels")}
    with torch.no_grad():
        ref_logits = reference(framework, pair)[0](**{k: torch.from_numpy(v) for k, v in unmasked.items()}).logits
    _check(framework, pair, "cached step logits, no mask", b.adapter.step_logits(b.model, unmasked), ref_logits,
           TOL["abs"])


@pytest.mark.parametrize("framework,pair", pair_params(FRAMEWORKS))
def test_gradients_equal_reference(built, reference, framework, pair):
    b = built(framework, pair)
    ref, inputs, _ = reference(framework, pair)
    ref.zero_grad(set_to_none=True)
    ref(**inputs, use_cache=False).loss.backward()
    named = dict(ref.named_parameters(remove_duplicate=False))
    ref_grads = {name: (np.zeros(spec.shape, np.float32) if named[name].grad is None else named[name].grad.numpy().copy())
                 for name, spec in ((s.name, s) for s in b.schema.owned())}
    ref.zero_grad(set_to_none=True)
    assert sorted(b.grads) == sorted(ref_grads)
    # Gradients that are zero in exact arithmetic (a key bias shifts every score of a query equally)
    # are rounding noise in both: bound every tensor absolutely and against the model's largest gradient.
    scale = max(float(np.abs(g).max()) for g in ref_grads.values())
    worst = 0.0
    for name, grad in b.grads.items():
        diff = max_abs_diff(name, grad, ref_grads[name])
        assert diff <= TOL["grad_abs"] and diff <= TOL["grad_scale_rtol"] * scale, f"grad of {name}: {diff:.3g}"
        worst = max(worst, diff)
    MEASURED.append((framework, pair, "grads (max abs)", worst))


@pytest.mark.parametrize("layout", sorted(REFERENCE_LAYOUTS))
@pytest.mark.parametrize("framework,pair", pair_params(FRAMEWORKS))
def test_reference_saved_folders_load_with_equal_weights_and_logits(built, reference, reference_folders, framework,
                                                                    pair, layout):
    b = built(framework, pair)
    _, _, ref = reference("pt", pair)
    loaded = b.adapter.load(reference_folders(pair) / layout)
    got = b.adapter.state_dict(loaded)
    assert sorted(got) == sorted(b.state)
    changed = [k for k in b.state if not np.array_equal(got[k], b.state[k])]
    assert not changed, f"{layout}: {changed[:5]} changed"
    _check(framework, pair, f"reference {layout} -> logits", b.adapter.forward(loaded, b.inputs)["logits"],
           ref.logits, TOL["abs"])


def teardown_module(module):
    if MEASURED:
        print("\nours vs transformers 4.57.6 (max abs diff, float32):")
        for framework, pair, what, diff in MEASURED:
            print(f"  {framework:5s} {pair:15s} {what:32s} {diff:.2e}")
