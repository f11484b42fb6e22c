"""``encdec train``'s framework-free parts: bad data is named by file, line and column; batches are
a pure function of (seed, step); label weights make the loss independent of how a batch is split."""

import json

import numpy as np
import pytest

from encdec_app.train.common import lr_factor
from encdec_app.train.data import DataError, batch_rows, make_batch, micro_batches, read_pairs, shard, Encoded


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("name, text, message", [
    ("d.jsonl", '{"source": "a", "target": "b"}\n{"source": "a", "target": "b"\n', r"d.jsonl, line 2: not JSON"),
    ("d.jsonl", '{"source": "a", "target": "b"}\n{"source": "a"}\n', r"line 2: no column 'target'"),
    ("d.jsonl", '{"source": "a", "target": "  "}\n', r"line 1: column 'target' is empty"),
    ("d.jsonl", '["a", "b"]\n', r"line 1: a JSON list, not an object"),
    ("d.csv", "source,tgt\na,b\n", r"d.csv, line 1: no column 'target' in the header"),
    ("d.csv", "source,target\na,b\nc,\n", r"d.csv, line 3: column 'target' is empty"),
    ("d.txt", "a\tb\n", r"unknown data format"),
])
def test_bad_data_is_named(tmp_path, name, text, message):
    with pytest.raises(DataError, match=message):
        read_pairs(write(tmp_path, name, text))


def test_jsonl_and_csv_read_the_same_pairs(tmp_path):
    rows = [("the first of may", "05-01"), ('a "quoted", text', "x")]
    jsonl = write(tmp_path, "d.jsonl", "".join(json.dumps({"src": s, "tgt": t}) + "\n" for s, t in rows))
    csv = write(tmp_path, "d.csv", 'src,tgt\nthe first of may,05-01\n"a ""quoted"", text",x\n')
    assert read_pairs(jsonl, "src", "tgt") == read_pairs(csv, "src", "tgt") == rows


def test_batches_cover_each_epoch_once_and_are_reproducible():
    rows = [batch_rows(10, 4, step, seed=3) for step in range(5)]
    stream = sum(rows, [])
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:20]) == list(range(10))
    assert rows == [batch_rows(10, 4, step, seed=3) for step in range(5)]
    assert rows != [batch_rows(10, 4, step, seed=4) for step in range(5)]


def test_label_weights_make_shares_add_up_to_the_global_token_mean():
    rng = np.random.default_rng(0)
    data = Encoded([list(rng.integers(5, 50, rng.integers(2, 9))) for _ in range(8)],
                   [list(rng.integers(5, 50, rng.integers(1, 7))) for _ in range(8)])
    batch = make_batch(data, list(range(8)), 0, 0, 1, 16, 16, bucketed=True)
    assert batch["input_ids"].shape[1] in (8, 16) and batch["labels"].shape[1] == 8  # length buckets
    ce = rng.random(batch["labels"].shape)  # any per-token loss
    global_mean = ce[batch["labels"] != -100].mean()
    shares = [(shard({"ce": ce, **batch}, r, 4)["ce"] * shard(batch, r, 4)["label_weights"]).sum() for r in range(4)]
    np.testing.assert_allclose(sum(shares), global_mean, rtol=1e-6)
    micro = [(m["ce"] * m["label_weights"]).sum() for m in micro_batches({"ce": ce, **batch}, 4)]
    np.testing.assert_allclose(sum(micro), global_mean, rtol=1e-6)


def test_schedule_warms_up_then_decays_to_zero():
    factors = [float(lr_factor(s, 2, 6)) for s in range(7)]
    assert factors == pytest.approx([0.0, 0.5, 1.0, 0.75, 0.5, 0.25, 0.0])
    assert float(lr_factor(0, 0, 4)) == 1.0
