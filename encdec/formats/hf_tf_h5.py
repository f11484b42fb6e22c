"""Hugging Face ``tf_model.h5`` files (the reference's TF classes) <-> canonical tensors.

numpy + h5py only: no TensorFlow import. Layout (hf_behaviour.md 3.2-3.3):

* single file: root attr ``layer_names`` lists top-level Keras layers; each group's attr
  ``weight_names`` lists full variable names, ``<model name>/<path>:0``, and the dataset sits at
  ``<layer>/<full name>``. The model name (``tf_encoder_decoder_model_1``) depends on the process
  and is dropped.
* sharded (``tf_model-0000k-of-0000N.h5`` + ``tf_model.h5.index.json``): the root attr
  ``layer_names`` lists already-stripped names, which are the dataset paths.

A stripped name becomes canonical through the ordered, anchored rules of ``NAME_RULES`` (each
with its inverse, so ``write_tf_h5`` is derived from the same table), then the per-kind leaf
table of ``encdec.naming.layout`` (rename + transpose) and ``SHAPE_RULES``. Conversion is total:
a dataset no rule places raises, naming file and key; duplicates must agree; shapes are asserted.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from encdec.files import TF_WEIGHTS_NAME, CheckpointError, write_sharded
from encdec.formats.safetensors import read_safetensors, save_state_dict
from encdec.naming.layout import LEAF_RULES, from_framework, to_framework
from encdec.naming.schema import CONV1D, ParamSpec, Schema
from encdec.registry import architecture, records


class TFH5Error(CheckpointError):
    """A ``tf_model.h5`` that cannot be mapped; the message names file and key."""


# --------------------------------------------------------------------------------------------
# Rules


@dataclasses.dataclass(frozen=True)
class Rename:
    """An anchored regex rewrite on ``/``-joined names, with its inverse.

    ``when`` names the schema situation the rule applies to (see ``_situation``): ``always``,
    ``composite`` (an encoder-decoder) or ``base`` (a standalone base model without the
    reference's MainLayer level).
    """

    tf_pattern: str
    canonical: str
    canonical_pattern: str
    tf: str
    when: str = "always"
    why: str = ""

    def to_canonical(self, name: str) -> str:
        return re.sub(self.tf_pattern, self.canonical, name)

    def to_tf(self, name: str) -> str:
        return re.sub(self.canonical_pattern, self.tf, name)


# Main-layer names of the reference's TF classes (``TFBertModel.bert``, ``TFGPT2Model.transformer``):
# the PyTorch base-model prefixes, read from the architecture records.
_MAIN = "|".join(sorted({record.base_model_prefix for record in records()}))

NAME_RULES: List[Rename] = [
    Rename(r"(?<=/)(?P<attr>[A-Za-z]\w*)_\._(?P<i>\d+)(?=/|$)", r"\g<attr>/\g<i>",
           r"(?<=/)(?P<attr>[A-Za-z]\w*)/(?P<i>\d+)(?=/|$)", r"\g<attr>_._\g<i>",
           why="list items: Keras names `layer_._0`, PyTorch `layer.0`"),
    *[Rename(rf"(^|(?<=/)){re.escape(tf_name)}(?=/|$)", attr, rf"(^|(?<=/)){re.escape(attr)}(?=/|$)", tf_name,
             why=f"the reference's TF {record.model_type} names its `{attr}` layer `{tf_name}`")
      for record in records() for attr, tf_name in record.tf_layer_names.items()],
    Rename(rf"^encoder/(?P<main>{_MAIN})/", "encoder/", r"^encoder/", r"encoder/{main}/", when="composite",
           why="TFEncoderDecoderModel's encoder is a TFBertModel with a MainLayer level; PyTorch's has none"),
    Rename(rf"^(?P<main>{_MAIN})/", "", r"^", "{main}/", when="base",
           why="a standalone TF base model has the MainLayer level; the PyTorch base model has none"),
    Rename(r"(?<=word_embeddings/)weight$", "embeddings", r"(?<=word_embeddings/)embeddings$", "weight",
           why="TF BERT stores its word embeddings as `weight`, every other Keras embedding as `embeddings`"),
]

# (kind, leaf): (tf shape from canonical shape, why)
SHAPE_RULES = {
    (CONV1D, "bias"): (lambda shape: (1,) + tuple(shape), "TF GPT-2 Conv1D keeps its bias as (1, n)"),
}

# Tied canonical names the reference's TF classes have no variable for (they reuse the owner).
WRITE_IGNORED = [(re.compile(pattern), why) for record in records() for pattern, why in record.tf_reused]


def _situation(schema: Schema) -> str:
    names = schema.names()
    if any(n.startswith("encoder.") for n in names) and any(n.startswith("decoder.") for n in names):
        return "composite"
    mains = _MAIN.split("|")
    if any(n.split(".", 1)[0] in mains for n in names):
        return "head"  # already has the main level (`bert.`, `transformer.`)
    return "base"


def _module_kinds(schema: Schema) -> Dict[str, str]:
    return {spec.name.rsplit(".", 1)[0]: spec.kind for spec in schema}


# --------------------------------------------------------------------------------------------
# Reading


def _iter_h5(file: str) -> Iterator[Tuple[str, np.ndarray]]:
    """(stripped name without ``:0``, array) for every weight in one h5 file."""
    import h5py

    try:
        h5 = h5py.File(file, "r")
    except OSError as e:
        raise TFH5Error(f"{file} is not a readable HDF5 file (truncated or corrupt?): {e}") from None
    with h5:
        layer_names = _load_attr(h5, "layer_names")
        if layer_names is None:
            raise TFH5Error(f"{file} has no `layer_names` attribute: not a Keras/HF tf_model.h5")
        for layer in layer_names:
            obj = h5[layer]
            if hasattr(obj, "shape"):  # sharded file: the name is already stripped
                yield _strip_suffix(layer), np.asarray(obj)
                continue
            for weight_name in _load_attr(obj, "weight_names") or []:
                # The first level is the Keras model's instance name (`tf_encoder_decoder_model_1`).
                stripped = weight_name.split("/", 1)[1] if "/" in weight_name else weight_name
                yield _strip_suffix(stripped), np.asarray(obj[weight_name])


# HDF5 object headers hold at most 64 KiB: Keras splits a long name list into `name0`, `name1`, ...
HDF5_OBJECT_HEADER_LIMIT = 64512


def _load_attr(group, name: str) -> Optional[List[str]]:
    """``load_attributes_from_hdf5_group``: a name list, whole or in numbered chunks."""
    if name in group.attrs:
        return _strings(group.attrs[name])
    if f"{name}0" not in group.attrs:
        return None
    values, i = [], 0
    while f"{name}{i}" in group.attrs:
        values += _strings(group.attrs[f"{name}{i}"])
        i += 1
    return values


def _save_attr(group, name: str, values: List[str]) -> None:
    """``save_attributes_to_hdf5_group``: chunked when the encoded list passes the header limit."""
    data = np.asarray([v.encode("utf8") for v in values])
    chunks = 1
    while data.nbytes / chunks > HDF5_OBJECT_HEADER_LIMIT:
        chunks += 1
    if chunks == 1:
        group.attrs[name] = data
        return
    for i, part in enumerate(np.array_split(data, chunks)):
        group.attrs[f"{name}{i}"] = part


def _strings(values: Iterable) -> List[str]:
    return [v.decode("utf8") if isinstance(v, bytes) else str(v) for v in values]


def _strip_suffix(name: str) -> str:
    return re.sub(r":\d+$", "", name)


def tf_name_to_canonical(name: str, schema: Schema, situation: Optional[str] = None) -> Tuple[str, str]:
    """(canonical module path, TF leaf) of a stripped h5 name, e.g.
    ``encoder/bert/encoder/layer_._0/attention/self/query/kernel`` ->
    (``encoder.encoder.layer.0.attention.self.query``, ``kernel``)."""
    situation = situation or _situation(schema)
    for rule in NAME_RULES:
        if rule.when in ("always", situation):
            name = rule.to_canonical(name)
    module, _, leaf = name.rpartition("/")
    return module.replace("/", "."), leaf


def read_tf_h5(files: Sequence[str], schema: Schema) -> Dict[str, np.ndarray]:
    """Canonical name -> canonical array for every weight in the given h5 file(s)."""
    return tf_entries_to_canonical(((file, name, array) for file in files for name, array in _iter_h5(file)), schema)


def read_tf_safetensors(files: Sequence[str], schema: Schema) -> Dict[str, np.ndarray]:
    """The ``model.safetensors`` written by the reference's TF classes (``safe_serialization=True``,
    metadata ``format: tf``): keys are the stripped h5 names with ``:0``
    (``decoder/bert/embeddings/LayerNorm/beta:0``), arrays in Keras layout. Same rules as h5."""
    def entries():
        for file in files:
            state, metadata = read_safetensors(file)
            written_by = metadata.get("format")
            if written_by != "tf":
                raise TFH5Error(f"{file}: safetensors metadata format={written_by!r}, expected 'tf'; keys {sorted(state)[:3]}")
            for key, array in state.items():
                yield file, _strip_suffix(key), array

    return tf_entries_to_canonical(entries(), schema)


def tf_state_to_canonical(state: Dict[str, np.ndarray], schema: Schema, source: str = "") -> Dict[str, np.ndarray]:
    """TF-named arrays (stripped names, ``:0`` optional) already in memory -> canonical arrays."""
    return tf_entries_to_canonical(((source, _strip_suffix(k), v) for k, v in state.items()), schema)


def tf_entries_to_canonical(entries: Iterable[Tuple[str, str, np.ndarray]], schema: Schema) -> Dict[str, np.ndarray]:
    """(file, stripped TF name, Keras array) -> canonical name and array. Total: a name no rule
    places raises naming file and key; duplicates must agree; shapes are asserted."""
    situation = _situation(schema)
    kinds = _module_kinds(schema)
    out: Dict[str, np.ndarray] = {}
    for file, tf_name, array in entries:
        module, leaf = tf_name_to_canonical(tf_name, schema, situation)
        if module not in kinds and situation == "head":
            # a schema with both heads (``encdec.loading.reading_schema``) reads a base model's file
            # too, whose MainLayer level (`bert/pooler/...`) names what only the base model has
            module, leaf = tf_name_to_canonical(tf_name, schema, "base")
        kind = kinds.get(module)
        if kind is None:
            raise TFH5Error(f"{file}: key {tf_name!r} (-> {module}.{leaf}) matches no weight of the model")
        pt_leaf = _pt_leaf(kind, leaf)
        name = f"{module}.{pt_leaf}"
        if pt_leaf is None or name not in schema:
            raise TFH5Error(f"{file}: key {tf_name!r} maps to {module}.{pt_leaf or leaf}, which the model does not have")
        shape_rule = SHAPE_RULES.get((kind, pt_leaf))
        if shape_rule is not None and tuple(array.shape) == shape_rule[0](schema[name].shape):
            array = np.reshape(array, schema[name].shape)
        try:
            _, canonical = from_framework(kind, leaf, array, "tf")
        except ValueError as e:
            raise TFH5Error(f"{file}: key {tf_name!r}: {e}") from None
        expected = schema[name].shape
        if tuple(canonical.shape) != tuple(expected):
            raise TFH5Error(f"{file}: key {tf_name!r} has shape {array.shape}; {name} needs {expected}")
        if name in out:
            # TFBertLMHeadModel's head group repeats the tied embeddings: the copies must agree.
            if not np.array_equal(out[name], canonical):
                raise TFH5Error(f"{file}: key {tf_name!r} appears twice with different values ({name})")
            continue
        out[name] = canonical
    return out


def _pt_leaf(kind: str, tf_leaf: str) -> Optional[str]:
    for (k, pt_leaf), per_fw in LEAF_RULES.items():
        if k == kind and per_fw["tf"][0] == tf_leaf:
            return pt_leaf
    return None


# --------------------------------------------------------------------------------------------
# Writing


def canonical_to_tf_name(spec: ParamSpec, schema: Schema, main: str, situation: Optional[str] = None) -> str:
    """The stripped h5 name (without ``:0``) of a canonical parameter."""
    situation = situation or _situation(schema)
    leaf, _ = to_framework(spec, np.zeros(spec.shape, np.float32), "tf")
    name = spec.name.rsplit(".", 1)[0].replace(".", "/") + "/" + leaf
    for rule in reversed(NAME_RULES):
        if rule.when in ("always", situation):
            name = rule.to_tf(name).replace("{main}", main)
    return name


def tf_weights(state: Dict[str, np.ndarray], schema: Schema, main_layer: Optional[str] = None,
               dropped: Optional[List[str]] = None) -> Iterator[Tuple[str, str, np.ndarray]]:
    """(canonical name, stripped TF name without ``:0``, Keras-layout array) for every variable
    the reference's TF class has, in schema order. ``state`` holds canonical tensors (owned ones
    suffice: tied names are filled from their owners). Tied names TF has no variable for are
    appended to ``dropped``. ``main_layer``: the reference's MainLayer of the (encoder) base
    model, ``bert`` or ``transformer``; guessed from the names when omitted."""
    situation = _situation(schema)
    main = main_layer or _guess_main(schema, situation)
    for spec in schema:
        if spec.tied_to is not None and any(p.search(spec.name) for p, _ in WRITE_IGNORED):
            if dropped is not None:
                dropped.append(spec.name)
            continue
        source = spec.tied_to if spec.name not in state and spec.tied_to else spec.name
        if source not in state:
            raise TFH5Error(f"cannot write TF weights: state has no tensor for {spec.name!r}")
        _, array = to_framework(spec, np.asarray(state[source]), "tf")
        shape_rule = SHAPE_RULES.get((spec.kind, spec.leaf))
        if shape_rule is not None:
            array = np.reshape(array, shape_rule[0](array.shape))
        yield spec.name, canonical_to_tf_name(spec, schema, main, situation), np.ascontiguousarray(array)


def write_tf_h5(state: Dict[str, np.ndarray], schema: Schema, path: str, main_layer: Optional[str] = None,
                model_name: Optional[str] = None, max_shard_size=None,
                progress: Optional[Callable[[Iterable], Iterable]] = None) -> List[str]:
    """Write a ``tf_model.h5`` that the reference's TF classes load; return the dropped canonical names.

    ``path`` is the file (or a folder to write ``tf_model.h5`` in). With ``max_shard_size`` and a
    larger checkpoint, write what the reference's ``save_pretrained(max_shard_size=...)`` writes:
    ``tf_model-0000k-of-0000N.h5`` shards whose datasets are the stripped names (root attr
    ``layer_names`` lists them, sorted) and ``tf_model.h5.index.json`` (``metadata.total_size``,
    ``weight_map`` keyed by the full variable names, model name included). ``progress`` wraps the
    per-tensor iterator (a tqdm bar). Every file is written to a temporary name and renamed.
    """
    import h5py

    if os.path.isdir(path) or path.endswith(os.sep):
        path = os.path.join(path, TF_WEIGHTS_NAME)
    situation = _situation(schema)
    model_name = model_name or ("tf_encoder_decoder_model" if situation == "composite" else "tf_model")
    dropped: List[str] = []
    weights = tf_weights(state, schema, main_layer, dropped)
    entries = [(tf_name + ":0", array) for _, tf_name, array in (progress(weights) if progress else weights)]

    def write_single(file: str, entries: List[Tuple[str, np.ndarray]]) -> None:
        groups: Dict[str, List[Tuple[str, np.ndarray]]] = {}
        for name, array in entries:
            groups.setdefault(name.split("/", 1)[0], []).append((f"{model_name}/{name}", array))
        with h5py.File(file, "w") as h5:
            h5.attrs["backend"] = "tensorflow"
            h5.attrs["keras_version"] = "2.21.0"
            _save_attr(h5, "layer_names", list(groups))
            for layer, weights in groups.items():
                group = h5.create_group(layer)
                _save_attr(group, "weight_names", [n for n, _ in weights])
                for full_name, array in weights:
                    group.create_dataset(full_name, data=array)

    def write_shard(file: str, entries: List[Tuple[str, np.ndarray]]) -> None:
        with h5py.File(file, "w") as h5:
            layers = []
            for name, array in sorted(entries, key=lambda item: item[0]):
                h5.create_dataset(name, data=array)
                layers.append(name)
            _save_attr(h5, "layer_names", layers)

    # Shards are filled greedily in variable order, like the reference's `tf_shard_checkpoint`.
    write_sharded(os.path.dirname(os.path.abspath(path)), os.path.basename(path), entries, write_shard,
                  max_shard_size=max_shard_size, index_key=lambda name: f"{model_name}/{name}",
                  write_single=write_single)
    return dropped


def write_tf_safetensors(state: Dict[str, np.ndarray], schema: Schema, directory: str, max_shard_size="5GB",
                         main_layer: Optional[str] = None,
                         progress: Optional[Callable[[Iterable], Iterable]] = None) -> List[str]:
    """Write what the reference's TF ``save_pretrained(safe_serialization=True)`` writes:
    ``model.safetensors`` with metadata ``format: tf`` and keys ``<stripped name>:0`` in Keras
    layout (sharded with ``model.safetensors.index.json`` past ``max_shard_size``). Returns the
    dropped canonical names."""
    dropped: List[str] = []
    weights = tf_weights(state, schema, main_layer, dropped)
    tensors = {tf_name + ":0": array for _, tf_name, array in (progress(weights) if progress else weights)}
    save_state_dict(tensors, directory, max_shard_size=max_shard_size, metadata={"format": "tf"})
    return dropped


def tf_main_layer(config: Any) -> str:
    """The reference's MainLayer name of a model's (encoder) base model, from its record: ``bert``,
    ``electra``, ``roberta``, ``transformer``. The names alone cannot tell BERT, ELECTRA and RoBERTa
    apart (the same word-embedding name), so writers pass this whenever they have the config."""
    encoder = getattr(config, "encoder", None)
    return architecture(encoder if encoder is not None else config).base_model_prefix


def _guess_main(schema: Schema, situation: str) -> str:
    names = set(schema.names())
    prefix = "encoder." if situation == "composite" else ""
    for record in records():
        if {prefix + record.word_embeddings, f"{prefix}{record.base_model_prefix}.{record.word_embeddings}"} & names:
            return record.base_model_prefix
    raise TFH5Error(f"no registered architecture has the word embeddings of this model (names like {sorted(names)[:3]})")
