"""``--verify``: run one fixed input through the source and the converted checkpoint, each in its
own framework, and compare the outputs.

The input is numpy, deterministic, drawn from the config's vocabularies (a padded second row, so
masking is exercised too). Each framework is imported only when a side needs it.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional

import numpy as np

from encdec.configuration import AutoConfig, EncoderDecoderConfig

# The outputs compared, in the order printed.
OUTPUTS = ("logits", "encoder_last_hidden_state", "decoder_hidden_states")


class VerificationError(AssertionError):
    """The converted checkpoint's outputs differ from the source's by more than the tolerance."""

    def __init__(self, message: str, diffs: Dict[str, float]):
        super().__init__(message)
        self.diffs = diffs


def fixed_inputs(config: EncoderDecoderConfig, batch: int = 2, src_len: int = 9, tgt_len: int = 6) -> Dict[str, np.ndarray]:
    """Token ids from a fixed seed within each side's vocabulary; row 1 has 3 padded source tokens."""
    rng = np.random.default_rng(20240611)
    enc_vocab, dec_vocab = config.encoder.vocab_size, config.decoder.vocab_size
    low = lambda vocab: min(5, vocab - 1)  # noqa: E731 - skip the usual special ids when the vocab allows
    input_ids = rng.integers(low(enc_vocab), enc_vocab, size=(batch, src_len), dtype=np.int64)
    attention_mask = np.ones((batch, src_len), np.int64)
    attention_mask[1, -3:] = 0
    decoder_input_ids = rng.integers(low(dec_vocab), dec_vocab, size=(batch, tgt_len), dtype=np.int64)
    start = config.decoder_start_token_id if config.decoder_start_token_id is not None else 0
    decoder_input_ids[:, 0] = start
    return {
        "input_ids": input_ids,
        "attention_mask": attention_mask,
        "decoder_input_ids": decoder_input_ids,
        "decoder_attention_mask": np.ones((batch, tgt_len), np.int64),
    }


def _run_pt(path: str, inputs: Dict[str, np.ndarray], prefer: Optional[str]) -> Dict[str, object]:
    import torch

    from encdec_pt import EncoderDecoderModel

    kwargs = {f"from_{prefer}": True} if prefer else {}
    model = EncoderDecoderModel.from_pretrained(path, **kwargs).eval()
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in inputs.items()}, output_hidden_states=True,
                    use_cache=False, return_dict=True)
    return {k: _numpy(getattr(out, k)) for k in OUTPUTS}


def _run_tf(path: str, inputs: Dict[str, np.ndarray], prefer: Optional[str]) -> Dict[str, object]:
    from encdec_tf import TFEncoderDecoderModel

    kwargs = {f"from_{prefer}": True} if prefer else {}
    model = TFEncoderDecoderModel.from_pretrained(path, **kwargs)
    out = model(**inputs, output_hidden_states=True, use_cache=False, return_dict=True, training=False)
    return {k: _numpy(getattr(out, k)) for k in OUTPUTS}


def _run_flax(path: str, inputs: Dict[str, np.ndarray], prefer: Optional[str]) -> Dict[str, object]:
    from encdec_flax import FlaxEncoderDecoderModel

    kwargs = {f"from_{prefer}": True} if prefer else {}
    model = FlaxEncoderDecoderModel.from_pretrained(path, **kwargs)
    out = model(**inputs, output_hidden_states=True, return_dict=True)
    return {k: _numpy(getattr(out, k)) for k in OUTPUTS}


RUNNERS: Dict[str, Callable] = {"pt": _run_pt, "tf": _run_tf, "flax": _run_flax}


def _numpy(value):
    if isinstance(value, (tuple, list)):
        return [_numpy(v) for v in value]
    if hasattr(value, "detach"):
        value = value.detach().cpu()
    return np.asarray(value)


def max_abs_diff(a, b) -> float:
    if isinstance(a, (tuple, list)):
        if len(a) != len(b):
            return float("inf")
        return max((max_abs_diff(x, y) for x, y in zip(a, b)), default=0.0)
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def verify_conversion(src: str, dst: str, source_framework: str, target_framework: str, tolerance: float = 1e-5,
                      prefer: Optional[str] = None) -> Dict[str, float]:
    """Max abs difference per output between ``src`` in ``source_framework`` and ``dst`` in
    ``target_framework``; raises ``VerificationError`` naming the outputs above ``tolerance``."""
    config = AutoConfig.from_pretrained(src)
    if not isinstance(config, EncoderDecoderConfig):
        raise ValueError(f"--verify runs encoder-decoder checkpoints; {src} holds a {config.model_type!r} model")
    inputs = fixed_inputs(config)
    source = RUNNERS[source_framework](src, inputs, prefer)
    target = RUNNERS[target_framework](dst, inputs, None)
    diffs = {k: max_abs_diff(target[k], source[k]) for k in OUTPUTS}
    worse = {k: d for k, d in diffs.items() if not d <= tolerance}
    if worse:
        detail = ", ".join(f"{k} {d:.3g}" for k, d in worse.items())
        raise VerificationError(
            f"verification failed: {dst} ({target_framework}) differs from {src} ({source_framework}) by more "
            f"than {tolerance:g}: {detail}", diffs)
    return diffs
