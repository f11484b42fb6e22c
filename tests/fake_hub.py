"""A fake Hugging Face hub cache holding tiny models under the ids that the reference's documentation
uses, so that its examples run unchanged offline (tests/behaviour/test_model_doc_examples.py,
tests/behaviour/test_doc_examples.py, tests/behaviour/test_bertgen_snippet.py).

Every model is written by the oracle (transformers 4.57.6) with a real tokenizer: the MiniLM
WordPiece vocabulary for the BERT ids, a byte-level BPE trained here for the GPT-2 and BART ids, a
SentencePiece model trained here for BertGeneration. Sizes are tiny (hidden 32) except the
vocabularies, which keep the real ids' ranges: the reference's TF example feeds BERT ids to GPT-2,
so GPT-2's embedding has the real 50257 rows (the trained BPE pads its vocabulary with unused
entries up to 50256, where ``<|endoftext|>`` sits as in the real file).

The BERT and GPT-2 checkpoints also hold cross-attention weights (saved from a decoder with
``add_cross_attention`` under a plain config, as no real checkpoint does): warm-starting from them
then loads every weight, so a warm-started model is the same numbers in ours and in the reference
and their losses and generated tokens can be compared.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import shutil
import sys
from pathlib import Path

SHA = "0" * 40
SIZES = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
# Wide weights: greedy and beam search then choose between logits that differ by far more than the
# frameworks' float differences, so token equality is not decided by rounding.
INIT = 0.5
_TEXTS = [
    "Plants create energy through a process known as photosynthesis. This involves capturing sunlight and "
    "converting carbon dioxide and water into glucose and oxygen.",
    "Sigma Alpha Epsilon is under fire for a video showing party-bound fraternity members singing a racist chant.",
    "The tower is 324 metres (1,063 ft) tall, about the same height as an 81-storey building.",
    "This is the corresponding summary of a really long text. My friends are cool but they eat too many carbs.",
    "Hello, my dog is cute and the weather is lovely today.",
]
_BERTGEN_WORDS = ("hello my dog is cute the weather lovely today translation model of a sentence and where "
                  "what how it was nice to see you again tomorrow").split()


def cache_snapshot(cache: Path, repo_id: str) -> Path:
    """The snapshot folder of ``repo_id`` in the layout huggingface_hub uses:
    models--org--name/{refs/main, snapshots/<sha>/...}."""
    root = cache / ("models--" + repo_id.replace("/", "--"))
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(SHA)
    snap = root / "snapshots" / SHA
    snap.mkdir(parents=True, exist_ok=True)
    return snap


def bertgen_wmt_folder(folder: Path) -> str:
    """A small EncoderDecoderModel of BertGeneration encoder and decoder laid out like
    google/bert2bert_L-24_wmt_en_de (config, weights, spiece.model, tokenizer_config.json), written
    by the reference from a SentencePiece model trained here."""
    import sentencepiece as spm
    import torch
    import transformers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sentences = [" ".join(_BERTGEN_WORDS[(i * 5 + j * 3) % len(_BERTGEN_WORDS)] for j in range(3 + i % 8)) + "."
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


def _bert_tokenizer_files(folder: Path) -> None:
    from encdec.testing import minilm_path

    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(minilm_path(), name), folder / name)


def _byte_level_bpe(folder: Path, specials: list, eos_last: bool) -> None:
    """vocab.json and merges.txt of a byte-level BPE trained on the examples' texts, padded with
    unused entries to 50257 (GPT-2: ``<|endoftext|>`` last) or with BART's four specials first and
    ``<mask>`` last."""
    from tokenizers import ByteLevelBPETokenizer

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(_TEXTS * 4, vocab_size=400, show_progress=False)
    bpe.save_model(str(folder))
    trained = json.loads((folder / "vocab.json").read_text())
    tokens = sorted(trained, key=trained.get)
    vocab = {} if eos_last else {s: i for i, s in enumerate(specials)}
    for token in tokens:
        vocab[token] = len(vocab)
    last = specials if eos_last else ["<mask>"]
    while len(vocab) < 50257 - len(last):
        vocab[f"unused{len(vocab)}"] = len(vocab)
    for token in last:
        vocab[token] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))


def _bert_decoder_config(bert):
    import transformers

    return transformers.BertConfig(**{**bert.to_dict(), "is_decoder": True, "add_cross_attention": True})


def build_fake_hub(cache: Path) -> Path:
    """Writes every repository the documentation's examples name into the cache ``cache``."""
    import torch
    import transformers

    cache = Path(cache)
    bert_vocab = 30522  # the MiniLM (bert-base-uncased) vocabulary
    bert = transformers.BertConfig(vocab_size=bert_vocab, max_position_embeddings=512, initializer_range=INIT,
                                   **SIZES)
    torch.manual_seed(0)
    bert_lm = transformers.BertLMHeadModel(_bert_decoder_config(bert))
    bert_lm.config.is_decoder = bert_lm.config.add_cross_attention = False
    for repo in ("google-bert/bert-base-uncased", "google-bert/bert-base-cased"):
        snap = cache_snapshot(cache, repo)
        bert_lm.save_pretrained(snap)
        _bert_tokenizer_files(snap)

    gpt2_snap = cache_snapshot(cache, "openai-community/gpt2")
    _byte_level_bpe(gpt2_snap, ["<|endoftext|>"], eos_last=True)
    gpt2_tok = transformers.GPT2TokenizerFast(str(gpt2_snap / "vocab.json"), str(gpt2_snap / "merges.txt"))
    gpt2_tok.save_pretrained(gpt2_snap)
    gpt2 = transformers.GPT2Config(vocab_size=50257, n_positions=128, n_embd=32, n_layer=2, n_head=4, n_inner=37,
                                   initializer_range=INIT, add_cross_attention=True)
    torch.manual_seed(1)
    gpt2_lm = transformers.GPT2LMHeadModel(copy.deepcopy(gpt2))  # its config is changed below
    gpt2_lm.config.add_cross_attention = False
    gpt2_lm.save_pretrained(gpt2_snap)

    bart_snap = cache_snapshot(cache, "facebook/bart-base")
    _byte_level_bpe(bart_snap, ["<s>", "<pad>", "</s>", "<unk>"], eos_last=False)
    bart_tok = transformers.BartTokenizerFast(str(bart_snap / "vocab.json"), str(bart_snap / "merges.txt"))
    bart_tok.save_pretrained(bart_snap)
    torch.manual_seed(2)
    bart = transformers.BartConfig(vocab_size=50265, d_model=32, encoder_layers=2, decoder_layers=2,
                                   encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=37,
                                   decoder_ffn_dim=37, max_position_embeddings=128, init_std=INIT)
    transformers.BartForConditionalGeneration(bart).save_pretrained(bart_snap)
    # The real facebook/bart-base file stores the embeddings under every tied name; save_pretrained
    # keeps only model.shared, which a decoder taken alone (BartForCausalLM) does not read.
    from safetensors.torch import load_file, save_file

    weights = load_file(bart_snap / "model.safetensors")
    weights["model.decoder.embed_tokens.weight"] = weights["model.shared.weight"].clone()
    weights["model.encoder.embed_tokens.weight"] = weights["model.shared.weight"].clone()
    save_file(weights, bart_snap / "model.safetensors", metadata={"format": "pt"})

    # Fine-tuned pairs: bert2bert (with the MiniLM tokenizer, as the real repository) and bert2gpt2.
    torch.manual_seed(3)
    b2b_snap = cache_snapshot(cache, "patrickvonplaten/bert2bert-cnn_dailymail-fp16")
    b2b = transformers.EncoderDecoderModel(
        encoder=transformers.BertModel(bert),
        decoder=transformers.BertLMHeadModel(_bert_decoder_config(bert)))
    b2b.config.decoder_start_token_id, b2b.config.eos_token_id, b2b.config.pad_token_id = 101, 102, 0
    b2b.generation_config = transformers.GenerationConfig(decoder_start_token_id=101, eos_token_id=102,
                                                          pad_token_id=0, bos_token_id=101, max_length=12)
    b2b.save_pretrained(b2b_snap)
    _bert_tokenizer_files(b2b_snap)

    torch.manual_seed(4)
    b2g_snap = cache_snapshot(cache, "patrickvonplaten/bert2gpt2-cnn_dailymail-fp16")
    b2g = transformers.EncoderDecoderModel(encoder=transformers.BertModel(bert),
                                           decoder=transformers.GPT2LMHeadModel(gpt2))
    b2g.config.decoder_start_token_id = b2g.config.eos_token_id = b2g.config.pad_token_id = 50256
    b2g.generation_config = transformers.GenerationConfig(decoder_start_token_id=50256, eos_token_id=50256,
                                                          pad_token_id=50256, bos_token_id=50256)
    b2g.save_pretrained(b2g_snap)

    bertgen_wmt_folder(cache_snapshot(cache, "google/bert2bert_L-24_wmt_en_de"))
    return cache


@contextlib.contextmanager
def offline_cache(cache: Path):
    """Points huggingface_hub, transformers and encdec at ``cache``, offline. The hub libraries read
    HF_HUB_CACHE when first imported, so their module constants are set as well as the environment."""
    import pytest

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_CACHE", str(cache))
        mp.setenv("HF_HUB_OFFLINE", "1")
        import huggingface_hub.constants

        # Some modules copied the constant at import (``from ..constants import HF_HUB_CACHE``).
        for name, module in list(sys.modules.items()):
            if name.startswith("huggingface_hub") and hasattr(module, "HF_HUB_CACHE"):
                mp.setattr(module, "HF_HUB_CACHE", str(cache))
        mp.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
        try:
            import transformers.utils.hub as transformers_hub
        except ImportError:
            transformers_hub = None
        if transformers_hub is not None:
            mp.setattr(transformers_hub, "TRANSFORMERS_CACHE", str(cache))
            mp.setattr(transformers_hub, "_is_offline_mode", True)
        yield cache
