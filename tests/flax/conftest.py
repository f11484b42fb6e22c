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
