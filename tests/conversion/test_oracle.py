"""Compatibility with the reference (transformers 4.57.6), both ways: what ``convert`` writes loads
in the reference's PyTorch, TF and Flax classes with outputs equal within 1e-5; what the
reference writes (every layout) is read bit-exactly."""

import os

import numpy as np
import pytest

from conversion import convert, read_canonical
from encdec.checkpoint import owned_only
from encdec.formats.safetensors import save_state_dict
from encdec.naming.schema import schema_for
from encdec.testing import deterministic_state_dict, tiny_config, tiny_inputs

pytestmark = pytest.mark.oracle
TOL = 1e-5
ARCHS = ["bert2bert", "bert2gpt2_proj"]  # BERT and GPT-2 decoders (linear vs Conv1D, projection)


def _hf_config(config):
    transformers = pytest.importorskip("transformers")
    hf = transformers.EncoderDecoderConfig.from_dict(config.to_dict())
    hf.encoder._attn_implementation = hf.decoder._attn_implementation = "eager"
    return hf


def _max_diff(a, b) -> float:
    a = a.detach().numpy() if hasattr(a, "detach") else np.asarray(a)
    b = b.detach().numpy() if hasattr(b, "detach") else np.asarray(b)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """arch -> dict(config, schema, state, inputs, src (canonical folder), ref_logits, hf_pt folder)."""
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    cache = {}

    def get(arch):
        if arch not in cache:
            config = tiny_config(arch)
            schema = schema_for(config)
            state = deterministic_state_dict(schema, seed=1)
            inputs = {k: v for k, v in tiny_inputs(config).items() if k != "labels"}
            root = tmp_path_factory.mktemp(arch)
            config.save_pretrained(str(root / "src"))
            save_state_dict(owned_only(state, schema), str(root / "src"))
            model = transformers.EncoderDecoderModel(config=_hf_config(config)).eval()
            full = {s.name: torch.from_numpy(state[s.tied_to or s.name]) for s in schema}
            missing, unexpected = model.load_state_dict(full, strict=False)
            assert not missing and not unexpected
            with torch.no_grad():
                logits = model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).logits.numpy()
            model.save_pretrained(str(root / "hf_pt"))
            cache[arch] = dict(config=config, schema=schema, state=state, inputs=inputs, src=str(root / "src"),
                               ref_logits=logits, hf_pt=str(root / "hf_pt"), hf_model=model)
        return cache[arch]

    return get


# --------------------------------------------------------------------------------------------
# What we write loads in the reference


def _hf_pt_logits(folder, inputs):
    import torch
    import transformers

    model = transformers.EncoderDecoderModel.from_pretrained(folder, attn_implementation="eager").eval()
    with torch.no_grad():
        return model(**{k: torch.from_numpy(v) for k, v in inputs.items()}).logits


def _hf_tf_logits(folder, inputs):
    pytest.importorskip("tf_keras")
    import tensorflow as tf
    import transformers

    model = transformers.TFEncoderDecoderModel.from_pretrained(folder)
    return model(**{k: tf.constant(v) for k, v in inputs.items()}).logits.numpy()


def _hf_flax_logits(folder, inputs):
    pytest.importorskip("flax")
    import transformers

    model = transformers.FlaxEncoderDecoderModel.from_pretrained(folder)
    return model(**inputs).logits


# ELECTRA (embeddings_project, the generator head) in the reference's PyTorch classes. Its TF composites
# hold an ELECTRA encoder only and its Flax composite crashes (docs/architectures.md).
ELECTRA = ["electra2electra", "electra2gpt2_proj"]
# Encoders whose TF MainLayer is not `bert` though their word embeddings are named as BERT's: the
# writers take the name from the record (a wrong one makes the reference's TF re-initialise them).
TF_MAIN = ["electra2gpt2_proj", "roberta2gpt2"]
# (to, format, shard, reference loader, archs). The reference's sharded TF and msgpack loads cost
# ~10 s each on 2 cores: one architecture each, the GPT-2 one (Conv1D bias reshape, projection).
WRITTEN = [
    ("pt", "safetensors", None, _hf_pt_logits, ARCHS + ELECTRA),
    ("pt", "safetensors", "20KB", _hf_pt_logits, ARCHS),
    ("pt", "bin", None, _hf_pt_logits, ARCHS + ELECTRA),
    ("pt", "bin", "20KB", _hf_pt_logits, ARCHS),
    ("tf", "h5", None, _hf_tf_logits, ARCHS + TF_MAIN),
    ("tf", "h5", "20KB", _hf_tf_logits, ["bert2gpt2_proj"]),
    ("tf", "safetensors", None, _hf_tf_logits, ARCHS + TF_MAIN),
    ("flax", "msgpack", None, _hf_flax_logits, ARCHS),
    ("flax", "msgpack", "20KB", _hf_flax_logits, ["bert2gpt2_proj"]),
    ("flax", "safetensors", None, _hf_flax_logits, ARCHS),
]


@pytest.mark.parametrize("arch,to,fmt,shard,loader", [
    pytest.param(arch, to, fmt, shard, loader, id=f"{to}-{fmt}-{shard or 'single'}-{arch}")
    for to, fmt, shard, loader, archs in WRITTEN for arch in archs])
def test_what_we_write_loads_in_the_reference(case, tmp_path, arch, to, fmt, shard, loader):
    c = case(arch)
    convert(c["src"], str(tmp_path), to=to, format=fmt, max_shard_size=shard or "5GB")
    # A folder the reference reads as ours: its config carries the same ids.
    _hf_config(c["config"]).save_pretrained(str(tmp_path))
    assert _max_diff(loader(str(tmp_path), c["inputs"]), c["ref_logits"]) < TOL


# --------------------------------------------------------------------------------------------
# What the reference writes loads in ours


@pytest.fixture(scope="module")
def reference_folders(case, tmp_path_factory):
    """arch -> {layout name: folder the reference's own save_pretrained wrote}."""
    transformers = pytest.importorskip("transformers")
    cache = {}

    def get(arch):
        if arch not in cache:
            c = case(arch)
            root = tmp_path_factory.mktemp(arch + "_ref")
            folders = {"pt-safetensors": c["hf_pt"]}
            c["hf_model"].save_pretrained(str(root / "pt-bin"), safe_serialization=False)
            c["hf_model"].save_pretrained(str(root / "pt-bin-sharded"), safe_serialization=False, max_shard_size="20KB")
            folders.update({k: str(root / k) for k in ("pt-bin", "pt-bin-sharded")})
            try:
                import tf_keras  # noqa: F401

                tf_model = transformers.TFEncoderDecoderModel.from_pretrained(c["hf_pt"], from_pt=True)
                for name, kw in [("tf-h5", {}), ("tf-h5-sharded", {"max_shard_size": "20KB"}),
                                 ("tf-safetensors", {"safe_serialization": True})]:
                    tf_model.save_pretrained(str(root / name), **kw)
                    folders[name] = str(root / name)
            except ImportError:
                pass
            try:
                import flax  # noqa: F401

                flax_model = transformers.FlaxEncoderDecoderModel.from_pretrained(c["hf_pt"], from_pt=True)
                for name, kw in [("flax-msgpack", {}), ("flax-msgpack-sharded", {"max_shard_size": "20KB"}),
                                 ("flax-safetensors", {"safe_serialization": True})]:
                    flax_model.save_pretrained(str(root / name), **kw)
                    folders[name] = str(root / name)
            except ImportError:
                pass
            cache[arch] = folders
        return cache[arch]

    return get


REFERENCE_LAYOUTS = {  # layout -> (file that proves the layout, Checkpoint.format read)
    "pt-safetensors": ("model.safetensors", "safetensors"),
    "pt-bin": ("pytorch_model.bin", "pt"),
    "pt-bin-sharded": ("pytorch_model.bin.index.json", "pt"),
    "tf-h5": ("tf_model.h5", "tf"),
    "tf-h5-sharded": ("tf_model.h5.index.json", "tf"),
    "tf-safetensors": ("model.safetensors", "tf"),
    "flax-msgpack": ("flax_model.msgpack", "flax"),
    "flax-msgpack-sharded": ("flax_model.msgpack.index.json", "flax"),
    "flax-safetensors": ("model.safetensors", "flax"),
}


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("layout", list(REFERENCE_LAYOUTS))
def test_what_the_reference_writes_loads_in_ours(case, reference_folders, tmp_path, arch, layout):
    c = case(arch)
    folders = reference_folders(arch)
    if layout not in folders:
        pytest.skip(f"{layout}: the reference's framework is not installed")
    marker, fmt = REFERENCE_LAYOUTS[layout]
    assert os.path.exists(os.path.join(folders[layout], marker))
    _, _, checkpoint, got, _ = read_canonical(folders[layout])
    assert checkpoint.format == fmt
    changed = [k for k in c["state"] if not np.array_equal(got[k], c["state"][k])]
    assert not changed, changed[:5]
    # Converted to our canonical file, it runs in our PyTorch model like the reference's.
    convert(folders[layout], str(tmp_path), to="pt")
    from encdec_pt import EncoderDecoderModel
    import torch

    model = EncoderDecoderModel.from_pretrained(str(tmp_path)).eval()
    with torch.no_grad():
        logits = model(**{k: torch.from_numpy(v) for k, v in c["inputs"].items()}).logits
    assert _max_diff(logits, c["ref_logits"]) < TOL


# The reference loads these as meta tensors (PT, B1) or silently random weights (cross-format, B11);
# every one of our frameworks reads them directly, with no flag.
@pytest.mark.parametrize("fw", ["pt", "tf", "flax"])
@pytest.mark.parametrize("layout", ["tf-safetensors", "flax-safetensors"])
def test_reference_tf_and_flax_files_load_directly_in_every_framework(case, reference_folders, fw, layout):
    from adapters import load_adapter

    c = case("bert2bert")
    folders = reference_folders("bert2bert")
    if layout not in folders:
        pytest.skip(f"{layout}: the reference's framework is not installed")
    adapter = load_adapter(fw)
    model = adapter.load(folders[layout])
    got = adapter.state_dict(model)
    assert not [k for k in c["state"] if not np.array_equal(got[k], c["state"][k])]
    assert _max_diff(adapter.forward(model, c["inputs"])["logits"], c["ref_logits"]) < TOL
