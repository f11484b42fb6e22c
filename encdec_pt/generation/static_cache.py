"""A preallocated ("static") self-attention cache and the fixed-shape decoder step that uses it.

Buffers are (N, H, max_length, Dh) per layer, written in place with ``index_copy_`` at a position
tensor, so one decoding step has the same shapes at every position and ``torch.compile(fullgraph=True)``
can capture it. The attention modules see a ``StaticLayerCache`` where they would see the
per-layer tuple ``(self_k, self_v, cross_k, cross_v)``: slicing ``[:2]`` gives the writable
self-attention part (it has an ``update`` method), ``[2:4]`` the (constant) cross-attention keys/values.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch

from encdec_pt.modeling_utils import attention_bias


class StaticSelfKV:
    """Self-attention keys/values (N, H, L, Dh), written at ``position`` (Q,) by ``update``."""

    def __init__(self, key: torch.Tensor, value: torch.Tensor, position: torch.Tensor):
        self.key, self.value, self.position = key, value, position

    def update(self, key: torch.Tensor, value: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """New (B, H, Q, Dh) keys/values in; the full buffers (B, H, L, Dh) out."""
        self.key.index_copy_(2, self.position, key)
        self.value.index_copy_(2, self.position, value)
        return self.key, self.value

    def __getitem__(self, i: int) -> torch.Tensor:
        return (self.key, self.value)[i]

    def __len__(self) -> int:
        return 2


class StaticLayerCache:
    """Looks like the 4-tuple layer cache to the model's layers."""

    def __init__(self, self_kv: StaticSelfKV, cross_key: torch.Tensor, cross_value: torch.Tensor):
        self.self_kv, self.cross = self_kv, (cross_key, cross_value)

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index):
        if isinstance(index, slice):
            if (index.start or 0) == 0 and index.stop == 2:
                return self.self_kv
            if index.start == 2 and index.stop in (4, None):
                return self.cross
            raise IndexError(f"unsupported slice {index} of a static layer cache")
        return (self.self_kv.key, self.self_kv.value, self.cross[0], self.cross[1])[index]


def static_decoder_step(decoder: torch.nn.Module, input_ids: torch.Tensor, position: torch.Tensor,
                        encoder_hidden_states: torch.Tensor, cross_bias: Optional[torch.Tensor],
                        buffers: Sequence[torch.Tensor]) -> torch.Tensor:
    """One decoding step with fixed shapes: next-token logits (N, V) for ``input_ids`` (N, 1) at ``position`` (1,),
    through the decoder contract (``decoder_embed``, ``decoder_layers``, ``decoder_logits``).

    ``buffers`` is the flat list ``[self_k, self_v, cross_k, cross_v] * num_layers``; the self
    buffers are updated in place. Keys at positions > ``position`` are masked (finfo.min).
    """
    hidden = decoder.decoder_embed(input_ids, position[None, :])  # (N, 1, E)
    max_length = buffers[0].shape[2]
    keep = (torch.arange(max_length, device=position.device) <= position)[None, None, None, :]  # (1, 1, 1, L)
    self_bias = attention_bias(keep, hidden.dtype)
    for i, layer in enumerate(decoder.decoder_layers()):
        key, value, cross_key, cross_value = buffers[4 * i: 4 * i + 4]
        cache = StaticLayerCache(StaticSelfKV(key, value, position), cross_key, cross_value)
        hidden = layer(hidden, self_bias, None, encoder_hidden_states, cross_bias, cache)[0]  # (N, 1, E)
    return decoder.decoder_logits(hidden)[:, -1, :]  # (N, V)


def allocate_static_cache(first_past, max_length: int) -> List[torch.Tensor]:
    """Flat buffers from the cache of the first (dynamic) step: self k/v copied to position 0.. of
    (N, H, max_length, Dh) zeros; cross k/v kept as they are."""
    buffers: List[torch.Tensor] = []
    for self_k, self_v, cross_k, cross_v in first_past:
        n, h, t, d = self_k.shape
        k = self_k.new_zeros((n, h, max_length, d))
        v = self_v.new_zeros((n, h, max_length, d))
        k[:, :, :t] = self_k
        v[:, :, :t] = self_v
        buffers += [k, v, cross_k, cross_v]
    return buffers
