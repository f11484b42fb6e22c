"""The code examples of the reference's model documentation for Encoder Decoder Models (transformers
4.57.6: the page docs/source/en/model_doc/encoder-decoder.md and the docstrings of
EncoderDecoderModel, TFEncoderDecoderModel and FlaxEncoderDecoderModel), each kept below as the
reference writes it and run with one mechanical change: ``from transformers import ...`` becomes
imports from ``encdec`` / ``encdec_pt`` / ``encdec_tf`` / ``encdec_flax`` (``ours``; the test asserts
that no other line differs). The hub ids resolve in a fake offline cache of tiny models that the
oracle wrote (tests/fake_hub.py), and where an example computes a loss, logits, tokens or text, ours
equals the reference running the very same code with transformers on the same cache.

Reference examples that do not run as written are kept verbatim too, with a test that the reference
itself fails on them, and a corrected form that both run (listed in docs/compatibility.md).
"""

import doctest  # noqa: F401  (the >>> prompts below are doctest's)
import re

import numpy as np
import pytest

from fake_hub import build_fake_hub, offline_cache

pytestmark = pytest.mark.oracle
transformers = pytest.importorskip("transformers")

# --- the page (docs/source/en/model_doc/encoder-decoder.md) -------------------------------------

PAGE_PIPELINE = '''from transformers import pipeline

summarizer = pipeline(
    "summarization",
    model="patrickvonplaten/bert2bert-cnn_dailymail-fp16",
    device=0
)

text = "Plants create energy through a process known as photosynthesis. This involves capturing sunlight and converting carbon dioxide and water into glucose and oxygen."
print(summarizer(text))
'''

PAGE_AUTOMODEL = '''import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("patrickvonplaten/bert2bert-cnn_dailymail-fp16")
model = AutoModelForCausalLM.from_pretrained("patrickvonplaten/bert2bert-cnn_dailymail-fp16", dtype=torch.bfloat16, device_map="auto",attn_implementation="sdpa")

text = "Plants create energy through a process known as photosynthesis. This involves capturing sunlight and converting carbon dioxide and water into glucose and oxygen."

inputs = tokenizer(text, return_tensors="pt", truncation=True, padding=True).to(model.device)

summary = model.generate(**inputs, max_length=60, num_beams=4, early_stopping=True)
print(tokenizer.decode(summary[0], skip_special_tokens=True))
'''

PAGE_WARM_START = '''from transformers import EncoderDecoderModel, BertTokenizer

tokenizer = BertTokenizer.from_pretrained("google-bert/bert-base-uncased")
model = EncoderDecoderModel.from_encoder_decoder_pretrained(
    "google-bert/bert-base-uncased",
    "google-bert/bert-base-uncased"
)
'''

PAGE_TRAINING = '''>>> from transformers import BertTokenizer, EncoderDecoderModel

>>> tokenizer = BertTokenizer.from_pretrained("google-bert/bert-base-uncased")
>>> model = EncoderDecoderModel.from_encoder_decoder_pretrained("google-bert/bert-base-uncased", "google-bert/bert-base-uncased")

>>> model.config.decoder_start_token_id = tokenizer.cls_token_id
>>> model.config.pad_token_id = tokenizer.pad_token_id

>>> input_ids = tokenizer(
...     "The tower is 324 metres (1,063 ft) tall, about the same height as an 81-storey building, and the tallest structure in Paris. Its base is square, measuring 125 metres (410 ft) on each side.During its construction, the Eiffel Tower surpassed the Washington Monument to become the tallest man-made structure in the world, a title it held for 41 years until the Chrysler Building in New York City was  finished in 1930. It was the first structure to reach a height of 300 metres. Due to the addition of a broadcasting aerial at the top of the tower in 1957, it is now taller than the Chrysler Building by 5.2 metres (17 ft).Excluding transmitters, the Eiffel Tower is the second tallest free-standing structure in France after the Millau Viaduct.",
...     return_tensors="pt",
... ).input_ids

>>> labels = tokenizer(
...     "the eiffel tower surpassed the washington monument to become the tallest structure in the world. it was the first structure to reach a height of 300 metres in paris in 1930. it is now taller than the chrysler building by 5. 2 metres ( 17 ft ) and is the second tallest free - standing structure in paris.",
...     return_tensors="pt",
... ).input_ids

>>> # the forward function automatically creates the correct decoder_input_ids
>>> loss = model(input_ids=input_ids, labels=labels).loss
'''

PAGE_FROM_CONFIGS = '''>>> from transformers import BertConfig, EncoderDecoderConfig, EncoderDecoderModel

>>> config_encoder = BertConfig()
>>> config_decoder = BertConfig()

>>> config = EncoderDecoderConfig.from_encoder_decoder_configs(config_encoder, config_decoder)
>>> model = EncoderDecoderModel(config=config)
'''

PAGE_TRANSLATION = '''from transformers import AutoTokenizer, EncoderDecoderModel

# Load a pre-trained translation model
model_name = "google/bert2bert_L-24_wmt_en_de"
tokenizer = AutoTokenizer.from_pretrained(model_name, pad_token="<pad>", eos_token="</s>", bos_token="<s>")
model = EncoderDecoderModel.from_pretrained(model_name)

# Input sentence to translate
input_text = "Plants create energy through a process known as"

# Encode the input text
inputs = tokenizer(input_text, return_tensors="pt", add_special_tokens=False).input_ids

# Generate the translated output
outputs = model.generate(inputs)[0]

# Decode the output tokens to get the translated sentence
translated_text = tokenizer.decode(outputs, skip_special_tokens=True)

print("Translated text:", translated_text)
'''

# --- EncoderDecoderModel (modeling_encoder_decoder.py) ------------------------------------------

PT_FROM_PRETRAINED = '''>>> from transformers import EncoderDecoderModel

>>> model = EncoderDecoderModel.from_pretrained("patrickvonplaten/bert2bert-cnn_dailymail-fp16")
'''

PT_FROM_ENCODER_DECODER_PRETRAINED = '''>>> from transformers import EncoderDecoderModel

>>> # initialize a bert2bert from two pretrained BERT models. Note that the cross-attention layers will be randomly initialized
>>> model = EncoderDecoderModel.from_encoder_decoder_pretrained("google-bert/bert-base-uncased", "google-bert/bert-base-uncased")
>>> # saving model after fine-tuning
>>> model.save_pretrained("./bert2bert")
>>> # load fine-tuned model
>>> model = EncoderDecoderModel.from_pretrained("./bert2bert")
'''

PT_FORWARD = '''>>> from transformers import EncoderDecoderModel, BertTokenizer
>>> import torch

>>> tokenizer = BertTokenizer.from_pretrained("google-bert/bert-base-uncased")
>>> model = EncoderDecoderModel.from_encoder_decoder_pretrained(
...     "google-bert/bert-base-uncased", "google-bert/bert-base-uncased"
... )  # initialize Bert2Bert from pre-trained checkpoints

>>> # training
>>> model.config.decoder_start_token_id = tokenizer.cls_token_id
>>> model.config.pad_token_id = tokenizer.pad_token_id
>>> model.config.vocab_size = model.config.decoder.vocab_size

>>> input_ids = tokenizer("This is a really long text", return_tensors="pt").input_ids
>>> labels = tokenizer("This is the corresponding summary", return_tensors="pt").input_ids
>>> outputs = model(input_ids=input_ids, labels=labels)
>>> loss, logits = outputs.loss, outputs.logits

>>> # save and load from pretrained
>>> model.save_pretrained("bert2bert")
>>> model = EncoderDecoderModel.from_pretrained("bert2bert")

>>> # generation
>>> generated = model.generate(input_ids)
'''

# --- TFEncoderDecoderModel (modeling_tf_encoder_decoder.py) -------------------------------------

TF_FROM_ENCODER_DECODER_PRETRAINED = '''>>> from transformers import TFEncoderDecoderModel

>>> # initialize a bert2gpt2 from two pretrained BERT models. Note that the cross-attention layers will be randomly initialized
>>> model = TFEncoderDecoderModel.from_encoder_decoder_pretrained("google-bert/bert-base-uncased", "openai-community/gpt2")
>>> # saving model after fine-tuning
>>> model.save_pretrained("./bert2gpt2")
>>> # load fine-tuned model
>>> model = TFEncoderDecoderModel.from_pretrained("./bert2gpt2")
'''

TF_CALL = '''>>> from transformers import TFEncoderDecoderModel, BertTokenizer

>>> # initialize a bert2gpt2 from a pretrained BERT and GPT2 models. Note that the cross-attention layers will be randomly initialized
>>> model = TFEncoderDecoderModel.from_encoder_decoder_pretrained("google-bert/bert-base-cased", "openai-community/gpt2")

>>> tokenizer = BertTokenizer.from_pretrained("google-bert/bert-base-cased")

>>> # forward
>>> input_ids = tokenizer.encode(
...     "Hello, my dog is cute", add_special_tokens=True, return_tensors="tf"
... )  # Batch size 1
>>> outputs = model(input_ids=input_ids, decoder_input_ids=input_ids)

>>> # training
>>> outputs = model(input_ids=input_ids, decoder_input_ids=input_ids, labels=input_ids)
>>> loss, logits = outputs.loss, outputs.logits

>>> # save and load from pretrained
>>> model.save_pretrained("bert2gpt2")
>>> model = TFEncoderDecoderModel.from_pretrained("bert2gpt2")

>>> # generation
>>> generated = model.generate(input_ids, decoder_start_token_id=model.config.decoder.bos_token_id)
'''

# --- FlaxEncoderDecoderModel (modeling_flax_encoder_decoder.py) ---------------------------------

FLAX_ENCODE = '''>>> from transformers import FlaxEncoderDecoderModel, BertTokenizer

>>> # initialize a bert2gpt2 from pretrained BERT and GPT2 models. Note that the cross-attention layers will be randomly initialized
>>> model = FlaxEncoderDecoderModel.from_encoder_decoder_pretrained("google-bert/bert-base-cased", "openai-community/gpt2")

>>> tokenizer = BertTokenizer.from_pretrained("google-bert/bert-base-cased")

>>> text = "My friends are cool but they eat too many carbs."
>>> input_ids = tokenizer.encode(text, return_tensors="np")
>>> encoder_outputs = model.encode(input_ids)
'''

FLAX_DECODE = '''>>> from transformers import FlaxEncoderDecoderModel, BertTokenizer
>>> import jax.numpy as jnp

>>> # initialize a bert2gpt2 from pretrained BERT and GPT2 models. Note that the cross-attention layers will be randomly initialized
>>> model = FlaxEncoderDecoderModel.from_encoder_decoder_pretrained("google-bert/bert-base-cased", "openai-community/gpt2")

>>> tokenizer = BertTokenizer.from_pretrained("google-bert/bert-base-cased")

>>> text = "My friends are cool but they eat too many carbs."
>>> input_ids = tokenizer.encode(text, max_length=1024, return_tensors="np")
>>> encoder_outputs = model.encode(input_ids)

>>> decoder_start_token_id = model.config.decoder.bos_token_id
>>> decoder_input_ids = jnp.ones((input_ids.shape[0], 1), dtype="i4") * decoder_start_token_id

>>> outputs = model.decode(decoder_input_ids, encoder_outputs)
>>> logits = outputs.logits
'''

FLAX_CALL = """>>> from transformers import FlaxEncoderDecoderModel, BertTokenizer, GPT2Tokenizer

>>> # load a fine-tuned bert2gpt2 model
>>> model = FlaxEncoderDecoderModel.from_pretrained("patrickvonplaten/bert2gpt2-cnn_dailymail-fp16")
>>> # load input & output tokenizer
>>> tokenizer_input = BertTokenizer.from_pretrained("google-bert/bert-base-cased")
>>> tokenizer_output = GPT2Tokenizer.from_pretrained("openai-community/gpt2")

>>> article = '''Sigma Alpha Epsilon is under fire for a video showing party-bound fraternity members
>>> singing a racist chant. SAE's national chapter suspended the students,
>>> but University of Oklahoma President David Boren took it a step further,
>>> saying the university's affiliation with the fraternity is permanently done.'''

>>> input_ids = tokenizer_input(article, add_special_tokens=True, return_tensors="np").input_ids

>>> # use GPT2's eos_token as the pad as well as eos token
>>> model.config.eos_token_id = model.config.decoder.eos_token_id
>>> model.config.pad_token_id = model.config.eos_token_id

>>> sequences = model.generate(input_ids, num_beams=4, max_length=12).sequences

>>> summary = tokenizer_output.batch_decode(sequences, skip_special_tokens=True)[0]
>>> assert summary == "SAS Alpha Epsilon suspended Sigma Alpha Epsilon members"
"""

FLAX_FROM_ENCODER_DECODER_PRETRAINED = '''>>> from transformers import FlaxEncoderDecoderModel

>>> # initialize a bert2gpt2 from pretrained BERT and GPT2 models. Note that the cross-attention layers will be randomly initialized
>>> model = FlaxEncoderDecoderModel.from_encoder_decoder_pretrained("google-bert/bert-base-cased", "openai-community/gpt2")
>>> # saving model after fine-tuning
>>> model.save_pretrained("./bert2gpt2")
>>> # load fine-tuned model
>>> model = FlaxEncoderDecoderModel.from_pretrained("./bert2gpt2")
'''

# --- running them --------------------------------------------------------------------------------

_HOMES = {"EncoderDecoderModel": "encdec_pt", "AutoModelForCausalLM": "encdec_pt",
          "TFEncoderDecoderModel": "encdec_tf", "FlaxEncoderDecoderModel": "encdec_flax"}  # the rest: encdec
_IMPORT = re.compile(r"^(>>> )?from transformers import (.+)$", re.M)


def ours(example: str) -> str:
    """The one change: each ``from transformers import A, B`` line imports the same names from the
    package of ours that holds them."""
    def rewrite(match):
        homes = {}
        for name in match.group(2).split(","):
            homes.setdefault(_HOMES.get(name.strip(), "encdec"), []).append(name.strip())
        return "\n".join(f"{match.group(1) or ''}from {home} import {', '.join(names)}" for home, names in homes.items())

    return _IMPORT.sub(rewrite, example)


def code(example: str) -> str:
    """The Python source of an example: doctest prompts (``>>> ``, ``... ``) removed."""
    lines = []
    for line in example.splitlines():
        for prompt in (">>> ", "... "):
            if line.startswith(prompt) or line == prompt.strip():
                line = line[len(prompt):]
                break
        lines.append(line)
    return "\n".join(lines) + "\n"


def test_ours_changes_only_imports():
    examples = [v for k, v in globals().items() if k.isupper() and k.split("_")[0] in {"PAGE", "PT", "TF", "FLAX"}]
    assert len(examples) == 15
    for example in examples:
        def rest(text, package):
            return [line for line in text.splitlines() if not re.match(rf"(>>> )?from {package}\w* import ", line)]

        assert rest(ours(example), "encdec") == rest(example, "transformers")
        assert "transformers" not in ours(example)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    cache = build_fake_hub(tmp_path_factory.mktemp("hf_cache"))
    with offline_cache(cache):
        yield cache


def run(example: str, tmp_path, monkeypatch, side: str) -> dict:
    """Runs an example's code, as the reference writes it (``side="reference"``) or with our imports,
    in its own working directory (the examples save to relative paths); returns its variables."""
    workdir = tmp_path / side
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    namespace = {"__name__": "__example__"}
    exec(compile(code(example if side == "reference" else ours(example)), f"<{side}>", "exec"), namespace)
    return namespace


def both(example, tmp_path, monkeypatch):
    return run(example, tmp_path, monkeypatch, "reference"), run(example, tmp_path, monkeypatch, "ours")


def close(a, b, atol=1e-4):
    np.testing.assert_allclose(np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32), atol=atol, rtol=1e-4)


def same_tokens(a, b):
    assert np.asarray(a).tolist() == np.asarray(b).tolist()


def reference_pt(repo_or_pair, **config):
    """The reference's PyTorch model on the same cache: the oracle for the TF and Flax examples (the
    reference's own TF cannot read the safetensors files here, and its Flax beam search compiles for
    longer than this whole file may take)."""
    if isinstance(repo_or_pair, tuple):
        model = transformers.EncoderDecoderModel.from_encoder_decoder_pretrained(*repo_or_pair)
    else:
        model = transformers.EncoderDecoderModel.from_pretrained(repo_or_pair)
    for key, value in config.items():
        setattr(model.config, key, value)
        setattr(model.generation_config, key, value)
    return model.eval()


def torch_ids(ids):
    import torch

    return torch.tensor(np.asarray(ids))


# --- the page -------------------------------------------------------------------------------------


def test_page_pipeline(hub, tmp_path, monkeypatch, capsys):
    """The reference silently runs ``device=0`` on the CPU when there is no GPU; ours says so and
    stops (docs/compatibility.md). With ``device="cpu"`` both print the same summary."""
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("the example as written runs on GPU 0 here; this test covers the CPU-only case")
    run(PAGE_PIPELINE, tmp_path, monkeypatch, "reference")
    printed = capsys.readouterr().out
    assert "summary_text" in printed
    with pytest.raises(ValueError, match="device=0 asks for GPU 0"):
        run(PAGE_PIPELINE, tmp_path, monkeypatch, "ours")
    run(PAGE_PIPELINE.replace("device=0", 'device="cpu"'), tmp_path, monkeypatch, "ours-cpu")
    assert capsys.readouterr().out == printed


def test_page_automodel_is_broken_in_the_reference(hub, tmp_path, monkeypatch, capsys):
    """``AutoModelForCausalLM`` has no encoder-decoder entry in the reference (ValueError), nor in
    ours; ``device_map="auto"`` needs accelerate. The corrected form (``EncoderDecoderModel``, no
    ``device_map``) prints the same summary in both, in bfloat16 with sdpa attention."""
    pytest.importorskip("torch")
    with pytest.raises(ValueError, match="Unrecognized configuration class"):
        run(PAGE_AUTOMODEL, tmp_path, monkeypatch, "reference")
    with pytest.raises(ValueError, match="unsupported model_type 'encoder-decoder'"):
        run(PAGE_AUTOMODEL, tmp_path, monkeypatch, "ours")
    corrected = (PAGE_AUTOMODEL.replace("AutoModelForCausalLM", "EncoderDecoderModel")
                 .replace(' device_map="auto",', ""))
    reference = run(corrected, tmp_path, monkeypatch, "reference-corrected")
    printed = capsys.readouterr().out
    ours_ = run(corrected, tmp_path, monkeypatch, "ours-corrected")
    assert capsys.readouterr().out == printed
    same_tokens(ours_["summary"], reference["summary"])


def test_page_warm_start(hub, tmp_path, monkeypatch):
    reference, ours_ = both(PAGE_WARM_START, tmp_path, monkeypatch)
    assert ours_["tokenizer"]("a tower").input_ids == reference["tokenizer"]("a tower").input_ids
    expected = {k: v.detach().numpy() for k, v in reference["model"].state_dict().items()}
    got = {k: v.detach().numpy() for k, v in ours_["model"].state_dict().items()}
    random = {"encoder.pooler.dense.weight", "encoder.pooler.dense.bias"}  # not in a BertLMHeadModel file
    assert set(got) <= set(expected)
    for name in set(got) - random:
        close(got[name], expected[name], atol=0)


def test_page_training(hub, tmp_path, monkeypatch):
    reference, ours_ = both(PAGE_TRAINING, tmp_path, monkeypatch)
    same_tokens(ours_["input_ids"], reference["input_ids"])
    same_tokens(ours_["labels"], reference["labels"])
    close(ours_["loss"].item(), reference["loss"].item())
    ours_["loss"].backward()


def test_page_from_configs(hub, tmp_path, monkeypatch):
    """BERT-base sizes: the reference builds its model on the meta device (no weights), to compare
    the parameter names and shapes without initialising 250M numbers twice."""
    torch = pytest.importorskip("torch")
    with torch.device("meta"):
        reference = run(PAGE_FROM_CONFIGS, tmp_path, monkeypatch, "reference")
    ours_ = run(PAGE_FROM_CONFIGS, tmp_path, monkeypatch, "ours")
    expected = {k: tuple(v.shape) for k, v in reference["model"].state_dict().items()}
    assert {k: tuple(v.shape) for k, v in ours_["model"].state_dict().items()} == expected
    assert ours_["config"].to_dict()["decoder"]["add_cross_attention"] is True


def test_page_translation(hub, tmp_path, monkeypatch, capsys):
    reference = run(PAGE_TRANSLATION, tmp_path, monkeypatch, "reference")
    printed = capsys.readouterr().out
    ours_ = run(PAGE_TRANSLATION, tmp_path, monkeypatch, "ours")
    assert capsys.readouterr().out == printed
    same_tokens(ours_["outputs"], reference["outputs"])


# --- EncoderDecoderModel's docstrings ----------------------------------------------------------


def test_pt_from_pretrained(hub, tmp_path, monkeypatch):
    reference, ours_ = both(PT_FROM_PRETRAINED, tmp_path, monkeypatch)
    ids = torch_ids([[101, 7592, 2088, 102]])
    same_tokens(ours_["model"].generate(ids), reference["model"].generate(ids))


def test_pt_from_encoder_decoder_pretrained(hub, tmp_path, monkeypatch):
    reference, ours_ = both(PT_FROM_ENCODER_DECODER_PRETRAINED, tmp_path, monkeypatch)
    ids = torch_ids([[101, 7592, 2088, 102]])
    close(ours_["model"](input_ids=ids, decoder_input_ids=ids).logits.detach(),
          reference["model"](input_ids=ids, decoder_input_ids=ids).logits.detach())


def test_pt_forward(hub, tmp_path, monkeypatch):
    """The reference fails at its last line: the config's ``decoder_start_token_id``, set after
    construction, never reaches the generation config it saves, so its ``generate`` raises. Ours
    honours the config's legacy generation attributes and generates what the reference generates
    when told the start token."""
    with pytest.raises(ValueError, match="decoder_start_token_id"):
        run(PT_FORWARD, tmp_path, monkeypatch, "reference")
    last = "\n>>> generated = model.generate(input_ids)\n"
    assert PT_FORWARD.endswith(last)
    reference = run(PT_FORWARD[:-len(last) + 1], tmp_path, monkeypatch, "reference-until-generate")
    ours_ = run(PT_FORWARD, tmp_path, monkeypatch, "ours")
    close(ours_["loss"].item(), reference["loss"].item())
    close(ours_["logits"].detach(), reference["logits"].detach())
    expected = reference["model"].generate(reference["input_ids"], decoder_start_token_id=101)
    same_tokens(ours_["generated"], expected)


# --- TFEncoderDecoderModel's docstrings: checked against the reference's PyTorch model -----------


def test_tf_from_encoder_decoder_pretrained(hub, tmp_path, monkeypatch):
    pytest.importorskip("tensorflow")
    ours_ = run(TF_FROM_ENCODER_DECODER_PRETRAINED, tmp_path, monkeypatch, "ours")
    reference = reference_pt(("google-bert/bert-base-uncased", "openai-community/gpt2"))
    ids = [[101, 7592, 2088, 102]]
    close(ours_["model"](input_ids=np.array(ids), decoder_input_ids=np.array(ids)).logits,
          reference(input_ids=torch_ids(ids), decoder_input_ids=torch_ids(ids)).logits.detach())


def test_tf_call(hub, tmp_path, monkeypatch):
    pytest.importorskip("tensorflow")
    ours_ = run(TF_CALL, tmp_path, monkeypatch, "ours")
    reference = reference_pt(("google-bert/bert-base-cased", "openai-community/gpt2"))
    ids = transformers.BertTokenizer.from_pretrained("google-bert/bert-base-cased").encode(
        "Hello, my dog is cute", add_special_tokens=True, return_tensors="pt")
    same_tokens(ours_["input_ids"], ids)
    expected = reference(input_ids=ids, decoder_input_ids=ids, labels=ids)
    close(ours_["loss"], expected.loss.item())
    close(ours_["logits"], expected.logits.detach())
    same_tokens(ours_["generated"], reference.generate(ids, decoder_start_token_id=50256, max_length=20))


# --- FlaxEncoderDecoderModel's docstrings: checked against the reference's PyTorch model ---------


def test_flax_encode_decode(hub, tmp_path, monkeypatch):
    pytest.importorskip("flax")
    encoded = run(FLAX_ENCODE, tmp_path, monkeypatch, "ours-encode")
    ours_ = run(FLAX_DECODE, tmp_path, monkeypatch, "ours-decode")
    reference = reference_pt(("google-bert/bert-base-cased", "openai-community/gpt2"))
    ids = torch_ids(ours_["input_ids"])
    expected = reference(input_ids=ids, decoder_input_ids=torch_ids([[50256]]))
    close(encoded["encoder_outputs"].last_hidden_state, expected.encoder_last_hidden_state.detach())
    close(ours_["logits"], expected.logits.detach())


def test_flax_call_generate(hub, tmp_path, monkeypatch):
    """Its last line asserts the text of the real fine-tuned weights, which tiny random weights
    cannot write; the example runs without that line and its summary is the reference's."""
    pytest.importorskip("flax")
    check = '\n>>> assert summary == "SAS Alpha Epsilon suspended Sigma Alpha Epsilon members"\n'
    assert FLAX_CALL.endswith(check)
    ours_ = run(FLAX_CALL[:-len(check) + 1], tmp_path, monkeypatch, "ours")
    reference = reference_pt("patrickvonplaten/bert2gpt2-cnn_dailymail-fp16", eos_token_id=50256, pad_token_id=50256)
    expected = reference.generate(torch_ids(ours_["input_ids"]), num_beams=4, max_length=12)[0].tolist()
    got = np.asarray(ours_["sequences"])[0].tolist()
    assert got[:len(expected)] == expected and all(t == 50256 for t in got[len(expected):])
    tokenizer = transformers.GPT2Tokenizer.from_pretrained("openai-community/gpt2")
    assert ours_["summary"] == tokenizer.decode(expected, skip_special_tokens=True)


def test_flax_from_encoder_decoder_pretrained(hub, tmp_path, monkeypatch):
    pytest.importorskip("flax")
    ours_ = run(FLAX_FROM_ENCODER_DECODER_PRETRAINED, tmp_path, monkeypatch, "ours")
    reference = reference_pt(("google-bert/bert-base-cased", "openai-community/gpt2"))
    ids = [[101, 7592, 2088, 102]]
    close(ours_["model"](input_ids=np.array(ids), decoder_input_ids=np.array(ids)).logits,
          reference(input_ids=torch_ids(ids), decoder_input_ids=torch_ids(ids)).logits.detach())
