"""oneDNN-prepacked weights for the model's linear layers while ``generate`` runs (CPU, float32).

A decoding step multiplies a few rows (batch x beams) by every decoder weight, so it is bound by
how fast the weights stream from memory. On CPU, torch's default kernels for that shape (MKL
``sgemm`` through ``addmm`` / ``F.linear``) reach a fraction of the memory bandwidth for more than
one row: on the project's 2-core AMD EPYC machine, a (768 -> 3072) layer ran at 6 GB/s with 4
rows, against 16-17 GB/s for oneDNN on weights reordered once into its blocked layout (21 GB/s
against 17 GB/s with one row). The encoder, whose products have a row per source position, is
compute-bound, and there too MKL is the slower kernel on that machine: the base BERT over a
64-token source took 54 ms on packed weights against 122 ms (batch 8: 289 against 587 ms; the
three product shapes alone 2.4-4x faster). ``benchmarks/generate.py`` and docs/performance.md
have the whole-model numbers.

So, for the length of a ``generate`` call, every ``nn.Linear`` and GPT-2 ``Conv1D`` of the
encoder, ``enc_to_dec_proj`` and the decoder (those exact classes; subclasses keep their own
forward) runs ``torch.ops.mkldnn._linear_pointwise`` on a prepacked copy of its weight (the
module's ``forward`` is swapped on the instance and restored afterwards, also on error). The
packed copies are kept on the model (``PrepackedWeights``), keyed by the layer, and rebuilt when a
weight or bias changes (another tensor, or an in-place update such as an optimizer step or
``load_state_dict``). They cost memory about the size of the model's linear weights, and packing
a base-size model takes a few tenths of a second, once. ``generate(..., prepack_weights=False)``
opts out (no copy); ``model.clear_prepacked_weights()`` frees them.

The packed layout depends only on the row count of the products (for the decoder, batch x beams
or returned sequences; for the encoder, batch x source length): a layout for one row (oneDNN's
matrix-vector kernel) when a step has one row, else one for ``PACK_ROWS`` rows. So a call's
numbers do not depend on which earlier call packed the weights (the results are float32 and
equal the plain path's to rounding; the tests compare tokens with the reference's). One layout
is kept per layer: a call with the other kind of row count packs the decoder again. Skipped,
with the plain path, when oneDNN or these ops are missing, for weights that are not float32 on
the CPU, and under ``torch.compile`` (``compile_backend``), which packs weights its own way.
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from typing import Iterator, Optional, Tuple

import torch
from torch import nn

from encdec_pt.modeling_utils import RuntimeCache
from encdec_pt.models.gpt2 import Conv1D

# The row count the weights are laid out for when a step has several rows. Measured (768 -> 3072,
# 2-core AMD EPYC): a layout for 32 rows ran at 21 / 16 / 6 GB/s with 1 / 4 / 32 rows, within 8 % of
# the best layout for each. A step with one row gets a layout for one row (``pack_rows``): greedy
# search of the base bert2gpt2 at batch 1 took 0.21 s less a call (median of 8 paired calls, 1.80 s
# against 2.04 s; the same tokens), 4-beam search 0.52 s more with that layout.
PACK_ROWS = 32


def pack_rows(rows: int) -> int:
    """The row count to lay the weights out for, for steps of ``rows`` rows."""
    return 1 if rows == 1 else PACK_ROWS


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
            for rows in (1, PACK_ROWS):
                packed = torch.ops.mkldnn._reorder_linear_weight(weight, rows)
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
    """The weight as (out, in), the layout oneDNN's linear takes (GPT-2's Conv1D stores (in, out))."""
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

    def clear(self) -> None:
        self._entries.clear()

    def packed(self, module: nn.Module, rows: int) -> torch.Tensor:
        """The (out, in) weight of ``module`` laid out for ``rows`` rows, packed again if its weight or
        bias changed or the layout was made for another row count (the old copy is dropped first)."""
        key = (_tensor_key(module.weight), _tensor_key(module.bias), rows)
        entry = self._entries.get(module)
        if entry is None or entry[0] != key:
            self._entries.pop(module, None)
            with torch.no_grad():
                weight = _weight_out_in(module).detach().contiguous()
                entry = (key, torch.ops.mkldnn._reorder_linear_weight(weight, rows))
            self._entries[module] = entry
        return entry[1]

    def rows_of(self, module: nn.Module) -> Optional[int]:
        """The row count ``module``'s packed weight is laid out for, None when it has none."""
        entry = self._entries.get(module)
        return None if entry is None else entry[0][2]


def _packed_forward(packed: torch.Tensor, bias: Optional[torch.Tensor]):
    def forward(x: torch.Tensor) -> torch.Tensor:
        # (..., in) -> (..., out); the same y = x @ W^T + b as the plain layer, to float32 rounding.
        return torch.ops.mkldnn._linear_pointwise(x, packed, bias, "none", [], "")

    return forward


@contextlib.contextmanager
def prepacked_linears(root: nn.Module, store: PrepackedWeights, rows: int) -> Iterator[int]:
    """Within the block, the packable linear layers under ``root`` run on packed weights from
    ``store``, laid out for steps of ``rows`` rows (``pack_rows``); yields how many layers were
    switched. Must be entered under ``torch.no_grad()`` (the packed op has no gradient)."""
    if torch.is_grad_enabled():
        raise RuntimeError("prepacked_linears runs inference only: enter it under torch.no_grad()")
    switched = []
    try:
        for module in root.modules():
            # A layer with a forward of its own on the instance (switched by an enclosing block, or
            # patched by the caller) keeps it.
            if _packable(module) and "forward" not in module.__dict__:
                bias = None if module.bias is None else module.bias.detach()
                module.forward = _packed_forward(store.packed(module, pack_rows(rows)), bias)
                switched.append(module)
        yield len(switched)
    finally:
        for module in switched:
            del module.forward  # the class's forward again
