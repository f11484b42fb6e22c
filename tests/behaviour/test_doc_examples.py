"""Every ```python block of docs/examples.md runs as written on the fake offline hub cache of
tests/fake_hub.py. The translation prints the reference's text (its own snippet, run by
transformers on the same folder); bert2bart's loss before the training step is the reference's for
the same warm-started weights, and it generates."""

import re
from pathlib import Path

import pytest

from fake_hub import build_fake_hub, offline_cache

pytestmark = pytest.mark.oracle
transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

PAGE = Path(__file__).resolve().parents[2] / "docs" / "examples.md"
BLOCKS = re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    cache = build_fake_hub(tmp_path_factory.mktemp("hf_cache"))
    with offline_cache(cache):
        yield cache


def run(source, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__example__"}
    exec(compile(source, str(PAGE), "exec"), namespace)
    return namespace


def test_page_has_the_two_examples():
    assert len(BLOCKS) == 2
    assert "google/bert2bert_L-24_wmt_en_de" in BLOCKS[0] and "facebook/bart-base" in BLOCKS[1]
    assert all("transformers" not in block for block in BLOCKS)


def test_translation(hub, tmp_path, monkeypatch, capsys):
    ours = run(BLOCKS[0], tmp_path, monkeypatch)
    printed = capsys.readouterr().out
    reference = run(BLOCKS[0].replace("from encdec import", "from transformers import")
                    .replace("from encdec_pt import", "from transformers import"), tmp_path, monkeypatch)
    assert capsys.readouterr().out == printed
    assert ours["outputs"].tolist() == reference["outputs"].tolist()


def test_bert2bart(hub, tmp_path, monkeypatch, capsys):
    """The step changes the weights (so the reference's loss is compared on a fresh warm start)."""
    ours = run(BLOCKS[1], tmp_path, monkeypatch)
    assert capsys.readouterr().out.startswith("[")
    assert ours["generated"].shape[0] == 1 and 2 <= ours["generated"].shape[1] <= 9
    assert ours["generated"][0, 0].item() == ours["target_tokenizer"].eos_token_id
    # the same warm start, labels and loss in the reference (dropout off to compare)
    from encdec_pt import EncoderDecoderModel

    reference = transformers.EncoderDecoderModel.from_encoder_decoder_pretrained(
        "google-bert/bert-base-uncased", "facebook/bart-base").eval()
    fresh = EncoderDecoderModel.from_encoder_decoder_pretrained(
        "google-bert/bert-base-uncased", "facebook/bart-base").eval()
    for model in (reference, fresh):
        model.config.decoder_start_token_id = 2
        model.config.pad_token_id = 1
    labels = transformers.AutoTokenizer.from_pretrained("facebook/bart-base")(
        ["Plants make energy from sunlight."], return_tensors="pt").input_ids
    assert labels.tolist() == ours["labels"].tolist()
    ids = ours["batch"].input_ids
    with torch.no_grad():
        expected = reference(input_ids=ids, labels=labels).loss.item()
        got = fresh(input_ids=ids, labels=labels).loss.item()
    assert abs(got - expected) < 1e-4
