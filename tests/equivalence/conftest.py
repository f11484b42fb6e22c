"""Shared set-up of the equivalence tests."""

import pytest


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """PyTorch runs next to TensorFlow's and XLA's thread pools here (the other frameworks of a pair): with its
    default threads it contends with them on a 2-core machine; one thread is fastest (as tests/tf)."""
    try:
        import torch
    except ImportError:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
