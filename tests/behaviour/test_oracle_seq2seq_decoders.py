"""BertGeneration and BART's / mBART's decoders against the reference (transformers==4.57.6), in every
framework: one test body per behaviour, parametrised over framework x pair through tests/adapters.

For each (framework, pair) our model is built once with the deterministic weights of the schema and
saved; the reference ``EncoderDecoderModel`` loads that folder (our files -> the reference), and the
reference's own saved folder loads in ours (the reference's files -> ours). Outputs, cached
step-by-step logits, gradients and greedy / beam tokens of ours equal the reference PyTorch model's.
"""

import numpy as np
import pytest

from adapters import FRAMEWORKS, load_adapter
from encdec.naming.schema import schema_for
from encdec.testing import PAIRS, deterministic_state_dict, tiny_config, tiny_inputs

pytestmark = pytest.mark.oracle

# The pairs of this issue that the test matrix holds (a pair joins when its record has landed).
SEQ2SEQ_PAIRS = [p for p in ("bertgen2bertgen", "bertgen2bertgen_tied", "bert2bart", "bert2mbart", "roberta2bart")
                 if p in PAIRS]
# The equivalence tests' float32 tolerances: outputs by max abs difference; gradients by max |a - b|
# relative to max |b| of the parameter, floored at `grad_floor` times the model's largest gradient.
TOLERANCE = {"abs": 1e-5, "grad_rtol": 1e-4, "grad_floor": 1e-3}
OUTPUTS = ("loss", "logits", "encoder_last_hidden_state", "encoder_hidden_states", "encoder_attentions",
           "decoder_hidden_states", "decoder_attentions", "cross_attentions")
CASES = [pytest.param((fw, pair), id=f"{fw}-{pair}") for fw in FRAMEWORKS for pair in SEQ2SEQ_PAIRS]


def _transformers():
    return pytest.importorskip("transformers")


def _torch_inputs(inputs):
    import torch

    return {k: torch.from_numpy(np.asarray(v)) for k, v in inputs.items()}


def _max_diff(a, b):
    if isinstance(a, (tuple, list)):
        assert len(a) == len(b), f"{len(a)} vs {len(b)} items"
        return max(_max_diff(x, y) for x, y in zip(a, b))
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, f"shape {a.shape} vs {b.shape}"
    return float(np.abs(a - b).max()) if a.size else 0.0


def _numpy(value):
    if isinstance(value, (tuple, list)):
        return [_numpy(v) for v in value]
    return value.detach().cpu().numpy()


@pytest.fixture(scope="module", params=CASES)
def case(request, tmp_path_factory):
    """(adapter, ours, reference, config, folder of ours) with the same deterministic weights."""
    transformers = _transformers()
    framework, pair = request.param
    adapter = load_adapter(framework)
    config = tiny_config(pair)
    ours = adapter.build(config, deterministic_state_dict(schema_for(config), seed=1))
    folder = tmp_path_factory.mktemp(f"{framework}-{pair}")
    adapter.save(ours, folder)
    ref = transformers.EncoderDecoderModel.from_pretrained(str(folder), attn_implementation="eager").eval()
    return adapter, ours, ref, config


def test_outputs_equal_reference(case):
    import torch

    adapter, ours, ref, config = case
    inputs = tiny_inputs(config)
    kw = dict(output_attentions=True, output_hidden_states=True)
    got = adapter.forward(ours, inputs, **kw)
    with torch.no_grad():
        expected = ref(**_torch_inputs(inputs), use_cache=False, return_dict=True, **kw)
    for name in OUTPUTS:
        assert name in got, name
        diff = _max_diff(got[name], _numpy(getattr(expected, name)))
        assert diff <= TOLERANCE["abs"], f"{name}: {diff:.3g}"


def test_cached_steps_equal_reference_full_forward(case):
    import torch

    adapter, ours, ref, config = case
    inputs = tiny_inputs(config)
    steps = adapter.step_logits(ours, inputs)  # (B, T, V)
    with torch.no_grad():
        full = ref(**_torch_inputs(inputs)).logits.numpy()
    keep = inputs["decoder_attention_mask"].astype(bool)
    assert _max_diff(steps[keep], full[keep]) <= TOLERANCE["abs"]


def test_gradients_equal_reference(case):
    adapter, ours, ref, config = case
    inputs = tiny_inputs(config)
    got = adapter.grads(ours, inputs)
    ref.zero_grad(set_to_none=True)
    ref(**_torch_inputs(inputs)).loss.backward()
    params = dict(ref.named_parameters(remove_duplicate=False))
    expected = {}
    for spec in schema_for(config).owned():
        grad = params[spec.name].grad
        expected[spec.name] = np.zeros(spec.shape, np.float32) if grad is None else grad.numpy().copy()
    ref.zero_grad(set_to_none=True)
    assert sorted(got) == sorted(expected)
    floor = TOLERANCE["grad_floor"] * max(float(np.abs(g).max()) for g in expected.values())
    for name, value in expected.items():
        scale = max(float(np.abs(value).max()), floor)
        assert _max_diff(got[name], value) / scale <= TOLERANCE["grad_rtol"], name


@pytest.mark.parametrize("num_beams", [1, 3], ids=["greedy", "beam"])
def test_generated_tokens_equal_reference(case, num_beams):
    adapter, ours, ref, config = case
    inputs = tiny_inputs(config)
    source = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
    kwargs = dict(max_length=9, num_beams=num_beams)
    got = adapter.generate(ours, source, **kwargs)
    expected = ref.generate(**_torch_inputs(source), **kwargs).numpy()
    assert got.tolist() == expected.tolist()


def test_reference_saved_folder_loads_in_ours(case, tmp_path):
    adapter, ours, ref, config = case
    ref.save_pretrained(str(tmp_path))
    loaded = adapter.load(tmp_path)
    expected = adapter.state_dict(ours)
    got = adapter.state_dict(loaded)
    assert sorted(got) == sorted(expected)
    for name in expected:
        assert np.array_equal(np.asarray(got[name]), np.asarray(expected[name])), name


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_bart_decoder_cache_has_the_decoders_own_layer_count(framework, tmp_path):
    """The reference sizes BART's decoder cache by num_hidden_layers (the *encoder's* count) and fails
    when encoder_layers < decoder_layers; ours caches decoder_layers layers and steps through them to the
    reference's uncached logits."""
    import torch

    from encdec.testing import tiny_pair_config

    transformers = _transformers()
    adapter = load_adapter(framework)
    config = tiny_pair_config("bert", "bart", decoder_overrides={"encoder_layers": 1, "decoder_layers": 3})
    ours = adapter.build(config, deterministic_state_dict(schema_for(config), seed=2))
    adapter.save(ours, tmp_path)
    ref = transformers.EncoderDecoderModel.from_pretrained(str(tmp_path), attn_implementation="eager").eval()
    inputs = tiny_inputs(config)
    with torch.no_grad():
        full = ref(**_torch_inputs(inputs), use_cache=False).logits.numpy()
    keep = inputs["decoder_attention_mask"].astype(bool)
    assert _max_diff(adapter.step_logits(ours, inputs)[keep], full[keep]) <= TOLERANCE["abs"]
    source = {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}
    assert adapter.generate(ours, source, max_length=6, num_beams=2).shape[0] == 2
