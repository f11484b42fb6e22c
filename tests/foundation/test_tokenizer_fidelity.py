"""The tokenizer used as the reference's users use it, against transformers 4.57.6 on the same folder:
from_pretrained overrides, padding/truncation sides, pairs, text_target, decoding, added tokens,
save/reload, the BertTokenizer/GPT2Tokenizer names and return_tensors.

Folders: the real MiniLM BERT, a GPT-2 byte-level BPE made here with the `tokenizers` library
(vocab.json + merges.txt: the reference converts it from the slow files), and that folder as the
reference saves it (tokenizer.json).
"""

import json

import numpy as np
import pytest

import encdec
from encdec.testing import minilm_path
from encdec.tokenizer import SPECIAL_TOKEN_NAMES, AutoTokenizer

pytestmark = pytest.mark.oracle
transformers = pytest.importorskip("transformers")

TEXTS = [
    "Hello, world! Isn't it a lovely day?",
    "Crème brûlée, naïve café & jalapeño — déjà vu.",
    "東京は日本の首都です。中文也可以。",
    "   leading spaces and trailing   ",
    "",
    "supercalifragilisticexpialidocious" * 5,  # one word longer than WordPiece's 100 characters
    "a b",
]
PAIRS = [("What is the capital?", "Tokyo is the capital of Japan, it's big."), ("", "only context"),
         ("question alone", ""), ("Où est-il ?", "東京")]
CORPUS = TEXTS + ["the capital of Japan is Tokyo", "question context pair where what is", "Où est-il ?"] * 3


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS, vocab_size=420, min_frequency=1, special_tokens=["<|endoftext|>"],
                            show_progress=False)
    gpt2 = tmp_path_factory.mktemp("gpt2")
    bpe.save_model(str(gpt2))
    (gpt2 / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "GPT2Tokenizer", "model_max_length": 40}))
    gpt2_json = tmp_path_factory.mktemp("gpt2_json")
    transformers.AutoTokenizer.from_pretrained(gpt2).save_pretrained(gpt2_json)
    return {"bert": minilm_path(), "gpt2": str(gpt2), "gpt2_json": str(gpt2_json)}


@pytest.fixture(scope="module", params=["bert", "gpt2", "gpt2_json"])
def folder(request, folders):
    return folders[request.param]


@pytest.fixture(scope="module")
def pair(folder):
    """(ours, oracle), loaded once per folder: tests that change a tokenizer load their own."""
    return AutoTokenizer.from_pretrained(folder), transformers.AutoTokenizer.from_pretrained(folder)


def load(folder, **kwargs):
    return AutoTokenizer.from_pretrained(folder, **kwargs), transformers.AutoTokenizer.from_pretrained(folder, **kwargs)


def plain(encoding):
    """Plain lists (rows of different lengths allowed) from lists or tensors."""
    return {k: v.tolist() if hasattr(v, "tolist") else [list(r) if isinstance(r, list) else r for r in v]
            for k, v in encoding.items()}


def assert_same_state(ours, oracle):
    for name in SPECIAL_TOKEN_NAMES:
        expected = getattr(oracle, name)
        assert getattr(ours, name) == (None if expected is None else str(expected)), name
        assert getattr(ours, name + "_id") == getattr(oracle, name + "_id"), name
    assert (len(ours), ours.vocab_size) == (len(oracle), oracle.vocab_size)
    assert ours.all_special_tokens == oracle.all_special_tokens
    assert ours.all_special_ids == oracle.all_special_ids
    assert ours.additional_special_tokens == [str(t) for t in oracle.additional_special_tokens]
    assert ours.additional_special_tokens_ids == oracle.additional_special_tokens_ids
    assert ours.get_added_vocab() == oracle.get_added_vocab()
    assert {i: repr(t) for i, t in ours._tokenizer.get_added_tokens_decoder().items()} == {
        i: repr(t) for i, t in oracle.added_tokens_decoder.items()}  # flags too: they change matching
    assert (ours.model_max_length, ours.padding_side, ours.truncation_side) == (
        oracle.model_max_length, oracle.padding_side, oracle.truncation_side)
    assert ours.model_input_names == oracle.model_input_names


def assert_same_encoding(ours, oracle, texts, **kwargs):
    for text in texts:  # one by one, then as a batch
        assert plain(ours(text, **kwargs)) == plain(oracle(text, **kwargs)), text
    if ours.pad_token is not None:
        kw = dict(kwargs, padding=kwargs.get("padding", True))
        assert plain(ours(texts, **kw)) == plain(oracle(texts, **kw))


OVERRIDES = {
    "bert": [dict(bos_token="[CLS]", eos_token="[SEP]", pad_token="[MASK]"),
             dict(pad_token="<pad>", eos_token="</s>", bos_token="<s>"),
             dict(do_lower_case=False, strip_accents=True, unk_token="[MASK]")],
    "gpt2": [dict(pad_token="<|endoftext|>", sep_token="<sep>"),
             dict(pad_token="<pad>", eos_token="</s>", bos_token="<s>", add_prefix_space=True)],
    "all": [dict(additional_special_tokens=["<x>", "<y>"], cls_token="<cls>", model_max_length=9),
            dict(padding_side="left", truncation_side="left", model_max_length=7, mask_token="<mask>")],
}


@pytest.mark.parametrize("name,overrides", [
    (name, overrides) for name in ("bert", "gpt2", "gpt2_json")
    for overrides in OVERRIDES["bert" if name == "bert" else "gpt2"] + OVERRIDES["all"]])
def test_from_pretrained_overrides_equal_oracle(folders, name, overrides):
    ours, oracle = load(folders[name], **overrides)
    assert_same_state(ours, oracle)
    texts = TEXTS + [" ".join(str(t) for t in oracle.all_special_tokens) + " Hello <s>there</s> <x>"]
    assert_same_encoding(ours, oracle, texts, truncation=True)


def test_from_pretrained_refuses_what_does_not_apply(folders):
    with pytest.raises(TypeError, match="unknown arguments.*'padding_sides'"):
        AutoTokenizer.from_pretrained(folders["bert"], padding_sides="left")
    with pytest.raises(ValueError, match="do_lower_case= does not apply to a GPT2Tokenizer"):
        AutoTokenizer.from_pretrained(folders["gpt2"], do_lower_case=True)
    with pytest.raises(ValueError, match="padding_side must be 'right' or 'left'"):
        AutoTokenizer.from_pretrained(folders["bert"], padding_side="top")
    ours = AutoTokenizer.from_pretrained(folders["bert"])
    with pytest.raises(ValueError, match="truncation_side must be"):
        ours.truncation_side = "middle"


@pytest.mark.parametrize("how", ["argument", "attribute", "call"])
def test_padding_and_truncation_sides_equal_oracle(folder, how):
    kwargs = dict(padding_side="left", truncation_side="left") if how == "argument" else {}
    ours, oracle = load(folder, **kwargs)
    for tok in (ours, oracle):
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token  # the reference's documented idiom for GPT-2
        if how == "attribute":
            tok.padding_side, tok.truncation_side = "left", "left"
    call = dict(padding_side="left") if how == "call" else {}
    for kw in (dict(padding=True), dict(padding=True, truncation=True, max_length=6),
               dict(padding="max_length", truncation=True, max_length=12), dict(max_length=5),
               dict(padding=True, pad_to_multiple_of=8)):
        assert plain(ours(TEXTS, **kw, **call)) == plain(oracle(TEXTS, **kw, **call)), kw
    assert plain(ours(TEXTS[0], text_target=TEXTS[1], max_length=6, **call)) == plain(
        oracle(TEXTS[0], text_target=TEXTS[1], max_length=6, **call))


def test_pairs_equal_oracle(folder):
    ours, oracle = load(folder)
    for tok in (ours, oracle):
        tok.pad_token = tok.pad_token or tok.eos_token
    for a, b in PAIRS:
        assert plain(ours(a, b)) == plain(oracle(a, b))
    firsts, seconds = [a for a, _ in PAIRS], [b for _, b in PAIRS]
    for kw in (dict(padding=True), dict(padding=True, truncation=True, max_length=9),
               dict(padding=True, truncation="only_second", max_length=12),
               dict(padding=True, truncation="only_first", max_length=25),
               dict(padding="max_length", truncation="longest_first", max_length=10, return_tensors="np")):
        assert plain(ours(firsts, seconds, **kw)) == plain(oracle(firsts, seconds, **kw)), kw
        assert plain(ours(PAIRS, **kw)) == plain(oracle(PAIRS, **kw)), kw
    assert ours.encode(*PAIRS[0]) == oracle.encode(*PAIRS[0])
    with pytest.raises(ValueError, match="Sequence to truncate too short"):  # the reference raises too
        ours(firsts, seconds, truncation="only_first", max_length=8)


def test_text_target_gives_labels_as_oracle(folder):
    ours, oracle = load(folder)
    for tok in (ours, oracle):
        tok.pad_token = tok.pad_token or tok.eos_token
    sources, targets = TEXTS[:4], TEXTS[3:]
    assert plain(ours(sources[0], text_target=targets[0])) == plain(oracle(sources[0], text_target=targets[0]))
    assert plain(ours(text_target=targets[1])) == plain(oracle(text_target=targets[1]))
    for kw in (dict(padding=True), dict(padding=True, truncation=True, max_length=8, return_tensors="np"),
               dict(padding="max_length", max_length=30, truncation=True)):
        a, b = ours(sources, text_target=targets, **kw), oracle(sources, text_target=targets, **kw)
        assert plain(a) == plain(b), kw
    assert "labels" in a
    with pytest.raises(ValueError, match="batches of the same size"):
        ours(sources, text_target=targets[:2])


def test_decode_and_batch_decode_equal_oracle(pair):
    import torch

    ours, oracle = pair
    ragged = [oracle(t)["input_ids"] for t in TEXTS]  # lists of different lengths
    longest = max(map(len, ragged))
    padded = [r + [0] * (longest - len(r)) for r in ragged]
    for sequences in (ragged, [], np.asarray(padded), torch.tensor(padded), [np.asarray(r) for r in ragged]):
        for kw in (dict(), dict(skip_special_tokens=True), dict(clean_up_tokenization_spaces=True),
                   dict(skip_special_tokens=True, clean_up_tokenization_spaces=False)):
            assert ours.batch_decode(sequences, **kw) == oracle.batch_decode(sequences, **kw), kw
    for ids in (ragged[0], ragged[0][1], np.int64(ragged[0][1]), torch.tensor(ragged[0]), []):
        assert ours.decode(ids) == oracle.decode(ids)
    with pytest.raises(ValueError, match="use batch_decode"):
        ours.decode(np.asarray(padded))


def test_added_tokens_equal_oracle_and_survive_save(folder, tmp_path):
    from tokenizers import AddedToken

    ours, oracle = load(folder)
    steps = [
        ("add_tokens", (["newword", "ÉtéWord", "newword", "東京"],), {}),
        ("add_tokens", ([AddedToken("<keep>", lstrip=True)],), dict(special_tokens=True)),
        ("add_tokens", ("single",), {}),
        ("add_special_tokens", ({"pad_token": "<pad>", "cls_token": "<cls>", "additional_special_tokens": ["<a>", "<b>"]},), {}),
        ("add_special_tokens", ({"additional_special_tokens": ["<b>", "<c>"]},), dict(replace_additional_special_tokens=False)),
        ("add_special_tokens", ({"eos_token": oracle.unk_token},), {}),
        ("add_tokens", ([],), {}),
    ]
    texts = TEXTS + ["newword ÉtéWord <pad> x<keep> <a><b> <c> single singles 東京 <cls>"]
    for method, args, kwargs in steps:
        assert getattr(ours, method)(*args, **kwargs) == getattr(oracle, method)(*args, **kwargs), (method, args)
        assert_same_state(ours, oracle)
        assert_same_encoding(ours, oracle, texts)
    assert ours.batch_decode([ours.encode(texts[-1])], skip_special_tokens=True) == oracle.batch_decode(
        [oracle.encode(texts[-1])], skip_special_tokens=True)

    ours.save_pretrained(tmp_path / "ours")
    for reloaded in (AutoTokenizer.from_pretrained(tmp_path / "ours"),
                     transformers.AutoTokenizer.from_pretrained(tmp_path / "ours")):
        assert_same_state(reloaded, oracle)
        assert_same_encoding(reloaded, oracle, texts)
    oracle.save_pretrained(tmp_path / "oracle")
    assert_same_state(AutoTokenizer.from_pretrained(tmp_path / "oracle"), oracle)
    # Without tokenizer.json both rebuild from the vocabulary files and the config's added tokens.
    (tmp_path / "oracle" / "tokenizer.json").unlink()
    ours, oracle = AutoTokenizer.from_pretrained(tmp_path / "oracle"), transformers.AutoTokenizer.from_pretrained(
        tmp_path / "oracle")
    assert_same_state(ours, oracle)
    assert_same_encoding(ours, oracle, texts)


def test_special_tokens_set_as_attributes_equal_oracle():
    ours, oracle = load(minilm_path())
    for tok in (ours, oracle):
        tok.bos_token = "[CLS]"
        tok.eos_token_id = 102
        tok.pad_token = "<absent>"  # not added: its id is the unknown token's, as the reference
    assert_same_state(ours, oracle)
    with pytest.raises(ValueError, match="pad_token must be a string"):
        ours.pad_token = 5


def test_family_names_load_as_the_reference(folders):
    for name in ("BertTokenizer", "BertTokenizerFast"):
        ours, oracle = getattr(encdec, name).from_pretrained(folders["bert"]), getattr(transformers, name).from_pretrained(folders["bert"])
        assert isinstance(ours, encdec.Tokenizer)
        assert_same_state(ours, oracle)
        assert_same_encoding(ours, oracle, TEXTS)
    for name in ("GPT2Tokenizer", "GPT2TokenizerFast"):
        for key in ("gpt2", "gpt2_json"):
            ours, oracle = getattr(encdec, name).from_pretrained(folders[key]), getattr(transformers, name).from_pretrained(folders[key])
            assert_same_state(ours, oracle)
            assert_same_encoding(ours, oracle, TEXTS)
    # The reference's GPT2Tokenizer fails with a TypeError here and its GPT2TokenizerFast warns, then
    # adds <|endoftext|> to the BERT vocabulary: both names of ours refuse with the reason.
    with pytest.raises(ValueError, match="holds a BertTokenizer tokenizer, not one of GPT2Tokenizer's family"):
        encdec.GPT2TokenizerFast.from_pretrained(folders["bert"])
    with pytest.raises(ValueError, match="holds a GPT2Tokenizer tokenizer"):
        encdec.BertTokenizer.from_pretrained(folders["gpt2"])


@pytest.mark.parametrize("kind", ["np", "pt", "tf", "jax"])
def test_return_tensors_kinds(folder, kind):
    ours, oracle = load(folder)
    for tok in (ours, oracle):
        tok.pad_token = tok.pad_token or tok.eos_token
    batch = ours(PAIRS, text_target=TEXTS[:4], padding=True, return_tensors=kind)
    expected = oracle(PAIRS, text_target=TEXTS[:4], padding=True, return_tensors="np")
    module = {"np": "numpy", "pt": "torch", "tf": "tensorflow", "jax": "jax"}[kind]
    assert set(batch) == set(expected)
    for key, value in batch.items():
        assert type(value).__module__.split(".")[0] in (module, "jaxlib"), type(value)
        np.testing.assert_array_equal(np.asarray(value), expected[key])
    single = ours(TEXTS[0], return_tensors=kind)
    assert tuple(single["input_ids"].shape) == (1, len(ours(TEXTS[0])["input_ids"]))
