"""Logits processors: small pure functions ``f(input_ids, cur_len, scores, ...) -> scores``.

The TensorFlow port of ``encdec_pt/generation/logits_process.py``, function for function, written
for fixed shapes so that the whole decoding loop compiles with XLA: ``input_ids`` (N, max_length)
is the preallocated buffer of decoder tokens, of which the first ``cur_len`` (a scalar int32
tensor, the start token included) are valid; ``scores`` (N, V) float32 are the next-token scores
(raw logits for greedy / sampling, log-softmax for beam search, as in the reference). Conditions
on ``cur_len`` are ``tf.where`` on tensors, never Python branches, and n-gram / bad-word matching
runs over the whole buffer with positions at or past ``cur_len`` masked out.

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

import tensorflow as tf

NEG_INF = float("-inf")


def _seen_tokens(input_ids: tf.Tensor, valid: tf.Tensor, vocab_size: int) -> tf.Tensor:
    """(N, V) bool: token v occurs in row i at a position where ``valid`` (N, L) is true."""
    n, length = input_ids.shape[0], input_ids.shape[1]
    rows = tf.broadcast_to(tf.range(n)[:, None], (n, length))  # (N, L)
    indices = tf.stack([rows, tf.cast(input_ids, tf.int32)], axis=-1)  # (N, L, 2)
    counts = tf.tensor_scatter_nd_add(tf.zeros((n, vocab_size), tf.int32), indices, tf.cast(valid, tf.int32))
    return counts > 0


def repetition_penalty(input_ids: tf.Tensor, cur_len: tf.Tensor, scores: tf.Tensor, penalty: float) -> tf.Tensor:
    """Scores of tokens already in ``input_ids``: negative ones times ``penalty``, others divided by it."""
    valid = tf.broadcast_to(tf.range(input_ids.shape[1]) < cur_len, input_ids.shape)  # (N, L)
    seen = _seen_tokens(input_ids, valid, scores.shape[-1])  # (N, V)
    penalised = tf.where(scores < 0, scores * penalty, scores / penalty)
    return tf.where(seen, penalised, scores)


def no_repeat_ngram(input_ids: tf.Tensor, cur_len: tf.Tensor, scores: tf.Tensor, ngram_size: int) -> tf.Tensor:
    """Ban every token that would complete an n-gram already present in the row.

    A token v is banned in row i when some window ``ids[s : s + n]`` (s = 0 .. cur_len - n) has
    ``ids[s : s + n - 1] == ids[cur_len - n + 1 : cur_len]`` and ``ids[s + n - 1] == v``.
    Nothing is banned while ``cur_len < n`` (no complete n-gram yet).
    """
    n = ngram_size
    length = input_ids.shape[1]
    num_windows = length - n + 1  # every window of the buffer; those not inside cur_len are masked
    if num_windows <= 0:
        return scores
    windows = tf.stack([input_ids[:, j: j + num_windows] for j in range(n)], axis=-1)  # (N, W, n)
    start = tf.maximum(cur_len - n + 1, 0)
    prefix = tf.gather(input_ids, start + tf.range(n - 1), axis=1)  # (N, n - 1): the last n - 1 tokens
    match = tf.reduce_all(windows[:, :, : n - 1] == prefix[:, None, :], axis=-1)  # (N, W)
    inside = (tf.range(num_windows) + n <= cur_len)[None, :]  # (1, W): the window ends before cur_len
    banned = _seen_tokens(windows[:, :, n - 1], match & inside, scores.shape[-1])  # (N, V)
    return tf.where(banned, NEG_INF, scores)


def bad_words(input_ids: tf.Tensor, cur_len: tf.Tensor, scores: tf.Tensor, bad_words_ids: Sequence[Sequence[int]],
              eos_token_ids: Sequence[int]) -> tf.Tensor:
    """-inf for the last token of each banned sequence whose prefix ends ``input_ids``.

    As the reference: single-token sequences equal to an eos id are dropped; a sequence of
    length L is only checked when ``L <= cur_len`` (its prefix must fit strictly after the first token).
    """
    seqs = [tuple(s) for s in bad_words_ids if not (len(s) == 1 and s[0] in eos_token_ids)]
    vocab_size = scores.shape[-1]
    bias = tf.zeros_like(scores)
    for seq in seqs:
        column = tf.one_hot(seq[-1], vocab_size, on_value=True, off_value=False)[None, :]  # (1, V)
        if len(seq) == 1:
            bias = tf.where(column, NEG_INF, bias)
            continue
        if len(seq) > input_ids.shape[1]:
            continue
        prefix = tf.constant(seq[:-1], dtype=input_ids.dtype)
        got = tf.gather(input_ids, tf.maximum(cur_len - (len(seq) - 1), 0) + tf.range(len(seq) - 1), axis=1)
        rows = tf.reduce_all(got == prefix, axis=1) & (len(seq) <= cur_len)  # (N,)
        bias = tf.where(rows[:, None] & column, NEG_INF, bias)
    return scores + bias


def min_length(input_ids: tf.Tensor, cur_len: tf.Tensor, scores: tf.Tensor, min_len: int,
               eos_token_ids: Sequence[int]) -> tf.Tensor:
    """-inf for every eos id while ``cur_len < min_len`` (lengths count the start token)."""
    eos_mask = tf.reduce_any(tf.one_hot(list(eos_token_ids), scores.shape[-1], on_value=True, off_value=False),
                             axis=0)  # (V,)
    return tf.where((cur_len < min_len) & eos_mask[None, :], NEG_INF, scores)


def _only(scores: tf.Tensor, token_id: int) -> tf.Tensor:
    return tf.where(tf.one_hot(token_id, scores.shape[-1], on_value=True, off_value=False)[None, :],
                    tf.zeros_like(scores), tf.fill(tf.shape(scores), NEG_INF))


def forced_bos(input_ids: tf.Tensor, cur_len: tf.Tensor, scores: tf.Tensor, token_id: int) -> tf.Tensor:
    """At the first new token (cur_len == 1): -inf everywhere except ``token_id`` (score 0)."""
    return tf.where(cur_len == 1, _only(scores, token_id), scores)


def forced_eos(input_ids: tf.Tensor, cur_len: tf.Tensor, scores: tf.Tensor, token_id: int, max_len: int) -> tf.Tensor:
    """At the last position (cur_len == max_length - 1): -inf everywhere except ``token_id`` (score 0)."""
    return tf.where(cur_len == max_len - 1, _only(scores, token_id), scores)


def temperature(scores: tf.Tensor, value: float) -> tf.Tensor:
    return scores / value


def top_k(scores: tf.Tensor, k: int, min_tokens_to_keep: int = 1) -> tf.Tensor:
    """Keep the ``max(k, min_tokens_to_keep)`` best scores (ties with the k-th kept), -inf elsewhere."""
    k = min(max(k, min_tokens_to_keep), scores.shape[-1])
    kth = tf.math.top_k(scores, k=k).values[..., -1:]  # (N, 1)
    return tf.where(scores < kth, NEG_INF, scores)


def top_p(scores: tf.Tensor, p: float, min_tokens_to_keep: int = 1) -> tf.Tensor:
    """Nucleus filtering: drop the least likely tokens whose cumulative probability is <= 1 - p."""
    sorted_idx = tf.argsort(scores, axis=-1, direction="ASCENDING", stable=True)  # (N, V)
    sorted_scores = tf.gather(scores, sorted_idx, batch_dims=1)
    cumulative = tf.cumsum(tf.nn.softmax(sorted_scores, axis=-1), axis=-1)
    remove_sorted = cumulative <= (1 - p)
    keep_last = tf.range(scores.shape[-1]) >= scores.shape[-1] - min_tokens_to_keep  # (V,)
    remove_sorted = remove_sorted & ~keep_last[None, :]
    # Back to vocabulary order: position j of the sorted row is token sorted_idx[j].
    remove = tf.gather(remove_sorted, tf.argsort(sorted_idx, axis=-1), batch_dims=1)
    return tf.where(remove, NEG_INF, scores)


def typical_p(scores: tf.Tensor, mass: float, min_tokens_to_keep: int = 1) -> tf.Tensor:
    """Locally typical sampling: keep the tokens whose surprisal -log p is closest to the entropy,
    in that order, until their probability reaches ``mass`` (the reference's ``TypicalLogitsWarper``)."""
    normalized = tf.nn.log_softmax(scores, axis=-1)
    p = tf.exp(normalized)
    entropy = -tf.reduce_sum(tf.where(p > 0, normalized * p, 0.0), axis=-1, keepdims=True)  # filtered tokens left out
    shifted = tf.abs(-normalized - entropy)
    sorted_idx = tf.argsort(shifted, axis=-1, direction="ASCENDING", stable=True)  # (N, V)
    sorted_shifted = tf.gather(shifted, sorted_idx, batch_dims=1)
    cumulative = tf.cumsum(tf.nn.softmax(tf.gather(scores, sorted_idx, batch_dims=1), axis=-1), axis=-1)
    last = tf.minimum(tf.reduce_sum(tf.cast(cumulative < mass, tf.int32), axis=1), scores.shape[-1] - 1)  # (N,)
    remove_sorted = sorted_shifted > tf.gather(sorted_shifted, last[:, None], batch_dims=1)
    keep_first = tf.range(scores.shape[-1]) < min_tokens_to_keep  # (V,)
    remove_sorted = remove_sorted & ~keep_first[None, :]
    # Back to vocabulary order: position j of the sorted row is token sorted_idx[j].
    remove = tf.gather(remove_sorted, tf.argsort(sorted_idx, axis=-1), batch_dims=1)
    return tf.where(remove, NEG_INF, scores)


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


def process_scores(settings, input_ids: tf.Tensor, cur_len: tf.Tensor, scores: tf.Tensor) -> tf.Tensor:
    """All processors (then warpers when sampling) in the reference's order."""
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
