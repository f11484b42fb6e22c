"""``StopStrings`` (the host check behind PyTorch's ``stop_strings``) against the reference's
``StopStringCriteria`` on many token sequences built from pieces of the stop strings, with the real
MiniLM WordPiece vocabulary (``##`` continuations) given as the reference's and as our tokenizer."""

import numpy as np
import pytest

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

STOPS = ["stop", "top s", "ing."]


@pytest.fixture(scope="module")
def tokenizers():
    from encdec import AutoTokenizer
    from encdec.testing import minilm_path

    return transformers.AutoTokenizer.from_pretrained(minilm_path()), AutoTokenizer.from_pretrained(minilm_path())


def _pieces(reference):
    """Token ids whose text overlaps the stop strings: whole words, word starts and ## continuations."""
    vocab = reference.get_vocab()
    wanted = ["st", "##op", "stop", "##s", "s", "to", "##p", "top", "##ped", "las", "##top", "##per", "op", "##era",
              "at", "sing", "##ing", ".", "thing", "the", "[SEP]", "a", "##t"]
    return [vocab[w] for w in wanted if w in vocab]


@pytest.mark.parametrize("which", ["reference tokenizer", "our tokenizer"])
def test_stop_strings_match_the_references_criteria(tokenizers, which):
    from encdec.generation_utils import StopStrings

    reference_tokenizer, ours = tokenizers
    criteria = transformers.StopStringCriteria(tokenizer=reference_tokenizer, stop_strings=STOPS)
    stop = StopStrings(STOPS, reference_tokenizer if which == "reference tokenizer" else ours)
    pieces = np.array(_pieces(reference_tokenizer))
    rng = np.random.default_rng(0)
    sequences = rng.choice(pieces, size=(600, 7))
    expected = criteria(torch.from_numpy(sequences), None).numpy()
    assert 30 < expected.sum() < 570, "the sample should hold both outcomes"
    np.testing.assert_array_equal(stop(sequences), expected)


def test_a_tokenizer_is_required(tokenizers):
    from encdec.generation_utils import StopStrings

    with pytest.raises(ValueError, match="pass the model's tokenizer to the `tokenizer` argument"):
        StopStrings(["x"], None)
