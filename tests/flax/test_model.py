"""FlaxEncoderDecoderModel behaviour of the Flax API (loss semantics in every framework: tests/semantics): encode/decode, saving and loading, dtypes,
ties, gradient checkpointing, training and error messages."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from _flax_helpers import TOL, max_diff
from encdec.testing import minilm_path, tiny_config
from encdec_flax import FlaxBertModel, FlaxEncoderDecoderModel, FlaxGPT2LMHeadModel


def test_import_needs_neither_torch_nor_tensorflow():
    code = (
        "import sys; sys.modules['torch'] = None; sys.modules['tensorflow'] = None; "
        "sys.modules['transformers'] = None; import encdec_flax, encdec_flax.training"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=os.path.dirname(os.path.dirname(__file__)) + "/..")


@pytest.mark.parametrize("arch", ["bert2bert", "bert2gpt2_proj"])
def test_apply_checks_param_shapes_without_tracing_initializers(built, monkeypatch, arch):
    """Existing parameters are checked by shape, not by ``jax.eval_shape`` of their initializer
    (flax's way, about half the trace time of generate); a wrong shape still raises, naming it."""
    from flax.errors import ScopeParamShapeError

    b = built(arch)
    i = b.inputs
    expected = b.model(i["input_ids"], decoder_input_ids=i["decoder_input_ids"]).logits
    calls = []
    monkeypatch.setattr(jax, "eval_shape", lambda *a, **k: calls.append(a) or pytest.fail("eval_shape called"))
    logits = b.model(i["input_ids"], decoder_input_ids=i["decoder_input_ids"]).logits
    assert calls == [] and max_diff(logits, expected) == 0.0
    monkeypatch.undo()

    params = jax.tree_util.tree_map(lambda x: x, b.model.params)
    query = params["encoder"]["encoder"]["layer"]["0"]["attention"]["self"]["query"]
    query["kernel"] = query["kernel"][:, :-1]
    with pytest.raises(ScopeParamShapeError, match="kernel.*layer/0/attention/self/query"):
        b.model(i["input_ids"], decoder_input_ids=i["decoder_input_ids"], params=params)


def test_tuple_output_order(built):
    b = built("bert2bert")
    i = b.inputs
    out = b.model(i["input_ids"], attention_mask=i["attention_mask"], labels=i["labels"], return_dict=False)
    # (loss, logits, encoder last hidden state, pooler output)
    assert [np.shape(x) for x in out] == [(), (2, 5, 99), (2, 7, 32), (2, 32)]


def test_encode_decode_and_encoder_outputs_equal_call(built):
    b = built("bert2gpt2_proj")
    i = b.inputs
    full = b.model(i["input_ids"], attention_mask=i["attention_mask"], decoder_input_ids=i["decoder_input_ids"],
                   decoder_attention_mask=i["decoder_attention_mask"])
    encoded = b.model.encode(i["input_ids"], attention_mask=i["attention_mask"])
    assert max_diff(encoded.last_hidden_state, full.encoder_last_hidden_state) == 0.0
    decoded = b.model.decode(i["decoder_input_ids"], encoded, encoder_attention_mask=i["attention_mask"],
                             decoder_attention_mask=i["decoder_attention_mask"])
    assert max_diff(decoded.logits, full.logits) < TOL
    reused = b.model(attention_mask=i["attention_mask"], encoder_outputs=encoded,
                     decoder_input_ids=i["decoder_input_ids"], decoder_attention_mask=i["decoder_attention_mask"])
    assert max_diff(reused.logits, full.logits) == 0.0
    # token_type_ids reach the BERT encoder
    typed = b.model.encode(i["input_ids"], attention_mask=i["attention_mask"], token_type_ids=np.ones_like(i["input_ids"]))
    assert max_diff(typed.last_hidden_state, encoded.last_hidden_state) > 1e-3


def test_cache_holds_cross_attention_keys(built):
    b = built("bert2bert")
    encoded = b.model.encode(b.inputs["input_ids"])
    cache = b.model.init_cache(2, 6, encoded)
    layer = cache["decoder"]["bert"]["encoder"]["layer"]["0"]
    assert layer["attention"]["self"]["cached_key"].shape == (2, 4, 6, 8)
    assert layer["crossattention"]["self"]["cached_key"].shape == (2, 4, 7, 8)
    assert float(jnp.abs(layer["crossattention"]["self"]["cached_key"]).max()) > 0
    with pytest.raises(ValueError, match="decoder_position_ids"):
        b.model.decode(np.ones((2, 1), np.int32), encoded, past_key_values=cache)


def test_jitted_decode_step_with_cache(built):
    b = built("bert2gpt2")
    i = b.inputs
    encoded = b.model.encode(i["input_ids"], attention_mask=i["attention_mask"])
    full = b.model.decode(i["decoder_input_ids"], encoded, encoder_attention_mask=i["attention_mask"])

    @jax.jit
    def step(ids, position, cache):
        out = b.model.decode(ids, encoded, encoder_attention_mask=i["attention_mask"],
                             decoder_position_ids=position, past_key_values=cache)
        return out.logits, out.past_key_values

    cache = b.model.init_cache(2, 5, encoded)
    for t in range(5):
        logits, cache = step(i["decoder_input_ids"][:, t:t + 1], jnp.full((2, 1), t), cache)
        assert max_diff(logits[:, 0], full.logits[:, t]) < TOL


def test_tied_model_saves_owners_only_and_holds_one_copy(built, tmp_path):
    b = built("bert2bert_tied")
    assert "embeddings" not in b.model.params["encoder"]  # read from the decoder's base subtree
    assert "pooler" in b.model.params["encoder"]  # the decoder has no pooler: the encoder owns it
    b.model.save_pretrained(str(tmp_path))
    from safetensors import safe_open

    with safe_open(str(tmp_path / "model.safetensors"), "np") as f:
        keys = set(f.keys())
        assert f.metadata()["format"] == "pt"
    assert keys == {spec.name for spec in b.schema.owned()}
    assert "encoder.embeddings.word_embeddings.weight" not in keys


def test_pytorch_bin_loads_without_flag(built, tmp_path):
    torch = pytest.importorskip("torch")
    b = built("bert2bert")
    torch.save({k: torch.tensor(v) for k, v in b.state.items()}, str(tmp_path / "pytorch_model.bin"))
    b.config.save_pretrained(str(tmp_path))
    loaded = FlaxEncoderDecoderModel.from_pretrained(str(tmp_path))
    assert all(np.array_equal(v, b.state[k]) for k, v in loaded.state_dict().items())


def test_do_init_false_and_missing_params_message(built):
    b = built("bert2bert")
    model = FlaxEncoderDecoderModel(b.config, _do_init=False)
    assert model.params is None
    with pytest.raises(ValueError, match="_do_init=False"):
        model(b.inputs["input_ids"], decoder_input_ids=b.inputs["decoder_input_ids"])
    params = model.init_weights(jax.random.PRNGKey(0), ((1, 1), (1, 1)))
    out = model(b.inputs["input_ids"], decoder_input_ids=b.inputs["decoder_input_ids"], params=params)
    assert out.logits.shape == (2, 5, 99)


def test_compute_dtype_and_param_casts(built):
    b = built("bert2bert")
    i = b.inputs
    model = FlaxEncoderDecoderModel(b.config, dtype=jnp.bfloat16, _do_init=False)
    params = model.to_bf16(b.model.params)
    leaves = jax.tree_util.tree_leaves(params)
    assert all(leaf.dtype == jnp.bfloat16 for leaf in leaves)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree_util.tree_leaves(model.to_fp32(params)))
    assert all(leaf.dtype == jnp.float16 for leaf in jax.tree_util.tree_leaves(model.to_fp16(b.model.params)))
    out = model(i["input_ids"], attention_mask=i["attention_mask"], labels=i["labels"], params=params)
    ref = b.model(i["input_ids"], attention_mask=i["attention_mask"], labels=i["labels"])
    assert out.logits.dtype == jnp.bfloat16 and out.loss.dtype == jnp.float32
    assert max_diff(out.loss, ref.loss) < 0.1


def test_enc_to_dec_proj_init():
    config = tiny_config("bert2gpt2_proj")
    config.decoder.initializer_range = 0.5
    params = FlaxEncoderDecoderModel(config, seed=1).params["enc_to_dec_proj"]
    assert params["kernel"].shape == (32, 48)
    assert np.all(np.asarray(params["bias"]) == 0)
    assert 0.4 < float(jnp.std(params["kernel"])) < 0.6


def test_gradient_checkpointing_gives_the_same_loss_and_grads(built):
    b = built("bert2gpt2")
    model = FlaxEncoderDecoderModel(b.config, _do_init=False, gradient_checkpointing=True)
    batch = {k: b.inputs[k] for k in ("input_ids", "attention_mask", "labels")}

    def grads(m):
        return jax.jit(jax.value_and_grad(lambda p: m(**batch, params=p).loss))(b.model.params)

    (loss_a, grads_a), (loss_b, grads_b) = grads(b.model), grads(model)
    assert abs(float(loss_a) - float(loss_b)) < 1e-6
    assert max(max_diff(x, y) for x, y in zip(jax.tree_util.tree_leaves(grads_a), jax.tree_util.tree_leaves(grads_b))) < 1e-6


def test_jit_train_step_lowers_the_loss(built):
    optax = pytest.importorskip("optax")
    from encdec_flax.training import make_train_step

    b = built("bert2bert_tied")
    batch = {k: b.inputs[k] for k in ("input_ids", "attention_mask", "labels")}
    tx = optax.adamw(3e-3)
    params, opt_state = b.model.params, tx.init(b.model.params)
    step = make_train_step(b.model, tx)
    rng = jax.random.PRNGKey(0)
    losses = []
    for _ in range(8):
        rng, dropout_rng = jax.random.split(rng)
        params, opt_state, loss = step(params, opt_state, batch, dropout_rng)
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0], losses
    # one tree for the tied weights: the optimizer updated the shared copy once
    assert "embeddings" not in params["encoder"]
    with pytest.raises(ValueError, match="labels holds token id 99"):
        step(params, opt_state, {**batch, "labels": np.full_like(batch["labels"], 99)}, rng)


def test_encode_names_out_of_vocab_ids(built):
    """``encode`` on its own (the call in every framework: tests/semantics)."""
    b = built("bert2bert")
    ids = b.inputs["input_ids"].copy()
    ids[1, 3] = 150
    with pytest.raises(ValueError, match="input_ids holds token id 150"):
        b.model.encode(ids)


def test_positions_and_token_types_jax_would_clamp_raise(built):
    b = built("bert2gpt2")
    long_ids = np.full((1, 65), 5)
    with pytest.raises(ValueError, match="input_ids has length 65.*max_position_embeddings=64"):
        b.model.encode(long_ids)
    with pytest.raises(ValueError, match="decoder_input_ids has length 65"):
        b.model(b.inputs["input_ids"][:1], decoder_input_ids=long_ids)
    with pytest.raises(ValueError, match=r"token_type_ids holds 2 .*\[0, 2\)"):
        b.model.encode(b.inputs["input_ids"], token_type_ids=np.full_like(b.inputs["input_ids"], 2))
    with pytest.raises(ValueError, match="decoder_position_ids holds 64"):
        b.model.decode(np.ones((2, 1), np.int32), b.model.encode(b.inputs["input_ids"]),
                       decoder_position_ids=np.full((2, 1), 64))
    with pytest.raises(ValueError, match="max_length=65"):
        b.model.init_cache(2, 65, b.model.encode(b.inputs["input_ids"]))


def test_missing_inputs_raise(built):
    """(Missing special tokens in every framework: tests/semantics.)"""
    b = built("bert2bert")
    with pytest.raises(ValueError, match="decoder_input_ids"):
        b.model(b.inputs["input_ids"])
    with pytest.raises(ValueError, match="dropout_rng"):
        b.model(b.inputs["input_ids"], labels=b.inputs["labels"], train=True)


def test_params_tree_is_laid_out_like_the_hf_flax_tree(built):
    params = built("bert2gpt2_proj").model.params
    assert params["encoder"]["embeddings"]["word_embeddings"]["embedding"].shape == (99, 32)
    assert params["encoder"]["encoder"]["layer"]["0"]["attention"]["self"]["query"]["kernel"].shape == (32, 32)
    assert params["decoder"]["transformer"]["h"]["0"]["attn"]["c_attn"]["kernel"].shape == (144, 48)
    assert params["decoder"]["transformer"]["h"]["1"]["crossattention"]["q_attn"]["kernel"].shape == (48, 48)
    assert "lm_head" not in params["decoder"]  # tied to wte


def test_from_encoder_decoder_pretrained_minilm(tmp_path, caplog):
    path = minilm_path()
    with caplog.at_level("WARNING", logger="encdec_flax"):
        model = FlaxEncoderDecoderModel.from_encoder_decoder_pretrained(
            path, path, decoder_start_token_id=101, pad_token_id=0, decoder_hidden_dropout_prob=0.0,
        )
    assert model.config.decoder_start_token_id == 101
    assert model.config.decoder.hidden_dropout_prob == 0.0 and model.config.encoder.hidden_dropout_prob == 0.1
    assert model.config.decoder.is_decoder and model.config.decoder.add_cross_attention
    assert any("cross-attention: 60 tensors newly initialised" in r.message for r in caplog.records)
    encoder = FlaxBertModel.from_pretrained(path)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(
        jax.tree_util.tree_leaves(encoder.params["embeddings"]),
        jax.tree_util.tree_leaves(model.params["encoder"]["embeddings"])))
    ids = np.array([[101, 7592, 2088, 102]])
    out = model(ids, labels=np.array([[7592, 2088, 102]]))
    assert np.isfinite(float(out.loss))
    ref = encoder(ids).last_hidden_state
    assert max_diff(model.encode(ids).last_hidden_state, ref) < TOL


def test_parts_registries_and_standalone_cache():
    from encdec.testing import tiny_gpt2_config
    from encdec_flax import FlaxAutoModelForCausalLM

    assert FlaxAutoModelForCausalLM.model_class(tiny_gpt2_config()) is FlaxGPT2LMHeadModel
    model = FlaxAutoModelForCausalLM.from_config(tiny_gpt2_config())
    ids = np.array([[5, 6, 7, 8]])
    full = model(ids).logits
    cache = model.init_cache(1, 4)
    for t in range(4):
        out = model(ids[:, t:t + 1], position_ids=np.array([[t]]), past_key_values=cache)
        cache = out.past_key_values
        assert max_diff(out.logits[:, 0], full[:, t]) < TOL
