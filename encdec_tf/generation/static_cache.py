"""A preallocated ("static") self-attention cache and the fixed-shape decoder step that uses it.

The TensorFlow port of ``encdec_pt/generation/static_cache.py``. Buffers are (N, H, max_length, Dh)
per layer; a step writes its keys/values at ``position`` with ``dynamic_update_slice`` and returns
the new buffers (TensorFlow tensors are immutable), so one decoding step has the same shapes at
every position and a ``tf.while_loop`` over it compiles with XLA. The attention layers see a
``StaticLayerCache`` where they would see the per-layer tuple ``(self_k, self_v, cross_k, cross_v)``:
slicing ``[:2]`` gives the self-attention part (it has an ``update`` method), ``[2:4]`` the
cross-attention keys/values, computed once before the loop (``allocate_static_cache``).

Positions are explicit: the decoder's position id is ``position`` and its self-attention mask keeps
keys ``0 .. position`` of the buffer (the reference derives both from the padded cache length,
which is why its XLA output differs from its eager output).
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import tensorflow as tf
from tensorflow.compiler.tf2xla.python.xla import dynamic_update_slice

from encdec.registry import architecture
from encdec_tf.layers import split_heads
from encdec_tf.modeling_utils import additive_mask


class StaticSelfKV:
    """Self-attention keys/values (N, H, L, Dh), written at ``start`` = (0, 0, position, 0) by ``update``."""

    def __init__(self, key: tf.Tensor, value: tf.Tensor, start: tf.Tensor):
        self.key, self.value, self.start = key, value, start

    def update(self, key: tf.Tensor, value: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
        """New (B, H, Q, Dh) keys/values in; the full buffers (B, H, L, Dh) out."""
        self.key = dynamic_update_slice(self.key, key, self.start)
        self.value = dynamic_update_slice(self.value, value, self.start)
        return self.key, self.value

    def __getitem__(self, i: int) -> tf.Tensor:
        return (self.key, self.value)[i]

    def __len__(self) -> int:
        return 2


class StaticLayerCache:
    """Looks like the 4-tuple layer cache to the model's layers."""

    def __init__(self, self_kv: StaticSelfKV, cross_key: tf.Tensor, cross_value: tf.Tensor):
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


def static_decoder_step(decoder, input_ids: tf.Tensor, position: tf.Tensor, encoder_hidden_states: tf.Tensor,
                        cross_bias: tf.Tensor, buffers: Sequence[tf.Tensor]) -> Tuple[tf.Tensor, List[tf.Tensor]]:
    """One decoding step with fixed shapes: next-token logits (N, V) for ``input_ids`` (N, 1) at
    ``position`` (scalar int32), and the updated buffers, through the decoder contract
    (``decoder_embed``, ``decoder_layers``, ``decoder_logits``).

    ``buffers`` is the flat list ``[self_k, self_v, cross_k, cross_v] * num_layers``. Keys at
    positions > ``position`` are masked (finfo.min).
    """
    max_length = buffers[0].shape[2]
    keep = (tf.range(max_length) <= position)[None, None, None, :]  # (1, 1, 1, L)
    position_ids = tf.reshape(position, (1, 1))  # (1, 1)
    start = tf.stack([0, 0, position, 0])  # where the step's keys/values go in each (N, H, L, Dh) buffer
    hidden = decoder.decoder_embed(input_ids, position_ids)  # (N, 1, E)
    self_bias = additive_mask(keep, hidden.dtype)
    new_buffers: List[tf.Tensor] = []
    for i, layer in enumerate(decoder.decoder_layers()):
        k, v, ck, cv = buffers[4 * i: 4 * i + 4]
        cache = StaticLayerCache(StaticSelfKV(k, v, start), ck, cv)
        hidden = layer(hidden, attention_mask=self_bias, encoder_hidden_states=encoder_hidden_states,
                       encoder_attention_mask=cross_bias, past_key_value=cache)[0]
        new_buffers += [cache.self_kv.key, cache.self_kv.value, ck, cv]
    return decoder.decoder_logits(hidden)[:, -1, :], new_buffers


def allocate_static_cache(decoder, encoder_hidden_states: tf.Tensor, max_length: int) -> List[tf.Tensor]:
    """Flat buffers ``[self_k, self_v, cross_k, cross_v] * num_layers``: self k/v zeros
    (N, H, max_length, Dh), cross k/v (N, H, S, Dh) computed once from the encoder states by each
    layer's own cross-attention key/value projections (the first step then runs like the others)."""
    config = decoder.config
    n = encoder_hidden_states.shape[0]
    heads = getattr(config, architecture(config).decoder.num_heads)  # the decoder's own (BART: not the encoder's)
    head_dim = config.hidden_size // heads
    buffers: List[tf.Tensor] = []  # (N, H, S, Dh) each
    for layer in decoder.decoder_layers():
        key, value = decoder.cross_key_value(layer, encoder_hidden_states)  # (N, S, E) each
        buffers += [split_heads(key, heads), split_heads(value, heads)]
    zeros = tf.zeros((n, heads, max_length, head_dim), encoder_hidden_states.dtype)
    flat: List[tf.Tensor] = []
    for i in range(0, len(buffers), 2):
        flat += [zeros, zeros, buffers[i], buffers[i + 1]]
    return flat
