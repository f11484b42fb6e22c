"""The test matrix is data (``encdec.testing``): ``PAIRS`` (all pairs, run by ``make test-all``) and
``CI_PAIRS`` (``make test``), a covering set: every registered architecture as an encoder and as a
decoder (each role its record allows) in a plain pair, and every special pair (projection, tied)."""

import pytest

import encdec.testing as testing
from encdec.registry import DECODER, ENCODER, records
from encdec.testing import CI_PAIRS, PAIRS, covering_pairs, pair_features, pair_params

FEATURES = ("projection", "tied")


def test_ci_pairs_cover_every_registered_architecture_in_each_of_its_roles():
    plain = [name for name in CI_PAIRS if not pair_features(name)]
    encoders = {PAIRS[name][0] for name in plain}
    decoders = {PAIRS[name][1] for name in plain}
    for record in records():
        if ENCODER in record.roles:
            assert record.model_type in encoders, f"no plain pair of CI_PAIRS has {record.model_type} as encoder"
        if DECODER in record.roles:
            assert record.model_type in decoders, f"no plain pair of CI_PAIRS has {record.model_type} as decoder"
    for feature in FEATURES:
        assert any(feature in pair_features(name) for name in CI_PAIRS), f"no {feature} pair in CI_PAIRS"
    assert set(CI_PAIRS) <= set(PAIRS)


def test_covering_keeps_ci_small_as_architectures_are_added(monkeypatch):
    """With six architectures and every encoder x decoder pair, CI runs a few plain pairs, not 36."""
    names = ["a", "b", "c", "d", "e", "f"]
    pairs = {f"{e}2{d}": (e, d, {}, False) for e in names for d in names}
    # Made-up model types have no record to size: none of these pairs is special.
    monkeypatch.setattr(testing, "pair_features", lambda name, pairs=None: ())
    chosen = covering_pairs(pairs)
    assert {pairs[n][0] for n in chosen} == {pairs[n][1] for n in chosen} == set(names)
    assert len(chosen) == len(names)


def test_pairs_outside_ci_are_marked_slow():
    cases = pair_params(("pt",), pairs=tuple(PAIRS))
    for case in cases:
        slow = any(mark.name == "slow" for mark in case.marks)
        assert slow == (case.values[-1] not in CI_PAIRS), case.id
    with pytest.raises(KeyError):
        pair_features("no-such-pair")
