"""The architectures added through the registry (RoBERTa, XLM-RoBERTa, CamemBERT, ELECTRA, ...) against the
reference (transformers==4.57.6) PyTorch model, in each framework: one test body per behaviour,
parametrised over framework x pair (``encdec.testing.PAIRS``) through tests/adapters.

The reference is built from the folder our PyTorch model saves (so that path is proven too) and
holds the same deterministic weights as our model of each framework. Compared: outputs (loss,
logits, hidden states, attentions), cached stepping, gradients, greedy and beam tokens, and
checkpoints the reference writes (safetensors, pytorch_model.bin, and its own tf_model.h5 /
flax_model.msgpack where it has the classes, or the files of its part classes where only those
work) loading in ours.
"""

import numpy as np
import pytest

from adapters import FRAMEWORKS, load_adapter
from encdec.naming.schema import schema_for
from encdec.testing import TOLERANCE, deterministic_state_dict, tiny_config, tiny_inputs

pytestmark = pytest.mark.oracle

PAIRS = ("roberta2roberta", "roberta2gpt2", "bert2roberta", "roberta2roberta_proj", "xlm-roberta2gpt2",
         "camembert2camembert", "electra2electra", "bert2electra", "electra2gpt2_proj")
# The one tolerance table (encdec.testing): outputs by max abs difference; gradients relative to the
# parameter's largest gradient, floored at a fraction of the model's largest.
TOL = TOLERANCE["float32"]
OUTPUTS = ("loss", "logits", "encoder_last_hidden_state", "encoder_hidden_states", "encoder_attentions",
           "decoder_hidden_states", "decoder_attentions", "cross_attentions")
# model_types the reference's TF / Flax composites can hold, as encoder and as decoder (hf_behaviour.md
# §2): its own tf_model.h5 / flax_model.msgpack of a pair exist only when both halves are here. It has
# TFElectraModel but no TF ELECTRA causal LM.
REFERENCE_TF = {"encoder": {"bert", "gpt2", "roberta", "xlm-roberta", "camembert", "electra"},
                "decoder": {"bert", "gpt2", "roberta", "xlm-roberta", "camembert"}}
REFERENCE_FLAX = {"bert", "gpt2", "roberta", "xlm-roberta"}
# Its Flax composite crashes on these (their Flax modules need the token_type_ids it drops); its
# part classes (FlaxElectraModel, FlaxElectraForCausalLM) still write their own flax_model.msgpack.
REFERENCE_FLAX_PARTS = {"electra"}

_REFERENCE = {}  # pair -> dict(config, state, inputs, model, folders)
_OURS = {}  # (framework, pair) -> our model


def _cases():
    for fw in FRAMEWORKS:
        for pair in PAIRS:
            yield pytest.param(fw, pair, id=f"{fw}-{pair}")


def _inputs(config):
    """``tiny_inputs`` plus encoder token types (non-zero where the encoder has two types)."""
    inputs = tiny_inputs(config)
    token_type_ids = np.zeros_like(inputs["input_ids"])
    if config.encoder.type_vocab_size > 1:
        token_type_ids[:, 3:] = 1
    inputs["token_type_ids"] = token_type_ids
    return inputs


def _torch(inputs):
    import torch

    return {k: torch.from_numpy(np.asarray(v)) for k, v in inputs.items()}


def reference(pair, tmp_path_factory):
    """The reference model of ``pair``, read from the folder our PyTorch model wrote."""
    if pair not in _REFERENCE:
        transformers = pytest.importorskip("transformers")
        config = tiny_config(pair)
        state = deterministic_state_dict(schema_for(config), seed=1)
        ours_pt = load_adapter("pt").build(config, state)
        folder = tmp_path_factory.mktemp(f"ours-pt-{pair}")
        ours_pt.save_pretrained(str(folder))
        model = transformers.EncoderDecoderModel.from_pretrained(str(folder), attn_implementation="eager").eval()
        _REFERENCE[pair] = dict(config=config, state=state, inputs=_inputs(config), model=model)
        _OURS[("pt", pair)] = ours_pt
    return _REFERENCE[pair]


def ours(fw, pair, tmp_path_factory):
    ref = reference(pair, tmp_path_factory)
    if (fw, pair) not in _OURS:
        _OURS[(fw, pair)] = load_adapter(fw).build(ref["config"], ref["state"])
    return _OURS[(fw, pair)]


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
    return value.detach().numpy()


@pytest.mark.parametrize("fw,pair", list(_cases()))
def test_outputs_equal_reference(fw, pair, tmp_path_factory):
    import torch

    ref = reference(pair, tmp_path_factory)
    adapter = load_adapter(fw)
    got = adapter.forward(ours(fw, pair, tmp_path_factory), ref["inputs"], output_attentions=True,
                          output_hidden_states=True)
    with torch.no_grad():
        want = ref["model"](**_torch(ref["inputs"]), output_attentions=True, output_hidden_states=True)
    for name in OUTPUTS:
        diff = _max_diff(got[name], _numpy(getattr(want, name)))
        assert diff <= TOL["abs"], f"{fw} {pair} {name}: {diff:.3g}"


@pytest.mark.parametrize("fw,pair", list(_cases()))
def test_cached_steps_equal_reference(fw, pair, tmp_path_factory):
    """One decoder token at a time through the cache = the reference's full forward (RoBERTa's
    positions continue from the cache length)."""
    import torch

    ref = reference(pair, tmp_path_factory)
    inputs = {k: v for k, v in ref["inputs"].items() if k not in ("labels", "token_type_ids")}
    steps = load_adapter(fw).step_logits(ours(fw, pair, tmp_path_factory), inputs)
    with torch.no_grad():
        full = ref["model"](**_torch(inputs)).logits.numpy()
    diff = _max_diff(steps, full)
    assert diff <= TOL["abs"], f"{fw} {pair}: cached steps differ from the full forward by {diff:.3g}"


@pytest.mark.parametrize("fw,pair", list(_cases()))
def test_gradients_equal_reference(fw, pair, tmp_path_factory):
    ref = reference(pair, tmp_path_factory)
    model = ref["model"]
    model.zero_grad(set_to_none=True)
    model(**_torch(ref["inputs"])).loss.backward()
    params = dict(model.named_parameters(remove_duplicate=False))
    got = load_adapter(fw).grads(ours(fw, pair, tmp_path_factory), ref["inputs"])
    want = {}
    for name in got:
        grad = params[name].grad
        want[name] = np.zeros_like(got[name]) if grad is None else grad.detach().numpy().copy()
    model.zero_grad(set_to_none=True)
    floor = TOL["grad_floor"] * max(float(np.abs(g).max()) for g in want.values())
    for name in got:
        scale = max(float(np.abs(want[name]).max()), floor)
        rel = _max_diff(got[name], want[name]) / scale
        assert rel <= TOL["grad_rtol"], f"{fw} {pair} d loss / d {name}: relative difference {rel:.3g}"


def _generate_cases():
    """Greedy and beam in every framework; in CI, TF and Flax beams on one pair (their beam search is
    the architecture-free loop the other generate tests hold to the reference; greedy exercises each
    decoder's cache)."""
    for case in _cases():
        fw, pair = case.values
        for name, search in (("greedy", dict(do_sample=False)), ("beam", dict(num_beams=3, num_return_sequences=2))):
            slow = name == "beam" and fw != "pt" and pair != PAIRS[0]
            yield pytest.param(fw, pair, search, id=f"{fw}-{pair}-{name}", marks=[pytest.mark.slow] if slow else [])


@pytest.mark.parametrize("fw,pair,search", list(_generate_cases()))
def test_generate_tokens_equal_reference(fw, pair, search, tmp_path_factory):
    import torch

    ref = reference(pair, tmp_path_factory)
    inputs = {k: ref["inputs"][k] for k in ("input_ids", "attention_mask")}
    got = load_adapter(fw).generate(ours(fw, pair, tmp_path_factory), inputs, max_new_tokens=9, **search)
    with torch.no_grad():
        want = ref["model"].generate(**_torch(inputs), max_new_tokens=9, **search).numpy()
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("fw,pair", list(_cases()))
def test_reference_files_load_in_ours(fw, pair, tmp_path_factory):
    """Every checkpoint the reference writes for the pair: PyTorch safetensors and pytorch_model.bin,
    and its TF h5 / Flax msgpack where it has the classes."""
    transformers = pytest.importorskip("transformers")
    ref = reference(pair, tmp_path_factory)
    folders = ref.setdefault("folders", {})
    if not folders:
        root = tmp_path_factory.mktemp(f"reference-{pair}")
        ref["model"].save_pretrained(str(root / "safetensors"))
        ref["model"].save_pretrained(str(root / "bin"), safe_serialization=False)
        folders["safetensors"], folders["bin"] = str(root / "safetensors"), str(root / "bin")
        types = {ref["config"].encoder.model_type, ref["config"].decoder.model_type}
        inputs = {k: ref["inputs"][k] for k in ("input_ids", "attention_mask", "decoder_input_ids",
                                                "decoder_attention_mask")}
        want = ref["model"](**_torch(inputs)).logits.detach().numpy()
        converted = []
        encoder_type, decoder_type = ref["config"].encoder.model_type, ref["config"].decoder.model_type
        if encoder_type in REFERENCE_TF["encoder"] and decoder_type in REFERENCE_TF["decoder"]:
            converted.append(("h5", transformers.TFEncoderDecoderModel.from_pretrained(folders["bin"], from_pt=True)))
        if types <= REFERENCE_FLAX:
            converted.append(("msgpack", transformers.FlaxEncoderDecoderModel.from_pretrained(folders["bin"],
                                                                                            from_pt=True)))
        for kind, model in converted:
            # The reference's own PyTorch -> TF / Flax conversion leaves an XLM-R or CamemBERT
            # encoder randomly initialised (its renaming expects `roberta.`): its file then holds
            # other weights, which is no test of our reader. Only files that hold the weights count.
            # Its part classes convert them right: their files are read instead.
            if _max_diff(np.asarray(model(**inputs).logits), want) > TOL["abs"]:
                folders[f"{kind}-parts"] = _reference_parts(transformers, ref, root / f"{kind}-parts", kind)
                continue
            model.save_pretrained(str(root / kind))
            folders[kind] = str(root / kind)
        if types <= REFERENCE_FLAX | REFERENCE_FLAX_PARTS and types & REFERENCE_FLAX_PARTS:
            folders["msgpack-parts"] = _reference_parts(transformers, ref, root / "msgpack-parts", "msgpack")
    adapter = load_adapter(fw)
    for kind, folder in folders.items():
        if isinstance(folder, tuple):
            # Part files: our composite from its encoder's and decoder's folders; a composite's own
            # weight (`enc_to_dec_proj`) is in neither, so only the parts' weights are compared.
            model = type(ours(fw, pair, tmp_path_factory)).from_encoder_decoder_pretrained(*folder)
            parts = ("encoder.", "decoder.")
            state = {n: v for n, v in adapter.state_dict(model).items() if n.startswith(parts)}
            want = {n: v for n, v in ref["state"].items() if n.startswith(parts)}
        else:
            state, want = adapter.state_dict(adapter.load(folder)), ref["state"]
        assert sorted(state) == sorted(want), f"{fw} {pair} {kind}"
        for name, value in want.items():
            np.testing.assert_allclose(np.asarray(state[name]), value, rtol=0, atol=1e-7,
                                       err_msg=f"{fw} {pair} {kind}: {name}")


def _reference_parts(transformers, ref, root, kind):
    """The reference's TF (``kind`` "h5") or Flax ("msgpack") encoder and decoder, its part classes
    converted from its PyTorch halves and checked against them on the pair's inputs, saved in its own
    format: the two folders."""
    import torch

    prefix = "TF" if kind == "h5" else "Flax"
    model, inputs = ref["model"], _torch(ref["inputs"])
    model.encoder.save_pretrained(str(root / "pt-encoder"))
    model.decoder.save_pretrained(str(root / "pt-decoder"))
    encoder = getattr(transformers, f"{prefix}AutoModel").from_pretrained(str(root / "pt-encoder"), from_pt=True)
    decoder = getattr(transformers, f"{prefix}AutoModelForCausalLM").from_pretrained(str(root / "pt-decoder"),
                                                                                     from_pt=True)
    with torch.no_grad():
        want = model(**inputs)
    encoder_state = encoder(ref["inputs"]["input_ids"], attention_mask=ref["inputs"]["attention_mask"],
                            token_type_ids=ref["inputs"]["token_type_ids"]).last_hidden_state
    assert _max_diff(np.asarray(encoder_state), want.encoder_last_hidden_state.numpy()) <= TOL["abs"]
    if getattr(model, "enc_to_dec_proj", None) is None:
        # Token types given where the decoder has them: the reference's Flax ELECTRA defaults them to
        # ones (its PyTorch, to zeros); GPT-2 would add the embedding of type 0.
        decoder_input_ids = ref["inputs"]["decoder_input_ids"]
        types = {"token_type_ids": np.zeros_like(decoder_input_ids)} \
            if hasattr(ref["config"].decoder, "type_vocab_size") else {}
        logits = decoder(decoder_input_ids, attention_mask=ref["inputs"]["decoder_attention_mask"],
                         encoder_hidden_states=encoder_state, encoder_attention_mask=ref["inputs"]["attention_mask"],
                         **types).logits
        assert _max_diff(np.asarray(logits), want.logits.numpy()) <= TOL["abs"]
    encoder.save_pretrained(str(root / "encoder"))
    decoder.save_pretrained(str(root / "decoder"))
    return str(root / "encoder"), str(root / "decoder")


@pytest.mark.parametrize("fw,pair", list(_cases()))
def test_our_files_load_in_reference(fw, pair, tmp_path_factory):
    """What our model of each framework saves, the reference's PyTorch model reads, with equal logits."""
    import torch

    transformers = pytest.importorskip("transformers")
    ref = reference(pair, tmp_path_factory)
    folder = tmp_path_factory.mktemp(f"ours-{fw}-{pair}")
    load_adapter(fw).save(ours(fw, pair, tmp_path_factory), folder)
    loaded = transformers.EncoderDecoderModel.from_pretrained(str(folder), attn_implementation="eager").eval()
    inputs = _torch(ref["inputs"])
    with torch.no_grad():
        diff = _max_diff(loaded(**inputs).logits.numpy(), ref["model"](**inputs).logits.numpy())
    assert diff <= TOL["abs"], f"{fw} {pair}: {diff:.3g}"


_CAUSAL_LM = {"pt": ("encdec_pt.models.auto", "AutoModelForCausalLM"),
              "tf": ("encdec_tf.models.auto", "TFAutoModelForCausalLM"),
              "flax": ("encdec_flax.models.auto", "FlaxAutoModelForCausalLM")}


@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_reference_tf_electra_generator_loads_in_ours(fw, tmp_path):
    """The reference has no TF ELECTRA causal LM, so no composite h5 holds ELECTRA's generator head;
    its ``TFElectraForMaskedLM`` holds the same head (``generator_predictions``, ``generator_lm_head/bias``
    on the tied embeddings). Its tf_model.h5 loads as our ELECTRA causal LM (``is_decoder=False``: the
    masked LM's bidirectional attention) with the reference's PyTorch logits."""
    import importlib

    import torch

    transformers = pytest.importorskip("transformers")
    config = tiny_config("electra2electra").encoder
    torch.manual_seed(0)
    reference_pt = transformers.ElectraForMaskedLM(transformers.ElectraConfig(**config.to_dict())).eval()
    with torch.no_grad():
        reference_pt.generator_lm_head.bias.normal_()  # zeros at init: would hide a bias not read
    reference_pt.save_pretrained(str(tmp_path / "pt"))
    transformers.TFElectraForMaskedLM.from_pretrained(str(tmp_path / "pt"), from_pt=True).save_pretrained(
        str(tmp_path / "tf"))
    input_ids = np.array([[5, 6, 7, 8, 9], [10, 11, 12, 13, 14]])
    with torch.no_grad():
        want = reference_pt(torch.from_numpy(input_ids)).logits.numpy()
    module, name = _CAUSAL_LM[fw]
    model = getattr(importlib.import_module(module), name).from_pretrained(str(tmp_path / "tf"), is_decoder=False)
    got = model(input_ids=torch.from_numpy(input_ids) if fw == "pt" else input_ids).logits
    got = got.detach().numpy() if fw == "pt" else np.asarray(got)
    assert _max_diff(got, want) <= TOL["abs"], f"{fw}: {_max_diff(got, want):.3g}"


_BASE = {"pt": ("encdec_pt.models.auto", "AutoModel"), "tf": ("encdec_tf.models.auto", "TFAutoModel"),
         "flax": ("encdec_flax.models.auto", "FlaxAutoModel")}
# model_type -> the reference's TF and Flax base-model classes that exist (hf_behaviour.md §2)
_REFERENCE_BASE = {"bert": ("TF", "Flax"), "roberta": ("TF", "Flax"), "xlm-roberta": ("TF", "Flax"),
                   "camembert": ("TF",), "electra": ("TF", "Flax"), "gpt2": ("TF", "Flax")}


@pytest.mark.parametrize("fw", FRAMEWORKS)
@pytest.mark.parametrize("model_type", sorted(_REFERENCE_BASE))
def test_reference_tf_and_flax_base_model_files_load_in_ours(fw, model_type, tmp_path):
    """A part of a pair is often a base model saved alone (``TFBertModel``'s tf_model.h5 holds the
    MainLayer level and the pooler: ``bert/pooler/dense/kernel``). The reference's TF and Flax base
    models, converted from its PyTorch one, load in ours with its PyTorch weights exactly."""
    import importlib

    import torch

    transformers = pytest.importorskip("transformers")
    from encdec.testing import tiny_arch_config

    config = tiny_arch_config(model_type)
    fields = {k: v for k, v in config.to_dict().items()
              if k not in ("model_type", "transformers_version", "encdec_version", "architectures")}
    torch.manual_seed(0)
    reference_pt = transformers.AutoModel.from_config(transformers.AutoConfig.for_model(model_type, **fields))
    reference_pt.save_pretrained(str(tmp_path / "pt"))
    want = {k: v.detach().numpy() for k, v in reference_pt.state_dict().items()}
    module, name = _BASE[fw]
    cls = getattr(importlib.import_module(module), name)
    for prefix in _REFERENCE_BASE[model_type]:
        folder = str(tmp_path / prefix)
        getattr(transformers, f"{prefix}AutoModel").from_pretrained(str(tmp_path / "pt"), from_pt=True).save_pretrained(folder)
        state = load_adapter(fw).state_dict(cls.from_pretrained(folder))
        for key, value in state.items():
            if key in want:  # the reference's PyTorch state also lists buffers (position ids)
                np.testing.assert_allclose(value, want[key], rtol=0, atol=1e-7,
                                           err_msg=f"{fw} {model_type} {prefix}: {key}")
        assert {k for k in want if "position_ids" not in k and "attn.bias" not in k} <= set(state), \
            f"{fw} {model_type} {prefix}: {sorted(set(want) - set(state))[:5]}"
