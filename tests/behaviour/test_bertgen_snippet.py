"""Issue 22's translation snippet (google/bert2bert_L-24_wmt_en_de's model card), unchanged except for
imports, in the three frameworks, on a small folder laid out like that checkpoint: config.json of an
EncoderDecoderModel of BertGeneration encoder and decoder, weights, spiece.model and
tokenizer_config.json, all written by the reference (transformers 4.57.6) from a SentencePiece model
trained here. Ours must print the reference's ids and text.
"""

import io

import numpy as np
import pytest
import sentencepiece as spm  # a base dependency of encdec: never skipped

pytestmark = pytest.mark.oracle
transformers = pytest.importorskip("transformers")

INPUT_TEXT = "Hello, my dog is cute and the weather is lovely today."
_WORDS = ("hello my dog is cute the weather lovely today translation model of a sentence and where "
          "what how it was nice to see you again tomorrow").split()


@pytest.fixture(scope="module")
def model_name(tmp_path_factory):
    import torch

    folder = tmp_path_factory.mktemp("bert2bert_wmt_en_de")
    sentences = [" ".join(_WORDS[(i * 5 + j * 3) % len(_WORDS)] for j in range(3 + i % 8)) + "."
                 for i in range(300)]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sentences), model_writer=model, vocab_size=96,
                                   model_type="unigram", pad_id=0, unk_id=1, bos_id=2, eos_id=3, minloglevel=2,
                                   hard_vocab_limit=False)
    (folder / "source.model").write_bytes(model.getvalue())
    tokenizer = transformers.BertGenerationTokenizer(str(folder / "source.model"))
    tokenizer.save_pretrained(folder)
    (folder / "source.model").unlink()

    sizes = dict(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                 intermediate_size=37, max_position_embeddings=64, pad_token_id=0, bos_token_id=2, eos_token_id=3,
                 initializer_range=1.0)
    # Wide initial weights, this seed and a raised </s> bias make greedy search write five varied tokens
    # and then </s> (each step's top logit leads by > 0.1), where the default initialisation repeats
    # one token to max_length: the test covers varied ids, stopping at eos and Flax's padding after it.
    torch.manual_seed(4)
    encoder = transformers.BertGenerationEncoder(transformers.BertGenerationConfig(**sizes))
    decoder = transformers.BertGenerationDecoder(
        transformers.BertGenerationConfig(**sizes, is_decoder=True, add_cross_attention=True))
    with torch.no_grad():
        decoder.lm_head.bias[3] += 6.5
    pair = transformers.EncoderDecoderModel(encoder=encoder, decoder=decoder)
    pair.config.decoder_start_token_id, pair.config.eos_token_id, pair.config.pad_token_id = 2, 3, 0
    pair.generation_config.decoder_start_token_id = 2
    pair.generation_config.eos_token_id, pair.generation_config.pad_token_id = 3, 0
    pair.generation_config.max_length = 16
    pair.save_pretrained(folder)
    return str(folder)


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
