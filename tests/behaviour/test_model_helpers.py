"""The helper methods other libraries call (PEFT, Trainer-style loops, Keras callbacks), against the
oracle (transformers 4.57.6's PyTorch ``EncoderDecoderModel``) loading the same folder."""

import numpy as np
import pytest

from encdec.naming.schema import schema_for
from encdec.testing import deterministic_state_dict, tiny_config, tiny_inputs

pytestmark = pytest.mark.oracle
ARCHS = ("bert2bert", "bert2gpt2")


@pytest.fixture(scope="module", params=ARCHS)
def folder(request, tmp_path_factory):
    pytest.importorskip("torch")
    from encdec_pt import EncoderDecoderModel

    config = tiny_config(request.param)
    model = EncoderDecoderModel(config)
    model.load_canonical(deterministic_state_dict(schema_for(config), seed=1))
    path = tmp_path_factory.mktemp(f"helpers-{request.param}")
    model.save_pretrained(str(path))
    return str(path)


def _pair(folder):
    transformers = pytest.importorskip("transformers")
    from encdec_pt import EncoderDecoderModel

    return EncoderDecoderModel.from_pretrained(folder), transformers.EncoderDecoderModel.from_pretrained(folder)


def test_device_dtype_can_generate_like_reference(folder):
    import torch

    ours, ref = _pair(folder)
    assert (ours.device, ours.dtype) == (ref.device, ref.dtype) == (torch.device("cpu"), torch.float32)
    assert ours.can_generate() and ref.can_generate()
    assert not ours.encoder.can_generate() and not ref.encoder.can_generate()
    assert ours.to(torch.float64).dtype == torch.float64


def test_num_parameters_like_reference(folder):
    ours, ref = _pair(folder)
    for kw in (dict(), dict(exclude_embeddings=True), dict(only_trainable=True)):
        assert ours.num_parameters(**kw) == ref.num_parameters(**kw), kw
    for model in (ours, ref):
        for p in model.encoder.parameters():
            p.requires_grad_(False)
    for kw in (dict(only_trainable=True), dict(only_trainable=True, exclude_embeddings=True)):
        assert ours.num_parameters(**kw) == ref.num_parameters(**kw), kw
    assert ours.num_parameters(only_trainable=True) < ours.num_parameters()


def _grads(model, data):
    import torch

    model.zero_grad(set_to_none=True)
    batch = {k: torch.from_numpy(v) for k, v in data.items() if v is not None}
    model(**batch, use_cache=False).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("kwargs", [None, {"use_reentrant": False}, {"use_reentrant": True}])
def test_gradient_checkpointing_kwargs_give_the_same_gradients(folder, kwargs):
    import torch

    ours, _ = _pair(folder)
    ours.train()
    for module in ours.modules():  # checkpointing replays dropout: no dropout, deterministic gradients
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    data = tiny_inputs(ours.config)
    plain = _grads(ours, data)
    ours.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    assert ours.is_gradient_checkpointing
    checkpointed = _grads(ours, data)
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-5, atol=1e-6, msg=name)
    with pytest.raises(ValueError, match="use_reentrant"):
        ours.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"preserve_rng_state": False})


def test_enable_input_require_grads_like_reference(folder):
    import torch

    ours, ref = _pair(folder)
    ids = torch.from_numpy(tiny_inputs(ours.config)["input_ids"])
    for model in (ours, ref):
        for p in model.parameters():
            p.requires_grad_(False)
    assert not ours.get_input_embeddings()(ids).requires_grad
    for model in (ours, ref):
        model.enable_input_require_grads()
    assert ours.get_input_embeddings()(ids).requires_grad == ref.get_input_embeddings()(ids).requires_grad is True
    for model in (ours, ref):
        model.disable_input_require_grads()
    assert ours.get_input_embeddings()(ids).requires_grad == ref.get_input_embeddings()(ids).requires_grad is False


@pytest.mark.parametrize("new_num_tokens,pad_to_multiple_of", [(101, 8), (None, 16), (96, None)])
def test_decoder_resize_token_embeddings_like_reference(folder, new_num_tokens, pad_to_multiple_of):
    """Sizes, config and the kept rows as the reference (its new rows are drawn around the old rows'
    mean, ours are initialised like the model: not compared)."""
    import torch

    ours, ref = _pair(folder)
    a = ours.decoder.resize_token_embeddings(new_num_tokens, pad_to_multiple_of=pad_to_multiple_of)
    b = ref.decoder.resize_token_embeddings(new_num_tokens, pad_to_multiple_of=pad_to_multiple_of)
    assert a.weight.shape == b.weight.shape
    assert ours.config.decoder.vocab_size == ref.config.decoder.vocab_size == a.num_embeddings
    keep = min(99, a.num_embeddings)
    torch.testing.assert_close(a.weight[:keep], b.weight[:keep], rtol=0, atol=0)
    assert ours.get_output_embeddings().weight.shape[0] == a.num_embeddings
    # The composite takes the same arguments (the reference's composite raises NotImplementedError).
    ours.resize_token_embeddings(None, pad_to_multiple_of=32)
    assert ours.config.decoder.vocab_size % 32 == 0
    with pytest.raises(ValueError, match="pad_to_multiple_of"):
        ours.decoder.resize_token_embeddings(100, pad_to_multiple_of=0)


@pytest.mark.parametrize("new_num_tokens,pad_to_multiple_of", [(101, 8), (96, None)])
def test_tf_decoder_resize_token_embeddings(folder, tmp_path, new_num_tokens, pad_to_multiple_of):
    """TF ``decoder.resize_token_embeddings`` (the reference's composite raises, its halves resize):
    the size and kept rows of the reference's PyTorch resize, the old tokens' logits unchanged, a new
    token id accepted, generate (traced again) and a save/load round trip on the new size."""
    pytest.importorskip("tensorflow")
    from encdec_tf import TFEncoderDecoderModel

    _, ref = _pair(folder)
    ours = TFEncoderDecoderModel.from_pretrained(folder)
    ids, dec = np.array([[5, 6, 7, 8]]), np.array([[2, 5, 9]])
    before = ours(input_ids=ids, decoder_input_ids=dec).logits.numpy()
    ours.generate(ids, max_new_tokens=2)
    layer = ours.decoder.resize_token_embeddings(new_num_tokens, pad_to_multiple_of=pad_to_multiple_of)
    expected = ref.decoder.resize_token_embeddings(new_num_tokens, pad_to_multiple_of=pad_to_multiple_of)
    n = expected.num_embeddings
    assert tuple(layer.embeddings.shape) == tuple(expected.weight.shape) and ours.config.decoder.vocab_size == n
    keep = min(99, n)
    np.testing.assert_array_equal(layer.embeddings.numpy()[:keep], expected.weight.detach().numpy()[:keep])
    after = ours(input_ids=ids, decoder_input_ids=dec).logits.numpy()
    assert after.shape[-1] == n
    if n > 99:
        np.testing.assert_array_equal(after[..., :99], before)
        assert ours(input_ids=ids, decoder_input_ids=np.array([[2, 5, n - 1]])).logits.shape[-1] == n
    generated = np.asarray(ours.generate(ids, max_new_tokens=2, num_beams=2))
    assert generated.shape == (1, 3) and generated.max() < n
    ours.save_pretrained(str(tmp_path))
    reloaded = TFEncoderDecoderModel.from_pretrained(str(tmp_path))
    np.testing.assert_array_equal(reloaded(input_ids=ids, decoder_input_ids=dec).logits.numpy(), after)


def test_tf_num_parameters_and_output_embeddings_like_reference(folder):
    pytest.importorskip("tensorflow")
    from encdec_tf import TFEncoderDecoderModel

    _, ref = _pair(folder)
    ours = TFEncoderDecoderModel.from_pretrained(folder)
    assert ours.num_parameters() == ref.num_parameters()
    assert ours.num_parameters(only_trainable=True) == ref.num_parameters(only_trainable=True)
    output = ours.get_output_embeddings()
    assert output is ours.decoder.get_input_embeddings()  # tied, as the reference's TF heads
    np.testing.assert_array_equal(np.asarray(output.embeddings), ref.get_output_embeddings().weight.detach().numpy())
    assert ours.encoder.get_output_embeddings() is None
