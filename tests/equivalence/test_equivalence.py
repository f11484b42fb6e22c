"""Cross-framework equivalence: one test body per behaviour, run for every pair of frameworks
(pt-tf, pt-flax, tf-flax) x every architecture.

The same deterministic numpy weights (from the schema) are loaded into every framework through
the thin adapters of tests/adapters. Each (framework, arch) model is built once per module and
each of its results (forward with attentions and hidden states, cached decoding, gradients) is
computed once, then compared pairwise. Unsupported combinations are data (UNSUPPORTED), each
with its reason; there are none today. The measured maxima are printed at the end of the module
and, with ENCDEC_WRITE_EQUIVALENCE=1 (see tests/equivalence/report.py), written to
docs/equivalence.md.
"""

import itertools
import os

import numpy as np
import pytest

from adapters import FRAMEWORKS, built_cache
from encdec.testing import ARCHS, TOLERANCE, pair_params

PAIRS = list(itertools.combinations(FRAMEWORKS, 2))  # (pt, tf), (pt, flax), (tf, flax)
DTYPE = "float32"
# (framework, arch) -> reason the framework cannot run the architecture; a case involving it is skipped.
UNSUPPORTED = {}
OUTPUTS = ("loss", "logits", "encoder_last_hidden_state", "encoder_hidden_states", "encoder_attentions",
           "decoder_hidden_states", "decoder_attentions", "cross_attentions")

REPORT = []  # (arch, comparison, output, measured): printed / written at the end of the module
DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "equivalence.md")


def _pair_cases(ci=None):
    return pair_params(PAIRS, unsupported={(fws, arch): why for (fw, arch), why in UNSUPPORTED.items()
                                           for fws in PAIRS if fw in fws}, ci=ci)


# Each framework's gradients are held to the reference's for every CI pair
# (tests/behaviour/test_oracle.py); framework against framework, CI runs the special features.
GRADIENT_CI = ("bert2bert", "bert2gpt2_proj", "bert2bert_tied")


def _fw_cases():
    return pair_params(FRAMEWORKS, unsupported=UNSUPPORTED)


@pytest.fixture(scope="module")
def built():
    return built_cache()


@pytest.fixture(scope="module")
def saved(built, tmp_path_factory):
    """(framework, arch) -> folder its model's save_pretrained wrote (once per module)."""
    cache = {}

    def get(fw, arch):
        if (fw, arch) not in cache:
            b = built(fw, arch)
            folder = tmp_path_factory.mktemp(f"{fw}_{arch}")
            b.adapter.save(b.model, folder)
            cache[(fw, arch)] = folder
        return cache[(fw, arch)]

    return get


def _compare(name, a, b, tol):
    if isinstance(b, (list, tuple)):
        assert isinstance(a, (list, tuple)) and len(a) == len(b), f"{name}: {len(a)} vs {len(b)} items"
        diffs = [_compare(f"{name}[{i}]", x, y, tol) for i, (x, y) in enumerate(zip(a, b))]
        return max(diffs) if diffs else 0.0
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, f"{name}: shape {a.shape} vs {b.shape}"
    diff = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0
    assert diff <= tol, f"{name}: max abs diff {diff:.3g} > {tol}"
    return diff


@pytest.mark.parametrize("a,b,arch", _pair_cases())
def test_forward_outputs_equal(built, a, b, arch):
    out_a, out_b = built(a, arch).outputs, built(b, arch).outputs
    assert set(OUTPUTS) <= set(out_a) and set(OUTPUTS) <= set(out_b)
    for name in OUTPUTS:
        diff = _compare(name, out_a[name], out_b[name], TOLERANCE[DTYPE]["abs"])
        REPORT.append((arch, f"{a} vs {b}", name, diff))
    assert np.asarray(out_a["loss"]).shape == np.asarray(out_b["loss"]).shape == ()


@pytest.mark.parametrize("fw,arch", _fw_cases())
def test_cached_steps_equal_full_forward(built, fw, arch):
    b = built(fw, arch)
    # Positions whose decoder input is masked out differ on purpose; compare the attended ones.
    mask = b.inputs["decoder_attention_mask"].astype(bool)
    diff = _compare("step logits", b.step_logits[mask], b.outputs["logits"][mask], TOLERANCE[DTYPE]["abs"])
    REPORT.append((arch, f"{fw} cached vs {fw} full", "logits", diff))


@pytest.mark.parametrize("a,b,arch", _pair_cases())
def test_cached_steps_equal_across_frameworks(built, a, b, arch):
    ba, bb = built(a, arch), built(b, arch)
    mask = ba.inputs["decoder_attention_mask"].astype(bool)
    diff = _compare("step logits", ba.step_logits[mask], bb.step_logits[mask], TOLERANCE[DTYPE]["abs"])
    REPORT.append((arch, f"{a} cached vs {b} cached", "logits", diff))


@pytest.mark.parametrize("a,b,arch", _pair_cases(ci=GRADIENT_CI))
def test_gradients_equal(built, a, b, arch):
    ga, gb = built(a, arch).grads, built(b, arch).grads
    state = built(a, arch).state
    assert sorted(ga) == sorted(gb) == sorted(state)
    tol = TOLERANCE[DTYPE]
    floor = tol["grad_floor"] * max(float(np.max(np.abs(g))) for g in gb.values())
    worst = 0.0
    for name in gb:
        scale = max(float(np.max(np.abs(gb[name]))), floor)
        rel = float(np.max(np.abs(ga[name] - gb[name]))) / scale
        assert rel <= tol["grad_rtol"], f"grad of {name}: relative error {rel:.3g}"
        worst = max(worst, rel)
    REPORT.append((arch, f"{a} vs {b}", "grads (max rel)", worst))


@pytest.mark.parametrize("src,arch", _fw_cases())
def test_save_in_one_framework_load_in_every_other(built, saved, src, arch):
    b = built(src, arch)
    assert all(np.array_equal(v, b.state[k]) for k, v in b.adapter.state_dict(b.model).items())
    folder = saved(src, arch)
    for dst in FRAMEWORKS:
        if (dst, arch) in UNSUPPORTED:
            continue
        other = built(dst, arch).adapter
        loaded = other.load(folder)
        got = other.state_dict(loaded)
        assert sorted(got) == sorted(b.state)
        changed = [k for k in b.state if not np.array_equal(got[k], b.state[k])]
        assert not changed, f"{src}->{dst}: {changed[:5]} changed"
        diff = _compare("logits", other.forward(loaded, b.inputs)["logits"], b.plain_logits,
                        TOLERANCE[DTYPE]["abs"])
        REPORT.append((arch, f"{src} saved -> {dst}", "logits", diff))


def _markdown(report):
    tol = TOLERANCE[DTYPE]
    lines = [
        "# Cross-framework equivalence: measured maxima",
        "",
        "Generated by `python tests/equivalence/report.py` (runs `tests/equivalence` with",
        "`ENCDEC_WRITE_EQUIVALENCE=1`); do not edit by hand. Same deterministic float32 weights",
        "(`encdec.testing.deterministic_state_dict(seed=1)`) and inputs (`tiny_inputs`) in every framework;",
        "tiny configs of `encdec.testing.tiny_config`.",
        "",
        f"Tolerances ({DTYPE}): outputs max abs difference <= {tol['abs']:g}; gradients max abs difference",
        f"relative to the parameter's largest gradient (floored at {tol['grad_floor']:g} x the model's largest)",
        f"<= {tol['grad_rtol']:g}. Unsupported combinations: "
        + (", ".join(f"{fw}/{arch}: {why}" for (fw, arch), why in UNSUPPORTED.items()) or "none") + ".",
        "",
    ]
    for arch in ARCHS:
        rows = [(pair, name, diff) for a, pair, name, diff in report if a == arch]
        if not rows:
            continue
        lines += [f"## {arch}", "", "| comparison | output | max difference |", "|---|---|---|"]
        lines += [f"| {pair} | {name} | {diff:.2e} |" for pair, name, diff in rows]
        lines.append("")
    worst = max((d for _, _, n, d in report if not n.startswith("grads")), default=0.0)
    worst_grad = max((d for _, _, n, d in report if n.startswith("grads")), default=0.0)
    lines += ["## Overall", "", f"- largest output difference: {worst:.2e} (tolerance {tol['abs']:g})",
              f"- largest relative gradient difference: {worst_grad:.2e} (tolerance {tol['grad_rtol']:g})", ""]
    return "\n".join(lines)


def teardown_module(module):
    if not REPORT:
        return
    print(f"\nmeasured max differences ({DTYPE}):")
    for arch, pair, name, diff in REPORT:
        print(f"  {arch:15s} {pair:26s} {name:28s} {diff:.2e}")
    if os.environ.get("ENCDEC_WRITE_EQUIVALENCE") == "1":
        order = {arch: i for i, arch in enumerate(ARCHS)}
        rows = sorted(REPORT, key=lambda r: (order.get(r[0], 99), r[1], r[2]))
        with open(DOC, "w", encoding="utf-8") as f:
            f.write(_markdown(rows))
