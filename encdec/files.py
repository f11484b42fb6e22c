"""Checkpoint files, whatever their format: names, errors, atomic writes, sizes and sharding.

The bottom of ``encdec``'s file handling: the format modules (``encdec.formats``), the reading of
checkpoints (``encdec.checkpoint``), configs and tokenizers all import it, and it imports nothing
of the library, so none of them need import each other for a file name or an atomic write.

Every file is written under a temporary name in its folder and renamed into place; a sharded save
writes all its shards before the first rename and the index last, so an interrupted save never
leaves a folder that loads half-written.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from typing import Any, Callable, Dict, Hashable, List, Optional, Sequence, Tuple, TypeVar

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


def _temporary_beside(path: str) -> str:
    """A new empty file in ``path``'s folder (created if needed), with ``path``'s extension
    (h5py and torch look at nothing else, but a stray temporary file then says what it was)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=os.path.splitext(path)[1], dir=directory)
    os.close(fd)
    return tmp


def _fill(tmp: str, write: Callable[[str], None]) -> None:
    """``write(tmp)``, then flush the file to disk so the rename cannot expose an empty file after a crash."""
    write(tmp)
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """Call ``write(temporary path)`` and rename the file it wrote to ``path``; on failure ``path``
    is untouched and the temporary file removed."""
    tmp = _temporary_beside(path)
    try:
        _fill(tmp, write)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str, data: bytes) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    atomic_write(path, write)


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
# Sharded writing

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
Shard = List[Tuple[K, V]]


def split_shards(items: Sequence[Tuple[K, V]], limit: Optional[int], nbytes: Callable[[V], int]) -> List[Shard]:
    """Greedy, in the given order, as the reference does: a new shard starts when the next tensor
    would pass ``limit`` bytes; a tensor larger than the limit gets a shard of its own."""
    shards: List[Shard] = [[]]
    current = 0
    for key, value in items:
        size = nbytes(value)
        if limit is not None and shards[-1] and current + size > limit:
            shards.append([])
            current = 0
        shards[-1].append((key, value))
        current += size
    return shards


def shard_file_names(file_name: str, count: int) -> List[str]:
    """``model.safetensors`` for one shard, else ``model-00001-of-00003.safetensors``, ..."""
    if count == 1:
        return [file_name]
    stem, ext = os.path.splitext(file_name)
    return [f"{stem}-{i + 1:05d}-of-{count:05d}{ext}" for i in range(count)]


def write_sharded(
    directory: str,
    file_name: str,
    items: Sequence[Tuple[K, V]],
    write_shard: Callable[[str, Shard], None],
    max_shard_size: Any = None,
    nbytes: Callable[[V], int] = lambda value: value.nbytes,
    index_key: Callable[[K], str] = str,
    index_metadata: Optional[Dict[str, Any]] = None,
    write_single: Optional[Callable[[str, Shard], None]] = None,
) -> List[str]:
    """Write ``items`` as ``file_name`` in ``directory``, or as shards plus ``<file_name>.index.json``
    when they pass ``max_shard_size`` (an int of bytes or ``"5GB"``; ``None``: never shard).
    Returns the names written, the index last.

    ``write_shard(path, items)`` writes one shard's file at ``path``; ``write_single`` the file of
    an unsharded save where it differs (a Keras h5 file groups its weights, its shards do not).
    The index is the reference's: ``metadata.total_size`` (plus ``index_metadata``) and
    ``weight_map`` from ``index_key(key)`` to the shard's name. Files of an earlier save of the same
    name that this one does not use (old shards, a single file replaced by shards or the reverse)
    are removed once the new files are in place.
    """
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    limit = None if max_shard_size is None else parse_size(max_shard_size)
    shards = split_shards(items, limit, nbytes)
    names = shard_file_names(file_name, len(shards))
    index_name = file_name + ".index.json"
    write_one = write_single if len(shards) == 1 and write_single is not None else write_shard

    staged: List[str] = []
    try:
        for shard in shards:
            staged.append(_temporary_beside(os.path.join(directory, file_name)))
            _fill(staged[-1], lambda tmp, shard=shard: write_one(tmp, shard))
        # Remove the index of an earlier sharded save first: until the new files are all in place
        # the folder then holds no index that points at shards being replaced.
        old_index = os.path.join(directory, index_name)
        if os.path.exists(old_index):
            os.unlink(old_index)
        for tmp, name in zip(staged, names):
            os.replace(tmp, os.path.join(directory, name))
    finally:
        for tmp in staged:
            if os.path.exists(tmp):
                os.unlink(tmp)

    if len(shards) > 1:
        metadata = {"total_size": int(sum(nbytes(v) for shard in shards for _, v in shard))}
        metadata.update(index_metadata or {})
        index = {
            "metadata": metadata,
            "weight_map": {index_key(key): name for name, shard in zip(names, shards) for key, _ in shard},
        }
        atomic_write_text(old_index, json.dumps(index, indent=2, sort_keys=True) + "\n")
        names = names + [index_name]
    _remove_stale(directory, file_name, keep=set(names))
    return names


def _remove_stale(directory: str, file_name: str, keep: set) -> None:
    stem, ext = os.path.splitext(file_name)
    shard = re.compile(re.escape(stem) + r"-\d{5}-of-\d{5}" + re.escape(ext))
    for entry in os.listdir(directory):
        ours = entry in (file_name, file_name + ".index.json") or shard.fullmatch(entry)
        if ours and entry not in keep:
            os.unlink(os.path.join(directory, entry))
