"""The base of every model output, in every framework: a dataclass with attribute, ``["key"]``
and integer access, like the reference's ``ModelOutput``.

Fields left ``None`` are skipped by integer indexing, iteration (over names, as a dict) and
``to_tuple()``, so ``outputs[0]`` is the first field that was computed (``loss`` when labels were
given, ``logits`` otherwise). Framework packages subclass it with their tensor types (and, for
TF and Flax, the hooks that let outputs cross ``tf.function`` / ``jax.jit``).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterator, Tuple


class ModelOutput:
    """Base of every output dataclass (subclasses are ``@dataclasses.dataclass``)."""

    def keys(self):
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None]

    def values(self):
        return [getattr(self, k) for k in self.keys()]

    def items(self):
        return [(k, getattr(self, k)) for k in self.keys()]

    def to_tuple(self) -> Tuple[Any, ...]:
        return tuple(self.values())

    def get(self, key: str, default: Any = None) -> Any:
        value = getattr(self, key, None)
        return default if value is None else value

    def __getitem__(self, key):
        if isinstance(key, str):
            if key not in self.keys():
                raise KeyError(f"{type(self).__name__} has no computed field {key!r}; computed: {self.keys()}")
            return getattr(self, key)
        return self.to_tuple()[key]

    def __contains__(self, key: str) -> bool:
        return key in self.keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())
