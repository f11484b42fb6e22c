"""Read and write the Hugging Face Flax checkpoint, ``flax_model.msgpack``, with numpy and msgpack
only (no jax or flax import).

The file is ``flax.serialization.to_bytes(params)``: a msgpack map of nested string-keyed maps
(the params tree, layer indices as ``"0"``) whose leaves are msgpack ext type 1 holding
``msgpack((shape, dtype name, C-order bytes))``; ext type 3 is a numpy scalar in the same form.
Arrays over 1 GiB are split into ``{"__msgpack_chunked_array__": True, "shape": {...},
"chunks": {"0": flat, ...}}``. Sharded checkpoints are ``flax_model-0000k-of-0000N.msgpack`` files,
each a nested subtree, plus ``flax_model.msgpack.index.json`` whose ``weight_map`` keys are the
"/"-joined paths.

Tree path <-> canonical name is generic: the module path is the PyTorch module path and the leaf
is renamed / transposed by kind (``encdec.naming.layout``); the schema is only asked for the kind
of each leaf (a ``kernel`` may be a linear layer, stored ``(in, out)``, or GPT-2's Conv1D, stored
``(out, in)``).
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import msgpack
import numpy as np

from encdec.files import FLAX_WEIGHTS_NAME, CheckpointError, write_sharded
from encdec.formats.safetensors import read_safetensors, save_state_dict
from encdec.naming.layout import framework_path, from_framework, to_framework
from encdec.naming.schema import ParamSpec, Schema

EXT_NDARRAY = 1
EXT_NATIVE_COMPLEX = 2
EXT_NPSCALAR = 3
CHUNKED = "__msgpack_chunked_array__"
MAX_CHUNK_SIZE = 2**30  # flax.serialization.MAX_CHUNK_SIZE


class FlaxMsgpackError(CheckpointError):
    """A flax msgpack file that cannot be read, or a key with no place in the model."""


# --------------------------------------------------------------------------------------------
# The msgpack encoding of flax.serialization


def _bfloat16_to_float32(raw: bytes, count: int) -> np.ndarray:
    bits = np.frombuffer(raw, dtype="<u2", count=count).astype(np.uint32) << 16
    return bits.view(np.float32)


def _ndarray_from_bytes(data: bytes) -> np.ndarray:
    shape, dtype_name, buffer = msgpack.unpackb(data, raw=True)
    name = dtype_name.decode() if isinstance(dtype_name, bytes) else dtype_name
    shape = tuple(int(s) for s in shape)
    count = int(np.prod(shape, dtype=np.int64))
    if name == "bfloat16":  # numpy has no bfloat16: widen exactly to float32
        return _bfloat16_to_float32(buffer, count).reshape(shape)
    return np.frombuffer(buffer, dtype=np.dtype(name), count=count).reshape(shape).copy()


def _ext_unpack(code: int, data: bytes) -> Any:
    if code == EXT_NDARRAY:
        return _ndarray_from_bytes(data)
    if code == EXT_NPSCALAR:
        return _ndarray_from_bytes(data)[()]
    if code == EXT_NATIVE_COMPLEX:
        real, imag = msgpack.unpackb(data)
        return complex(real, imag)
    return msgpack.ExtType(code, data)


def _ndarray_to_bytes(arr: np.ndarray) -> bytes:
    arr = np.ascontiguousarray(arr)
    if arr.dtype.hasobject:
        raise FlaxMsgpackError(f"cannot write an object array ({arr.dtype}) to msgpack")
    return msgpack.packb((list(arr.shape), arr.dtype.name, arr.tobytes("C")), use_bin_type=True)


def _ext_pack(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return msgpack.ExtType(EXT_NDARRAY, _ndarray_to_bytes(obj))
    if isinstance(obj, np.generic):
        return msgpack.ExtType(EXT_NPSCALAR, _ndarray_to_bytes(np.asarray(obj)))
    raise TypeError(f"cannot pack {type(obj).__name__} into a flax msgpack file")


def _unchunk(tree: Any) -> Any:
    if isinstance(tree, dict):
        if CHUNKED in tree:
            shape = tuple(int(tree["shape"][str(i)]) for i in range(len(tree["shape"])))
            chunks = [tree["chunks"][str(i)] for i in range(len(tree["chunks"]))]
            return np.concatenate(chunks).reshape(shape)
        return {k: _unchunk(v) for k, v in tree.items()}
    return tree


def _chunk(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _chunk(v) for k, v in tree.items()}
    if isinstance(tree, np.ndarray) and tree.nbytes > MAX_CHUNK_SIZE:
        size = max(1, MAX_CHUNK_SIZE // tree.dtype.itemsize)
        flat = tree.reshape(-1)
        chunks = [flat[i:i + size] for i in range(0, flat.size, size)]
        return {CHUNKED: True, "shape": {str(i): s for i, s in enumerate(tree.shape)},
                "chunks": {str(i): c for i, c in enumerate(chunks)}}
    return tree


def msgpack_restore(data: bytes) -> Dict[str, Any]:
    """``flax.serialization.msgpack_restore``: the nested dict of numpy arrays."""
    return _unchunk(msgpack.unpackb(data, ext_hook=_ext_unpack, raw=False))


def msgpack_serialize(tree: Dict[str, Any]) -> bytes:
    """``flax.serialization.msgpack_serialize`` of a nested dict of numpy arrays."""
    return msgpack.packb(_chunk(tree), default=_ext_pack, strict_types=True)


def _flatten(tree: Dict[str, Any], prefix: Tuple[str, ...] = ()) -> Dict[Tuple[str, ...], Any]:
    out: Dict[Tuple[str, ...], Any] = {}
    for key, value in tree.items():
        path = prefix + (str(key),)
        if isinstance(value, dict):
            out.update(_flatten(value, path))
        else:
            out[path] = value
    return out


def _unflatten(flat: Dict[Tuple[str, ...], Any]) -> Dict[str, Any]:
    tree: Dict[str, Any] = {}
    for path, value in flat.items():
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return tree


# --------------------------------------------------------------------------------------------
# Reading


def _read_file(file: str) -> Dict[Tuple[str, ...], np.ndarray]:
    try:
        with open(file, "rb") as f:
            tree = msgpack_restore(f.read())
    except (OSError, ValueError, msgpack.exceptions.ExtraData, msgpack.exceptions.UnpackException) as e:
        raise FlaxMsgpackError(f"{file} is not a readable flax msgpack file (truncated or corrupt?): {e}") from None
    if not isinstance(tree, dict):
        raise FlaxMsgpackError(f"{file} holds a {type(tree).__name__}, not a params tree")
    # Some savers wrap the tree as {"params": {...}}.
    if set(tree) == {"params"} and isinstance(tree["params"], dict):
        tree = tree["params"]
    return _flatten(tree)


def _kind_index(schema: Schema) -> Dict[Tuple[str, ...], ParamSpec]:
    return {framework_path(spec, "flax"): spec for spec in schema}


def _spec_for(path: Tuple[str, ...], index: Dict[Tuple[str, ...], ParamSpec]) -> Optional[ParamSpec]:
    """The schema entry giving the kind of ``path``: the same path, or one differing by a leading
    base-model prefix (a ``FlaxBertForCausalLM`` file read for a ``BertModel`` schema or the
    reverse; ``align_to_schema`` then adds or removes the prefix)."""
    spec = index.get(path)
    if spec is None and len(path) > 1:
        spec = index.get(path[1:])
    if spec is None:
        for candidate, s in index.items():
            if candidate[1:] == path:
                return s
    return spec


def read_flax_msgpack(files: Sequence[str], schema: Schema) -> Dict[str, np.ndarray]:
    """Canonical-named float arrays (PyTorch names and layout) of a single or sharded
    ``flax_model.msgpack``. Total: a key the schema has no kind for raises naming file and key."""
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    return flax_entries_to_canonical(
        ((str(file), path, value) for file in files for path, value in _read_file(str(file)).items()), schema)


def read_flax_safetensors(files: Sequence[str], schema: Schema) -> Dict[str, np.ndarray]:
    """The ``model.safetensors`` written by the reference's Flax classes (``safe_serialization=True``,
    metadata ``format: flax``): keys are the "."-joined Flax tree paths
    (``decoder.bert.embeddings.LayerNorm.scale``), kernels in Flax orientation. Same rules as msgpack."""
    if isinstance(files, (str, os.PathLike)):
        files = [files]

    def entries():
        for file in files:
            state, metadata = read_safetensors(str(file))
            written_by = metadata.get("format")
            if written_by != "flax":
                raise FlaxMsgpackError(f"{file}: safetensors metadata format={written_by!r}, expected 'flax'; "
                                       f"keys {sorted(state)[:3]}")
            for key, value in state.items():
                yield str(file), tuple(key.split(".")), value

    return flax_entries_to_canonical(entries(), schema)


def flax_state_to_canonical(state: Dict[str, np.ndarray], schema: Schema, source: str = "") -> Dict[str, np.ndarray]:
    """Flax-named arrays already in memory ("."-joined paths) -> canonical arrays."""
    return flax_entries_to_canonical(((source, tuple(k.split(".")), v) for k, v in state.items()), schema)


def flax_entries_to_canonical(entries, schema: Schema) -> Dict[str, np.ndarray]:
    """(file, tree path, array) -> canonical name and array; a path with no place raises naming file and key."""
    index = _kind_index(schema)
    out: Dict[str, np.ndarray] = {}
    for file, path, value in entries:
        key = "/".join(path)
        if not isinstance(value, np.ndarray):
            raise FlaxMsgpackError(f"{file}: {key} is a {type(value).__name__}, not an array")
        spec = _spec_for(path, index)
        if spec is None:
            raise FlaxMsgpackError(f"{file}: key {key!r} matches no parameter of the model (shape {value.shape})")
        try:
            pt_leaf, array = from_framework(spec.kind, path[-1], value, "flax")
        except ValueError as e:
            raise FlaxMsgpackError(f"{file}: key {key!r}: {e}") from None
        name = ".".join(path[:-1] + (pt_leaf,))
        if name in out:
            raise FlaxMsgpackError(f"{file}: key {key!r} was already read from another shard")
        out[name] = array
    return out


# --------------------------------------------------------------------------------------------
# Writing


def _flax_tree(state: Dict[str, np.ndarray], schema: Schema, progress=None) -> Dict[Tuple[str, ...], np.ndarray]:
    weights = flax_weights(state, schema)
    return dict(progress(weights) if progress else weights)


def flax_weights(state: Dict[str, np.ndarray], schema: Schema):
    """Owned tensors, plus encoder tensors tied to the decoder (``tie_encoder_decoder``): the Hugging
    Face Flax classes have no such tie and expect the encoder's own copy. Head ties (LM head to word
    embeddings, ``decoder.bias`` to ``predictions.bias``) are not written: those modules own no
    params in Flax."""
    ties = schema.ties()
    for spec in schema:
        source = spec.name
        if spec.tied_to is not None:
            if not spec.name.startswith("encoder."):
                continue
            source = ties[spec.name]
        if source not in state:
            raise FlaxMsgpackError(f"cannot write flax msgpack: state has no tensor for {source!r}")
        leaf, array = to_framework(spec, np.asarray(state[source]), "flax")
        yield tuple(spec.name.split(".")[:-1]) + (leaf,), np.ascontiguousarray(array)


def write_flax_msgpack(
    state: Dict[str, np.ndarray], schema: Schema, path: str, max_shard_size: Optional[int] = None, progress=None
) -> List[str]:
    """Write canonical ``state`` as a Hugging Face ``flax_model.msgpack`` (``path`` is the file, or
    a folder to write it in). With ``max_shard_size`` (bytes) and a larger tree: shards plus
    ``flax_model.msgpack.index.json``. Returns the files written; writes are atomic."""
    if os.path.isdir(path) or path.endswith(os.sep):
        directory, file = path, FLAX_WEIGHTS_NAME
    else:
        directory, file = os.path.dirname(path), os.path.basename(path)

    def write(tmp: str, shard) -> None:
        with open(tmp, "wb") as f:
            f.write(msgpack_serialize(_unflatten(dict(shard))))

    flat = _flax_tree(state, schema, progress)
    names = write_sharded(directory or ".", file, list(flat.items()), write, max_shard_size=max_shard_size,
                          index_key="/".join)
    return [os.path.join(directory, name) for name in names]


def write_flax_safetensors(state: Dict[str, np.ndarray], schema: Schema, directory: str, progress=None) -> List[str]:
    """Write what the reference's Flax ``save_pretrained(safe_serialization=True)`` writes:
    ``model.safetensors`` with metadata ``format: flax`` and the "."-joined tree paths as keys.
    Never sharded: the reference's Flax classes cannot read sharded safetensors (hf_behaviour.md 3.1)."""
    tensors = {".".join(path): array for path, array in _flax_tree(state, schema, progress).items()}
    return save_state_dict(tensors, directory, max_shard_size=None, metadata={"format": "flax"})
