"""Layers that are not torch's own, shared by the models (as ``encdec_tf/layers.py`` and
``encdec_flax/layers.py`` are for theirs).

``Conv1D`` is the ``conv1d`` kind of the schema (``encdec.naming.schema``): a dense layer whose
weight is stored ``(in, out)``, as GPT-2's checkpoints hold it.
"""

from __future__ import annotations

import torch
from torch import nn


class Conv1D(nn.Module):
    """GPT-2's linear layer: ``weight (in, out)``, ``bias (out,)``; y = x @ weight + bias.

    Args:
        nf: output features.
        nx: input features.
    """

    def __init__(self, nf: int, nx: int):
        super().__init__()
        self.nf = nf
        self.weight = nn.Parameter(torch.empty(nx, nf))
        self.bias = nn.Parameter(torch.zeros(nf))
        nn.init.normal_(self.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size_out = x.shape[:-1] + (self.nf,)
        x = torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight)
        return x.view(size_out)
