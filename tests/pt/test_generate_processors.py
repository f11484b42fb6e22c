"""Each logits processor function against the reference's processor class, on random ids with a
small vocabulary (many repeats, many n-gram matches) and random scores; plus the fixed order."""

import dataclasses

import pytest
import torch

from encdec.generation_config import GenerationConfig
from encdec.generation_utils import resolve_generation_settings
from encdec.testing import tiny_config
from encdec_pt.generation import logits_process as lp

pytestmark = pytest.mark.oracle
V = 11


def _hf():
    return pytest.importorskip("transformers.generation.logits_process")


def _case(seed, n=4, cur_len=9):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 4, (n, cur_len), generator=g)  # tokens 0..3 only: lots of repeats
    scores = torch.randn(n, V, generator=g)
    return ids, scores


def _same(a, b):
    assert torch.equal(torch.isinf(a), torch.isinf(b))
    finite = torch.isfinite(a)
    assert torch.allclose(a[finite], b[finite], atol=0, rtol=0)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("cur_len", [1, 2, 3, 9])
def test_against_reference_classes(seed, cur_len):
    hf = _hf()
    ids, scores = _case(seed, cur_len=cur_len)
    _same(lp.repetition_penalty(ids, scores, 1.7), hf.RepetitionPenaltyLogitsProcessor(1.7)(ids, scores.clone()))
    for n in (1, 2, 3, 4):
        _same(lp.no_repeat_ngram(ids, scores, n), hf.NoRepeatNGramLogitsProcessor(n)(ids, scores.clone()))
    bad = [[1], [3], [2, 1], [0, 0, 2], [1, 2, 3, 0, 1, 2, 3, 0, 1, 2]]
    _same(lp.bad_words(ids, scores, bad, (3, 7)),
          hf.NoBadWordsLogitsProcessor(bad, eos_token_id=[3, 7])(ids, scores.clone()))
    for m in (0, cur_len, cur_len + 1):
        _same(lp.min_length(ids, scores, m, (3, 7)), hf.MinLengthLogitsProcessor(m, [3, 7])(ids, scores.clone()))
    _same(lp.forced_bos(ids, scores, 5), hf.ForcedBOSTokenLogitsProcessor(5)(ids, scores.clone()))
    for max_len in (cur_len + 1, cur_len + 2):
        _same(lp.forced_eos(ids, scores, 6, max_len), hf.ForcedEOSTokenLogitsProcessor(max_len, 6)(ids, scores.clone()))
    _same(lp.temperature(scores, 0.6), hf.TemperatureLogitsWarper(0.6)(ids, scores.clone()))
    for k in (1, 3, V + 5):
        _same(lp.top_k(scores, k), hf.TopKLogitsWarper(k)(ids, scores.clone()))
    for p in (0.05, 0.5, 0.9):
        _same(lp.top_p(scores, p), hf.TopPLogitsWarper(p)(ids, scores.clone()))


def test_process_scores_follows_the_reference_order():
    """Repetition penalty before the bans, bans before forcing, forcing before the warpers."""
    hf = _hf()
    settings, _ = resolve_generation_settings(
        tiny_config("bert2bert"), GenerationConfig(), vocab_size=V, do_sample=True, repetition_penalty=1.3,
        no_repeat_ngram_size=2, bad_words_ids=[[1], [2, 0]], min_length=8, eos_token_id=[3, 7],
        forced_eos_token_id=6, max_length=12, temperature=0.8, top_k=4, top_p=0.7, decoder_start_token_id=0,
    )
    assert lp.active_processors(settings) == ("repetition_penalty", "no_repeat_ngram", "bad_words", "min_length",
                                              "forced_eos", "temperature", "top_k", "top_p")
    processors = hf.LogitsProcessorList([
        hf.RepetitionPenaltyLogitsProcessor(1.3), hf.NoRepeatNGramLogitsProcessor(2),
        hf.NoBadWordsLogitsProcessor([[1], [2, 0]], eos_token_id=[3, 7]), hf.MinLengthLogitsProcessor(8, [3, 7]),
        hf.ForcedEOSTokenLogitsProcessor(12, 6), hf.TemperatureLogitsWarper(0.8), hf.TopKLogitsWarper(4),
        hf.TopPLogitsWarper(0.7),
    ])
    for cur_len in (5, 11):
        ids, scores = _case(1, cur_len=cur_len)
        _same(lp.process_scores(settings, ids, scores), processors(ids, scores.clone()))
    no_sampling = dataclasses.replace(settings, do_sample=False)
    assert "temperature" not in lp.active_processors(no_sampling)
