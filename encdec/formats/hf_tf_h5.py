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
import tempfile
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from encdec.naming.layout import LEAF_RULES, from_framework, to_framework
from encdec.naming.schema import CONV1D, EMBEDDING, ARCHITECTURES, ParamSpec, Schema

TF_WEIGHTS_NAME = "tf_model.h5"


class TFH5Error(ValueError):
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
# the PyTorch base-model prefixes, hence read from the schema registry.
_MAIN = "|".join(sorted({a.base_model_prefix for a in ARCHITECTURES.values()}))

NAME_RULES: List[Rename] = [
    Rename(r"(?<=/)(?P<attr>[A-Za-z]\w*)_\._(?P<i>\d+)(?=/|$)", r"\g<attr>/\g<i>",
           r"(?<=/)(?P<attr>[A-Za-z]\w*)/(?P<i>\d+)(?=/|$)", r"\g<attr>_._\g<i>",
           why="list items: Keras names `layer_._0`, PyTorch `layer.0`"),
    Rename(r"(^|(?<=/))mlm___cls(?=/|$)", "cls", r"(^|(?<=/))cls(?=/|$)", "mlm___cls",
           why="TFBertLMHeadModel's head layer is named `mlm___cls`, the PyTorch attribute `cls`"),
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
WRITE_IGNORED = [
    (re.compile(r"(^|\.)cls\.predictions\.decoder\.(weight|bias)$"), "TF BERT's LM head reuses the word embeddings and `predictions.bias`"),
    (re.compile(r"(^|\.)lm_head\.weight$"), "TF GPT-2 has no lm_head variable: it reuses `wte`"),
]


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
        if "layer_names" not in h5.attrs:
            raise TFH5Error(f"{file} has no `layer_names` attribute: not a Keras/HF tf_model.h5")
        for layer in _strings(h5.attrs["layer_names"]):
            obj = h5[layer]
            if hasattr(obj, "shape"):  # sharded file: the name is already stripped
                yield _strip_suffix(layer), np.asarray(obj)
                continue
            for weight_name in _strings(obj.attrs.get("weight_names", [])):
                # The first level is the Keras model's instance name (`tf_encoder_decoder_model_1`).
                stripped = weight_name.split("/", 1)[1] if "/" in weight_name else weight_name
                yield _strip_suffix(stripped), np.asarray(obj[weight_name])


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
    situation = _situation(schema)
    kinds = _module_kinds(schema)
    out: Dict[str, np.ndarray] = {}
    for file in files:
        for tf_name, array in _iter_h5(file):
            module, leaf = tf_name_to_canonical(tf_name, schema, situation)
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


def write_tf_h5(state: Dict[str, np.ndarray], schema: Schema, path: str, main_layer: Optional[str] = None,
                model_name: Optional[str] = None) -> List[str]:
    """Write ``path`` (a ``tf_model.h5``) that the reference's TF classes load.

    ``state`` holds canonical tensors (owned ones suffice: tied names are filled from their
    owners). ``main_layer`` is the reference's MainLayer of the (encoder) base model, ``bert`` or
    ``transformer``; guessed from the names when omitted. Returns the dropped canonical names.
    """
    import h5py

    situation = _situation(schema)
    main = main_layer or _guess_main(schema, situation)
    model_name = model_name or ("tf_encoder_decoder_model" if situation == "composite" else "tf_model")
    groups: Dict[str, List[Tuple[str, np.ndarray]]] = {}
    dropped = []
    for spec in schema:
        if spec.tied_to is not None and any(p.search(spec.name) for p, _ in WRITE_IGNORED):
            dropped.append(spec.name)
            continue
        source = spec.tied_to if spec.name not in state and spec.tied_to else spec.name
        if source not in state:
            raise TFH5Error(f"cannot write {path}: state has no tensor for {spec.name!r}")
        leaf, array = to_framework(spec, np.asarray(state[source]), "tf")
        shape_rule = SHAPE_RULES.get((spec.kind, spec.leaf))
        if shape_rule is not None:
            array = np.reshape(array, shape_rule[0](array.shape))
        tf_name = canonical_to_tf_name(spec, schema, main, situation)
        groups.setdefault(tf_name.split("/", 1)[0], []).append((f"{model_name}/{tf_name}:0", array))

    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".h5", dir=directory)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as h5:
            h5.attrs["backend"] = "tensorflow"
            h5.attrs["keras_version"] = "2.21.0"
            h5.attrs["layer_names"] = [n.encode("utf8") for n in groups]
            for layer, weights in groups.items():
                group = h5.create_group(layer)
                group.attrs["weight_names"] = [n.encode("utf8") for n, _ in weights]
                for full_name, array in weights:
                    group.create_dataset(full_name, data=array)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return dropped


def _guess_main(schema: Schema, situation: str) -> str:
    names = schema.names()
    prefix = "encoder." if situation == "composite" else ""
    if any(n.startswith(prefix + "wte.") for n in names):
        return ARCHITECTURES["gpt2"].base_model_prefix
    return ARCHITECTURES["bert"].base_model_prefix
