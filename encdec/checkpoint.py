"""Checkpoint files: read and write weights as numpy arrays under canonical names.

Written by every framework: ``model.safetensors`` (metadata ``format: pt``, canonical PyTorch
names and layout, tensors that own storage only), sharded with ``model.safetensors.index.json``
past ``max_shard_size``. Every file is written to a temporary name and renamed into place, and
the index last, so an interrupted save never leaves a checkpoint that loads half-written.

Read: the above, ``pytorch_model.bin`` (single or sharded, through ``torch.load(weights_only=True)``:
a pickle that needs arbitrary code is refused) and, through ``encdec.formats``, the Hugging Face
``tf_model.h5`` and ``flax_model.msgpack`` files. No framework is imported here except torch,
lazily, for ``.bin`` files.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import tempfile
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from encdec.naming.layout import LEGACY_PT_LEAVES
from encdec.naming.schema import Schema

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
PT_WEIGHTS_NAME = "pytorch_model.bin"
PT_WEIGHTS_INDEX_NAME = "pytorch_model.bin.index.json"
TF_WEIGHTS_NAME = "tf_model.h5"
TF_WEIGHTS_INDEX_NAME = "tf_model.h5.index.json"
FLAX_WEIGHTS_NAME = "flax_model.msgpack"
FLAX_WEIGHTS_INDEX_NAME = "flax_model.msgpack.index.json"

# (format, single file, index file), in the default order of preference.
WEIGHT_FILES: List[Tuple[str, str, str]] = [
    ("safetensors", SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME),
    ("pt", PT_WEIGHTS_NAME, PT_WEIGHTS_INDEX_NAME),
    ("tf", TF_WEIGHTS_NAME, TF_WEIGHTS_INDEX_NAME),
    ("flax", FLAX_WEIGHTS_NAME, FLAX_WEIGHTS_INDEX_NAME),
]
# `from_pt` / `from_tf` / `from_flax` put their framework's native files first.
PREFERENCE = {
    None: ["safetensors", "pt", "tf", "flax"],
    "pt": ["pt", "safetensors", "tf", "flax"],
    "tf": ["tf", "safetensors", "pt", "flax"],
    "flax": ["flax", "safetensors", "pt", "tf"],
}


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the model; the message names file and keys."""


# --------------------------------------------------------------------------------------------
# Atomic writes


def atomic_write_bytes(path: str, data: bytes) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


# --------------------------------------------------------------------------------------------
# Sizes


_SIZE_UNITS = {
    "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40,
}


def parse_size(size: Any) -> int:
    """``"5GB"`` -> 5_000_000_000, ``"10MiB"`` -> 10_485_760; ints pass through."""
    if isinstance(size, int):
        if size <= 0:
            raise ValueError(f"max_shard_size must be positive, got {size}")
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]I?B|B)\s*", str(size).upper())
    if not match:
        raise ValueError(f"cannot read size {size!r}; use an int of bytes or e.g. '500MB', '5GB', '10MiB'")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


# --------------------------------------------------------------------------------------------
# Writing


def save_state_dict(
    state: Dict[str, np.ndarray],
    save_directory: str,
    max_shard_size: Any = "5GB",
    metadata: Optional[Dict[str, str]] = None,
) -> List[str]:
    """Write ``state`` as ``model.safetensors`` (or shards plus index); return the file names.

    Shards are filled greedily in key order; a tensor larger than the limit gets a shard of its
    own. Files of an earlier save that the new one does not use (old shards, a single file replaced
    by shards or the reverse) are removed after the new files are in place.
    """
    from safetensors.numpy import save_file

    limit = parse_size(max_shard_size)
    meta = {"format": "pt"}
    meta.update(metadata or {})
    arrays = {k: np.ascontiguousarray(np.asarray(v)) for k, v in state.items()}
    for key, value in arrays.items():
        if value.dtype == object:
            raise CheckpointError(f"cannot save {key!r}: not a numeric array")

    shards: List[Dict[str, np.ndarray]] = [{}]
    current = 0
    for key in arrays:
        nbytes = arrays[key].nbytes
        if shards[-1] and current + nbytes > limit:
            shards.append({})
            current = 0
        shards[-1][key] = arrays[key]
        current += nbytes

    os.makedirs(save_directory, exist_ok=True)
    if len(shards) == 1:
        names = [SAFE_WEIGHTS_NAME]
    else:
        n = len(shards)
        names = [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]

    staging = tempfile.mkdtemp(prefix=".tmp-save-", dir=save_directory)
    try:
        for name, shard in zip(names, shards):
            save_file(shard, os.path.join(staging, name), metadata=meta)
        index = None
        if len(shards) > 1:
            index = {
                "metadata": {
                    "total_size": int(sum(a.nbytes for a in arrays.values())),
                    "total_parameters": int(sum(a.size for a in arrays.values())),
                },
                "weight_map": {k: name for name, shard in zip(names, shards) for k in shard},
            }
        # Remove the index of an earlier sharded save first: until the new files are all in place
        # the folder then holds no index that points at shards being replaced.
        old_index = os.path.join(save_directory, SAFE_WEIGHTS_INDEX_NAME)
        if os.path.exists(old_index):
            os.unlink(old_index)
        for name in names:
            os.replace(os.path.join(staging, name), os.path.join(save_directory, name))
        if index is not None:
            atomic_write_text(old_index, json.dumps(index, indent=2, sort_keys=True) + "\n")
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    keep = set(names) | ({SAFE_WEIGHTS_INDEX_NAME} if len(names) > 1 else set())
    for entry in os.listdir(save_directory):
        stale = entry == SAFE_WEIGHTS_NAME or re.fullmatch(r"model-\d{5}-of-\d{5}\.safetensors", entry)
        if stale and entry not in keep:
            os.unlink(os.path.join(save_directory, entry))
    return names + ([SAFE_WEIGHTS_INDEX_NAME] if len(names) > 1 else [])


# --------------------------------------------------------------------------------------------
# Reading


@dataclasses.dataclass
class Checkpoint:
    """Tensors read from a checkpoint, still under the names the files use.

    ``format`` is one of ``safetensors``, ``pt``, ``tf``, ``flax``. For ``tf`` and ``flax`` the
    names are already canonical (the readers in ``encdec.formats`` convert them).
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


def read_safetensors(file: str) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
    """All tensors of one safetensors file and its metadata; corrupt files raise naming the file."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(file, framework="np") as f:
            metadata = dict(f.metadata() or {})
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, TypeError) as e:
        raise CheckpointError(f"{file} is not a readable safetensors file (truncated or corrupt?): {e}") from None
    return state, metadata


def read_torch_bin(file: str) -> Dict[str, np.ndarray]:
    """A ``pytorch_model.bin`` through ``torch.load(weights_only=True)``: tensors only, no code."""
    try:
        import torch
    except ImportError:
        raise ImportError(
            f"{file} is a PyTorch pickle; reading it needs torch (pip install 'encdec[torch]'), "
            "or convert it to model.safetensors"
        ) from None
    import pickle

    try:
        loaded = torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{file} refused: it is a pickle that needs more than tensors to load (weights_only=True), "
            f"which could run arbitrary code. Details: {e}"
        ) from None
    except (RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(f"{file} is not a readable PyTorch checkpoint (truncated or corrupt?): {e}") from None
    if isinstance(loaded, dict) and "state_dict" in loaded and isinstance(loaded["state_dict"], dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict):
        raise CheckpointError(f"{file} holds a {type(loaded).__name__}, not a state dict")
    out = {}
    for key, value in loaded.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{file}: entry {key!r} is a {type(value).__name__}, not a tensor")
        if value.dtype == torch.bfloat16:  # numpy has no bfloat16
            value = value.float()
        out[key] = value.detach().cpu().numpy()
    return out


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
    if fmt in ("tf", "flax"):
        if schema is None:
            raise ValueError(f"reading {files[0]} ({fmt} layout) needs the model's schema")
        if fmt == "tf":
            from encdec.formats.hf_tf_h5 import read_tf_h5 as reader
        else:
            from encdec.formats.hf_flax_msgpack import read_flax_msgpack as reader
        return Checkpoint(reader(files, schema), files, fmt)

    state: Dict[str, np.ndarray] = {}
    metadata: Dict[str, str] = {}
    per_file: List[Tuple[str, List[str]]] = []
    written_by = "pt"
    for i, file in enumerate(files):
        if fmt == "safetensors":
            part, metadata = read_safetensors(file)
            this = metadata.get("format", "pt")
            this = "pt" if this in ("np", "numpy") else this
            if this not in ("pt", "tf", "flax"):
                raise CheckpointError(f"{file}: unknown safetensors metadata format={this!r} (expected pt, tf or flax)")
            if i and this != written_by:
                raise CheckpointError(f"{file}: safetensors metadata format={this!r}, but {files[0]} has {written_by!r}")
            written_by = this
        else:
            part = read_torch_bin(file)
        dup = set(part) & set(state)
        if dup:
            raise CheckpointError(f"{file} repeats keys already read from another shard: {sorted(dup)[:5]}")
        state.update(part)
        per_file.append((file, list(part)))
    if len(files) > 1:
        _check_index_covers(path_or_id, fmt, state, hub_kwargs)
    if written_by == "pt":
        for file, keys in per_file:
            _check_pytorch_names(file, keys, "safetensors metadata format='pt'" if fmt == "safetensors" else "a PyTorch pickle")
        return Checkpoint(state, files, fmt, metadata)

    # Safetensors written by the reference's TF or Flax classes: convert with the same rules as h5 / msgpack.
    if schema is None:
        raise CheckpointError(
            f"{files[0]} was written by Hugging Face's {written_by!r} classes (safetensors metadata "
            f"format={written_by!r}); its names are {written_by} names, e.g. {sorted(state)[:3]}, and reading them "
            "needs the model's schema (load it with from_pretrained, or convert it with encdec-convert)"
        )
    if written_by == "tf":
        from encdec.formats.hf_tf_h5 import _strip_suffix, tf_entries_to_canonical

        entries = ((file, _strip_suffix(k), state[k]) for file, keys in per_file for k in keys)
        canonical = tf_entries_to_canonical(entries, schema)
    else:
        from encdec.formats.hf_flax_msgpack import flax_entries_to_canonical

        entries = ((file, tuple(k.split(".")), state[k]) for file, keys in per_file for k in keys)
        canonical = flax_entries_to_canonical(entries, schema)
    return Checkpoint(canonical, files, written_by, metadata)


# Leaves and separators that PyTorch state dicts never use: TF variable names
# (`encoder/bert/embeddings/LayerNorm/beta:0`) and Flax tree leaves (`...LayerNorm.scale`).
_FOREIGN_NAMES = [
    ("TensorFlow", re.compile(r"/|:\d+$")),
    ("Flax", re.compile(r"\.(kernel|scale|embedding)$")),
]


def _check_pytorch_names(file: str, keys: List[str], promise: str) -> None:
    for framework, pattern in _FOREIGN_NAMES:
        foreign = [k for k in keys if pattern.search(k)]
        if foreign:
            raise CheckpointError(
                f"{file} promises PyTorch names ({promise}) but holds {framework} names: {_few(sorted(foreign), 5)}. "
                "It was probably re-saved without its format metadata; convert it from the framework that wrote it"
            )


def _check_index_covers(path_or_id: str, fmt: str, state: Dict[str, np.ndarray], hub_kwargs: Dict[str, Any]) -> None:
    from encdec.hub import resolve_file

    index_name = SAFE_WEIGHTS_INDEX_NAME if fmt == "safetensors" else PT_WEIGHTS_INDEX_NAME
    index_file = resolve_file(path_or_id, index_name, **hub_kwargs)
    listed = set(_read_index(index_file)["weight_map"])
    absent = sorted(listed - set(state))
    if absent:
        raise CheckpointError(f"{index_file} lists keys that no shard holds: {absent[:5]} ({len(absent)} in all)")


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

