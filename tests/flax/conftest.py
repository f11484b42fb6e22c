"""Fixtures of the Flax tests: tiny models built once per session."""

import os
import sys

import pytest

pytest.importorskip("flax")
# The helpers module sits next to this file; test modules here import it by name.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _flax_helpers import Built  # noqa: E402


@pytest.fixture(scope="session")
def built():
    cache = {}

    def get(arch):
        if arch not in cache:
            cache[arch] = Built(arch)
        return cache[arch]

    return get


@pytest.fixture(scope="session", autouse=True)
def _fast_generate_compiles():
    """Tiny models: XLA's backend optimisation level 0 about halves each generate compile (the tokens
    are the same; the parity tests check them against the reference)."""
    from encdec_flax.generation import utils

    saved = dict(utils.COMPILER_OPTIONS)
    utils.COMPILER_OPTIONS.update(xla_backend_optimization_level=0)
    yield
    utils.COMPILER_OPTIONS.clear()
    utils.COMPILER_OPTIONS.update(saved)
