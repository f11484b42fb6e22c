"""The tokenizer on the real MiniLM files gives the oracle's ids; the other constructors work."""

import numpy as np
import pytest

from encdec.tokenizer import AutoTokenizer, Tokenizer
from encdec.testing import minilm_path

SENTENCES = [
    "Hello, world! Isn't it a lovely day?",
    "Crème brûlée, naïve café & jalapeño — déjà vu.",
    "東京は日本の首都です。中文也可以。",
    "Punctuation: (a) [b] {c} <d> \"quoted\" 'single'... 3.14 + 2 = 5.14!",
    " ".join(["a long input that must be truncated"] * 30),
]


@pytest.fixture(scope="module")
def ours():
    return Tokenizer.from_pretrained(minilm_path())


@pytest.fixture(scope="module")
def oracle():
    transformers = pytest.importorskip("transformers")
    return transformers.BertTokenizerFast.from_pretrained(minilm_path())


@pytest.mark.oracle
def test_ids_equal_oracle_one_by_one(ours, oracle):
    for text in SENTENCES:
        assert ours(text)["input_ids"] == oracle(text)["input_ids"], text
        assert ours.decode(ours.encode(text), skip_special_tokens=True) == oracle.decode(
            oracle.encode(text), skip_special_tokens=True)


@pytest.mark.oracle
@pytest.mark.parametrize("padding,max_length", [(True, 16), ("max_length", 24), ("longest", None)])
def test_batch_padding_truncation_equal_oracle(ours, oracle, padding, max_length):
    kw = dict(padding=padding, truncation=max_length is not None, max_length=max_length, return_tensors="np")
    a, b = ours(SENTENCES, **kw), oracle(SENTENCES, **kw)
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        np.testing.assert_array_equal(a[key], b[key])


def test_vocab_txt_only_equals_tokenizer_json(tmp_path, ours):
    import shutil

    shutil.copy(f"{minilm_path()}/vocab.txt", tmp_path / "vocab.txt")
    shutil.copy(f"{minilm_path()}/tokenizer_config.json", tmp_path / "tokenizer_config.json")
    from_vocab = AutoTokenizer.from_pretrained(tmp_path)
    for text in SENTENCES:
        assert from_vocab(text)["input_ids"] == ours(text)["input_ids"]


def test_special_tokens_and_round_trip_through_save(tmp_path, ours):
    assert (ours.pad_token_id, ours.cls_token_id, ours.sep_token_id, ours.unk_token_id) == (0, 101, 102, 100)
    assert ours.vocab_size == 30522
    ours.save_pretrained(tmp_path)
    back = Tokenizer.from_pretrained(tmp_path)
    assert back(SENTENCES[:3], padding=True)["input_ids"] == ours(SENTENCES[:3], padding=True)["input_ids"]
    assert back.batch_decode(np.array([[101, 7592, 999, 102, 0]]), skip_special_tokens=True) == ["hello!"]


def test_gpt2_style_bpe_from_vocab_and_merges(tmp_path):
    import json

    vocab = {"<|endoftext|>": 0, "h": 1, "e": 2, "l": 3, "o": 4, "Ġ": 5, "he": 6, "ll": 7, "hell": 8, "hello": 9,
             "Ġhello": 10, "w": 11, "r": 12, "d": 13}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\nh e\nl l\nhe ll\nhell o\nĠ hello\n")
    tok = Tokenizer.from_pretrained(tmp_path)
    ids = tok("hello hello")["input_ids"]
    assert ids == [9, 10] and "token_type_ids" not in tok("hello")
    assert tok.decode(ids) == "hello hello" and tok.eos_token_id == 0


def test_tensor_kinds_and_errors(ours):
    pt = ours(["a b", "c"], padding=True, return_tensors="pt")
    assert tuple(pt["input_ids"].shape) == (2, 4)
    with pytest.raises(ValueError, match="padding=True"):
        ours(["a b", "c"], return_tensors="np")
    with pytest.raises(ValueError, match="return_tensors"):
        ours("a", return_tensors="xx")
    with pytest.raises(OSError, match="has no tokenizer"):
        Tokenizer.from_pretrained("/")
