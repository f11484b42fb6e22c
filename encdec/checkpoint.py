"""Checkpoints: read the weights of a folder or hub repo, in any format, and match them to a schema.

The files are looked for in the order of ``encdec.files.PREFERENCE`` and read by the entry of
``READERS`` for their format, through ``encdec.formats``: ``model.safetensors`` (metadata
``format`` pt, tf or flax), ``pytorch_model.bin`` (``torch.load(weights_only=True)``: a pickle
that needs arbitrary code is refused), the Hugging Face ``tf_model.h5`` and ``flax_model.msgpack``,
each single or sharded. Every reader returns canonical (PyTorch-named, PyTorch-layout) numpy
arrays; ``align_to_schema`` then matches them to a model's schema. Writing is the formats'
(``encdec.formats.safetensors.save_state_dict``). No framework is imported here except torch,
lazily, for ``.bin`` files.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from encdec.files import PREFERENCE, PT_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_INDEX_NAME, WEIGHT_FILES, CheckpointError
from encdec.formats.safetensors import read_safetensors, read_safetensors_header
from encdec.formats.torch_bin import read_torch_bin
from encdec.naming.layout import LEGACY_PT_LEAVES
from encdec.naming.schema import Schema


# --------------------------------------------------------------------------------------------
# Reading


@dataclasses.dataclass
class Checkpoint:
    """Canonical tensors read from a checkpoint.

    ``format`` is one of ``safetensors``, ``pt``, ``tf``, ``flax``: the files' format, except that
    a ``model.safetensors`` written by the reference's TF or Flax classes says ``tf`` / ``flax``
    (whose names the reader converted).
    """

    state: Dict[str, np.ndarray]
    files: List[str]
    format: str
    metadata: Dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def source(self) -> str:
        return self.files[0] if len(self.files) == 1 else f"{os.path.dirname(self.files[0])} ({len(self.files)} shards)"


def find_weight_files(path_or_id: str, prefer: Optional[str] = None, **hub_kwargs: Any) -> Tuple[str, List[str]]:
    """(format, local files) of the checkpoint at ``path_or_id``, in order of preference."""
    from encdec.hub import resolve_file_optional

    if prefer not in PREFERENCE:
        raise ValueError(f"prefer must be one of {list(PREFERENCE)}, got {prefer!r}")
    table = {fmt: (single, index) for fmt, single, index in WEIGHT_FILES}
    for fmt in PREFERENCE[prefer]:
        single, index = table[fmt]
        found = resolve_file_optional(path_or_id, single, **hub_kwargs)
        if found is not None:
            return fmt, [found]
        found_index = resolve_file_optional(path_or_id, index, **hub_kwargs)
        if found_index is not None:
            return fmt, _shard_files(path_or_id, found_index, hub_kwargs)
    names = [n for _, s, i in WEIGHT_FILES for n in (s, i)]
    raise OSError(f"no weights found in {str(path_or_id)!r}: looked for {', '.join(names)}")


def _shard_files(path_or_id: str, index_file: str, hub_kwargs: Dict[str, Any]) -> List[str]:
    from encdec.hub import resolve_file

    index = _read_index(index_file)
    files = []
    for shard in sorted(set(index["weight_map"].values())):
        try:
            files.append(resolve_file(path_or_id, shard, **hub_kwargs))
        except OSError as e:
            raise CheckpointError(f"{index_file} names shard {shard!r}, which is missing: {e}") from None
    return files


def _read_index(index_file: str) -> Dict[str, Any]:
    try:
        with open(index_file, "r", encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"cannot read shard index {index_file}: {e}") from None
    if not isinstance(index, dict) or not isinstance(index.get("weight_map"), dict):
        raise CheckpointError(f"shard index {index_file} has no 'weight_map' object")
    return index


def load_checkpoint(
    path_or_id: str, schema: Optional[Schema] = None, prefer: Optional[str] = None, **hub_kwargs: Any
) -> Checkpoint:
    """Read the weights of a folder or hub repo. ``schema`` is needed for TF/Flax files.

    ``tf_model.h5``, ``flax_model.msgpack`` and the ``model.safetensors`` that the reference's TF
    and Flax classes write (metadata ``format: tf`` / ``format: flax``, TF or Flax names and
    layout) come back canonical, with ``format`` ``tf`` / ``flax``. Names that are not what the
    file's format promises raise a ``CheckpointError`` naming the file and keys (the reference
    loads such files as silently random weights).
    """
    fmt, files = find_weight_files(path_or_id, prefer=prefer, **hub_kwargs)
    return READERS[fmt](files, schema)


def _read_safetensors(files: List[str], schema: Optional[Schema]) -> Checkpoint:
    # The headers say who wrote the files (metadata `format`) before a tensor is read.
    headers = [read_safetensors_header(file) for file in files]
    written_by = "pt"
    for i, (file, (_, metadata)) in enumerate(zip(files, headers)):
        this = metadata.get("format", "pt")
        this = "pt" if this in ("np", "numpy") else this
        if this not in ("pt", "tf", "flax"):
            raise CheckpointError(f"{file}: unknown safetensors metadata format={this!r} (expected pt, tf or flax)")
        if i and this != written_by:
            raise CheckpointError(f"{file}: safetensors metadata format={this!r}, but {files[0]} has {written_by!r}")
        written_by = this
    keys = [(file, file_keys) for file, (file_keys, _) in zip(files, headers)]
    _check_shards(keys, SAFE_WEIGHTS_INDEX_NAME)
    metadata = headers[-1][1]
    if written_by == "pt":
        _check_pytorch_names(keys, "safetensors metadata format='pt'")
        state: Dict[str, np.ndarray] = {}
        for file in files:
            state.update(read_safetensors(file)[0])
        return Checkpoint(state, files, "safetensors", metadata)

    # Written by the reference's TF or Flax classes: their names, read by the same rules as h5 / msgpack.
    if schema is None:
        raise CheckpointError(
            f"{files[0]} was written by Hugging Face's {written_by!r} classes (safetensors metadata "
            f"format={written_by!r}); its names are {written_by} names, e.g. {sorted(keys[0][1])[:3]}, and reading "
            "them needs the model's schema (load it with from_pretrained, or convert it with encdec-convert)"
        )
    if written_by == "tf":
        from encdec.formats.hf_tf_h5 import read_tf_safetensors as read
    else:
        from encdec.formats.hf_flax_msgpack import read_flax_safetensors as read
    return Checkpoint(read(files, schema), files, written_by, metadata)


def _read_torch_bin(files: List[str], schema: Optional[Schema]) -> Checkpoint:
    parts = [(file, read_torch_bin(file)) for file in files]
    keys = [(file, list(part)) for file, part in parts]
    _check_shards(keys, PT_WEIGHTS_INDEX_NAME)
    _check_pytorch_names(keys, "a PyTorch pickle")
    return Checkpoint({k: v for _, part in parts for k, v in part.items()}, files, "pt")


def _read_tf_h5(files: List[str], schema: Optional[Schema]) -> Checkpoint:
    from encdec.formats.hf_tf_h5 import read_tf_h5

    return Checkpoint(read_tf_h5(files, _needs_schema(files, "tf", schema)), files, "tf")


def _read_flax_msgpack(files: List[str], schema: Optional[Schema]) -> Checkpoint:
    from encdec.formats.hf_flax_msgpack import read_flax_msgpack

    return Checkpoint(read_flax_msgpack(files, _needs_schema(files, "flax", schema)), files, "flax")


def _needs_schema(files: List[str], fmt: str, schema: Optional[Schema]) -> Schema:
    if schema is None:
        raise ValueError(f"reading {files[0]} ({fmt} layout) needs the model's schema")
    return schema


# Format (as in ``encdec.files.WEIGHT_FILES``) -> the reader of its files, the single file or the
# shards. The TF and Flax modules are imported with their files only: they need h5py / msgpack.
READERS: Dict[str, Callable[[List[str], Optional[Schema]], Checkpoint]] = {
    "safetensors": _read_safetensors,
    "pt": _read_torch_bin,
    "tf": _read_tf_h5,
    "flax": _read_flax_msgpack,
}


def _check_shards(keys: List[Tuple[str, List[str]]], index_name: str) -> None:
    """No key in two shards, and every key the index lists in one (the index lies beside its shards)."""
    seen: set = set()
    for file, file_keys in keys:
        dup = seen & set(file_keys)
        if dup:
            raise CheckpointError(f"{file} repeats keys already read from another shard: {sorted(dup)[:5]}")
        seen.update(file_keys)
    if len(keys) > 1:
        index_file = os.path.join(os.path.dirname(keys[0][0]), index_name)
        absent = sorted(set(_read_index(index_file)["weight_map"]) - seen)
        if absent:
            raise CheckpointError(f"{index_file} lists keys that no shard holds: {absent[:5]} ({len(absent)} in all)")


# Leaves and separators that PyTorch state dicts never use: TF variable names
# (`encoder/bert/embeddings/LayerNorm/beta:0`) and Flax tree leaves (`...LayerNorm.scale`).
_FOREIGN_NAMES = [
    ("TensorFlow", re.compile(r"/|:\d+$")),
    ("Flax", re.compile(r"\.(kernel|scale|embedding)$")),
]


def _check_pytorch_names(keys: List[Tuple[str, List[str]]], promise: str) -> None:
    for file, file_keys in keys:
        for framework, pattern in _FOREIGN_NAMES:
            foreign = [k for k in file_keys if pattern.search(k)]
            if foreign:
                raise CheckpointError(
                    f"{file} promises PyTorch names ({promise}) but holds {framework} names: {_few(sorted(foreign), 5)}. "
                    "It was probably re-saved without its format metadata; convert it from the framework that wrote it"
                )


# --------------------------------------------------------------------------------------------
# Matching a checkpoint to a model's schema


@dataclasses.dataclass
class Aligned:
    """A checkpoint matched to a schema.

    ``tensors`` has every schema name that could be filled (tied names from their owners);
    ``missing`` are owned schema names the checkpoint lacks; ``unexpected`` are checkpoint keys
    the schema has no place for; ``mismatched`` are (name, file shape, model shape);
    ``ignored`` maps dropped buffer keys to the reason.
    """

    tensors: Dict[str, np.ndarray]
    missing: List[str]
    unexpected: List[str]
    mismatched: List[Tuple[str, Tuple[int, ...], Tuple[int, ...]]]
    ignored: Dict[str, str]
    source: str = ""

    def raise_for_errors(
        self, allow_missing: Optional[Callable[[str], bool]] = None, allow_unexpected: bool = False
    ) -> None:
        problems = []
        if self.mismatched:
            problems.append(
                "shape mismatches (key: file vs model): "
                + ", ".join(f"{k}: {a} vs {b}" for k, a, b in self.mismatched[:8])
                + (f" and {len(self.mismatched) - 8} more" if len(self.mismatched) > 8 else "")
            )
        missing = [k for k in self.missing if not (allow_missing and allow_missing(k))]
        if missing:
            problems.append(f"missing keys: {_few(missing)}")
        if self.unexpected and not allow_unexpected:
            problems.append(f"unexpected keys: {_few(self.unexpected)}")
        if problems:
            raise CheckpointError(f"{self.source or 'checkpoint'} does not fit the model: " + "; ".join(problems))


def _few(keys: List[str], n: int = 8) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f" and {len(keys) - n} more ({len(keys)} in all)" if len(keys) > n else "")


def _rename_legacy(name: str) -> str:
    head, _, leaf = name.rpartition(".")
    if leaf in LEGACY_PT_LEAVES and head.endswith("LayerNorm"):
        return f"{head}.{LEGACY_PT_LEAVES[leaf]}"
    return name


def align_to_schema(
    state: Dict[str, np.ndarray],
    schema: Schema,
    source: str = "",
    base_model_prefix: Optional[str] = None,
) -> Aligned:
    """Match checkpoint ``state`` to ``schema`` by canonical name (see ``Aligned``).

    With ``base_model_prefix`` (``"bert"``, ``"transformer"``), a base-model checkpoint loads into
    a model with a head (``prefix.`` added) and a head checkpoint into a base model (``prefix.``
    removed, head weights reported as unexpected): whichever reading matches more names wins.
    Legacy ``LayerNorm.gamma/beta`` keys are renamed. Never raises; see ``Aligned.raise_for_errors``.
    """
    renamed = {_rename_legacy(k): v for k, v in state.items()}
    candidates = [renamed]
    if base_model_prefix:
        p = base_model_prefix + "."
        candidates.append({(k if k.startswith(p) else p + k): v for k, v in renamed.items()})
        candidates.append({(k[len(p):] if k.startswith(p) else k): v for k, v in renamed.items()})
    names = set(schema.names())
    best = max(candidates, key=lambda c: len(names & set(c)))

    ties = schema.ties()
    tensors: Dict[str, np.ndarray] = {}
    unexpected, mismatched, ignored = [], [], {}
    for key, value in best.items():
        if key in schema:
            expected = schema[key].shape
            if tuple(value.shape) != tuple(expected):
                mismatched.append((key, tuple(value.shape), tuple(expected)))
            else:
                tensors[key] = np.asarray(value)
            continue
        reason = schema.ignore_reason(key)
        if reason is not None:
            ignored[key] = reason
        else:
            unexpected.append(key)
    # Ties: an owner may be stored under a tied name (old files kept both); fill both ways.
    for tied, owner in ties.items():
        if owner not in tensors and tied in tensors:
            tensors[owner] = tensors[tied]
    for tied, owner in ties.items():
        if owner in tensors:
            tensors[tied] = tensors[owner]
    mismatched_names = {m[0] for m in mismatched}
    missing = [p.name for p in schema.owned() if p.name not in tensors and p.name not in mismatched_names]
    return Aligned(tensors, missing, sorted(unexpected), mismatched, ignored, source)


def owned_only(state: Dict[str, np.ndarray], schema: Schema) -> Dict[str, np.ndarray]:
    """The tensors ``model.safetensors`` holds: owners only, in schema order."""
    out = {}
    for spec in schema.owned():
        if spec.name not in state:
            raise CheckpointError(f"cannot save: state has no tensor for {spec.name!r}")
        out[spec.name] = state[spec.name]
    return out

