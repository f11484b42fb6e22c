"""Convert a checkpoint folder (or hub id) to another framework's native files.

Reading goes through ``encdec.checkpoint.load_checkpoint`` (every layout: ``model.safetensors``
of format pt / tf / flax, ``pytorch_model.bin``, ``tf_model.h5``, ``flax_model.msgpack``, each
single or sharded), which returns canonical (PyTorch-named, PyTorch-layout) numpy tensors.
Writing is one entry per target layout in ``WRITERS``; the name and layout rules are those of
``encdec.formats`` (one reversible rule list per external format), never a second table.
Only the format's own reader is needed (numpy, safetensors, h5py, msgpack; torch for ``.bin``).

Conversion is total: every schema parameter must come from the source (missing or unexpected
keys raise, naming the file and keys); buffers the checkpoint carries (``position_ids``) are
dropped and listed with the reason in ``ConversionResult.dropped``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np

from encdec.checkpoint import align_to_schema, load_checkpoint, owned_only
from encdec.files import parse_size
from encdec.formats.safetensors import save_state_dict
from encdec.configuration import AutoConfig, EncoderDecoderConfig
from encdec.naming.schema import Schema, schema_for
from encdec.registry import DECODER, architecture

FRAMEWORKS = ("pt", "tf", "flax")
# `to` -> (default format, formats it accepts)
TARGETS: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    "pt": ("safetensors", ("safetensors", "bin")),
    "tf": ("h5", ("h5", "safetensors")),
    "flax": ("msgpack", ("msgpack", "safetensors")),
    "safetensors": ("safetensors", ("safetensors",)),  # canonical model.safetensors, any framework loads it
}
# The framework a checkpoint's native file belongs to (Checkpoint.format -> framework).
SOURCE_FRAMEWORK = {"safetensors": "pt", "pt": "pt", "tf": "tf", "flax": "flax"}
# Files copied unchanged next to the weights.
SIDE_FILES = (
    "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
    "vocab.txt", "vocab.json", "merges.txt", "added_tokens.json", "spiece.model", "sentencepiece.bpe.model",
)
WEIGHT_FILE_PATTERN = r"(model|pytorch_model|tf_model|flax_model)(-\d{5}-of-\d{5})?\.(safetensors|bin|h5|msgpack)(\.index\.json)?"

Progress = Callable[[Iterable, int], Iterable]


class ConversionError(ValueError):
    """A conversion that cannot be done as asked; the message says why and what to do."""


@dataclasses.dataclass
class ConversionResult:
    """What ``convert`` did.

    Args:
        source_format: the layout read (``safetensors``, ``pt`` (bin), ``tf``, ``flax``).
        source_framework / target_framework: the frameworks the files belong to (``--verify`` runs these).
        files: the weight files written (paths).
        copied: the side files copied (config, generation config, tokenizer).
        dropped: checkpoint keys not converted, with the reason (buffers, tied names the format has no slot for).
        num_tensors: the canonical parameters converted.
        verify: per-output max abs differences when ``verify=True``.
    """

    source: str
    destination: str
    source_format: str
    source_framework: str
    target_framework: str
    target_format: str
    files: List[str]
    copied: List[str]
    dropped: Dict[str, str]
    num_tensors: int
    verify: Optional[Dict[str, float]] = None


def _candidate_schemas(config) -> List[Schema]:
    """The schemas a folder of ``config`` may hold: the composite, or a stand-alone model's base
    model and (when its record can decode) its causal LM."""
    if isinstance(config, EncoderDecoderConfig):
        return [schema_for(config)]
    candidates = [schema_for(config, head="base")]
    if DECODER in architecture(config).roles:
        candidates.append(schema_for(config, head="causal_lm"))
    return candidates


def read_canonical(src: str, prefer: Optional[str] = None, **hub_kwargs: Any):
    """(config, schema, checkpoint, every schema tensor canonical, dropped) of ``src``; strict.

    A stand-alone model's head (base model or causal LM) is the one whose names the checkpoint holds."""
    config = AutoConfig.from_pretrained(src, **hub_kwargs)
    candidates = _candidate_schemas(config)
    reading = candidates[0]
    for other in candidates[1:]:
        reading = reading.merge(other)
    checkpoint = load_checkpoint(src, schema=reading, prefer=prefer, **hub_kwargs)
    prefix = None if isinstance(config, EncoderDecoderConfig) else architecture(config).base_model_prefix
    fits = [align_to_schema(checkpoint.state, candidate, source=checkpoint.source, base_model_prefix=prefix)
            for candidate in candidates]
    best = max(range(len(candidates)), key=lambda i: len(fits[i].tensors) - len(fits[i].unexpected))
    schema, aligned = candidates[best], fits[best]
    aligned.raise_for_errors()  # no missing, no unexpected, no mismatched key: conversion is total
    state = {spec.name: aligned.tensors[spec.name] for spec in schema}
    return config, schema, checkpoint, state, dict(aligned.ignored)


def _identity(items: Iterable, total: int) -> Iterable:
    return items


def _wrap(progress: Progress, total: int) -> Callable[[Iterable], Iterable]:
    return lambda items: progress(items, total)


# --------------------------------------------------------------------------------------------
# Writers: (to, format) -> fn(state, schema, dst, max_shard_size, progress) -> (files, dropped)


def _write_canonical(state, schema, dst, max_shard_size, progress, config=None):
    owned = owned_only(state, schema)
    tensors = dict(progress(owned.items(), len(owned)))
    names = save_state_dict(tensors, dst, max_shard_size=max_shard_size)
    ties = schema.ties()
    return [os.path.join(dst, n) for n in names], {n: f"tied to {ties[n]} (model.safetensors holds owners only)" for n in ties}


def _write_bin(state, schema, dst, max_shard_size, progress, config=None):
    """``pytorch_model.bin`` as the reference's ``save_pretrained(safe_serialization=False)``
    writes it: every state-dict key, tied ones included; sharded with an index past the limit."""
    try:
        import torch
    except ImportError:
        raise ConversionError("writing pytorch_model.bin needs torch (pip install 'encdec[torch]'); "
                              "or write model.safetensors (--format safetensors)") from None
    from encdec.formats.torch_bin import save_torch_bin

    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in progress(state.items(), len(state))}
    return [os.path.join(dst, n) for n in save_torch_bin(tensors, dst, max_shard_size=max_shard_size)], {}


def _write_tf_h5(state, schema, dst, max_shard_size, progress, config=None):
    from encdec.formats.hf_tf_h5 import tf_main_layer, write_tf_h5

    dropped = write_tf_h5(state, schema, os.path.join(dst, "tf_model.h5"), max_shard_size=max_shard_size,
                          main_layer=None if config is None else tf_main_layer(config),
                          progress=_wrap(progress, _tf_count(schema)))
    return _listed(dst, "tf_model"), {n: "TF reuses the owner's variable (tied)" for n in dropped}


def _write_tf_safetensors(state, schema, dst, max_shard_size, progress, config=None):
    from encdec.formats.hf_tf_h5 import tf_main_layer, write_tf_safetensors

    dropped = write_tf_safetensors(state, schema, dst, max_shard_size=max_shard_size,
                                   main_layer=None if config is None else tf_main_layer(config),
                                   progress=_wrap(progress, _tf_count(schema)))
    return _listed(dst, "model"), {n: "TF reuses the owner's variable (tied)" for n in dropped}


def _write_flax_msgpack(state, schema, dst, max_shard_size, progress, config=None):
    from encdec.formats.hf_flax_msgpack import write_flax_msgpack

    files = write_flax_msgpack(state, schema, dst, max_shard_size=max_shard_size, progress=_wrap(progress, _flax_count(schema)))
    return files, _flax_dropped(schema)


def _write_flax_safetensors(state, schema, dst, max_shard_size, progress, config=None):
    from encdec.formats.hf_flax_msgpack import write_flax_safetensors

    total = sum(np.asarray(state[s.name]).nbytes for s in schema.owned())
    if total > parse_size(max_shard_size):
        raise ConversionError(
            f"the checkpoint ({total} bytes) is larger than max_shard_size={max_shard_size!r}, but Flax-format "
            "safetensors cannot be sharded (the reference's Flax classes cannot read sharded safetensors); "
            "write flax_model.msgpack instead (--format msgpack), which shards"
        )
    names = write_flax_safetensors(state, schema, dst, progress=_wrap(progress, _flax_count(schema)))
    return [os.path.join(dst, n) for n in names], _flax_dropped(schema)


def _tf_count(schema: Schema) -> int:
    from encdec.formats.hf_tf_h5 import WRITE_IGNORED

    return sum(1 for s in schema if not (s.tied_to and any(p.search(s.name) for p, _ in WRITE_IGNORED)))


def _flax_count(schema: Schema) -> int:
    return sum(1 for s in schema if s.tied_to is None or s.name.startswith("encoder."))


def _flax_dropped(schema: Schema) -> Dict[str, str]:
    return {n: "Flax computes it from the owner (tied)" for n in schema.ties() if not n.startswith("encoder.")}


def _listed(dst: str, stem: str) -> List[str]:
    import re

    pattern = re.compile(WEIGHT_FILE_PATTERN)
    return sorted(os.path.join(dst, f) for f in os.listdir(dst) if pattern.fullmatch(f) and f.startswith(stem))


WRITERS = {
    ("pt", "safetensors"): _write_canonical,
    ("safetensors", "safetensors"): _write_canonical,
    ("pt", "bin"): _write_bin,
    ("tf", "h5"): _write_tf_h5,
    ("tf", "safetensors"): _write_tf_safetensors,
    ("flax", "msgpack"): _write_flax_msgpack,
    ("flax", "safetensors"): _write_flax_safetensors,
}
TARGET_FRAMEWORK = {"pt": "pt", "safetensors": "pt", "tf": "tf", "flax": "flax"}


# --------------------------------------------------------------------------------------------


def convert(
    src: str,
    dst: str,
    to: str = "pt",
    format: Optional[str] = None,
    max_shard_size: Any = "5GB",
    verify: bool = False,
    tolerance: float = 1e-5,
    prefer: Optional[str] = None,
    progress: Optional[Progress] = None,
    **hub_kwargs: Any,
) -> ConversionResult:
    """Convert the checkpoint at ``src`` (folder or hub id) into folder ``dst``.

    Args:
        to: ``pt`` (``model.safetensors`` or ``pytorch_model.bin``), ``tf`` (``tf_model.h5`` or
            TF-format safetensors), ``flax`` (``flax_model.msgpack`` or Flax-format safetensors), or
            ``safetensors`` (canonical ``model.safetensors``, which every framework here loads).
        format: ``safetensors`` | ``bin`` | ``h5`` | ``msgpack``; the default is the target's native file.
        max_shard_size: shard past this size (``"5GB"``, ``"200MB"``, bytes), with the index file the
            reference writes.
        verify: load source and result in their frameworks, run a fixed input through both and
            record the max abs difference per output; raise ``VerificationError`` above ``tolerance``.
        prefer: which layout of ``src`` to read when it has several (``pt``, ``tf``, ``flax``).
        progress: ``progress(iterable, total) -> iterable`` wrapped around the per-tensor loop (a tqdm bar).
    Returns:
        a ``ConversionResult``. ``config.json``, ``generation_config.json`` and tokenizer files are copied.
    """
    if to not in TARGETS:
        raise ConversionError(f"to must be one of {sorted(TARGETS)}, got {to!r}")
    default, accepted = TARGETS[to]
    format = format or default
    if format not in accepted:
        raise ConversionError(f"--to {to} writes {' or '.join(accepted)}, not {format!r}")
    parse_size(max_shard_size)
    progress = progress or _identity
    if os.path.isdir(src) and os.path.exists(dst) and os.path.samefile(src, dst):
        raise ConversionError(f"destination {dst} is the source folder: choose another folder")
    _refuse_other_layouts(dst, to, format)

    config, schema, checkpoint, state, dropped = read_canonical(src, prefer=prefer, **hub_kwargs)
    os.makedirs(dst, exist_ok=True)
    files, not_written = WRITERS[(to, format)](state, schema, dst, max_shard_size, progress, config=config)
    dropped.update(not_written)
    copied = _copy_side_files(src, dst, config, hub_kwargs)
    result = ConversionResult(
        source=str(src), destination=str(dst), source_format=checkpoint.format,
        source_framework=SOURCE_FRAMEWORK[checkpoint.format], target_framework=TARGET_FRAMEWORK[to],
        target_format=format, files=files, copied=copied, dropped=dropped, num_tensors=len(schema.owned()),
    )
    if verify:
        from conversion.verify import verify_conversion

        result.verify = verify_conversion(src, dst, result.source_framework, result.target_framework,
                                          tolerance=tolerance, prefer=prefer)
    return result


def _refuse_other_layouts(dst: str, to: str, format: str) -> None:
    """A folder holding weights of another layout would load those first: refuse to mix."""
    import re

    if not os.path.isdir(dst):
        return
    ours = {
        ("pt", "safetensors"): "model", ("safetensors", "safetensors"): "model", ("tf", "safetensors"): "model",
        ("flax", "safetensors"): "model", ("pt", "bin"): "pytorch_model", ("tf", "h5"): "tf_model",
        ("flax", "msgpack"): "flax_model",
    }[(to, format)]
    pattern = re.compile(WEIGHT_FILE_PATTERN)
    others = sorted(f for f in os.listdir(dst) if pattern.fullmatch(f) and pattern.fullmatch(f).group(1) != ours)
    if others:
        raise ConversionError(
            f"{dst} already holds weights of another layout ({', '.join(others)}); loaders would pick "
            "one of them, not the converted files. Choose an empty folder or remove them"
        )


def _copy_side_files(src: str, dst: str, config, hub_kwargs: Dict[str, Any]) -> List[str]:
    from encdec.hub import resolve_file_optional

    copied = []
    for name in SIDE_FILES:
        found = resolve_file_optional(src, name, **hub_kwargs)
        if found is not None:
            target = os.path.join(dst, name)
            if not (os.path.exists(target) and os.path.samefile(found, target)):
                shutil.copyfile(found, target)
            copied.append(name)
    if "config.json" not in copied:  # e.g. a config given by hub kwargs only: write what was read
        config.save_pretrained(dst)
        copied.append("config.json")
    return copied


__all__ = ["convert", "ConversionError", "ConversionResult", "TARGETS", "WRITERS", "read_canonical"]
