"""The issue's "done when": a MiniLM-warm-started bert2bert PyTorch checkpoint converted by the CLI
to TF and to Flax, ``--verify`` passing.

The documented workaround example (loading a PyTorch checkpoint into TFEncoderDecoderModel via
separately saved encoder / decoder folders, and directly) is tested in
tests/tf/test_oracle.py::test_workaround_and_direct_pytorch_loading_agree.
"""

import os

import pytest

from conversion.cli import main
from encdec.testing import minilm_path


@pytest.fixture(scope="module")
def minilm_bert2bert(tmp_path_factory):
    pytest.importorskip("torch")
    from encdec_pt import EncoderDecoderModel

    path = minilm_path()
    model = EncoderDecoderModel.from_encoder_decoder_pretrained(path, path, decoder_start_token_id=101, pad_token_id=0)
    folder = tmp_path_factory.mktemp("minilm_bert2bert")
    model.save_pretrained(str(folder))
    return str(folder)


@pytest.mark.parametrize("to,native", [("tf", "tf_model.h5"), ("flax", "flax_model.msgpack")])
def test_cli_converts_minilm_bert2bert_and_verify_passes(minilm_bert2bert, tmp_path, capsys, to, native):
    pytest.importorskip({"tf": "tensorflow", "flax": "flax"}[to])
    assert main([minilm_bert2bert, str(tmp_path), "--to", to, "--verify", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"verified: pt vs {to} within 1e-05" in out
    assert os.path.exists(tmp_path / native) and os.path.exists(tmp_path / "config.json")
    assert os.path.exists(tmp_path / "generation_config.json")
