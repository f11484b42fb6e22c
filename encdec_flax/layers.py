"""``Dense``, ``LayerNorm`` and ``Embed``: flax's linen layers (same class names, parameters and
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
import numpy as np
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
