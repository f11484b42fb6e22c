"""``KeyValueCache``: the attention modules' keys and values in the ``"cache"`` collection;
``attend``: the scaled dot-product attention of every architecture (with ``split_heads`` and
``heads_first``, the layouts it takes).

``Dense``, ``LayerNorm`` and ``Embed``: flax's linen layers (same class names, parameters and
arithmetic) whose parameters, when the params tree already has them, are checked against the
shape the layer asks for instead of by ``jax.eval_shape`` of their initializer.

Flax's ``Scope.param`` runs ``jax.eval_shape(init_fn)`` for every existing parameter on every
``apply`` that traces, to compare shapes: hundreds of ``eval_shape`` calls in the trace of a
generate function, a large part of its trace time (docs/performance.md). The
shape a flax layer asks for is the first argument it passes after the initializer, so the same
check is a tuple comparison. Initialization (no params yet) goes through flax unchanged.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from flax.core import meta
from flax.errors import ScopeParamShapeError


class ShapeCheckedParams:
    """Mixin for a linen module: ``param`` for an existing parameter compares its shape with the
    requested one (``init_args[0]``, a tuple or, from LayerNorm, a list) and returns it; anything
    else is ``nn.Module.param``."""

    @nn.nowrap
    def param(self, name: str, init_fn: Callable[..., Any], *init_args: Any, unbox: bool = True, **init_kwargs: Any):
        shape = init_args[0] if init_args else None
        if not (isinstance(shape, (tuple, list)) and all(isinstance(d, (int, np.integer)) for d in shape)) \
                or not self.has_variable("params", name):
            return super().param(name, init_fn, *init_args, unbox=unbox, **init_kwargs)
        value = self.get_variable("params", name)
        if tuple(np.shape(value)) != tuple(int(d) for d in shape):
            raise ScopeParamShapeError(name, self.scope.path_text, np.shape(value), shape)
        return meta.unbox(value) if unbox else value


class Dense(ShapeCheckedParams, nn.Dense):
    """``flax.linen.Dense`` with shape-checked parameters."""


class LayerNorm(ShapeCheckedParams, nn.LayerNorm):
    """``flax.linen.LayerNorm`` with shape-checked parameters."""


class Embed(ShapeCheckedParams, nn.Embed):
    """``flax.linen.Embed`` with shape-checked parameters."""


def split_heads(x, num_heads: int):
    """(B, T, H*D) -> (B, T, H, D), the queries' layout."""
    return x.reshape(x.shape[:2] + (num_heads, x.shape[2] // num_heads))


def heads_first(x, num_heads: int):
    """(B, T, H*D) -> (B, H, T, D), the keys' and values' layout (and the cache's)."""
    return jnp.swapaxes(split_heads(x, num_heads), 1, 2)


def attend(query, key, value, attention_mask, scale: float, dropout: nn.Dropout, deterministic: bool, dtype,
           probs_after_dropout: bool = True):
    """Scaled dot-product attention of every architecture: query (B, Q, H, D), key and value
    (B, H, K, D) -> (context (B, Q, E), probs (B, H, Q, K)).

    ``attention_mask`` is an additive bias broadcastable to (B, H, Q, K); ``dropout`` is the calling
    module's own ``nn.Dropout``. Scores and softmax are computed in float32 whatever ``dtype``. The
    returned probabilities are those the context was made of (BERT's and GPT-2's,
    ``probs_after_dropout``) or those before dropout (BART's), as in the reference.
    """
    # (B, Q, H, D) x (B, H, K, D) -> (B, H, Q, K)
    scores = jnp.einsum("bqhd,bhkd->bhqk", query, key).astype(jnp.float32) * scale
    if attention_mask is not None:
        scores = scores + attention_mask
    probs = jax.nn.softmax(scores, axis=-1).astype(dtype)
    weights = dropout(probs, deterministic=deterministic)
    # (B, H, Q, K) x (B, H, K, D) -> (B, Q, H, D)
    context = jnp.einsum("bhqk,bhkd->bqhd", weights, value)
    # (B, Q, H, D) -> (B, Q, E)
    context = context.reshape(context.shape[0], context.shape[1], -1)
    return context, (weights if probs_after_dropout else probs)


class KeyValueCache(nn.Module):
    """Mixin of the attention modules (BERT's, GPT-2's, BART's, each with ``is_cross_attention``):
    their keys and values in the ``"cache"`` collection, in the ``(B, H, L, D)`` layout of the
    PyTorch and TensorFlow caches."""

    def _keys_and_values(self, key_proj, value_proj, num_heads: int, hidden_states, encoder_hidden_states,
                         init_cache: bool):
        """What an attention with separate key and value projections attends to, (B, H, K, D) each
        (K = L with a cache): self-attention's keys and values projected from ``hidden_states`` (and
        written into the cache of a causal one); cross-attention's projected from
        ``encoder_hidden_states`` (and stored when the cache is created), or the cached ones once
        there are (the encoder's keys and values do not change while decoding)."""
        has_cache = self.has_variable("cache", "cached_key")
        if self.is_cross_attention and has_cache and not init_cache:
            return self.variables["cache"]["cached_key"], self.variables["cache"]["cached_value"]  # (B, H, S, D)
        source = encoder_hidden_states if self.is_cross_attention else hidden_states
        # (B, K, E) -> (B, H, K, D)
        key = heads_first(key_proj(source), num_heads)
        value = heads_first(value_proj(source), num_heads)
        if (self.is_cross_attention and init_cache) or (self.causal and (has_cache or init_cache)):
            key, value = self._cached_key_value(key, value, hidden_states.shape[1])  # (B, H, L, D)
        return key, value

    @nn.compact
    def _cached_key_value(self, key, value, query_length: int):
        """This call's keys/values (B, H, K, D) in; the cached ones out: (B, H, L, D) with this call's
        written at ``cache_index`` (self-attention), the encoder's stored once (cross-attention)."""
        is_initialized = self.has_variable("cache", "cached_key")
        cached_key = self.variable("cache", "cached_key", jnp.zeros, key.shape, key.dtype)
        cached_value = self.variable("cache", "cached_value", jnp.zeros, value.shape, value.dtype)
        if self.is_cross_attention:
            if not is_initialized:  # creating the cache: keep the encoder projection
                cached_key.value, cached_value.value = key, value
            return cached_key.value, cached_value.value
        cache_index = self.variable("cache", "cache_index", lambda: jnp.array(0, dtype=jnp.int32))
        if not is_initialized:
            return key, value
        cur_index = cache_index.value
        # (B, H, L, D) with this call's Q positions written at cur_index
        key = lax.dynamic_update_slice(cached_key.value, key, (0, 0, cur_index, 0))
        value = lax.dynamic_update_slice(cached_value.value, value, (0, 0, cur_index, 0))
        cached_key.value, cached_value.value = key, value
        cache_index.value = cur_index + query_length
        return key, value
