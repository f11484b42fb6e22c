"""One test body per behaviour, run for every framework x architecture.

The same deterministic numpy weights (from the schema) are loaded into every framework and the
outputs are compared with PyTorch's in float32. Unsupported combinations are data (UNSUPPORTED),
each with its reason; there are none today.
"""

import numpy as np
import pytest

from conftest import load_adapter
from encdec.naming.schema import schema_for
from encdec.testing import ARCHS, deterministic_state_dict, tiny_config, tiny_inputs

# One tolerance table, by dtype: max abs difference allowed between two frameworks.
TOLERANCE = {"float32": 1e-5}
# Gradients: max |a - b| relative to max |b| of the same parameter. A gradient that is zero in
# exact arithmetic (attention key biases: softmax is shift-invariant) holds only rounding noise
# (~1e-9), so its scale is floored at GRAD_FLOOR times the largest gradient of the model.
GRAD_RTOL = 1e-4
GRAD_FLOOR = 1e-3
UNSUPPORTED = {}  # (framework, arch) -> reason
OTHERS = ("tf", "flax")

REPORT = []  # (arch, framework, output, max abs diff): printed at the end of the session


def _cases(frameworks=OTHERS):
    for fw in frameworks:
        for arch in ARCHS:
            marks = [pytest.mark.skip(reason=UNSUPPORTED[(fw, arch)])] if (fw, arch) in UNSUPPORTED else []
            yield pytest.param(fw, arch, marks=marks, id=f"{fw}-{arch}")


@pytest.fixture(scope="module")
def built():
    """(framework, arch) -> (adapter, model, config, state, inputs), built once per module."""
    cache = {}

    def get(fw, arch):
        if (fw, arch) not in cache:
            config = tiny_config(arch)
            state = deterministic_state_dict(schema_for(config), seed=1)
            adapter = load_adapter(fw)
            cache[(fw, arch)] = (adapter, adapter.build(config, state), config, state, tiny_inputs(config))
        return cache[(fw, arch)]

    return get


def _compare(name, a, b, arch, fw, tol):
    if isinstance(b, (list, tuple)):
        assert isinstance(a, (list, tuple)) and len(a) == len(b), f"{name}: {len(a)} vs {len(b)} items"
        diffs = [_compare(f"{name}[{i}]", x, y, arch, fw, tol) for i, (x, y) in enumerate(zip(a, b))]
        return max(diffs) if diffs else 0.0
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"{name}: shape {a.shape} vs {b.shape}"
    diff = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0
    assert diff <= tol, f"{name}: max abs diff {diff:.3g} > {tol}"
    return diff


@pytest.mark.parametrize("fw,arch", list(_cases()))
def test_forward_outputs_equal_pytorch(built, fw, arch):
    ref_adapter, ref_model, config, _, inputs = built("pt", arch)
    adapter, model, *_ = built(fw, arch)
    kw = dict(output_attentions=True, output_hidden_states=True)
    ref = ref_adapter.forward(ref_model, inputs, **kw)
    out = adapter.forward(model, inputs, **kw)
    expected = {"loss", "logits", "encoder_last_hidden_state", "encoder_hidden_states", "encoder_attentions",
                "decoder_hidden_states", "decoder_attentions", "cross_attentions"}
    assert expected <= set(ref) and expected <= set(out)
    for name in sorted(expected):
        diff = _compare(name, out[name], ref[name], arch, fw, TOLERANCE["float32"])
        REPORT.append((arch, f"{fw} vs pt", name, diff))
    assert np.asarray(out["loss"]).shape == ()


@pytest.mark.parametrize("fw,arch", list(_cases(("pt",) + OTHERS)))
def test_cached_steps_equal_full_forward(built, fw, arch):
    adapter, model, _, _, inputs = built(fw, arch)
    full = adapter.forward(model, inputs)["logits"]
    steps = adapter.step_logits(model, inputs)
    # Positions whose decoder input is masked out differ on purpose; compare the attended ones.
    mask = inputs["decoder_attention_mask"].astype(bool)
    diff = _compare("step logits", steps[mask], full[mask], arch, fw, TOLERANCE["float32"])
    REPORT.append((arch, f"{fw} cached vs full", "logits", diff))


@pytest.mark.parametrize("fw,arch", list(_cases()))
def test_gradients_equal_pytorch(built, fw, arch):
    ref_adapter, ref_model, _, state, inputs = built("pt", arch)
    adapter, model, *_ = built(fw, arch)
    ref, out = ref_adapter.grads(ref_model, inputs), adapter.grads(model, inputs)
    assert sorted(out) == sorted(ref) == sorted(state)
    worst = 0.0
    floor = GRAD_FLOOR * max(float(np.max(np.abs(g))) for g in ref.values())
    for name in ref:
        scale = max(float(np.max(np.abs(ref[name]))), floor)
        rel = float(np.max(np.abs(out[name] - ref[name]))) / scale
        assert rel <= GRAD_RTOL, f"grad of {name}: relative error {rel:.3g}"
        worst = max(worst, rel)
    REPORT.append((arch, f"{fw} vs pt", "grads (max rel)", worst))


@pytest.mark.parametrize("src", ("pt",) + OTHERS)
@pytest.mark.parametrize("arch", ARCHS)
def test_save_in_one_framework_load_in_every_other(built, tmp_path, src, arch):
    adapter, model, _, state, inputs = built(src, arch)
    assert all(np.array_equal(v, state[k]) for k, v in adapter.state_dict(model).items())
    adapter.save(model, tmp_path)
    ref_logits = adapter.forward(model, inputs)["logits"]
    for dst in ("pt",) + OTHERS:
        other = load_adapter(dst)
        loaded = other.load(tmp_path)
        got = other.state_dict(loaded)
        assert sorted(got) == sorted(state)
        for k in state:
            assert np.array_equal(got[k], state[k]), f"{src}->{dst}: {k} changed"
        diff = _compare("logits", other.forward(loaded, inputs)["logits"], ref_logits, arch, dst,
                        TOLERANCE["float32"])
        REPORT.append((arch, f"{src} saved -> {dst}", "logits", diff))


def teardown_module(module):
    if REPORT:
        print("\nmeasured max abs differences (float32):")
        for arch, pair, name, diff in REPORT:
            print(f"  {arch:15s} {pair:22s} {name:28s} {diff:.2e}")
