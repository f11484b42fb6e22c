"""How one canonical (PyTorch) tensor is stored in the other frameworks, per module kind.

One table, keyed by ``(kind, PyTorch leaf)``; every rule is its own inverse (a rename plus an
optional transpose of a 2-D tensor), so import and export are derived from the same data:

    ===========  ==========  =======================  =======================
    kind         PT leaf     TF (Keras) leaf          Flax leaf
    ===========  ==========  =======================  =======================
    linear       weight      kernel, transposed       kernel, transposed
    linear       bias        bias                     bias
    conv1d       weight      weight (same layout)     kernel, transposed
    conv1d       bias        bias                     bias
    layernorm    weight      gamma                    scale
    layernorm    bias        beta                     bias
    embedding    weight      embeddings               embedding
    bias         bias        bias                     bias
    ===========  ==========  =======================  =======================

GPT-2's ``Conv1D`` already stores ``(in, out)``; HF's TF port kept that layout under the name
``weight`` while HF's Flax port stores ``(out, in)`` as ``kernel``: both are kept so the HF files
of either framework map with this table alone.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

import numpy as np

from encdec.naming.schema import BIAS, CONV1D, EMBEDDING, LAYERNORM, LINEAR, ParamSpec

FRAMEWORKS = ("tf", "flax")

# (kind, pt_leaf) -> {framework: (framework_leaf, transpose)}
LEAF_RULES: Dict[Tuple[str, str], Dict[str, Tuple[str, bool]]] = {
    (LINEAR, "weight"): {"tf": ("kernel", True), "flax": ("kernel", True)},
    (LINEAR, "bias"): {"tf": ("bias", False), "flax": ("bias", False)},
    (CONV1D, "weight"): {"tf": ("weight", False), "flax": ("kernel", True)},
    (CONV1D, "bias"): {"tf": ("bias", False), "flax": ("bias", False)},
    (LAYERNORM, "weight"): {"tf": ("gamma", False), "flax": ("scale", False)},
    (LAYERNORM, "bias"): {"tf": ("beta", False), "flax": ("bias", False)},
    (EMBEDDING, "weight"): {"tf": ("embeddings", False), "flax": ("embedding", False)},
    (BIAS, "bias"): {"tf": ("bias", False), "flax": ("bias", False)},
}

# Derived inverse: (kind, framework, framework_leaf) -> (pt_leaf, transpose)
_INVERSE: Dict[Tuple[str, str, str], Tuple[str, bool]] = {
    (kind, fw, fw_leaf): (pt_leaf, transpose)
    for (kind, pt_leaf), per_fw in LEAF_RULES.items()
    for fw, (fw_leaf, transpose) in per_fw.items()
}

# Legacy PyTorch leaf names found in old checkpoints (BERT's TF-1 era `LayerNorm.gamma`).
LEGACY_PT_LEAVES = {"gamma": "weight", "beta": "bias"}


def _check_framework(framework: str) -> None:
    if framework not in FRAMEWORKS:
        raise ValueError(f"framework must be one of {FRAMEWORKS}, got {framework!r}")


def _transposed(array: np.ndarray, transpose: bool, where: str) -> np.ndarray:
    if not transpose:
        return array
    if array.ndim != 2:
        raise ValueError(f"{where}: expected a 2-D tensor to transpose, got shape {tuple(array.shape)}")
    return np.ascontiguousarray(array.T)


def framework_rule(spec: ParamSpec, framework: str, array: Optional[np.ndarray] = None) -> Tuple[str, bool]:
    """(leaf name, transposed?) of ``spec`` in ``framework``; ``array``'s canonical shape is checked.

    For a framework that transposes straight into its own buffer (``tf.transpose``, XLA): one
    copy, where ``to_framework``'s numpy transpose and the framework's copy of it are two.
    """
    _check_framework(framework)
    if array is not None and tuple(array.shape) != tuple(spec.shape):
        raise ValueError(f"{spec.name}: canonical shape {spec.shape} expected, got {tuple(array.shape)}")
    try:
        return LEAF_RULES[(spec.kind, spec.leaf)][framework]
    except KeyError:
        raise ValueError(f"{spec.name}: no layout rule for kind {spec.kind!r} leaf {spec.leaf!r}") from None


def to_framework(spec: ParamSpec, array: np.ndarray, framework: str) -> Tuple[str, np.ndarray]:
    """Canonical tensor -> (leaf name, array) as ``framework`` stores it."""
    fw_leaf, transpose = framework_rule(spec, framework, array)
    return fw_leaf, _transposed(array, transpose, spec.name)


def from_framework(kind: str, fw_leaf: str, array: np.ndarray, framework: str) -> Tuple[str, np.ndarray]:
    """(kind, framework leaf, array) -> (PyTorch leaf, canonical array)."""
    _check_framework(framework)
    try:
        pt_leaf, transpose = _INVERSE[(kind, framework, fw_leaf)]
    except KeyError:
        raise ValueError(f"no {framework} layout rule for kind {kind!r} leaf {fw_leaf!r}") from None
    return pt_leaf, _transposed(np.asarray(array), transpose, f"{kind}.{fw_leaf}")


def framework_leaf(spec: ParamSpec, framework: str) -> str:
    """The leaf name ``framework`` uses for ``spec`` (no array needed)."""
    _check_framework(framework)
    return LEAF_RULES[(spec.kind, spec.leaf)][framework][0]


def framework_shape(spec: ParamSpec, framework: str) -> Tuple[int, ...]:
    """The shape ``framework`` stores ``spec`` in."""
    _check_framework(framework)
    transpose = LEAF_RULES[(spec.kind, spec.leaf)][framework][1]
    return tuple(reversed(spec.shape)) if transpose else tuple(spec.shape)


def framework_path(spec: ParamSpec, framework: str) -> Tuple[str, ...]:
    """The module path of ``spec`` with the framework's leaf: ``("encoder", ..., "kernel")``."""
    return tuple(spec.name.split(".")[:-1]) + (framework_leaf(spec, framework),)


def canonical_to_path(name: str) -> Tuple[str, ...]:
    return tuple(name.split("."))
