"""``model.safetensors`` files: this library's own format, and the reference's with ``safe_serialization``.

Written by every framework: metadata ``format: pt``, canonical PyTorch names and layout, tensors
that own storage only; sharded with ``model.safetensors.index.json`` past ``max_shard_size``. The
reference's TF and Flax classes write the same container with metadata ``format: tf`` / ``flax``
and their own names (read by ``encdec.formats.hf_tf_h5`` / ``hf_flax_msgpack``).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from encdec.files import SAFE_WEIGHTS_NAME, CheckpointError, write_sharded


def _read(file: str, tensors: bool) -> Tuple[List[str], Dict[str, np.ndarray], Dict[str, str]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(file, framework="np") as f:
            keys = list(f.keys())
            return keys, ({k: f.get_tensor(k) for k in keys} if tensors else {}), dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError, TypeError) as e:
        raise CheckpointError(f"{file} is not a readable safetensors file (truncated or corrupt?): {e}") from None


def read_safetensors_header(file: str) -> Tuple[List[str], Dict[str, str]]:
    """The keys and metadata of one safetensors file, without reading its tensors."""
    keys, _, metadata = _read(file, tensors=False)
    return keys, metadata


def read_safetensors(file: str) -> Tuple[Dict[str, np.ndarray], Dict[str, str]]:
    """All tensors of one safetensors file and its metadata; corrupt files raise naming the file."""
    _, state, metadata = _read(file, tensors=True)
    return state, metadata


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
