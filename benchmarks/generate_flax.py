"""Flax ``generate`` timing, to be merged into ``benchmarks/generate.py``.

``run_flax`` builds a randomly initialised ``FlaxEncoderDecoderModel`` from a config and times
``generate`` (one ``jax.jit``-compiled function per shape signature): the first call (trace + XLA
compile + run) and the best of ``repeats`` later calls. ``min_new_tokens = new_tokens`` keeps random
weights from stopping early, so every run makes exactly ``new_tokens`` tokens.

    .venv/bin/python benchmarks/generate_flax.py          # base-size bert2gpt2, greedy and 4 beams, batch 1 and 8
"""

from __future__ import annotations

import os
import sys
import time
from typing import Dict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from encdec.configuration import BertConfig, EncoderDecoderConfig, GPT2Config  # noqa: E402

START, PAD, EOS = 50256, 0, 50256
_MODELS: Dict[int, object] = {}  # id(config) -> model: one build for several timings


def base_bert2gpt2() -> EncoderDecoderConfig:
    """BERT-base encoder, GPT-2-small decoder with cross-attention."""
    return EncoderDecoderConfig.from_encoder_decoder_configs(
        BertConfig(), GPT2Config(is_decoder=True, add_cross_attention=True),
        decoder_start_token_id=START, pad_token_id=PAD, eos_token_id=EOS,
    )


def run_flax(config: EncoderDecoderConfig, batch: int, num_beams: int, new_tokens: int, src_len: int,
             repeats: int = 3) -> dict:
    """Seconds of ``FlaxEncoderDecoderModel.generate``: ``first_call_s`` and ``best_s`` of ``repeats``."""
    from encdec_flax import FlaxEncoderDecoderModel

    model = _MODELS.get(id(config))
    if model is None:
        model = _MODELS[id(config)] = FlaxEncoderDecoderModel(config, seed=0)
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, min(30000, config.encoder.vocab_size), size=(batch, src_len)).astype(np.int32)
    mask = np.ones_like(ids)
    kw = dict(attention_mask=mask, num_beams=num_beams, max_new_tokens=new_tokens, min_new_tokens=new_tokens)
    start = time.perf_counter()
    out = model.generate(ids, **kw)
    first = time.perf_counter() - start
    assert out.shape == (batch, 1 + new_tokens), out.shape
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.asarray(model.generate(ids, **kw))
        best = min(best, time.perf_counter() - start)
    return {"first_call_s": first, "best_s": best}


def main() -> None:
    import jax

    config = base_bert2gpt2()
    print(f"jax {jax.__version__}, {os.cpu_count()} cpus; base bert2gpt2, 32 new tokens from 64")
    for batch in (1, 8):
        for beams in (1, 4):
            r = run_flax(config, batch, beams, new_tokens=32, src_len=64)
            print(f"batch {batch} beams {beams}: first call {r['first_call_s']:.2f} s, best {r['best_s']:.3f} s",
                  flush=True)


if __name__ == "__main__":
    main()
