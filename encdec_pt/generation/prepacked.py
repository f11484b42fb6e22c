"""oneDNN-prepacked weights for the model's linear layers while ``generate`` runs (CPU, float32).

A decoding step multiplies a few rows (batch x beams) by every decoder weight, so it is bound by
how fast the weights stream from memory. On CPU, torch's default kernels for that shape (MKL
``sgemm`` through ``addmm`` / ``F.linear``) reach a fraction of the memory bandwidth for more than
one row, where oneDNN on weights reordered once into its blocked layout streams them near the
bandwidth. The encoder, whose products have a row per source position, is compute-bound, and there
too oneDNN on packed weights is the faster kernel. docs/performance.md ("PyTorch: prepacked
weights") has the measurements, per layer and for whole models (``benchmarks/generate.py``).

So, for the length of a ``generate`` call, every ``nn.Linear`` and GPT-2 ``Conv1D`` of the
encoder, ``enc_to_dec_proj`` and the decoder (those exact classes; subclasses keep their own
forward) runs ``torch.ops.mkldnn._linear_pointwise`` on a prepacked copy of its weight (the
module's ``forward`` is swapped on the instance and restored afterwards, also on error). The
packed copies are kept on the model (``PrepackedWeights``), keyed by the layer, and rebuilt when a
weight or bias changes (another tensor, or an in-place update such as an optimizer step or
``load_state_dict``). They cost memory about the size of the model's linear weights, and packing
is paid once per layer, on its first product of several rows (its cost for the base bert2gpt2 is
in docs/performance.md): a layer that only ever sees one row (the decoder's self-attention and
feed-forward layers in greedy calls at batch 1) is never packed.
``generate(..., prepack_weights=False)`` opts out (no copy);
``model.clear_prepacked_weights()`` frees them.

The packed layout is one for ``PACK_ROWS`` rows, whatever a call's row count, so a call's numbers
do not depend on which earlier call packed the weights, and greedy and beam calls share one copy
(the results are float32 and equal the plain path's to rounding; the tests compare tokens with
the reference's). A product of one row (every step of a greedy call at batch 1) runs the plain
layer instead: MKL's matrix-vector kernel streams the weight as stored faster than oneDNN's
packed kernel does (docs/performance.md, "One row on the plain layer"). Skipped, with the plain path, when oneDNN or these ops are missing, for weights
that are not float32 on the CPU, and under ``torch.compile`` (``compile_backend``), which packs
weights its own way.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from typing import Iterator, Optional, Tuple

import torch
from torch import nn

from encdec_pt.modeling_utils import RuntimeCache
from encdec_pt.layers import Conv1D

# The row count the weights are laid out for: one layout serves every row count of a call, close to
# the best layout for each, so greedy and beam calls share one copy and never repack. A one-row
# layout for one-row steps was tried and dropped (docs/performance.md has both measurements).
PACK_ROWS = 32


@functools.lru_cache(maxsize=None)
def prepacking_available() -> bool:
    """oneDNN is built in, and the two (private) ops used here exist, take these arguments and give
    x @ W^T + b on a small case; checked once per process, so another torch version whose ops
    changed falls back to the plain layers instead of failing inside ``generate``."""
    if not (torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")):
        return False
    try:
        with torch.no_grad():
            weight = torch.arange(12, dtype=torch.float32).reshape(3, 4) / 7.0  # (out, in)
            bias = torch.tensor([1.0, -2.0, 0.5])
            x = torch.arange(8, dtype=torch.float32).reshape(2, 4) - 3.0
            expected = torch.addmm(bias, x, weight.t())
            packed = torch.ops.mkldnn._reorder_linear_weight(weight, PACK_ROWS)
            for n in (1, 2):
                got = torch.ops.mkldnn._linear_pointwise(x[:n], packed, bias, "none", [], "")
                if tuple(got.shape) != (n, 3) or not torch.allclose(got, expected[:n], atol=1e-5):
                    return False
        return True
    except (RuntimeError, TypeError, ValueError):
        return False


def _tensor_key(t: Optional[torch.Tensor]) -> Tuple:
    """Changes when the tensor is replaced or updated in place."""
    if t is None:
        return (None,)
    return (t.data_ptr(), t._version, tuple(t.shape), t.dtype)


def _weight_out_in(module: nn.Module) -> torch.Tensor:
    """The weight as (out, in), the layout oneDNN's linear takes (``Conv1D`` stores (in, out))."""
    return module.weight.t() if isinstance(module, Conv1D) else module.weight


def _packable(module: nn.Module) -> bool:
    # Exact types: a subclass (an adapter such as LoRA, a parametrized or quantized layer) may compute
    # something other than x @ W^T + b, and keeps its own forward.
    if type(module) not in (nn.Linear, Conv1D):
        return False
    weight = module.weight
    return weight.device.type == "cpu" and weight.dtype == torch.float32 and weight.dim() == 2


class PrepackedWeights(RuntimeCache):
    """Per-layer packed weights of one model: layer -> (key of weight and bias, packed weight).

    Not copied by ``copy.deepcopy`` nor pickled (a copy starts empty and packs again on use)."""

    def __init__(self):
        self._entries: "weakref.WeakKeyDictionary[nn.Module, Tuple]" = weakref.WeakKeyDictionary()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, module: nn.Module) -> bool:
        return module in self._entries

    def clear(self) -> None:
        self._entries.clear()

    def packed(self, module: nn.Module) -> torch.Tensor:
        """The (out, in) weight of ``module`` laid out for ``PACK_ROWS`` rows, packed again if its
        weight or bias changed (the old copy is dropped first)."""
        key = (_tensor_key(module.weight), _tensor_key(module.bias))
        entry = self._entries.get(module)
        if entry is None or entry[0] != key:
            self._entries.pop(module, None)
            with torch.no_grad():
                weight = _weight_out_in(module).detach().contiguous()
                entry = (key, torch.ops.mkldnn._reorder_linear_weight(weight, PACK_ROWS))
            self._entries[module] = entry
        return entry[1]


def _packed_forward(module: nn.Module, store: PrepackedWeights, bias: Optional[torch.Tensor]):
    plain = type(module).forward
    packed: Optional[torch.Tensor] = None  # taken from ``store`` (packed there if new) on first use

    def forward(x: torch.Tensor) -> torch.Tensor:
        nonlocal packed
        # (..., in) -> (..., out)
        if x.numel() == x.shape[-1]:
            # One row (a greedy step at batch 1): MKL's matrix-vector product on the weight as
            # stored streams it faster than oneDNN's packed kernel, and is the plain layer exactly.
            return plain(module, x)
        if packed is None:
            packed = store.packed(module)
        # The same y = x @ W^T + b as the plain layer, to float32 rounding.
        return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")

    return forward


@contextlib.contextmanager
def prepacked_linears(root: nn.Module, store: PrepackedWeights) -> Iterator[int]:
    """Within the block, the packable linear layers under ``root`` run on packed weights from
    ``store`` (packed there on a layer's first product of several rows); yields how many layers
    were switched. Must be entered under ``torch.no_grad()`` (the packed op has no gradient)."""
    if torch.is_grad_enabled():
        raise RuntimeError("prepacked_linears runs inference only: enter it under torch.no_grad()")
    switched = []
    try:
        for module in root.modules():
            # A layer with a forward of its own on the instance (switched by an enclosing block, or
            # patched by the caller) keeps it.
            if _packable(module) and "forward" not in module.__dict__:
                bias = None if module.bias is None else module.bias.detach()
                module.forward = _packed_forward(module, store, bias)
                switched.append(module)
        yield len(switched)
    finally:
        for module in switched:
            del module.forward  # the class's forward again
