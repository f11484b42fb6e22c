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
    """Tiny models: XLA's backend optimisation level 0 for every test here (the adapter's
    ``quick_compiles``, which the shared behaviour tests use too)."""
    from adapters.flax import Adapter

    with Adapter().quick_compiles():
        yield
