"""The main job end to end, shortened: `encdec demo --quick` in each training framework, and
`encdec generate` on the folder it saved."""

import re
import subprocess
import sys

import pytest

from encdec_app.demo_data import exact_match, make_dataset, normalise, ordinal_words, year_words


def _run(*args, timeout=600, stdin=None):
    return subprocess.run([sys.executable, "-m", "encdec_app.cli", *args], capture_output=True, text=True, timeout=timeout,
                          input=stdin)


def test_dataset_is_deterministic_and_disjoint():
    train, test = make_dataset(200, 50, seed=3)
    assert (train, test) == make_dataset(200, 50, seed=3)
    assert not {iso for _, iso in train} & {iso for _, iso in test}
    assert year_words(1992) == "nineteen ninety-two" and year_words(2007) == "two thousand seven"
    assert ordinal_words(21) == "twenty-first" and ordinal_words(30) == "thirtieth"
    assert exact_match(["1992 - 07 - 04", "2000-01-01"], ["1992-07-04", "2000-01-02"]) == 0.5
    assert normalise(" 19 92 ") == "1992"


# Stage 4 loads and runs all three frameworks whichever trains; training in TF / Flax adds only
# its own loop, so those two runs are slow-marked to keep CI short.
@pytest.mark.parametrize("framework", ["pt", pytest.param("tf", marks=pytest.mark.slow),
                                       pytest.param("flax", marks=pytest.mark.slow)])
def test_quick_demo_runs_every_step(tmp_path, framework):
    out = tmp_path / "model"
    result = _run("demo", "--quick", "--framework", framework, "--out", str(out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = result.stdout
    for marker in ("[1/4]", "cross-attention: 60 tensors newly initialised", "[2/4]", "[3/4]", "greedy", "4-beam",
                   "[4/4]", "max |logit difference| PyTorch vs TensorFlow", "identical in all three frameworks"):
        assert marker in text, f"{marker!r} missing from the demo output:\n{text[-3000:]}"
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    took = re.search(r"done in (\d+) s\.", text)
    assert took and int(took.group(1)) < 600, "the demo reports its own run time"
    if framework == "pt":
        gen = _run("generate", str(out), "the first of may, nineteen ninety", "--max-new-tokens", "4")
        assert gen.returncode == 0, gen.stderr[-2000:]
        assert len(gen.stdout.strip().splitlines()) == 1
        piped = _run("generate", str(out), "--num-beams", "2", "--max-new-tokens", "4",
                     stdin="the first of may, nineteen ninety\nthe second of june, two thousand\n")
        assert piped.returncode == 0, piped.stderr[-2000:]
        assert len(piped.stdout.strip().splitlines()) == 2


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory):
    """A small GPT-2 decoder with its own byte-level BPE vocabulary (trained here on the demo's
    targets), saved by the oracle as a hub checkpoint would be."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    from tokenizers import ByteLevelBPETokenizer

    folder = str(tmp_path_factory.mktemp("gpt2"))
    train, test = make_dataset(200, 20, seed=0)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([t for _, t in train + test], vocab_size=300, special_tokens=["<|endoftext|>"])
    tokenizer = transformers.GPT2TokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<|endoftext|>",
                                               eos_token="<|endoftext|>", unk_token="<|endoftext|>")
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=len(tokenizer), n_positions=64, n_embd=32, n_layer=2, n_head=4,
                                     bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def test_quick_demo_warm_starts_another_pair(tmp_path, gpt2_folder):
    """`--encoder/--decoder`: the real MiniLM as encoder, a GPT-2 with another vocabulary as decoder.
    The target is written with the decoder's tokenizer (saved in `decoder_tokenizer/`), which
    `encdec generate` then decodes with."""
    from encdec.testing import minilm_path

    out = tmp_path / "model"
    result = _run("demo", "--quick", "--encoder", minilm_path(), "--decoder", gpt2_folder, "--out", str(out))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for marker in ("[1/4]", "(encoder) and", "[3/4]", "[4/4]", "identical in all three frameworks"):
        assert marker in result.stdout, f"{marker!r} missing from the demo output:\n{result.stdout[-3000:]}"
    assert (out / "tokenizer.json").is_file() and (out / "decoder_tokenizer" / "tokenizer.json").is_file()
    text = "the first of may, nineteen ninety"
    gen = _run("generate", str(out), text, "--max-new-tokens", "6", "--min-new-tokens", "4")
    assert gen.returncode == 0, gen.stderr[-2000:]
    # the reference, reading the same folder with each side's tokenizer, writes the same text
    transformers = pytest.importorskip("transformers")
    reference = transformers.EncoderDecoderModel.from_pretrained(str(out))
    ids = transformers.AutoTokenizer.from_pretrained(str(out))(text, return_tensors="pt")
    sequences = reference.generate(**ids, max_new_tokens=6, min_new_tokens=4)
    decoder_tokenizer = transformers.AutoTokenizer.from_pretrained(str(out / "decoder_tokenizer"))
    assert gen.stdout.strip() == decoder_tokenizer.decode(sequences[0], skip_special_tokens=True).strip()
    assert gen.stdout.strip()
