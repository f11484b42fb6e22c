"""``model.safetensors`` files: this library's own format, and the reference's with ``safe_serialization``.

Written by every framework: metadata ``format: pt``, canonical PyTorch names and layout, tensors
that own storage only; sharded with ``model.safetensors.index.json`` past ``max_shard_size``. The
reference's TF and Flax classes write the same container with metadata ``format: tf`` / ``flax``
and their own names (read by ``encdec.formats.hf_tf_h5`` / ``hf_flax_msgpack``).

Reading maps the file and copies nothing: the container is an 8-byte little-endian header length,
a JSON header (``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}``)
and the tensors' raw bytes, so every tensor is a numpy view of one copy-on-write ``np.memmap``
(mode ``"c"``) of the file. Pages are read from disk when a tensor is first used; PyTorch takes
the views as its parameters (``torch.from_numpy`` shares memory), TensorFlow and JAX copy them
once into their own buffers. Writing to such an array changes private pages of this process, never
the file. The mapping lives as long as any array of it: on Linux, replacing or deleting the file
afterwards (``save_pretrained`` writes a new file and renames it over the old) leaves the mapped
old file readable until the last array goes; a file rewritten in place by another program would
show through in pages not yet written by this process. bfloat16, which numpy lacks, is widened
exactly to float32 (a copy), as the ``.bin`` and msgpack readers do.
"""

from __future__ import annotations

import json
import os
import struct
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from encdec.files import SAFE_WEIGHTS_NAME, CheckpointError, write_sharded

# safetensors dtype -> numpy dtype (all little-endian, as the format's bytes are).
DTYPES: Dict[str, np.dtype] = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
BF16 = "BF16"
# The safetensors library refuses longer headers; a corrupt length must not make us read gigabytes.
MAX_HEADER_BYTES = 100_000_000


class _Header:
    """A parsed, checked header: ``entries`` {name: (dtype, shape, begin, end)} in file order,
    ``metadata``, and where the data starts (``data_start``) and how long it is (``data_bytes``)."""

    def __init__(self, entries: Dict[str, Tuple[str, Tuple[int, ...], int, int]], metadata: Dict[str, str],
                 data_start: int, data_bytes: int):
        self.entries, self.metadata, self.data_start, self.data_bytes = entries, metadata, data_start, data_bytes


def _bad(file: str, problem: str) -> CheckpointError:
    return CheckpointError(f"{file} is not a readable safetensors file (truncated or corrupt?): {problem}")


def _no_duplicates(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    seen: Dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"the header names {key!r} twice")
        seen[key] = value
    return seen


def _parse_header(file: str) -> _Header:
    try:
        with open(file, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size < 8:
                raise _bad(file, f"{size} bytes, shorter than the 8-byte header length")
            (length,) = struct.unpack("<Q", f.read(8))
            if length > min(MAX_HEADER_BYTES, size - 8):
                raise _bad(file, f"the header length says {length} bytes, the file has {size - 8} after it")
            raw = f.read(length)
    except OSError as e:
        raise CheckpointError(f"cannot read {file}: {e}") from None
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as e:
        raise _bad(file, f"the header is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise _bad(file, f"the header is a JSON {type(header).__name__}, not an object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise _bad(file, "__metadata__ must map strings to strings")

    data_bytes = size - 8 - length
    entries: Dict[str, Tuple[str, Tuple[int, ...], int, int]] = {}
    for name, entry in header.items():
        try:
            dtype, shape, (begin, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            if not (isinstance(dtype, str) and isinstance(shape, list)
                    and all(isinstance(v, int) and v >= 0 for v in [*shape, begin, end])):
                raise TypeError
        except (TypeError, KeyError, ValueError):
            raise _bad(file, f"tensor {name!r} needs dtype (str), shape and data_offsets (non-negative ints), "
                             f"got {entry!r}") from None
        if dtype not in DTYPES and dtype != BF16:
            raise _bad(file, f"tensor {name!r} has dtype {dtype!r}, which numpy cannot hold "
                             f"(readable: {', '.join([*DTYPES, BF16])})")
        itemsize = 2 if dtype == BF16 else DTYPES[dtype].itemsize
        expected = int(np.prod(shape, dtype=np.int64)) * itemsize
        if end - begin != expected:
            raise _bad(file, f"tensor {name!r} of shape {shape} and dtype {dtype} needs {expected} bytes, "
                             f"data_offsets [{begin}, {end}] give {end - begin}")
        if end > data_bytes:
            raise _bad(file, f"tensor {name!r} ends at byte {end} of the data, the file holds {data_bytes}")
        entries[name] = (dtype, tuple(shape), begin, end)
    # The format's rule: the tensors tile the data, no hole and no overlap.
    position = 0
    for name, (_, _, begin, end) in sorted(entries.items(), key=lambda item: (item[1][2], item[1][3])):
        if begin != position:
            raise _bad(file, f"tensor {name!r} starts at byte {begin} of the data, expected {position} "
                             "(the tensors must tile the data without holes or overlaps)")
        position = end
    if position != data_bytes:
        raise _bad(file, f"the tensors end at byte {position} of the data, the file holds {data_bytes}")
    return _Header(entries, {str(k): v for k, v in metadata.items()}, 8 + length, data_bytes)


def _bfloat16_to_float32(raw: np.ndarray) -> np.ndarray:
    return (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)


def read_safetensors_header(file: str) -> Tuple[List[str], Dict[str, str]]:
    """The keys and metadata of one safetensors file, without reading its tensors."""
    header = _parse_header(file)
    return list(header.entries), header.metadata


def read_safetensors(file: str, mode: str = "c") -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
    """All tensors of one safetensors file and its metadata; corrupt files raise naming the file.

    The tensors are views of one ``np.memmap`` of the file (see the module docstring): ``mode``
    ``"c"`` (copy-on-write: writeable arrays whose writes never reach the file) or ``"r"``
    (read-only arrays). bfloat16 tensors come back as float32 copies.
    """
    if mode not in ("c", "r"):
        raise ValueError(f"mode must be 'c' (copy-on-write) or 'r' (read-only), got {mode!r}")
    header = _parse_header(file)
    if header.data_bytes:
        try:
            data = np.memmap(file, dtype=np.uint8, mode=mode, offset=header.data_start, shape=(header.data_bytes,))
        except (OSError, ValueError) as e:
            raise CheckpointError(f"cannot map {file}: {e}") from None
    else:  # mmap refuses an empty range: every tensor here is empty
        data = np.zeros(0, np.uint8)
    state: Dict[str, np.ndarray] = {}
    for name, (dtype, shape, begin, end) in header.entries.items():
        if dtype == BF16:
            state[name] = _bfloat16_to_float32(data[begin:end]).reshape(shape)
            continue
        array = np.ndarray(shape, dtype=DTYPES[dtype], buffer=data, offset=begin) if end > begin \
            else np.zeros(shape, DTYPES[dtype])
        # A tensor at an offset its dtype cannot be read from in place (other writers need not
        # align) is copied: frameworks refuse or slow down on misaligned buffers.
        state[name] = array if array.flags.aligned else array.copy()
    return state, header.metadata


def save_state_dict(
    state: Dict[str, np.ndarray],
    save_directory: str,
    max_shard_size: Any = "5GB",
    metadata: Optional[Dict[str, str]] = None,
) -> List[str]:
    """Write ``state`` as ``model.safetensors`` (or shards plus index); return the file names.

    Sharding, atomicity and the removal of an earlier save's files are ``encdec.files.write_sharded``'s.
    """
    from safetensors.numpy import save_file

    meta = {"format": "pt"}
    meta.update(metadata or {})
    arrays = {k: np.ascontiguousarray(np.asarray(v)) for k, v in state.items()}
    for key, value in arrays.items():
        if value.dtype == object:
            raise CheckpointError(f"cannot save {key!r}: not a numeric array")
    return write_sharded(
        save_directory, SAFE_WEIGHTS_NAME, list(arrays.items()),
        lambda path, shard: save_file(dict(shard), path, metadata=meta),
        max_shard_size=max_shard_size,
        index_metadata={"total_parameters": int(sum(a.size for a in arrays.values()))},
    )


def release_pages(array: np.ndarray) -> None:
    """Give back to the OS the memory pages of ``array``, a view of a file mapped by
    ``read_safetensors``, that lie wholly inside it (nothing for any other array).

    For a loader that has copied the array into its framework's own buffer: without this, every
    page it read stays in the process's memory until the last view of the file goes, and a load
    that copies would hold the weights twice. The values do not change (a later read maps the
    pages from the file again), but writes made to the array are lost: only for arrays nobody
    wrote to.
    """
    import mmap

    mapping = array
    while isinstance(mapping, np.ndarray) and not isinstance(mapping, np.memmap):
        mapping = mapping.base
    if not isinstance(mapping, np.memmap) or not isinstance(mapping.base, mmap.mmap):
        return
    # np.memmap maps from the offset rounded down to the allocation granularity.
    map_start = mapping.__array_interface__["data"][0] - mapping.offset % mmap.ALLOCATIONGRANULARITY
    start = array.__array_interface__["data"][0]
    first = -(-(start - map_start) // mmap.PAGESIZE) * mmap.PAGESIZE
    last = (start + array.nbytes - map_start) // mmap.PAGESIZE * mmap.PAGESIZE
    if last > first:
        mapping.base.madvise(mmap.MADV_DONTNEED, first, last - first)
