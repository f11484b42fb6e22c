"""Logits processors: small pure functions ``f(input_ids, scores, ...) -> scores``.

``input_ids`` (N, cur_len) holds every decoder token so far, the start token included;
``scores`` (N, V) float32 are the next-token scores (raw logits for greedy / sampling,
log-softmax for beam search, as in the reference). No function mutates its inputs.

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
   10. typical_p                 (if < 1.0)

The TensorFlow and Flax ports copy these functions one to one (docs/generation.md).
"""

from __future__ import annotations

from typing import Sequence, Tuple

import torch

NEG_INF = float("-inf")


def repetition_penalty(input_ids: torch.Tensor, scores: torch.Tensor, penalty: float) -> torch.Tensor:
    """Scores of tokens already in ``input_ids``: negative ones times ``penalty``, others divided by it."""
    seen = torch.gather(scores, 1, input_ids)  # (N, cur_len)
    seen = torch.where(seen < 0, seen * penalty, seen / penalty)
    return scores.scatter(1, input_ids, seen)


def no_repeat_ngram(input_ids: torch.Tensor, scores: torch.Tensor, ngram_size: int) -> torch.Tensor:
    """Ban every token that would complete an n-gram already present in the row.

    A token v is banned in row i when some window ``ids[s : s + n]`` (s = 0 .. cur_len - n) has
    ``ids[s : s + n - 1] == ids[cur_len - n + 1 : cur_len]`` and ``ids[s + n - 1] == v``.
    Nothing is banned while ``cur_len < n`` (no complete n-gram yet).
    """
    n = ngram_size
    cur_len = input_ids.shape[1]
    if cur_len < n:
        return scores
    windows = input_ids.unfold(1, n, 1)  # (N, W = cur_len - n + 1, n)
    prefix = input_ids[:, cur_len - n + 1:]  # (N, n - 1): the last n - 1 tokens
    match = (windows[:, :, : n - 1] == prefix[:, None, :]).all(dim=-1)  # (N, W)
    # banned[i, v] = any over windows w with last token v of match[i, w] (a scatter with "max").
    banned = torch.zeros(scores.shape, dtype=torch.int8, device=scores.device).scatter_reduce(
        1, windows[:, :, n - 1], match.to(torch.int8), reduce="amax"
    ).bool()
    return scores.masked_fill(banned, NEG_INF)


def bad_words(input_ids: torch.Tensor, scores: torch.Tensor, bad_words_ids: Sequence[Sequence[int]],
              eos_token_ids: Sequence[int]) -> torch.Tensor:
    """-inf for the last token of each banned sequence whose prefix ends ``input_ids``.

    As the reference: single-token sequences equal to an eos id are dropped; a sequence of
    length L is only checked when ``L <= cur_len`` (its prefix must fit strictly after the first token).
    """
    seqs = [tuple(s) for s in bad_words_ids if not (len(s) == 1 and s[0] in eos_token_ids)]
    cur_len = input_ids.shape[1]
    bias = torch.zeros_like(scores)
    for seq in seqs:
        if len(seq) == 1:
            bias[:, seq[0]] += NEG_INF
            continue
        if len(seq) > cur_len:
            continue
        prefix = torch.tensor(seq[:-1], dtype=input_ids.dtype, device=input_ids.device)
        rows = (input_ids[:, cur_len - len(prefix):] == prefix).all(dim=1)  # (N,)
        bias[:, seq[-1]] += torch.where(rows, NEG_INF, 0.0)
    return scores + bias


def min_length(input_ids: torch.Tensor, scores: torch.Tensor, min_len: int,
               eos_token_ids: Sequence[int]) -> torch.Tensor:
    """-inf for every eos id while ``cur_len < min_len`` (lengths count the start token)."""
    if input_ids.shape[1] >= min_len:
        return scores
    eos_mask = torch.zeros(scores.shape[-1], dtype=torch.bool, device=scores.device)
    eos_mask[list(eos_token_ids)] = True
    return scores.masked_fill(eos_mask, NEG_INF)


def forced_bos(input_ids: torch.Tensor, scores: torch.Tensor, token_id: int) -> torch.Tensor:
    """At the first new token (cur_len == 1): -inf everywhere except ``token_id`` (score 0)."""
    if input_ids.shape[1] != 1:
        return scores
    out = torch.full_like(scores, NEG_INF)
    out[:, token_id] = 0
    return out


def forced_eos(input_ids: torch.Tensor, scores: torch.Tensor, token_id: int, max_len: int) -> torch.Tensor:
    """At the last position (cur_len == max_length - 1): -inf everywhere except ``token_id`` (score 0)."""
    if input_ids.shape[1] != max_len - 1:
        return scores
    out = torch.full_like(scores, NEG_INF)
    out[:, token_id] = 0
    return out


def temperature(scores: torch.Tensor, value: float) -> torch.Tensor:
    return scores / value


def top_k(scores: torch.Tensor, k: int, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Keep the ``max(k, min_tokens_to_keep)`` best scores (ties with the k-th kept), -inf elsewhere."""
    k = min(max(k, min_tokens_to_keep), scores.shape[-1])
    kth = torch.topk(scores, k)[0][..., -1, None]  # (N, 1)
    return scores.masked_fill(scores < kth, NEG_INF)


def top_p(scores: torch.Tensor, p: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Nucleus filtering: drop the least likely tokens whose cumulative probability is <= 1 - p."""
    sorted_scores, sorted_idx = torch.sort(scores, descending=False)
    cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cumulative <= (1 - p)
    remove_sorted[..., -min_tokens_to_keep:] = False
    remove = remove_sorted.scatter(1, sorted_idx, remove_sorted)
    return scores.masked_fill(remove, NEG_INF)


def typical_p(scores: torch.Tensor, mass: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Locally typical sampling: keep the tokens whose surprisal -log p is closest to the entropy,
    in that order, until their probability reaches ``mass`` (the reference's ``TypicalLogitsWarper``)."""
    normalized = torch.log_softmax(scores, dim=-1)
    p = torch.exp(normalized)
    entropy = -(normalized * p).nansum(-1, keepdim=True)  # -inf * 0 (filtered tokens) is nan: left out
    shifted = torch.abs(-normalized - entropy)
    sorted_shifted, sorted_idx = torch.sort(shifted, descending=False)
    cumulative = scores.gather(-1, sorted_idx).softmax(dim=-1).cumsum(dim=-1)
    last = (cumulative < mass).sum(dim=1).clamp(max=scores.shape[-1] - 1)  # (N,)
    remove_sorted = sorted_shifted > sorted_shifted.gather(1, last.view(-1, 1))
    remove_sorted[..., :min_tokens_to_keep] = False
    remove = remove_sorted.scatter(1, sorted_idx, remove_sorted)
    return scores.masked_fill(remove, NEG_INF)


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


# name -> (settings, input_ids, scores) -> scores; the warpers keep ``settings.min_tokens_to_keep``
# (> 1 with beam sampling).
PROCESSORS = {
    "repetition_penalty": lambda s, ids, x: repetition_penalty(ids, x, s.repetition_penalty),
    "no_repeat_ngram": lambda s, ids, x: no_repeat_ngram(ids, x, s.no_repeat_ngram_size),
    "bad_words": lambda s, ids, x: bad_words(ids, x, s.bad_words_ids, s.eos_token_ids),
    "min_length": lambda s, ids, x: min_length(ids, x, s.min_length, s.eos_token_ids),
    "forced_bos": lambda s, ids, x: forced_bos(ids, x, s.forced_bos_token_id),
    "forced_eos": lambda s, ids, x: forced_eos(ids, x, s.forced_eos_token_id, s.max_length),
    "temperature": lambda s, ids, x: temperature(x, s.temperature),
    "top_k": lambda s, ids, x: top_k(x, s.top_k, s.min_tokens_to_keep),
    "top_p": lambda s, ids, x: top_p(x, s.top_p, s.min_tokens_to_keep),
    "typical_p": lambda s, ids, x: typical_p(x, s.typical_p, s.min_tokens_to_keep),
}


def process_scores(settings, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """All processors (then warpers when sampling) in the reference's order."""
    for name in active_processors(settings):
        scores = PROCESSORS[name](settings, input_ids, scores)
    return scores
