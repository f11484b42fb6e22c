"""``pytorch_model.bin`` files: the reference's PyTorch pickles, single or sharded.

Read through ``torch.load(weights_only=True)``: a pickle that needs more than tensors (arbitrary
code) is refused. torch is imported only when such a file is read or written.
"""

from __future__ import annotations

from typing import Any, Dict, List

import numpy as np

from encdec.files import PT_WEIGHTS_NAME, CheckpointError, write_sharded


def _torch(file: str):
    try:
        import torch
    except ImportError:
        raise ImportError(
            f"{file} is a PyTorch pickle; reading or writing it needs torch (pip install 'encdec[torch]'), "
            "or use model.safetensors"
        ) from None
    return torch


def read_torch_bin(file: str) -> Dict[str, np.ndarray]:
    """A ``pytorch_model.bin`` through ``torch.load(weights_only=True)``: tensors only, no code."""
    torch = _torch(file)
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


def save_torch_bin(state: Dict[str, Any], save_directory: str, max_shard_size: Any = None) -> List[str]:
    """Write ``state`` (numpy arrays or tensors) as the reference's ``save_pretrained(safe_serialization=False)``
    does: ``pytorch_model.bin``, every key given (tied ones included), sharded with
    ``pytorch_model.bin.index.json`` past ``max_shard_size``. Returns the file names written."""
    torch = _torch(PT_WEIGHTS_NAME)
    tensors = [(k, v if isinstance(v, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(v))) for k, v in state.items()]
    return write_sharded(
        save_directory, PT_WEIGHTS_NAME, tensors, lambda path, shard: torch.save(dict(shard), path),
        max_shard_size=max_shard_size, nbytes=lambda t: t.numel() * t.element_size(),
    )
