"""Training data, framework-free: reading a JSON Lines / CSV file of (source, target) pairs with
errors that name the file, line and column; tokenising with the encoder's and the decoder's
tokenizers; and the global batches of a run as numpy arrays.

The batch of step ``s`` is a pure function of (seed, s): the examples of an epoch are a seeded
permutation, and the stream of epochs is cut into global batches. So the data position of a
checkpoint is its step, and a resumed run reads the very batches an uninterrupted run reads.

Every batch carries ``label_weights`` (B, T): 1 / (number of target tokens of the *global* batch)
where a label counts, 0 elsewhere. The training loss is ``sum(cross_entropy * label_weights)``
over whatever rows a device or a micro-batch holds; summed over devices and micro-batches it is
the token mean of the global batch, so losses and gradients do not depend on how the batch is split.
"""

from __future__ import annotations

import csv
import json
import os
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from encdec.modeling_utils import decoder_mask_from_labels_np, shift_tokens_right_np

Pair = Tuple[str, str]


class DataError(ValueError):
    """Bad training data; the message names the file, the line and the column."""


def read_pairs(path: str, source_column: str = "source", target_column: str = "target") -> List[Pair]:
    """(source, target) pairs of a ``.jsonl`` / ``.json`` (one JSON object per line), ``.csv`` or
    ``.tsv`` file (a header row names the columns)."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    ext = os.path.splitext(path)[1].lower()
    if ext in (".jsonl", ".json", ".ndjson"):
        pairs = list(_read_jsonl(path, source_column, target_column))
    elif ext in (".csv", ".tsv"):
        pairs = list(_read_csv(path, source_column, target_column, "\t" if ext == ".tsv" else ","))
    else:
        raise DataError(f"{path}: unknown data format {ext!r}; use JSON Lines (.jsonl) or CSV (.csv, .tsv)")
    if not pairs:
        raise DataError(f"{path}: no examples")
    return pairs


def _field(row: dict, column: str, where: str) -> str:
    if column not in row:
        raise DataError(f"{where}: no column {column!r} (columns: {', '.join(map(str, row)) or 'none'})")
    value = row[column]
    if not isinstance(value, str):
        raise DataError(f"{where}: column {column!r} is {type(value).__name__}, not a string")
    if not value.strip():
        raise DataError(f"{where}: column {column!r} is empty")
    return value


def _read_jsonl(path: str, source_column: str, target_column: str) -> Iterator[Pair]:
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}, line {number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: not JSON ({e.msg} at column {e.colno})") from None
            if not isinstance(row, dict):
                raise DataError(f"{where}: a JSON {type(row).__name__}, not an object with columns")
            yield _field(row, source_column, where), _field(row, target_column, where)


def _read_csv(path: str, source_column: str, target_column: str, delimiter: str) -> Iterator[Pair]:
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter=delimiter)
        for column in (source_column, target_column):
            if column not in (reader.fieldnames or []):
                raise DataError(f"{path}, line 1: no column {column!r} in the header "
                                f"(columns: {', '.join(reader.fieldnames or []) or 'none'})")
        for row in reader:
            where = f"{path}, line {reader.line_num}"
            if None in row:
                raise DataError(f"{where}: more fields than the header has columns")
            if any(row[c] is None for c in (source_column, target_column)):
                raise DataError(f"{where}: fewer fields than the header has columns")
            yield _field(row, source_column, where), _field(row, target_column, where)


class Encoded:
    """Token ids of every example: ``sources`` (encoder ids) and ``labels`` (decoder targets without
    the start token, ending in the end token; the models shift them right themselves)."""

    def __init__(self, sources: List[List[int]], labels: List[List[int]]):
        self.sources, self.labels = sources, labels

    def __len__(self) -> int:
        return len(self.sources)


def encode_pairs(pairs: Sequence[Pair], encoder_tokenizer, decoder_tokenizer, source_max_length: int,
                 target_max_length: int, decoder_start_token_id: int, eos_token_id: Optional[int]) -> Encoded:
    sources = encoder_tokenizer([s for s, _ in pairs], truncation=True, max_length=source_max_length)["input_ids"]
    labels = []
    for ids in decoder_tokenizer([t for _, t in pairs])["input_ids"]:
        ids = list(ids)
        if ids and ids[0] == decoder_start_token_id:  # a BERT tokenizer's [CLS]: the decoder's start, shifted in
            ids = ids[1:]
        if eos_token_id is not None and (not ids or ids[-1] != eos_token_id):  # GPT-2 adds no end token
            ids.append(eos_token_id)
        if len(ids) > target_max_length:
            ids = ids[:target_max_length - 1] + ([eos_token_id] if eos_token_id is not None else ids[-1:])
        labels.append(ids)
    return Encoded([list(s) for s in sources], labels)


def bucket_length(length: int, max_length: int, bucketed: bool) -> int:
    """The padded length of a batch whose longest row is ``length``: for the compiled frameworks
    the next power of two (at least 8), capped at ``max_length``, so a run compiles a few shapes."""
    if not bucketed:
        return length
    padded = 8
    while padded < length:
        padded *= 2
    return min(padded, max_length)


def make_batch(data: Encoded, rows: Sequence[int], pad_token_id: int, decoder_pad_token_id: int,
               decoder_start_token_id: int, source_max_length: int, target_max_length: int,
               bucketed: bool) -> Dict[str, np.ndarray]:
    """The arrays of the examples ``rows``: input_ids, attention_mask, decoder_input_ids,
    decoder_attention_mask, labels (-100 = ignored), label_weights (see the module docstring)."""
    sources = [data.sources[i] for i in rows]
    targets = [data.labels[i] for i in rows]
    s = bucket_length(max(map(len, sources)), source_max_length, bucketed)
    t = bucket_length(max(map(len, targets)), target_max_length, bucketed)
    input_ids = np.full((len(rows), s), pad_token_id, np.int32)
    attention_mask = np.zeros((len(rows), s), np.int32)
    labels = np.full((len(rows), t), -100, np.int32)
    for r, (src, tgt) in enumerate(zip(sources, targets)):
        input_ids[r, :len(src)] = src
        attention_mask[r, :len(src)] = 1
        labels[r, :len(tgt)] = tgt
    counted = labels != -100
    return {
        "input_ids": input_ids, "attention_mask": attention_mask,
        "decoder_input_ids": shift_tokens_right_np(labels, decoder_pad_token_id, decoder_start_token_id).astype(np.int32),
        "decoder_attention_mask": decoder_mask_from_labels_np(labels).astype(np.int32),
        "labels": labels, "label_weights": (counted / counted.sum()).astype(np.float32),
    }


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def batch_rows(n: int, batch_size: int, step: int, seed: int) -> List[int]:
    """Example indices of the global batch of ``step`` (0-based): the stream of seeded epoch
    permutations, cut into ``batch_size`` pieces."""
    rows, position = [], step * batch_size
    while len(rows) < batch_size:
        epoch, offset = divmod(position, n)
        order = epoch_order(n, seed, epoch)
        take = order[offset:offset + batch_size - len(rows)]
        rows.extend(int(i) for i in take)
        position += len(take)
    return rows


def shard(batch: Dict[str, np.ndarray], index: int, count: int) -> Dict[str, np.ndarray]:
    """Rows ``[index * B / count, (index + 1) * B / count)`` of a global batch: one worker's share."""
    size = len(batch["labels"])
    if size % count:
        raise ValueError(f"the global batch {size} does not split over {count} workers; choose a multiple")
    per = size // count
    return {k: v[index * per:(index + 1) * per] for k, v in batch.items()}


def micro_batches(batch: Dict[str, np.ndarray], count: int) -> List[Dict[str, np.ndarray]]:
    """``count`` micro-batches of a worker's share for gradient accumulation: rows ``i::count``
    (strided, so each stays within a worker's contiguous block when the batch is data-sharded)."""
    size = len(batch["labels"])
    if size % count:
        raise ValueError(f"a worker's batch of {size} does not split into {count} accumulation steps")
    return [{k: v[i::count] for k, v in batch.items()} for i in range(count)]
