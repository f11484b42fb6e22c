"""The calls of the reference's generate API, in every framework, against the oracle
(transformers 4.57.6's PyTorch ``EncoderDecoderModel``) on the same folder:
``generation_config=`` (keyword and positional) and its precedence, the legacy generation
attributes of the config, the output objects (class names, fields, ``past_key_values``) and
Flax's output with ``.sequences``.

Each framework loads a fresh model from the folder in every test (tests change its configs).
"""

import dataclasses
import warnings

import numpy as np
import pytest

from adapters import FRAMEWORKS, load_adapter
from encdec.generation_config import GenerationConfig
from encdec.naming.schema import schema_for
from encdec.testing import deterministic_state_dict, tiny_config, tiny_inputs

ARCH = "bert2gpt2"
# TensorFlow runs generate eagerly here: the same tokens as compiled (tests/tf), no XLA compile per model.
EXTRA = {"tf": dict(use_xla=False)}

pytestmark = pytest.mark.oracle


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    torch = pytest.importorskip("torch")  # noqa: F841 - the folder is written by the PyTorch model
    from encdec_pt import EncoderDecoderModel

    config = tiny_config(ARCH)
    model = EncoderDecoderModel(config)
    model.load_canonical(deterministic_state_dict(schema_for(config), seed=1))
    path = tmp_path_factory.mktemp("generate-api")
    model.save_pretrained(str(path))
    return str(path)


@pytest.fixture(scope="module")
def inputs(folder):
    data = tiny_inputs(tiny_config(ARCH), batch=2)
    return data["input_ids"], data["attention_mask"]


def _reference(folder):
    transformers = pytest.importorskip("transformers")
    return transformers.EncoderDecoderModel.from_pretrained(folder).eval()


def _ref_generate(ref, ids, mask, *args, **kw):
    import torch

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ref.generate(torch.from_numpy(ids), *args, attention_mask=torch.from_numpy(mask), **kw)


def _ours(framework, folder):
    adapter = load_adapter(framework)
    return adapter.load(folder)


def _as_framework(framework, array):
    if framework == "pt":
        import torch

        return torch.from_numpy(array)
    if framework == "tf":
        import tensorflow as tf

        return tf.constant(array)
    return array


def _generate(framework, model, ids, mask, *args, **kw):
    """``model.generate(ids, *args, attention_mask=mask, **kw)`` on the framework's arrays."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.generate(_as_framework(framework, ids), *args, attention_mask=_as_framework(framework, mask),
                              **EXTRA.get(framework, {}), **kw)


def _np(value):
    if hasattr(value, "detach"):
        value = value.detach().cpu()
    return np.asarray(value)


def _sequences(out):
    return _np(getattr(out, "sequences", out)).astype(np.int64)


# --- generation_config= and its precedence --------------------------------------------------------------
@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("positional", [False, True], ids=["keyword", "positional"])
def test_generation_config_argument_equals_reference(framework, folder, inputs, positional):
    import transformers

    ids, mask = inputs
    ours = _ours(framework, folder)
    settings = dict(max_new_tokens=5, num_beams=2, length_penalty=0.5)
    if positional:
        got = _generate(framework, ours, ids, mask, GenerationConfig(**settings))
    else:
        got = _generate(framework, ours, ids, mask, generation_config=GenerationConfig(**settings))
    expected = _ref_generate(_reference(folder), ids, mask, transformers.GenerationConfig(**settings))
    np.testing.assert_array_equal(_sequences(got), _sequences(expected))
    assert _sequences(got).shape[1] == 6


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_mask_in_the_generation_config_place_is_named(framework, folder, inputs):
    ids, mask = inputs
    ours = _ours(framework, folder)
    with pytest.raises(TypeError, match="attention_mask=..."):
        ours.generate(_as_framework(framework, ids), _as_framework(framework, mask))


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_keyword_settings_beat_generation_config(framework, folder, inputs):
    import transformers

    ids, mask = inputs
    ours = _ours(framework, folder)
    got = _generate(framework, ours, ids, mask, generation_config=GenerationConfig(max_new_tokens=6, num_beams=2),
                    num_beams=3, max_new_tokens=4)
    expected = _ref_generate(_reference(folder), ids, mask,
                             generation_config=transformers.GenerationConfig(max_new_tokens=6, num_beams=2),
                             num_beams=3, max_new_tokens=4)
    np.testing.assert_array_equal(_sequences(got), _sequences(expected))
    assert _sequences(got).shape[1] == 5


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_model_generation_config_fills_what_generation_config_leaves_at_default(framework, folder, inputs):
    """The reference (models written by transformers >= 4.50): a value of ``generation_config=`` at
    its global default takes the model's non-default one (here num_beams and the length penalty)."""
    import transformers

    ids, mask = inputs
    ours, ref = _ours(framework, folder), _reference(folder)
    for model in (ours, ref):
        model.generation_config.num_beams = 3
        model.generation_config.length_penalty = 0.3
    got = _generate(framework, ours, ids, mask, generation_config=GenerationConfig(max_new_tokens=5),
                    return_dict_in_generate=True)
    expected = _ref_generate(ref, ids, mask, generation_config=transformers.GenerationConfig(max_new_tokens=5),
                             return_dict_in_generate=True)
    np.testing.assert_array_equal(_sequences(got), _sequences(expected))
    assert got.beam_indices is not None  # it was a beam search


# --- the legacy generation attributes of the config ------------------------------------------------------
@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("legacy", [dict(max_length=4), dict(num_beams=2, max_length=6)], ids=["max_length", "beams"])
def test_config_generation_attributes_are_honoured_like_reference(framework, folder, inputs, legacy):
    ids, mask = inputs
    ours, ref = _ours(framework, folder), _reference(folder)
    ours.config.update(legacy)
    ref.config.update(legacy)
    got = _generate(framework, ours, ids, mask)
    expected = _ref_generate(ref, ids, mask)
    np.testing.assert_array_equal(_sequences(got), _sequences(expected))
    assert _sequences(got).shape[1] == legacy["max_length"]
    # As the reference, the model's generation config now is the one derived from the config.
    assert ours.generation_config.max_length == legacy["max_length"]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_modified_generation_config_wins_over_the_config(framework, folder, inputs):
    """The legacy rule applies only while the model's generation config is unmodified."""
    ids, mask = inputs
    ours, ref = _ours(framework, folder), _reference(folder)
    for model in (ours, ref):
        model.generation_config.max_length = 6
        model.config.max_length = 4
    got = _generate(framework, ours, ids, mask)
    expected = _ref_generate(ref, ids, mask)
    np.testing.assert_array_equal(_sequences(got), _sequences(expected))
    assert _sequences(got).shape[1] == 6


# --- the config's generation attributes and methods --------------------------------------------------------
def test_configs_carry_the_reference_generation_defaults_and_update():
    transformers = pytest.importorskip("transformers")
    from encdec.configuration import LEGACY_GENERATION_DEFAULTS, EncoderDecoderConfig

    assert LEGACY_GENERATION_DEFAULTS == transformers.PretrainedConfig._get_global_generation_defaults()
    ours = tiny_config(ARCH)
    ref = transformers.EncoderDecoderConfig.from_encoder_decoder_configs(
        transformers.BertConfig(**ours.encoder.to_dict()), transformers.GPT2Config(**ours.decoder.to_dict()))
    for config, reference in ((ours, ref), (ours.encoder, ref.encoder), (ours.decoder, ref.decoder)):
        for key in LEGACY_GENERATION_DEFAULTS:
            assert getattr(config, key) == getattr(reference, key), (type(config).__name__, key)
    for config in (ours, ref):
        config.update({"max_length": 7, "num_beams": 3, "my_key": "x"})
        config.update_from_string("min_length=2,do_sample=true,temperature=0.5")
    for key in ("max_length", "num_beams", "my_key", "min_length", "do_sample", "temperature"):
        assert getattr(ours, key) == getattr(ref, key), key
    assert ours._get_non_default_generation_parameters() == ref._get_non_default_generation_parameters()
    # Set values are written and read back; defaults are not written.
    again = EncoderDecoderConfig.from_dict(ours.to_dict())
    assert (again.max_length, again.num_beams, again.top_k) == (7, 3, 50)
    assert "top_k" not in tiny_config(ARCH).to_diff_dict()
    with pytest.raises(ValueError, match="not an attribute"):
        ours.update_from_string("no_such_key=1")


# --- output objects ----------------------------------------------------------------------------------------
def _reference_fields(beam: bool):
    from transformers.generation.utils import GenerateBeamEncoderDecoderOutput, GenerateEncoderDecoderOutput

    cls = GenerateBeamEncoderDecoderOutput if beam else GenerateEncoderDecoderOutput
    return cls.__name__, [f.name for f in dataclasses.fields(cls)]


def _past_as_numpy(framework, past, steps):
    """Per layer (self_k, self_v, cross_k, cross_v) as numpy, whatever the framework's cache form."""
    if framework != "flax":
        return [[_np(t) for t in layer] for layer in past]
    # Flax: the `cache` collection that `decode` takes; per layer its self-attention module's
    # keys/values (preallocated to max_length) come before the cross-attention module's.
    import jax

    arrays = [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(past) if np.ndim(leaf) == 4]
    layers = [arrays[i:i + 4] for i in range(0, len(arrays), 4)]
    return [[k[:, :, :steps], v[:, :, :steps], ck, cv] for k, v, ck, cv in layers]


@pytest.mark.parametrize("framework", FRAMEWORKS)
@pytest.mark.parametrize("beam", [False, True], ids=["greedy", "beam"])
def test_dict_output_fields_and_past_key_values_equal_reference(framework, folder, inputs, beam):
    ids, mask = inputs
    ours = _ours(framework, folder)
    kw = dict(max_new_tokens=4, return_dict_in_generate=True, output_scores=True, **(dict(num_beams=2) if beam else {}))
    got = _generate(framework, ours, ids, mask, **kw)
    expected = _ref_generate(_reference(folder), ids, mask, **kw)
    name, fields = _reference_fields(beam)
    assert [f.name for f in dataclasses.fields(got)] == fields
    assert type(got).__name__.endswith(name)
    assert got.keys() == [k for k in expected.keys() if k != "logits"]  # logits: output_logits, not offered
    assert len(got.to_tuple()) == len(got.keys())
    np.testing.assert_array_equal(_sequences(got), _sequences(expected))
    reference_past = expected.past_key_values.to_legacy_cache()
    past = _past_as_numpy(framework, got.past_key_values, steps=_sequences(got).shape[1] - 1)
    assert len(past) == len(reference_past)
    # After beam search's last step every continuation has stopped: the running beams (the rows of
    # the cache) are picked among ties at -1e9, in an order each top-k implementation breaks its own
    # way. Their self-attention entries are not comparable there; the cross-attention ones are.
    compared = (2, 3) if beam else (0, 1, 2, 3)
    for layer, reference_layer in zip(past, reference_past):
        assert [t.shape for t in layer] == [tuple(t.shape) for t in reference_layer]
        for i in compared:
            np.testing.assert_allclose(layer[i], reference_layer[i].numpy(), atol=1e-5)


def test_flax_generate_returns_the_reference_output_objects(folder, inputs):
    """``.sequences`` as in the reference's Flax generate (FlaxGreedySearchOutput, FlaxSampleOutput,
    FlaxBeamSearchOutput, whose ``scores`` are the sequences' scores)."""
    pytest.importorskip("flax")
    from transformers.generation import flax_utils

    ids, mask = inputs
    ours = _ours("flax", folder)
    ref = _reference(folder)
    cases = [(dict(max_new_tokens=4), "FlaxGreedySearchOutput"),
             (dict(max_new_tokens=4, do_sample=True), "FlaxSampleOutput"),
             (dict(max_new_tokens=4, num_beams=2), "FlaxBeamSearchOutput")]
    for kw, name in cases:
        out = _generate("flax", ours, ids, mask, **kw)
        assert type(out).__name__ == name
        assert [f.name for f in dataclasses.fields(out)] == [f.name for f in dataclasses.fields(getattr(flax_utils, name))]
        assert out.keys() == [f.name for f in dataclasses.fields(out)]
        assert out.to_tuple()[0] is out.sequences
        if not kw.get("do_sample"):
            np.testing.assert_array_equal(_sequences(out), _sequences(_ref_generate(ref, ids, mask, **kw)))
    beam = _generate("flax", ours, ids, mask, max_new_tokens=4, num_beams=2)
    expected = _ref_generate(ref, ids, mask, max_new_tokens=4, num_beams=2, return_dict_in_generate=True,
                             output_scores=True)
    np.testing.assert_allclose(beam.scores, expected.sequences_scores.numpy(), atol=1e-5)
