"""``encdec.pipeline`` against ``transformers.pipeline`` (the oracle) on one folder the oracle saved:
a tiny bert2bert with the real MiniLM tokenizer, a ``config.prefix``, ``task_specific_params`` for
summarization and translation_en_to_de (prefix and lengths), and a generation config whose
``max_length`` overrides the pipeline's default ``max_new_tokens``. The same text (and ids) in
every framework. Also: ``encdec generate`` on a folder without a tokenizer."""

import functools
import logging
import subprocess
import sys

import numpy as np
import pytest

from adapters import FRAMEWORKS

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

TEXTS = ["the quick brown fox jumps over the lazy dog", "hello world", "a b c d e f"]
LONG = " ".join(["word"] * 40)  # 42 tokens; the encoder has 24 positions
POSITIONS = 24


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from encdec.testing import minilm_path

    path = str(tmp_path_factory.mktemp("pipeline") / "bert2bert")
    torch.manual_seed(0)
    sizes = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=37, max_position_embeddings=POSITIONS)
    config = transformers.EncoderDecoderConfig.from_encoder_decoder_configs(
        transformers.BertConfig(**sizes), transformers.BertConfig(**sizes, is_decoder=True, add_cross_attention=True))
    config.decoder_start_token_id, config.eos_token_id, config.pad_token_id = 101, 102, 0
    config.prefix = "text: "
    config.task_specific_params = {"summarization": {"prefix": "summarize: ", "max_length": 9, "min_length": 4},
                                   "translation_en_to_de": {"prefix": "translate: ", "max_length": 8}}
    model = transformers.EncoderDecoderModel(config)
    model.generation_config.max_length = 10
    model.save_pretrained(path)
    transformers.AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(path)
    return path


@functools.lru_cache(maxsize=None)
def _ours(path, task, framework, batch_size=None):
    from encdec import pipeline

    return pipeline(task, model=path, framework=framework, batch_size=batch_size)


@functools.lru_cache(maxsize=None)
def _reference(path, task, batch_size=None):
    return transformers.pipeline(task, model=path, framework="pt", batch_size=batch_size)


def _plain(result):
    """Outputs with token ids as lists, so tensors of any framework compare."""
    if isinstance(result, list):
        return [_plain(r) for r in result]
    return {k: v if isinstance(v, str) else [int(t) for t in np.asarray(v)] for k, v in result.items()}


CASES = {
    # name: (task, input, call kwargs, batch_size)
    "summarization one text": ("summarization", TEXTS[0], {}, None),
    "translation_xx_to_yy list": ("translation_en_to_de", TEXTS, {}, None),
    "text2text batched": ("text2text-generation", TEXTS, {}, 2),
    "text2text several sequences": ("text2text-generation", TEXTS[:2], {"num_return_sequences": 2, "num_beams": 3}, None),
    "call settings win": ("summarization", TEXTS[2], {"max_new_tokens": 3, "num_beams": 2}, None),
    "token ids": ("text2text-generation", TEXTS[1], {"return_tensors": True}, None),
    "clean up spaces": ("text2text-generation", "it's a dog , isn't it ?", {"clean_up_tokenization_spaces": True}, None),
}


# The pipeline's framework-specific part is its generate call, whose tokens other tests already
# hold to the reference in every framework: TF and Flax run two cases in CI (one text, a batch with
# beams), every case under --runslow; each new input shape costs those two a trace.
CI_CASES = {"summarization one text", "text2text several sequences"}


def _framework_cases():
    for framework in FRAMEWORKS:
        for case in sorted(CASES):
            marks = () if framework == "pt" or case in CI_CASES else (pytest.mark.slow,)
            yield pytest.param(framework, case, marks=marks, id=f"{framework}-{case}")


@pytest.mark.parametrize("framework,case", list(_framework_cases()))
def test_pipeline_gives_the_references_output(folder, framework, case):
    task, inputs, kwargs, batch_size = CASES[case]
    expected = _plain(_reference(folder, task, batch_size)(inputs, **kwargs))
    assert _plain(_ours(folder, task, framework, batch_size)(inputs, **kwargs)) == expected


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_translation_takes_the_task_of_the_config(folder, framework):
    from encdec import pipeline

    with pytest.warns(UserWarning, match="translation_en_to_de"):
        ours = pipeline("translation", model=folder, framework=framework)
    with pytest.warns(UserWarning, match="translation_en_to_de"):
        reference = transformers.pipeline("translation", model=folder, framework="pt")
    assert ours.task == reference.task == "translation_en_to_de"
    assert ours(TEXTS[1]) == reference(TEXTS[1])


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_model_object_and_a_tokenizer_object(folder, framework):
    from encdec import AutoTokenizer, pipeline
    from encdec_app.frameworks import model_class

    ours = pipeline("summarization", model=model_class(framework).from_pretrained(folder),
                    tokenizer=AutoTokenizer.from_pretrained(folder))
    assert ours.framework == framework
    assert ours(TEXTS[0]) == _reference(folder, "summarization")(TEXTS[0])


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_an_input_longer_than_the_encoder_is_truncated_with_one_warning(folder, framework):
    # The reference fails inside the model unless told to truncate (to the tokenizer's length, so
    # it is given the encoder's): that run is the expected text.
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder, model_max_length=POSITIONS)
    reference = transformers.pipeline("text2text-generation", model=folder, tokenizer=tokenizer, framework="pt")
    expected = reference([LONG, LONG + " more"], truncation=True)
    with pytest.warns(UserWarning) as caught:
        got = _ours(folder, "text2text-generation", framework)([LONG, LONG + " more"])
    messages = [str(w.message) for w in caught if "positions" in str(w.message)]
    assert len(messages) == 1 and f"the {POSITIONS} positions" in messages[0] and "truncated" in messages[0]
    assert got == expected


def test_summarization_warns_as_the_reference(folder, caplog):
    """The reference's length checks: an input shorter than max_length, min_length > max_length."""
    with caplog.at_level(logging.WARNING, logger="encdec_app.pipeline"):
        _ours(folder, "summarization", "pt")(TEXTS[1], min_length=12, max_length=11)
    text = caplog.text
    assert "Your min_length=12 must be inferior than your max_length=11." in text
    assert "Your max_length is set to 11, but your input_length is only 8." in text


@pytest.mark.parametrize("framework,device", [
    pytest.param(f, d, marks=() if f == "pt" or d == "cpu" else (pytest.mark.slow,), id=f"{f}-{d}")
    for f in FRAMEWORKS for d in ["cpu", -1, "torch-cpu", None]])
def test_device_forms_of_the_reference(folder, framework, device):
    from encdec import pipeline

    device = torch.device("cpu") if device == "torch-cpu" else device
    ours = pipeline("summarization", model=folder, framework=framework, device=device)
    assert ours(TEXTS[0]) == _reference(folder, "summarization")(TEXTS[0])


@pytest.mark.parametrize("device", ["cuda:0", 0, "gpu:1"])
@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_a_gpu_device_without_a_gpu_is_a_clear_error(folder, framework, device):
    from encdec import pipeline

    with pytest.raises(ValueError, match=r"asks for GPU \d, but .* 0 .*use device='cpu'"):
        pipeline("summarization", model=folder, framework=framework, device=device)


def test_bad_arguments_are_named(folder):
    from encdec import pipeline

    with pytest.raises(ValueError, match="unknown task 'fill-mask'"):
        pipeline("fill-mask", model=folder)
    with pytest.raises(ValueError, match="device='tpu:0'"):
        pipeline("summarization", model=folder, device="tpu:0")
    with pytest.raises(TypeError, match="string or a list of strings"):
        _ours(folder, "summarization", "pt")(42)


def test_generate_command_without_a_tokenizer_says_so(folder, tmp_path):
    import shutil

    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "generation_config.json", "model.safetensors"):
        shutil.copy(f"{folder}/{name}", bare / name)
    run = subprocess.run([sys.executable, "-m", "encdec_app.cli", "generate", str(bare), "hello"],
                         capture_output=True, text=True)
    assert run.returncode != 0
    assert "Traceback" not in run.stderr
    assert str(bare) in run.stderr and "tokenizer.json" in run.stderr and "vocab.txt" in run.stderr
    assert "--tokenizer" in run.stderr
    run = subprocess.run([sys.executable, "-m", "encdec_app.cli", "generate", str(bare), "hello",
                          "--tokenizer", folder, "--max-new-tokens", "3"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    ids = transformers.EncoderDecoderModel.from_pretrained(folder).generate(
        **tokenizer(["hello"], return_tensors="pt", return_token_type_ids=False), num_beams=1, max_new_tokens=3)
    assert run.stdout == tokenizer.decode(ids[0], skip_special_tokens=True) + "\n"
