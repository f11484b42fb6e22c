"""generate() settings resolve the same way for every framework (encdec.generation_utils)."""

import subprocess
import sys

import pytest

from encdec.generation_config import GenerationConfig
from encdec.generation_utils import resolve_generation_settings
from encdec.testing import tiny_config


def test_precedence_argument_generation_config_model_decoder():
    c = tiny_config("bert2gpt2")
    c.eos_token_id = None  # top level unset: the decoder's eos (3) is used
    s, rest = resolve_generation_settings(c, None, attention_mask="m")
    assert (s.decoder_start_token_id, s.eos_token_ids, s.pad_token_id) == (2, (3,), 0)
    assert rest == {"attention_mask": "m"}
    g = GenerationConfig(decoder_start_token_id=5, eos_token_id=[7, 8])
    s, _ = resolve_generation_settings(c, g)
    assert (s.decoder_start_token_id, s.eos_token_ids) == (5, (7, 8))
    s, _ = resolve_generation_settings(c, g, decoder_start_token_id=9, max_new_tokens=4, min_new_tokens=2)
    assert (s.decoder_start_token_id, s.max_length, s.min_length) == (9, 5, 3)


def test_missing_start_token_names_what_to_set():
    c = tiny_config("bert2bert")
    c.decoder_start_token_id = c.bos_token_id = c.decoder.bos_token_id = None
    with pytest.raises(ValueError, match="decoder_start_token_id"):
        resolve_generation_settings(c, GenerationConfig())


def test_pad_falls_back_to_eos():
    c = tiny_config("bert2gpt2")
    c.pad_token_id = c.decoder.pad_token_id = None
    s, _ = resolve_generation_settings(c, GenerationConfig(decoder_start_token_id=2, eos_token_id=3))
    assert s.pad_token_id == 3


@pytest.mark.parametrize("kwargs,match", [
    (dict(num_beams=2, num_return_sequences=3), "cannot exceed num_beams"),
    (dict(num_return_sequences=2), "greedy search returns one sequence"),
    (dict(do_sample=True, temperature=0.0), "temperature"),
    (dict(top_p=1.5), "top_p"),
    (dict(bad_words_ids=[[5, 500]]), "bad_words_ids contains token id 500"),
    (dict(early_stopping="sometimes"), "early_stopping"),
])
def test_invalid_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        resolve_generation_settings(tiny_config("bert2bert"), None, vocab_size=99, **kwargs)


def test_unfeasible_min_length_warns_as_the_reference():
    with pytest.warns(UserWarning, match=r"`min_length` \(6\) is larger than the maximum possible length \(4\)"):
        s, _ = resolve_generation_settings(tiny_config("bert2bert"), None, vocab_size=99,
                                           max_new_tokens=3, min_new_tokens=5)
    assert (s.min_length, s.max_length) == (6, 4)


def test_encdec_imports_no_framework():
    code = ("import sys, encdec, encdec.checkpoint, encdec.naming.layout, encdec.generation_utils, encdec.testing, "
            "encdec.modeling_utils, encdec.hub\n"
            "bad = [m for m in ('torch', 'tensorflow', 'jax', 'flax', 'keras', 'transformers') if m in sys.modules]\n"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
