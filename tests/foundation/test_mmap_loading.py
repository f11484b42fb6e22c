"""Reading ``model.safetensors`` by mapping it: views of the file, copy-on-write, every numpy dtype,
bfloat16 widened, corrupt files named, pages given back after a copy."""

import json
import struct

import numpy as np
import pytest
from safetensors.numpy import save_file

from encdec.checkpoint import load_checkpoint
from encdec.files import CheckpointError
from encdec.formats.safetensors import read_safetensors, release_pages, save_state_dict

# One tensor of every dtype numpy and safetensors share, odd shapes, one empty.
_ARRAYS = {
    "f64": np.linspace(-1, 1, 6).reshape(2, 3),
    "f32": np.arange(35, dtype=np.float32).reshape(5, 7) / 3,
    "f16": np.array([1.5, -2.25, 65504.0], np.float16),
    "i64": np.array([-(2**62), 7], np.int64),
    "i32": np.arange(-3, 4, dtype=np.int32),
    "i16": np.array([-32768, 32767], np.int16),
    "i8": np.array([-128, 5, 127], np.int8),
    "u64": np.array([2**63 + 5], np.uint64),
    "u32": np.array([2**31 + 1, 3], np.uint32),
    "u16": np.array([65535], np.uint16),
    "u8": np.arange(9, dtype=np.uint8).reshape(3, 3),
    "bool": np.array([True, False, True]),
    "empty": np.zeros((0, 4), np.float32),
}


def _mapping_of(array):
    base = array
    while isinstance(base, np.ndarray) and not isinstance(base, np.memmap):
        base = base.base
    return base


@pytest.fixture
def written(tmp_path):
    path = tmp_path / "model.safetensors"
    save_file(_ARRAYS, str(path), metadata={"format": "pt"})
    return path


def test_every_numpy_dtype_reads_back_exactly_as_views_of_the_file(written):
    state, metadata = read_safetensors(str(written))
    assert metadata == {"format": "pt"} and sorted(state) == sorted(_ARRAYS)
    for name, expected in _ARRAYS.items():
        got = state[name]
        assert got.dtype == expected.dtype and got.shape == expected.shape and np.array_equal(got, expected), name
        if expected.size:
            assert isinstance(_mapping_of(got), np.memmap) and got.flags.writeable and got.flags.aligned, name


def test_writes_to_a_copy_on_write_view_never_reach_the_file(written):
    before = written.read_bytes()
    state, _ = read_safetensors(str(written))
    state["f32"][...] = -1.0
    state["u8"][0, 0] = 200
    del state
    assert written.read_bytes() == before
    assert np.array_equal(read_safetensors(str(written))[0]["f32"], _ARRAYS["f32"])
    readonly, _ = read_safetensors(str(written), mode="r")
    assert not readonly["f32"].flags.writeable
    with pytest.raises(ValueError, match="mode"):
        read_safetensors(str(written), mode="r+")


def test_the_mapped_file_may_be_replaced_after_reading(tmp_path):
    """save_pretrained renames a new file over the old; the arrays keep the old file's values."""
    save_state_dict({"a": np.full((4, 1024), 3.0, np.float32)}, str(tmp_path))
    state = load_checkpoint(str(tmp_path)).state
    save_state_dict({"a": np.full((4, 1024), 5.0, np.float32)}, str(tmp_path))
    assert np.all(state["a"] == 3.0)
    (tmp_path / "model.safetensors").unlink()
    assert np.all(state["a"] == 3.0)


def _container(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + data


def test_bfloat16_is_widened_exactly_to_float32(tmp_path):
    values = np.array([1.0, -2.5, 3.140625, 2.0**-10, -65280.0], np.float32)  # exact in bfloat16
    bits = (values.view(np.uint32) >> 16).astype("<u2")
    path = tmp_path / "bf16.safetensors"
    path.write_bytes(_container({"w": {"dtype": "BF16", "shape": [5], "data_offsets": [0, 10]}}, bits.tobytes()))
    got = read_safetensors(str(path))[0]["w"]
    assert got.dtype == np.float32 and np.array_equal(got, values)


_F32_6 = {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}


@pytest.mark.parametrize("content, problem", [
    (b"\x01\x02", "shorter than the 8-byte header length"),
    (struct.pack("<Q", 10**6) + b"{}", "the header length says 1000000 bytes"),
    (struct.pack("<Q", 4) + b"{no ", "the header is not JSON"),
    (_container([1, 2], b""), "not an object"),
    (_container({"w": _F32_6}, bytes(20)), "ends at byte 24 of the data, the file holds 20"),
    (_container({"w": {**_F32_6, "shape": [2, 2]}}, bytes(24)), "needs 16 bytes"),
    (_container({"w": {**_F32_6, "dtype": "F8_E4M3", "data_offsets": [0, 6]}}, bytes(6)), "numpy cannot hold"),
    (_container({"w": {"dtype": "F32", "shape": [2]}}, b""), "needs dtype"),
    (_container({"w": {**_F32_6, "data_offsets": [8, 32]}}, bytes(32)), "without holes"),
    (_container({"w": _F32_6}, bytes(32)), "the tensors end at byte 24 of the data, the file holds 32"),
    (_container({"__metadata__": {"format": 1}}, b""), "__metadata__ must map strings to strings"),
])
def test_corrupt_and_truncated_files_raise_naming_the_file(tmp_path, content, problem):
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="model.safetensors is not a readable safetensors file") as error:
        load_checkpoint(str(tmp_path))
    assert problem in str(error.value)


def test_a_key_twice_in_the_header_is_refused(tmp_path):
    raw = b'{"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, "w": {"dtype": "U8", "shape": [1], ' \
          b'"data_offsets": [0, 1]}}'
    path = tmp_path / "model.safetensors"
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"\x07")
    with pytest.raises(CheckpointError, match="names 'w' twice"):
        read_safetensors(str(path))


def test_released_pages_read_back_from_the_file(tmp_path):
    big = np.arange(3 * 4096, dtype=np.float32).reshape(3, 4096)  # several pages
    save_state_dict({"big": big, "small": np.ones(3, np.float32)}, str(tmp_path))
    state = load_checkpoint(str(tmp_path)).state
    assert np.array_equal(state["big"], big)
    release_pages(state["big"])
    release_pages(state["small"])
    release_pages(np.ones(5))  # not mapped: nothing to give back
    assert np.array_equal(state["big"], big) and np.array_equal(state["small"], np.ones(3, np.float32))
