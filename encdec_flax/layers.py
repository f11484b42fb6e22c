"""``KeyValueCache``: the attention modules' keys and values in the ``"cache"`` collection.

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


class KeyValueCache(nn.Module):
    """Mixin of the attention modules (BERT's, GPT-2's, BART's, each with ``is_cross_attention``):
    their keys and values in the ``"cache"`` collection, in the ``(B, H, L, D)`` layout of the
    PyTorch and TensorFlow caches."""

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
