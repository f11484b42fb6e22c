"""docs/semantics.md, checked once for every framework x pair: labels -> decoder inputs, loss, the
derived decoder mask, and bad input (out-of-vocabulary ids, missing special tokens), each named."""

import numpy as np
import pytest

from adapters import FRAMEWORKS, built_cache
from encdec.modeling_utils import decoder_mask_from_labels_np, shift_tokens_right_np
from encdec.testing import TOLERANCE, pair_params

TOL = TOLERANCE["float32"]
ENCODER_INPUTS = ("input_ids", "attention_mask")


@pytest.fixture(scope="module")
def built():
    return built_cache()


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _only(inputs, *names):
    return {k: inputs[k] for k in names}


@pytest.mark.parametrize("framework,pair", pair_params(FRAMEWORKS))
def test_labels_alone_shift_derive_mask_and_give_token_mean_loss(built, framework, pair):
    b = built(framework, pair)
    adapter, model, full = b.adapter, b.model, b.inputs
    labels = full["labels"]
    assert (labels == -100).any()
    labels_only = _only(full, *ENCODER_INPUTS, "labels")
    out = adapter.forward(model, labels_only)
    # The same numbers as passing the shifted inputs and the derived mask explicitly ...
    explicit = dict(labels_only, decoder_input_ids=shift_tokens_right_np(labels, 0, 2),
                    decoder_attention_mask=decoder_mask_from_labels_np(labels))
    ref = adapter.forward(model, explicit)
    np.testing.assert_array_equal(out["logits"], ref["logits"])
    assert float(out["loss"]) == float(ref["loss"])
    # ... the derived mask matters (row 1 ends with pads from -100 labels) ...
    unmasked = adapter.forward(model, dict(_only(full, *ENCODER_INPUTS, "decoder_input_ids"),
                                           decoder_attention_mask=np.ones_like(labels)))
    assert np.abs(unmasked["logits"][1] - out["logits"][1]).max() > TOL["abs"]
    # ... and the loss is the mean over labels != -100 of the cross-entropy, a scalar.
    keep = labels != -100
    logp = _log_softmax(out["logits"].astype(np.float64))
    nll = -np.take_along_axis(logp, np.where(keep, labels, 0)[..., None], -1)[..., 0]
    assert np.asarray(out["loss"]).shape == ()
    # (float32 rounding at the loss's scale: a loss of 9 is only held to about 1e-6 in float32)
    expected = nll[keep].mean()
    assert abs(float(out["loss"]) - expected) <= TOL["same_model"] * max(1.0, abs(expected))
    # Ignored positions do not count: labels there change nothing until they are no longer -100.
    counted = adapter.forward(model, dict(explicit, labels=np.where(keep, labels, 5)))
    assert abs(float(counted["loss"]) - float(out["loss"])) > TOL["abs"]


@pytest.mark.parametrize("framework,pair", pair_params(FRAMEWORKS))
def test_start_token_equal_to_pad_is_not_masked(built, framework, pair):
    """The reference masks position 0 when decoder_start_token_id == pad_token_id; we do not."""
    b = built(framework, pair)
    adapter, model, inputs = b.adapter, b.model, b.inputs
    original = model.config.decoder_start_token_id
    try:
        model.config.decoder_start_token_id = model.config.pad_token_id
        out = adapter.forward(model, _only(inputs, *ENCODER_INPUTS, "labels"))
        explicit = dict(_only(inputs, *ENCODER_INPUTS, "labels"),
                        decoder_input_ids=shift_tokens_right_np(inputs["labels"], 0, 0),
                        decoder_attention_mask=decoder_mask_from_labels_np(inputs["labels"]))
        ref = adapter.forward(model, explicit)
    finally:
        model.config.decoder_start_token_id = original
    assert decoder_mask_from_labels_np(inputs["labels"])[:, 0].all()
    np.testing.assert_array_equal(out["logits"], ref["logits"])


@pytest.mark.parametrize("framework,pair", pair_params(FRAMEWORKS))
def test_all_labels_ignored_gives_zero_loss_not_nan(built, framework, pair):
    b = built(framework, pair)
    labels = np.full_like(b.inputs["labels"], -100)
    out = b.adapter.forward(b.model, dict(_only(b.inputs, *ENCODER_INPUTS), labels=labels))
    assert float(out["loss"]) == 0.0


# (input, position, bad id): the first id past the vocabulary, one far past it, a negative one.
BAD_IDS = [("input_ids", (0, 1), 99), ("input_ids", (1, 3), 150), ("decoder_input_ids", (0, 1), 99),
           ("decoder_input_ids", (1, 0), -3), ("labels", (0, 0), 1000), ("labels", (1, 1), 99)]


@pytest.mark.parametrize("which,position,bad", BAD_IDS, ids=[f"{w}={v}" for w, _, v in BAD_IDS])
@pytest.mark.parametrize("framework,pair", pair_params(FRAMEWORKS))
def test_out_of_vocabulary_id_is_named(built, framework, pair, which, position, bad):
    b = built(framework, pair)
    inputs = {k: v.copy() for k, v in b.inputs.items()
              if k in ENCODER_INPUTS or k == which or (which != "labels" and k == "decoder_input_ids")}
    inputs[which][position] = bad  # both vocabularies hold 99 ids
    with pytest.raises(ValueError, match=rf"{which} holds token id {bad} .*vocab_size=99"):
        b.adapter.forward(b.model, inputs)


@pytest.mark.parametrize("framework,pair", pair_params(FRAMEWORKS))
def test_out_of_vocabulary_generate_input_is_named(built, framework, pair):
    b = built(framework, pair)
    inputs = {k: b.inputs[k].copy() for k in ENCODER_INPUTS}
    inputs["input_ids"][0, 0] = 120
    with pytest.raises(ValueError, match="input_ids holds token id 120"):
        b.adapter.generate(b.model, inputs, max_new_tokens=3)


@pytest.mark.parametrize("missing", ["decoder_start_token_id", "pad_token_id"])
@pytest.mark.parametrize("framework,pair", pair_params(FRAMEWORKS))
def test_missing_special_token_is_named(built, framework, pair, missing):
    b = built(framework, pair)
    original = getattr(b.model.config, missing)
    try:
        setattr(b.model.config, missing, None)
        with pytest.raises(ValueError, match=missing):
            b.adapter.forward(b.model, _only(b.inputs, *ENCODER_INPUTS, "labels"))
    finally:
        setattr(b.model.config, missing, original)
