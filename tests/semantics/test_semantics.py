"""docs/semantics.md, checked once for every framework: labels -> decoder inputs, loss, the
derived decoder mask, and bad input. Each test body runs in PyTorch, TensorFlow and Flax."""

import numpy as np
import pytest

from adapters import FRAMEWORKS, load_adapter
from encdec.modeling_utils import decoder_mask_from_labels_np, shift_tokens_right_np
from encdec.naming.schema import schema_for
from encdec.testing import deterministic_state_dict, tiny_config, tiny_inputs


@pytest.fixture(scope="module")
def models():
    config = tiny_config("bert2bert")
    state = deterministic_state_dict(schema_for(config), seed=3)
    return config, {fw: (load_adapter(fw), load_adapter(fw).build(config, state)) for fw in FRAMEWORKS}


def _log_softmax(x):
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_labels_alone_shift_derive_mask_and_give_token_mean_loss(models, fw):
    config, built = models
    adapter, model = built[fw]
    full = tiny_inputs(config)
    labels_only = {"input_ids": full["input_ids"], "attention_mask": full["attention_mask"], "labels": full["labels"]}
    out = adapter.forward(model, labels_only)
    # The same as passing the shifted inputs and the derived mask explicitly ...
    explicit = dict(labels_only, decoder_input_ids=shift_tokens_right_np(full["labels"], 0, 2),
                    decoder_attention_mask=decoder_mask_from_labels_np(full["labels"]))
    ref = adapter.forward(model, explicit)
    np.testing.assert_allclose(out["logits"], ref["logits"], atol=1e-6)
    # ... and the loss is the mean over labels != -100 of the cross-entropy, a scalar.
    labels = full["labels"]
    keep = labels != -100
    logp = _log_softmax(out["logits"].astype(np.float64))
    nll = -np.take_along_axis(logp, np.where(keep, labels, 0)[..., None], -1)[..., 0]
    assert np.asarray(out["loss"]).shape == ()
    assert abs(float(out["loss"]) - nll[keep].mean()) < 1e-5


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_start_token_equal_to_pad_is_not_masked(models, fw):
    """The reference masks position 0 when decoder_start_token_id == pad_token_id; we do not."""
    config, built = models
    adapter, model = built[fw]
    inputs = tiny_inputs(config)
    original = model.config.decoder_start_token_id
    try:
        model.config.decoder_start_token_id = model.config.pad_token_id
        out = adapter.forward(model, {k: inputs[k] for k in ("input_ids", "attention_mask", "labels")})
        explicit = dict(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"], labels=inputs["labels"],
                        decoder_input_ids=shift_tokens_right_np(inputs["labels"], 0, 0),
                        decoder_attention_mask=decoder_mask_from_labels_np(inputs["labels"]))
        ref = adapter.forward(model, explicit)
    finally:
        model.config.decoder_start_token_id = original
    assert decoder_mask_from_labels_np(inputs["labels"])[:, 0].all()
    np.testing.assert_allclose(out["logits"], ref["logits"], atol=1e-6)


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_all_labels_ignored_gives_zero_loss_not_nan(models, fw):
    config, built = models
    adapter, model = built[fw]
    inputs = tiny_inputs(config)
    labels = np.full_like(inputs["labels"], -100)
    out = adapter.forward(model, dict(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                      labels=labels))
    assert float(out["loss"]) == 0.0


@pytest.mark.parametrize("fw", FRAMEWORKS)
@pytest.mark.parametrize("which", ["input_ids", "decoder_input_ids"])
def test_out_of_vocabulary_id_is_named(models, fw, which):
    config, built = models
    adapter, model = built[fw]
    inputs = {k: v.copy() for k, v in tiny_inputs(config).items() if k != "labels"}
    inputs[which][0, 1] = 99  # vocab_size is 99
    with pytest.raises(ValueError, match=r"token id 99.*vocab"):
        adapter.forward(model, inputs)


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_missing_decoder_start_token_is_named(models, fw):
    config, built = models
    adapter, model = built[fw]
    inputs = tiny_inputs(config)
    original = model.config.decoder_start_token_id
    try:
        model.config.decoder_start_token_id = None
        with pytest.raises(ValueError, match="decoder_start_token_id"):
            adapter.forward(model, {k: inputs[k] for k in ("input_ids", "attention_mask", "labels")})
    finally:
        model.config.decoder_start_token_id = original
