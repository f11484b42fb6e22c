"""Logits processors: small pure JAX functions ``f(input_ids, cur_len, scores, ...) -> scores``.

The fixed-shape twins of ``encdec_pt/generation/logits_process.py`` (same names, same order, same
results). ``input_ids`` (N, max_length) is the preallocated token buffer of the jitted loop; only
its first ``cur_len`` columns (a traced int32 scalar, the start token included) are tokens so far,
the rest is filler. ``scores`` (N, V) float32 are the next-token scores (raw logits for greedy /
sampling, log-softmax for beam search, as in the reference). Everything is dense (gathers,
scatters into (N, V), comparisons): no sparse ops, so ``no_repeat_ngram_size`` runs under ``jit``
on CPU (the reference's ``bcoo_gather`` crashes there).

``process_scores`` applies them in the reference's fixed order (transformers 4.57
``GenerationMixin._get_logits_processor``), then the sampling warpers:

    1. repetition_penalty        (if != 1.0)
    2. no_repeat_ngram_size      (if > 0)
    3. bad_words_ids             (if any; single-token entries equal to an eos id are dropped)
    4. min_length                (if min_length > 0 and an eos id exists; min_new_tokens is folded in)
    5. forced_bos_token_id       (if set)
    6. forced_eos_token_id       (if set)
    sampling only:
    7. temperature               (if != 1.0)
    8. top_k                     (if != 0; keeps max(top_k, min_tokens_to_keep))
    9. top_p                     (if < 1.0)
"""

from __future__ import annotations

from typing import Sequence, Tuple

import jax
import jax.numpy as jnp
from jax import lax

NEG_INF = float("-inf")


def _written(input_ids, cur_len):
    """(N, max_length) bool: True for the columns that hold tokens so far."""
    return (jnp.arange(input_ids.shape[1]) < cur_len)[None, :] & jnp.ones(input_ids.shape, bool)


def _scatter_any(shape, token_ids, flags):
    """(N, V) bool: ``out[i, v]`` = any ``flags[i, j]`` with ``token_ids[i, j] == v`` (a dense scatter-max)."""
    rows = jnp.arange(shape[0])[:, None]
    return jnp.zeros(shape, jnp.bool_).at[rows, token_ids].max(flags)


def repetition_penalty(input_ids, cur_len, scores, penalty: float):
    """Scores of tokens already in ``input_ids``: negative ones times ``penalty``, others divided by it."""
    seen = _scatter_any(scores.shape, input_ids, _written(input_ids, cur_len))  # (N, V)
    penalised = jnp.where(scores < 0, scores * penalty, scores / penalty)
    return jnp.where(seen, penalised, scores)


def no_repeat_ngram(input_ids, cur_len, scores, ngram_size: int):
    """Ban every token that would complete an n-gram already present in the row.

    A token v is banned in row i when some window ``ids[s : s + n]`` (s = 0 .. cur_len - n) has
    ``ids[s : s + n - 1] == ids[cur_len - n + 1 : cur_len]`` and ``ids[s + n - 1] == v``.
    Nothing is banned while ``cur_len < n`` (no complete n-gram yet).
    """
    n = ngram_size
    n_rows, length = input_ids.shape
    n_windows = length - n + 1
    if n_windows <= 0:
        return scores
    # (N, W, n): every window of the buffer; windows past cur_len are masked below
    windows = jnp.stack([input_ids[:, k:k + n_windows] for k in range(n)], axis=-1)
    start = jnp.maximum(cur_len - n + 1, 0)
    prefix = lax.dynamic_slice(input_ids, (0, start), (n_rows, n - 1))  # (N, n - 1): the last n - 1 tokens
    valid = (jnp.arange(n_windows) <= cur_len - n)[None, :]  # (1, W): complete windows only
    match = jnp.all(windows[:, :, : n - 1] == prefix[:, None, :], axis=-1) & valid  # (N, W)
    banned = _scatter_any(scores.shape, windows[:, :, n - 1], match)
    return jnp.where(banned, NEG_INF, scores)


def bad_words(input_ids, cur_len, scores, bad_words_ids: Sequence[Sequence[int]], eos_token_ids: Sequence[int]):
    """-inf for the last token of each banned sequence whose prefix ends ``input_ids``.

    As the reference: single-token sequences equal to an eos id are dropped; a sequence of
    length L is only checked when ``L <= cur_len`` (its prefix must fit strictly after the first token).
    """
    seqs = [tuple(s) for s in bad_words_ids if not (len(s) == 1 and s[0] in eos_token_ids)]
    n_rows = input_ids.shape[0]
    bias = jnp.zeros_like(scores)
    for seq in seqs:
        if len(seq) == 1:
            bias = bias.at[:, seq[0]].add(NEG_INF)
            continue
        if len(seq) > input_ids.shape[1]:
            continue
        prefix = jnp.asarray(seq[:-1], dtype=input_ids.dtype)
        start = jnp.maximum(cur_len - len(prefix), 0)
        tail = lax.dynamic_slice(input_ids, (0, start), (n_rows, len(prefix)))
        rows = jnp.all(tail == prefix, axis=1) & (len(seq) <= cur_len)  # (N,)
        bias = bias.at[:, seq[-1]].add(jnp.where(rows, NEG_INF, 0.0))
    return scores + bias


def min_length(input_ids, cur_len, scores, min_len: int, eos_token_ids: Sequence[int]):
    """-inf for every eos id while ``cur_len < min_len`` (lengths count the start token)."""
    eos_mask = jnp.zeros(scores.shape[-1], bool).at[jnp.asarray(list(eos_token_ids))].set(True)
    return jnp.where(eos_mask[None, :] & (cur_len < min_len), NEG_INF, scores)


def _force(scores, token_id: int, active):
    forced = jnp.full_like(scores, NEG_INF).at[:, token_id].set(0.0)
    return jnp.where(active, forced, scores)


def forced_bos(input_ids, cur_len, scores, token_id: int):
    """At the first new token (cur_len == 1): -inf everywhere except ``token_id`` (score 0)."""
    return _force(scores, token_id, cur_len == 1)


def forced_eos(input_ids, cur_len, scores, token_id: int, max_len: int):
    """At the last position (cur_len == max_length - 1): -inf everywhere except ``token_id`` (score 0)."""
    return _force(scores, token_id, cur_len == max_len - 1)


def temperature(scores, value: float):
    return scores / value


def top_k(scores, k: int, min_tokens_to_keep: int = 1):
    """Keep the ``max(k, min_tokens_to_keep)`` best scores (ties with the k-th kept), -inf elsewhere."""
    k = min(max(k, min_tokens_to_keep), scores.shape[-1])
    kth = lax.top_k(scores, k)[0][..., -1, None]  # (N, 1)
    return jnp.where(scores < kth, NEG_INF, scores)


def top_p(scores, p: float, min_tokens_to_keep: int = 1):
    """Nucleus filtering: drop the least likely tokens whose cumulative probability is <= 1 - p."""
    sorted_idx = jnp.argsort(scores, axis=-1)  # ascending
    sorted_scores = jnp.take_along_axis(scores, sorted_idx, axis=-1)
    cumulative = jnp.cumsum(jax.nn.softmax(sorted_scores, axis=-1), axis=-1)
    remove_sorted = cumulative <= (1 - p)
    remove_sorted = remove_sorted.at[..., -min_tokens_to_keep:].set(False)
    rows = jnp.arange(scores.shape[0])[:, None]
    remove = jnp.zeros_like(remove_sorted).at[rows, sorted_idx].set(remove_sorted)
    return jnp.where(remove, NEG_INF, scores)


def typical_p(scores, mass: float, min_tokens_to_keep: int = 1):
    """Locally typical sampling: keep the tokens whose surprisal -log p is closest to the entropy,
    in that order, until their probability reaches ``mass`` (the reference's ``TypicalLogitsWarper``)."""
    normalized = jax.nn.log_softmax(scores, axis=-1)
    p = jnp.exp(normalized)
    entropy = -jnp.sum(jnp.where(p > 0, normalized * p, 0.0), axis=-1, keepdims=True)  # filtered tokens left out
    shifted = jnp.abs(-normalized - entropy)
    sorted_idx = jnp.argsort(shifted, axis=-1)  # ascending
    sorted_shifted = jnp.take_along_axis(shifted, sorted_idx, axis=-1)
    cumulative = jnp.cumsum(jax.nn.softmax(jnp.take_along_axis(scores, sorted_idx, axis=-1), axis=-1), axis=-1)
    last = jnp.minimum(jnp.sum(cumulative < mass, axis=1), scores.shape[-1] - 1)  # (N,)
    remove_sorted = sorted_shifted > jnp.take_along_axis(sorted_shifted, last[:, None], axis=1)
    remove_sorted = remove_sorted.at[..., :min_tokens_to_keep].set(False)
    rows = jnp.arange(scores.shape[0])[:, None]
    remove = jnp.zeros_like(remove_sorted).at[rows, sorted_idx].set(remove_sorted)
    return jnp.where(remove, NEG_INF, scores)


def active_processors(settings) -> Tuple[str, ...]:
    """Names of the processors that run for these settings, in order."""
    s = settings
    names = []
    if s.repetition_penalty != 1.0:
        names.append("repetition_penalty")
    if s.no_repeat_ngram_size > 0:
        names.append("no_repeat_ngram")
    if s.bad_words_ids:
        names.append("bad_words")
    if s.min_length > 0 and s.eos_token_ids:
        names.append("min_length")
    if s.forced_bos_token_id is not None:
        names.append("forced_bos")
    if s.forced_eos_token_id is not None:
        names.append("forced_eos")
    if s.do_sample:
        if s.temperature != 1.0:
            names.append("temperature")
        if s.top_k != 0:
            names.append("top_k")
        if s.top_p < 1.0:
            names.append("top_p")
        if s.typical_p < 1.0:
            names.append("typical_p")
    return tuple(names)


def process_scores(settings, input_ids, cur_len, scores):
    """All processors (then warpers when sampling) in the reference's order (traced; settings static)."""
    s = settings
    min_tokens_to_keep = s.min_tokens_to_keep  # > 1 with beam sampling
    for name in active_processors(s):
        if name == "repetition_penalty":
            scores = repetition_penalty(input_ids, cur_len, scores, s.repetition_penalty)
        elif name == "no_repeat_ngram":
            scores = no_repeat_ngram(input_ids, cur_len, scores, s.no_repeat_ngram_size)
        elif name == "bad_words":
            scores = bad_words(input_ids, cur_len, scores, s.bad_words_ids, s.eos_token_ids)
        elif name == "min_length":
            scores = min_length(input_ids, cur_len, scores, s.min_length, s.eos_token_ids)
        elif name == "forced_bos":
            scores = forced_bos(input_ids, cur_len, scores, s.forced_bos_token_id)
        elif name == "forced_eos":
            scores = forced_eos(input_ids, cur_len, scores, s.forced_eos_token_id, s.max_length)
        elif name == "temperature":
            scores = temperature(scores, s.temperature)
        elif name == "top_k":
            scores = top_k(scores, s.top_k, min_tokens_to_keep)
        elif name == "top_p":
            scores = top_p(scores, s.top_p, min_tokens_to_keep)
        elif name == "typical_p":
            scores = typical_p(scores, s.typical_p, min_tokens_to_keep)
    return scores
