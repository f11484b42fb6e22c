"""The main job end to end, shortened: `encdec demo --quick` in each training framework, and
`encdec generate` on the folder it saved."""

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
    if framework == "pt":
        gen = _run("generate", str(out), "the first of may, nineteen ninety", "--max-new-tokens", "4")
        assert gen.returncode == 0, gen.stderr[-2000:]
        assert len(gen.stdout.strip().splitlines()) == 1
        piped = _run("generate", str(out), "--num-beams", "2", "--max-new-tokens", "4",
                     stdin="the first of may, nineteen ninety\nthe second of june, two thousand\n")
        assert piped.returncode == 0, piped.stderr[-2000:]
        assert len(piped.stdout.strip().splitlines()) == 2
