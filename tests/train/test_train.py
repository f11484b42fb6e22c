"""``encdec train`` end to end on tiny warm-start folders (the real MiniLM tokenizer): the run folder
loads with ``from_pretrained`` and ``AutoTokenizer``; ``--resume`` from a checkpoint repeats the
losses of the uninterrupted run exactly (dropout on: the RNG state is in the checkpoint)."""

import os
import shutil

import numpy as np
import pytest

from encdec import AutoTokenizer
from encdec_app.cli import main
from encdec_app.frameworks import model_class

from helpers import metrics, tiny_pair, train_args, write_jsonl

FRAMEWORKS = ["pt", pytest.param("flax", marks=pytest.mark.slow), pytest.param("tf", marks=pytest.mark.slow)]


@pytest.mark.parametrize("framework", FRAMEWORKS)
def test_train_saves_a_loadable_folder_and_resume_repeats_the_losses(tmp_path, framework):
    pair = tiny_pair(str(tmp_path))
    data = write_jsonl(str(tmp_path / "train.jsonl"), 12)
    out = str(tmp_path / "run")
    assert main(train_args(pair, data, out, framework, "--save-every", "1", "--dropout", "0.1",
                           "--grad-accum", "2")) == 0
    uninterrupted = [(r["step"], r["loss"]) for r in metrics(out)]
    assert [s for s, _ in uninterrupted] == [1, 2, 3]
    assert {"checkpoint-1", "checkpoint-2", "checkpoint-3"} <= set(os.listdir(out))
    assert not [n for n in os.listdir(out) if n.endswith(".tmp")]

    # the run as a kill during step 2 leaves it: checkpoint-1 and the log of steps 1 and 2
    resumed = str(tmp_path / "resumed")
    os.makedirs(resumed)
    shutil.copytree(os.path.join(out, "checkpoint-1"), os.path.join(resumed, "checkpoint-1"))
    shutil.copy(os.path.join(out, "metrics.jsonl"), resumed)
    assert main(train_args(pair, data, resumed, framework, "--save-every", "1", "--dropout", "0.1",
                           "--grad-accum", "2", "--resume")) == 0
    again = [(r["step"], r["loss"]) for r in metrics(resumed)]
    assert [s for s, _ in again] == [1, 2, 3]
    np.testing.assert_allclose([l for _, l in again], [l for _, l in uninterrupted], rtol=0, atol=1e-5)

    tokenizer = AutoTokenizer.from_pretrained(out)
    model = model_class(framework).from_pretrained(out)
    assert model.config.decoder_start_token_id == tokenizer.cls_token_id
    assert model_class("pt").from_pretrained(out).config.encoder.hidden_dropout_prob == 0.1


def test_bad_data_exits_with_the_file_and_line(tmp_path, capsys):
    pair = tiny_pair(str(tmp_path))
    data = tmp_path / "bad.jsonl"
    data.write_text('{"source": "a", "target": "b"}\n{"source": "a", "label": "b"}\n')
    assert main(train_args(pair, str(data), str(tmp_path / "run"), "pt")) == 2
    assert f"{data}, line 2: no column 'target'" in capsys.readouterr().err
