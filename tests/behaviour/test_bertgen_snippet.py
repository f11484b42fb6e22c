"""Issue 22's translation snippet (google/bert2bert_L-24_wmt_en_de's model card), unchanged except for
imports, in the three frameworks, on a small folder laid out like that checkpoint: config.json of an
EncoderDecoderModel of BertGeneration encoder and decoder, weights, spiece.model and
tokenizer_config.json, all written by the reference (transformers 4.57.6) from a SentencePiece model
trained here. Ours must print the reference's ids and text.
"""

import numpy as np
import pytest
import sentencepiece  # noqa: F401  (a base dependency of encdec: never skipped)

from fake_hub import bertgen_wmt_folder

pytestmark = pytest.mark.oracle
transformers = pytest.importorskip("transformers")

INPUT_TEXT = "Hello, my dog is cute and the weather is lovely today."


@pytest.fixture(scope="module")
def model_name(tmp_path_factory):
    return bertgen_wmt_folder(tmp_path_factory.mktemp("bert2bert_wmt_en_de"))


@pytest.fixture(scope="module")
def expected(model_name):
    from transformers import AutoTokenizer, EncoderDecoderModel

    input_text = INPUT_TEXT
    tokenizer = AutoTokenizer.from_pretrained(model_name, pad_token="<pad>", eos_token="</s>", bos_token="<s>")
    model = EncoderDecoderModel.from_pretrained(model_name)
    inputs = tokenizer(input_text, return_tensors="pt", add_special_tokens=False).input_ids
    outputs = model.generate(inputs)[0]
    assert outputs[-1] == 3 and len(outputs) < 16 and len(set(outputs.tolist())) > 4, outputs  # as the fixture says
    return inputs.tolist(), outputs.tolist(), tokenizer.decode(outputs, skip_special_tokens=True)


def run_snippet(framework, model_name):
    """The snippet as a user of each framework writes it (Flax's generate returns ``.sequences``)."""
    from encdec import AutoTokenizer

    input_text = INPUT_TEXT
    if framework == "pt":
        pytest.importorskip("torch")
        from encdec_pt import EncoderDecoderModel

        tokenizer = AutoTokenizer.from_pretrained(model_name, pad_token="<pad>", eos_token="</s>", bos_token="<s>")
        model = EncoderDecoderModel.from_pretrained(model_name)
        inputs = tokenizer(input_text, return_tensors="pt", add_special_tokens=False).input_ids
        outputs = model.generate(inputs)[0]
    elif framework == "tf":
        pytest.importorskip("tensorflow")
        from encdec_tf import TFEncoderDecoderModel

        tokenizer = AutoTokenizer.from_pretrained(model_name, pad_token="<pad>", eos_token="</s>", bos_token="<s>")
        model = TFEncoderDecoderModel.from_pretrained(model_name)
        inputs = tokenizer(input_text, return_tensors="tf", add_special_tokens=False).input_ids
        outputs = model.generate(inputs)[0]
    else:
        pytest.importorskip("flax")
        from encdec_flax import FlaxEncoderDecoderModel

        tokenizer = AutoTokenizer.from_pretrained(model_name, pad_token="<pad>", eos_token="</s>", bos_token="<s>")
        model = FlaxEncoderDecoderModel.from_pretrained(model_name)
        inputs = tokenizer(input_text, return_tensors="np", add_special_tokens=False).input_ids
        outputs = model.generate(inputs).sequences[0]
    return np.asarray(inputs).tolist(), np.asarray(outputs).tolist(), tokenizer.decode(outputs, skip_special_tokens=True)


@pytest.mark.parametrize("framework", ["pt", "tf", "flax"])
def test_bert2bert_translation_snippet_equals_reference(framework, model_name, expected):
    inputs, outputs, text = run_snippet(framework, model_name)
    assert inputs == expected[0]
    assert outputs[:len(expected[1])] == expected[1]
    # Flax pads finished sequences to max_length with the pad id, as the reference's Flax generate.
    assert all(t == 0 for t in outputs[len(expected[1]):])
    assert text == expected[2]
