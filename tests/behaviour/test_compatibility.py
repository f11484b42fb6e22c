"""docs/compatibility.md is data: every `yes` cell runs its check against the reference
(transformers 4.57.6), every `no` cell its probe, which must be refused. The table and the checks
must name the same rows."""

import functools
import pathlib
import re

import numpy as np
import pytest

from adapters import FRAMEWORKS

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs" / "compatibility.md"
COLUMNS = {"pt": 2, "tf": 3, "flax": 4}
STATUSES = ("yes", "no", "n/a")


def read_table():
    """{row id: {framework: status}} from the markdown table of the doc."""
    rows = {}
    for line in DOC.read_text().splitlines():
        match = re.match(r"^\|\s*`([\w.]+)`\s*\|", line)
        if not match:
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        statuses = {fw: cells[i] for fw, i in COLUMNS.items()}
        bad = {fw: s for fw, s in statuses.items() if s not in STATUSES}
        assert not bad, f"row {match.group(1)}: cells must be one of {STATUSES}, got {bad}"
        assert match.group(1) not in rows, f"row {match.group(1)} twice"
        rows[match.group(1)] = statuses
    return rows


TABLE = read_table()
TEXTS = ["the quick brown fox jumps", "hello world"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    from encdec.testing import minilm_path

    root = tmp_path_factory.mktemp("compat")
    torch.manual_seed(0)
    sizes = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=37, max_position_embeddings=24)
    encoder, decoder = transformers.BertModel(transformers.BertConfig(**sizes)), transformers.BertLMHeadModel(
        transformers.BertConfig(**sizes, is_decoder=True, add_cross_attention=True))
    encoder.save_pretrained(root / "encoder")
    decoder.save_pretrained(root / "decoder")
    reference = transformers.EncoderDecoderModel(encoder=encoder, decoder=decoder)
    reference.config.decoder_start_token_id, reference.config.eos_token_id, reference.config.pad_token_id = 101, 102, 0
    reference.config.task_specific_params = {"translation_en_to_de": {"max_length": 8}}
    reference.generation_config = transformers.GenerationConfig.from_model_config(reference.config)
    reference.generation_config.max_length = 10
    folder = str(root / "bert2bert")
    reference.eval().save_pretrained(folder)
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm_path())
    tokenizer.save_pretrained(folder)
    batch = tokenizer(TEXTS, padding=True, return_tensors="np", return_token_type_ids=False)
    return {"root": root, "folder": folder, "reference": reference, "tokenizer": tokenizer, "batch": batch}


@functools.lru_cache(maxsize=None)
def _ours(framework, folder):
    from encdec_app.frameworks import model_class

    return model_class(framework).from_pretrained(folder)


def _numpy(x):
    return np.asarray(x.detach().numpy() if hasattr(x, "detach") else x)


def _logits(framework, model, env, **kwargs):
    batch = env["batch"]
    decoder_input_ids = np.array([[101, 7, 9, 11], [101, 5, 3, 8]])
    inputs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], decoder_input_ids=decoder_input_ids)
    if framework == "pt":
        with torch.no_grad():
            return model(**{k: torch.from_numpy(v) for k, v in inputs.items()}, **kwargs)
    return model(**inputs, **kwargs)


def _reference_logits(env):
    return _numpy(_logits("pt", env["reference"], env).logits)


def _assert_logits(framework, model, env):
    np.testing.assert_allclose(_numpy(_logits(framework, model, env).logits), _reference_logits(env), atol=1e-4)


def _generate(framework, env, model=None, **kwargs):
    model = model or _ours(framework, env["folder"])
    batch = env["batch"]
    if framework == "pt":
        return model.generate(torch.from_numpy(batch["input_ids"]),
                              attention_mask=torch.from_numpy(batch["attention_mask"]), **kwargs)
    return model.generate(batch["input_ids"], attention_mask=batch["attention_mask"], **kwargs)


def _same_generation(framework, env, **kwargs):
    batch = env["batch"]
    expected = env["reference"].generate(torch.from_numpy(batch["input_ids"]),
                                         attention_mask=torch.from_numpy(batch["attention_mask"]), **kwargs)
    got = _generate(framework, env, **kwargs)
    got = getattr(got, "sequences", got)
    np.testing.assert_array_equal(_numpy(got), expected.numpy())


# --- checks of the `yes` cells: fn(framework, env) -------------------------------------------


def check_config_from_pretrained(framework, env):
    from encdec import AutoConfig

    ours, ref = AutoConfig.from_pretrained(env["folder"]), transformers.AutoConfig.from_pretrained(env["folder"])
    for key in ("is_encoder_decoder", "decoder_start_token_id", "pad_token_id", "task_specific_params"):
        assert getattr(ours, key) == getattr(ref, key), key
    assert ours.encoder.hidden_size == ref.encoder.hidden_size and ours.decoder.add_cross_attention


def check_config_save_pretrained(framework, env):
    from encdec import AutoConfig

    d = env["root"] / f"config_{framework}"
    AutoConfig.from_pretrained(env["folder"]).save_pretrained(str(d))
    bookkeeping = ("_name_or_path", "transformers_version", "encdec_version")

    def read(folder):
        return {k: v for k, v in transformers.AutoConfig.from_pretrained(folder).to_dict().items() if k not in bookkeeping}

    assert read(d) == read(env["folder"])


def check_model_from_pretrained(framework, env):
    _assert_logits(framework, _ours(framework, env["folder"]), env)


def _reference_legacy_folder(env, kind):
    d = env["root"] / f"reference_{kind}"
    if not d.exists():
        cls = {"tf": transformers.TFEncoderDecoderModel, "flax": transformers.FlaxEncoderDecoderModel}[kind]
        cls.from_pretrained(env["folder"], from_pt=True).save_pretrained(d)
    return str(d)


def check_model_from_pretrained_tf_h5(framework, env):
    folder = _reference_legacy_folder(env, "tf")
    assert (pathlib.Path(folder) / "tf_model.h5").exists()
    _assert_logits(framework, _ours(framework, folder), env)


def check_model_from_pretrained_flax_msgpack(framework, env):
    folder = _reference_legacy_folder(env, "flax")
    assert (pathlib.Path(folder) / "flax_model.msgpack").exists()
    _assert_logits(framework, _ours(framework, folder), env)


def check_model_from_encoder_decoder_pretrained(framework, env):
    from encdec_app.frameworks import model_class

    ours = model_class(framework).from_encoder_decoder_pretrained(str(env["root"] / "encoder"), str(env["root"] / "decoder"))
    got = _numpy(_logits(framework, ours, env).encoder_last_hidden_state)
    np.testing.assert_allclose(got, _numpy(_logits("pt", env["reference"], env).encoder_last_hidden_state), atol=1e-4)


def check_model_forward_labels(framework, env):
    labels = np.array([[7, 9, 11, 102], [5, 3, 102, -100]])
    batch = env["batch"]
    with torch.no_grad():
        expected = env["reference"](input_ids=torch.from_numpy(batch["input_ids"]),
                                    attention_mask=torch.from_numpy(batch["attention_mask"]),
                                    labels=torch.from_numpy(labels)).loss.numpy()
    model = _ours(framework, env["folder"])
    if framework == "pt":
        with torch.no_grad():
            loss = model(input_ids=torch.from_numpy(batch["input_ids"]),
                         attention_mask=torch.from_numpy(batch["attention_mask"]), labels=torch.from_numpy(labels)).loss
    else:
        loss = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).loss
    np.testing.assert_allclose(np.reshape(_numpy(loss), ()), expected, atol=1e-5)


def _our_save(framework, env, name, **kwargs):
    d = env["root"] / f"{name}_{framework}"
    if not d.exists():
        _ours(framework, env["folder"]).save_pretrained(str(d), **kwargs)
    return str(d)


def check_model_save_pretrained(framework, env):
    d = _our_save(framework, env, "saved")
    _assert_logits("pt", transformers.EncoderDecoderModel.from_pretrained(d).eval(), env)


def check_model_save_pretrained_legacy(framework, env):
    d = pathlib.Path(_our_save(framework, env, "legacy", safe_serialization=False))
    file, cls = {"pt": ("pytorch_model.bin", transformers.EncoderDecoderModel),
                 "tf": ("tf_model.h5", transformers.TFEncoderDecoderModel),
                 "flax": ("flax_model.msgpack", transformers.FlaxEncoderDecoderModel)}[framework]
    assert sorted(p.name for p in d.iterdir()) == sorted(["config.json", "generation_config.json", file])
    reference = cls.from_pretrained(str(d))
    if framework == "pt":
        reference.eval()
    _assert_logits(framework, reference, env)


def check_reference_tf_reads_our_safetensors(framework, env):
    d = _our_save(framework, env, "saved")
    _assert_logits("tf", transformers.TFEncoderDecoderModel.from_pretrained(d, from_pt=True), env)


def check_generate_greedy(framework, env):
    _same_generation(framework, env, max_new_tokens=6)


def check_generate_beam(framework, env):
    _same_generation(framework, env, max_new_tokens=6, num_beams=3, length_penalty=0.7, early_stopping=True)


def check_generate_generation_config(framework, env):
    from encdec import GenerationConfig

    batch = env["batch"]
    expected = env["reference"].generate(torch.from_numpy(batch["input_ids"]),
                                         attention_mask=torch.from_numpy(batch["attention_mask"]),
                                         generation_config=transformers.GenerationConfig(max_new_tokens=5, num_beams=2))
    got = _generate(framework, env, generation_config=GenerationConfig(max_new_tokens=5, num_beams=2))
    np.testing.assert_array_equal(_numpy(getattr(got, "sequences", got)), expected.numpy())


def check_generate_num_return_sequences(framework, env):
    _same_generation(framework, env, max_new_tokens=5, num_beams=3, num_return_sequences=2)


def check_generate_processors(framework, env):
    _same_generation(framework, env, max_new_tokens=7, no_repeat_ngram_size=2, repetition_penalty=1.3,
                     min_new_tokens=3, bad_words_ids=[[1000], [2000, 2001]])


def check_generate_sample(framework, env):
    _same_generation(framework, env, max_new_tokens=5, do_sample=True, top_k=1)


def check_generate_decoder_input_ids(framework, env):
    prompt = np.array([[101, 7], [101, 9]])
    batch = env["batch"]
    expected = env["reference"].generate(torch.from_numpy(batch["input_ids"]),
                                         attention_mask=torch.from_numpy(batch["attention_mask"]),
                                         decoder_input_ids=torch.from_numpy(prompt), max_new_tokens=4)
    got = _generate(framework, env, decoder_input_ids=torch.from_numpy(prompt) if framework == "pt" else prompt,
                    max_new_tokens=4)
    np.testing.assert_array_equal(_numpy(getattr(got, "sequences", got)), expected.numpy())


def check_generate_typical_p(framework, env):
    # top_k=1 after the typical warper: deterministic, so every framework's tokens equal the reference's
    _same_generation(framework, env, max_new_tokens=5, do_sample=True, typical_p=0.9, top_k=1)


def check_generate_beam_sample(framework, env):
    if framework == "pt":  # the same torch random stream: the reference's tokens
        torch.manual_seed(0)
        batch = env["batch"]
        expected = env["reference"].generate(torch.from_numpy(batch["input_ids"]),
                                             attention_mask=torch.from_numpy(batch["attention_mask"]),
                                             do_sample=True, num_beams=2, max_new_tokens=4)
        torch.manual_seed(0)
        np.testing.assert_array_equal(_numpy(_generate(framework, env, do_sample=True, num_beams=2, max_new_tokens=4)),
                                      expected.numpy())
        return
    if framework == "tf":
        seed = {"seed": 3}
    else:
        import jax

        seed = {"prng_key": jax.random.PRNGKey(3)}
    runs = [_generate(framework, env, do_sample=True, num_beams=2, max_new_tokens=4, **seed) for _ in range(2)]
    first, again = (_numpy(getattr(run, "sequences", run)) for run in runs)
    np.testing.assert_array_equal(again, first)  # reproducible from its seed


def check_generate_streamer(framework, env):
    class Recorder:
        def __init__(self):
            self.calls = []

        def put(self, value):
            self.calls.append(("put", np.asarray(value).tolist()))

        def end(self):
            self.calls.append(("end",))

    batch = env["batch"]
    ours, theirs = Recorder(), Recorder()
    env["reference"].generate(torch.from_numpy(batch["input_ids"][:1]),
                              attention_mask=torch.from_numpy(batch["attention_mask"][:1]), streamer=theirs,
                              max_new_tokens=4)
    model = _ours(framework, env["folder"])
    model.generate(torch.from_numpy(batch["input_ids"][:1]), attention_mask=torch.from_numpy(batch["attention_mask"][:1]),
                   streamer=ours, max_new_tokens=4)
    assert ours.calls == theirs.calls


def check_generate_max_time(framework, env):
    _same_generation(framework, env, max_new_tokens=5, max_time=60.0)


def check_generate_stop_strings(framework, env):
    """Stop strings cut from the reference's own output: one across two tokens with overhang at both
    ends (row 0's 3rd and 4th new tokens), one that row 1 never writes; greedy and 3 beams."""
    from encdec.generation_utils import StopStrings

    batch = env["batch"]
    ids, mask = torch.from_numpy(batch["input_ids"]), torch.from_numpy(batch["attention_mask"])
    free = env["reference"].generate(ids, attention_mask=mask, max_new_tokens=8)
    texts = StopStrings(["x"], env["tokenizer"])._text
    first, second = texts(int(free[0, 3])), texts(int(free[0, 4]))
    strings = [first[-2:] + second[:1], "never written here"]
    for kwargs in (dict(max_new_tokens=8), dict(max_new_tokens=8, num_beams=3)):
        expected = env["reference"].generate(ids, attention_mask=mask, stop_strings=strings,
                                             tokenizer=env["tokenizer"], **kwargs)
        if "num_beams" not in kwargs:
            assert expected.shape[1] < free.shape[1] or (expected[0, 5:] == 0).all(), "the stop string must stop row 0"
        for tokenizer in (env["tokenizer"], _tokenizers(env)[0]):  # the reference's, ours
            got = _generate(framework, env, stop_strings=strings, tokenizer=tokenizer, **kwargs)
            np.testing.assert_array_equal(_numpy(got), expected.numpy())


def check_generate_return_dict(framework, env):
    batch = env["batch"]
    kwargs = dict(max_new_tokens=5, num_beams=3, return_dict_in_generate=True, output_scores=True)
    expected = env["reference"].generate(torch.from_numpy(batch["input_ids"]),
                                         attention_mask=torch.from_numpy(batch["attention_mask"]), **kwargs)
    got = _generate(framework, env, **kwargs)
    np.testing.assert_array_equal(_numpy(got.sequences), expected.sequences.numpy())
    np.testing.assert_allclose(_numpy(got.sequences_scores), expected.sequences_scores.numpy(), atol=1e-4)


def _tokenizers(env, **kwargs):
    from encdec import AutoTokenizer

    return AutoTokenizer.from_pretrained(env["folder"], **kwargs), transformers.AutoTokenizer.from_pretrained(
        env["folder"], **kwargs)


def _as_lists(encoding):
    return {k: _numpy(v).tolist() for k, v in encoding.items()}


def check_tokenizer_call(framework, env):
    ours, ref = _tokenizers(env)
    kind = {"pt": "pt", "tf": "tf", "flax": "jax"}[framework]
    assert _as_lists(ours(TEXTS, padding=True, return_tensors=kind)) == _as_lists(ref(TEXTS, padding=True, return_tensors="np"))


def check_tokenizer_text_target(framework, env):
    ours, ref = _tokenizers(env)
    assert dict(ours(TEXTS, text_target=TEXTS[::-1])) == dict(ref(TEXTS, text_target=TEXTS[::-1]))


def check_tokenizer_pairs(framework, env):
    ours, ref = _tokenizers(env)
    assert dict(ours("what is it", "a fox")) == dict(ref("what is it", "a fox"))


def check_tokenizer_decode(framework, env):
    ours, ref = _tokenizers(env)
    ids = ref(TEXTS, padding=True)["input_ids"]
    assert ours.batch_decode(ids, skip_special_tokens=True) == ref.batch_decode(ids, skip_special_tokens=True)
    assert ours.decode(ids[1]) == ref.decode(ids[1])


def check_tokenizer_padding_side(framework, env):
    ours, ref = _tokenizers(env, padding_side="left")
    assert dict(ours(TEXTS, padding=True)) == dict(ref(TEXTS, padding=True))


def check_tokenizer_special_tokens(framework, env):
    ours, ref = _tokenizers(env, bos_token="[CLS]", eos_token="[SEP]")
    assert (ours.bos_token_id, ours.eos_token_id, ours.pad_token_id) == (ref.bos_token_id, ref.eos_token_id, ref.pad_token_id)


def _same_pipeline(framework, env, task, inputs, **kwargs):
    from encdec import pipeline

    expected = transformers.pipeline(task, model=env["folder"], framework="pt", **kwargs)(inputs)
    assert pipeline(task, model=env["folder"], framework=framework, **kwargs)(inputs) == expected


def check_pipeline_summarization(framework, env):
    _same_pipeline(framework, env, "summarization", TEXTS[0])


def check_pipeline_translation(framework, env):
    _same_pipeline(framework, env, "translation_en_to_de", TEXTS)


def check_pipeline_text2text(framework, env):
    _same_pipeline(framework, env, "text2text-generation", TEXTS, batch_size=2)


def check_pipeline_device(framework, env):
    _same_pipeline(framework, env, "text2text-generation", TEXTS[1], device=-1)
    _same_pipeline(framework, env, "text2text-generation", TEXTS[1], device="cpu")


CHECKS = {
    "config.from_pretrained": check_config_from_pretrained,
    "config.save_pretrained": check_config_save_pretrained,
    "model.from_pretrained": check_model_from_pretrained,
    "model.from_pretrained.tf_h5": check_model_from_pretrained_tf_h5,
    "model.from_pretrained.flax_msgpack": check_model_from_pretrained_flax_msgpack,
    "model.from_encoder_decoder_pretrained": check_model_from_encoder_decoder_pretrained,
    "model.forward.labels": check_model_forward_labels,
    "model.save_pretrained": check_model_save_pretrained,
    "model.save_pretrained.legacy": check_model_save_pretrained_legacy,
    "reference_tf.reads_our_safetensors": check_reference_tf_reads_our_safetensors,
    "generate.greedy": check_generate_greedy,
    "generate.beam": check_generate_beam,
    "generate.generation_config": check_generate_generation_config,
    "generate.num_return_sequences": check_generate_num_return_sequences,
    "generate.processors": check_generate_processors,
    "generate.sample": check_generate_sample,
    "generate.return_dict": check_generate_return_dict,
    "generate.decoder_input_ids": check_generate_decoder_input_ids,
    "generate.typical_p": check_generate_typical_p,
    "generate.beam_sample": check_generate_beam_sample,
    "generate.streamer": check_generate_streamer,
    "generate.max_time": check_generate_max_time,
    "generate.stop_strings": check_generate_stop_strings,
    "tokenizer.call": check_tokenizer_call,
    "tokenizer.text_target": check_tokenizer_text_target,
    "tokenizer.pairs": check_tokenizer_pairs,
    "tokenizer.decode": check_tokenizer_decode,
    "tokenizer.padding_side": check_tokenizer_padding_side,
    "tokenizer.special_tokens": check_tokenizer_special_tokens,
    "pipeline.summarization": check_pipeline_summarization,
    "pipeline.translation": check_pipeline_translation,
    "pipeline.text2text": check_pipeline_text2text,
    "pipeline.device": check_pipeline_device,
}

# --- probes of the `no` cells: generate keywords that must be refused ---------------------------


def _streamer(env):
    return transformers.TextStreamer(env["tokenizer"])


PROBES = {
    "generate.streamer": lambda env: {"streamer": _streamer(env)},
    "generate.group_beam": lambda env: {"num_beams": 4, "num_beam_groups": 2, "diversity_penalty": 1.0},
    "generate.stop_strings": lambda env: {"stop_strings": ["x"], "tokenizer": env["tokenizer"]},  # TF, Flax
    "generate.max_time": lambda env: {"max_time": 1.0},
}


def test_the_table_and_the_checks_name_the_same_rows():
    yes = {row for row, cells in TABLE.items() if "yes" in cells.values()}
    no = {row for row, cells in TABLE.items() if "no" in cells.values()}
    assert yes == set(CHECKS), f"rows without a check: {sorted(yes - set(CHECKS))}; checks without a `yes` row: " \
                               f"{sorted(set(CHECKS) - yes)}"
    assert no == set(PROBES), f"`no` rows without a probe: {sorted(no - set(PROBES))}; probes of no `no` row: " \
                              f"{sorted(set(PROBES) - no)}"


CELLS = [(row, fw, status) for row, cells in TABLE.items() for fw, status in cells.items() if status != "n/a"]


@pytest.mark.parametrize("row,framework,status", CELLS, ids=[f"{r}-{f}" for r, f, _ in CELLS])
def test_cell(env, row, framework, status):
    if status == "yes":
        CHECKS[row](framework, env)
        return
    kwargs = PROBES[row](env)
    try:
        if framework == "pt" and "decoder_input_ids" in kwargs:
            kwargs["decoder_input_ids"] = torch.from_numpy(kwargs["decoder_input_ids"])
        _generate(framework, env, max_new_tokens=4, **kwargs)
    except (TypeError, ValueError, NotImplementedError):
        return
    pytest.fail(f"docs/compatibility.md says {row} is not supported in {framework}, but the call works: "
                "update the table (and give the row a check)")
