"""encdec_pt against the reference (transformers==4.57.6) where the PyTorch API is the reference's own:
the tuple output (``return_dict=False``), a tied model's parameter objects, the stand-alone causal LMs.
Outputs, cache, cached decoding, gradients and folders of every framework x pair against the reference:
tests/behaviour/test_oracle.py.
"""

import numpy as np
import pytest
import torch

from encdec.naming.schema import schema_for
from encdec.testing import ARCHS, TOLERANCE, deterministic_state_dict, tiny_config, tiny_inputs
from encdec_pt import EncoderDecoderModel

pytestmark = pytest.mark.oracle
TOL = TOLERANCE["float32"]["abs"]
MEASURED = []  # (arch, what, max abs diff), printed at teardown


def _transformers():
    return pytest.importorskip("transformers")


def _max_diff(a, b):
    if isinstance(a, (tuple, list)):
        assert len(a) == len(b), f"{len(a)} vs {len(b)} items"
        return max(_max_diff(x, y) for x, y in zip(a, b))
    assert tuple(a.shape) == tuple(b.shape), f"shape {tuple(a.shape)} vs {tuple(b.shape)}"
    return float((a.double() - b.double()).abs().max())


def _inputs(config):
    return {k: torch.from_numpy(v) for k, v in tiny_inputs(config).items()}


@pytest.fixture(scope="module", params=ARCHS)
def pair(request, tmp_path_factory):
    """(arch, ours, reference) with the same deterministic weights; the reference reads our folder."""
    transformers = _transformers()
    arch = request.param
    config = tiny_config(arch)
    ours = EncoderDecoderModel(config)
    ours.load_canonical(deterministic_state_dict(schema_for(config), seed=1))
    ours.eval()
    folder = tmp_path_factory.mktemp(f"ours-{arch}")
    ours.save_pretrained(str(folder))
    ref = transformers.EncoderDecoderModel.from_pretrained(str(folder), attn_implementation="eager").eval()
    return arch, ours, ref


def test_tuple_output_equals_reference(pair):
    arch, ours, ref = pair
    inputs = _inputs(ours.config)
    with torch.no_grad():
        a = ours(**inputs, return_dict=False)
        b = ref(**inputs, return_dict=False)
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b)):
        if hasattr(y, "to_legacy_cache"):
            y = y.to_legacy_cache()
        assert _max_diff(x, y) <= TOL, f"{arch} tuple item {i}"


def test_tied_model_stays_tied_in_reference_files(tmp_path):
    transformers = _transformers()
    config = tiny_config("bert2bert_tied")
    ref = transformers.EncoderDecoderModel(config=transformers.EncoderDecoderConfig.from_dict(config.to_dict()))
    ref.save_pretrained(str(tmp_path))
    ours = EncoderDecoderModel.from_pretrained(str(tmp_path))
    assert ours.encoder.embeddings.word_embeddings.weight is ours.decoder.bert.embeddings.word_embeddings.weight
    with torch.no_grad():
        inputs = _inputs(config)
        diff = _max_diff(ours(**inputs).logits, ref.eval()(**inputs).logits)
    assert diff <= TOL


def teardown_module(module):
    if MEASURED:
        print("\nencdec_pt vs transformers 4.57.6 (max abs diff, float32):")
        for arch, what, diff in MEASURED:
            print(f"  {arch:15s} {what:28s} {diff:.2e}")


@pytest.mark.parametrize("which", ["gpt2", "bert"])
def test_stand_alone_causal_lm_equals_reference(which, tmp_path):
    transformers = _transformers()
    from encdec.testing import tiny_bert_config, tiny_gpt2_config
    from encdec_pt import BertLMHeadModel, GPT2LMHeadModel

    torch.manual_seed(0)
    if which == "gpt2":
        ours, ref_class = GPT2LMHeadModel(tiny_gpt2_config()), transformers.GPT2LMHeadModel
    else:
        ours, ref_class = BertLMHeadModel(tiny_bert_config(is_decoder=True)), transformers.BertLMHeadModel
    ours.eval().save_pretrained(str(tmp_path))
    ref = ref_class.from_pretrained(str(tmp_path), attn_implementation="eager").eval()
    ids = torch.randint(4, 99, (2, 6))
    mask = torch.ones_like(ids)
    mask[1, -2:] = 0
    labels = ids.masked_fill(mask == 0, -100)
    with torch.no_grad():
        a = ours(input_ids=ids, attention_mask=mask, labels=labels, output_attentions=True, output_hidden_states=True)
        b = ref(input_ids=ids, attention_mask=mask, labels=labels, output_attentions=True, output_hidden_states=True)
    for name in ("loss", "logits", "hidden_states", "attentions"):
        diff = _max_diff(getattr(a, name), getattr(b, name))
        MEASURED.append((f"{which} LM", name, diff))
        assert diff <= TOL, name
