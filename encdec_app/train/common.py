"""What the three trainers share: the run's setup (tokenizers, data, special token ids), the
learning-rate schedule, dropout overrides, the metrics log, checkpoint folders and evaluation
scores. Framework-free; each ``encdec_app.train.<framework>`` module does the framework's part.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from encdec.configuration import AutoConfig
from encdec_app.tokenizers import decoder_special_ids, load_pair, load_saved, save_pair
from encdec_app.train.data import Encoded, batch_rows, encode_pairs, make_batch, read_pairs

STATE_FILE = "trainer_state.json"
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


# ------------------------------------------------------------------------------------------------
# The learning rate: linear warm-up from 0, then linear decay to 0 at the last step (the same
# function drives torch's LambdaLR, the optax schedule and the Keras schedule).


def lr_factor(step, warmup_steps: int, total_steps: int, minimum=np.minimum, maximum=np.maximum):
    """Multiplier of the peak learning rate at update ``step`` (0-based); ``minimum`` / ``maximum``
    are the framework's element-wise ops so the schedule can run inside a compiled step."""
    decay = maximum(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    if warmup_steps <= 0:
        return minimum(1.0, decay)
    return minimum(step / warmup_steps, decay)


# ------------------------------------------------------------------------------------------------
# Model configuration


def dropout_fields(config) -> List[str]:
    """Every dropout probability of one side's config (``hidden_dropout_prob``, ``attn_pdrop``, ...)."""
    return [k for k, v in config.to_dict().items()
            if ("dropout" in k or k.endswith("pdrop")) and isinstance(v, float) and not isinstance(v, bool)]


def set_dropout(config, p: float) -> None:
    for key in dropout_fields(config):
        setattr(config, key, p)


class Setup:
    """Tokenizers, special token ids and encoded data of a run (the same for every framework)."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        if args.model:
            self.encoder_tokenizer, self.decoder_tokenizer, self.distinct_tokenizers = load_saved(args.model)
            config = AutoConfig.from_pretrained(args.model)
            start, eos, pad = config.decoder_start_token_id, config.eos_token_id, config.pad_token_id
        else:
            self.encoder_tokenizer, self.decoder_tokenizer, self.distinct_tokenizers = load_pair(args.encoder,
                                                                                                 args.decoder)
            start, eos, pad = decoder_special_ids(self.decoder_tokenizer)
        if start is None or pad is None:
            raise ValueError("the decoder's tokenizer names no start token ([CLS] or BOS) or no pad/end token; "
                             "train from a composite --model whose config sets decoder_start_token_id and pad_token_id")
        self.decoder_start_token_id, self.eos_token_id, self.decoder_pad_token_id = start, eos, pad
        enc = self.encoder_tokenizer
        self.pad_token_id = next((i for i in (enc.pad_token_id, enc.eos_token_id, 0) if i is not None))
        self.train = self._encode(args.data)
        self.eval_pairs = read_pairs(args.eval_data, args.source_column, args.target_column) if args.eval_data else None
        self.eval = self._encode_pairs(self.eval_pairs) if self.eval_pairs else None

    def special_ids(self) -> Dict[str, Any]:
        """Top-level config values of a warm start."""
        return dict(decoder_start_token_id=self.decoder_start_token_id, pad_token_id=self.decoder_pad_token_id,
                    eos_token_id=self.eos_token_id)

    def _encode(self, path: str) -> Encoded:
        return self._encode_pairs(read_pairs(path, self.args.source_column, self.args.target_column))

    def _encode_pairs(self, pairs) -> Encoded:
        a = self.args
        return encode_pairs(pairs, self.encoder_tokenizer, self.decoder_tokenizer, a.source_max_length,
                            a.target_max_length, self.decoder_start_token_id, self.eos_token_id)

    def batch(self, data: Encoded, rows: Sequence[int], bucketed: bool) -> Dict[str, np.ndarray]:
        a = self.args
        return make_batch(data, rows, self.pad_token_id, self.decoder_pad_token_id, self.decoder_start_token_id,
                          a.source_max_length, a.target_max_length, bucketed)

    def train_batch(self, step: int, bucketed: bool) -> Dict[str, np.ndarray]:
        """The global batch of update ``step`` (0-based)."""
        return self.batch(self.train, batch_rows(len(self.train), self.args.batch_size, step, self.args.seed), bucketed)

    def eval_batches(self, bucketed: bool, batch_size: Optional[int] = None):
        n = len(self.eval)
        size = batch_size or self.args.batch_size
        for start in range(0, n, size):
            rows = list(range(start, min(n, start + size)))
            # the last batch keeps the global shape (repeats of row 0 with weight 0) for the compiled frameworks
            real = len(rows)
            rows += [rows[0]] * (size - real)
            batch = self.batch(self.eval, rows, bucketed)
            batch["label_weights"][real:] = 0.0
            yield batch, real

    def save_tokenizers(self, folder: str) -> None:
        save_pair(folder, self.encoder_tokenizer, self.decoder_tokenizer, self.distinct_tokenizers)

    def references(self) -> List[str]:
        """Eval targets as the decoder's tokenizer gives them back (its lower-casing and spacing), so
        exact match compares like with like."""
        return self.decoder_tokenizer.batch_decode(
            [[i for i in ids if i != self.eos_token_id] for ids in self.eval.labels], skip_special_tokens=True)


# ------------------------------------------------------------------------------------------------
# Evaluation scores


def score(metric: str, predictions: Sequence[str], references: Sequence[str]) -> Dict[str, float]:
    """``exact_match`` always; ``rougeL`` (F1, ``rouge-score``) or ``bleu`` (``sacrebleu``) on request."""
    norm = [" ".join(p.split()) for p in predictions]
    refs = [" ".join(r.split()) for r in references]
    out = {"exact_match": float(np.mean([p == r for p, r in zip(norm, refs)]))}
    if metric == "rouge":
        try:
            from rouge_score import rouge_scorer
        except ImportError:
            raise ImportError("--metric rouge needs rouge-score: pip install 'encdec[train]'") from None
        scorer = rouge_scorer.RougeScorer(["rougeL"])
        out["rougeL"] = float(np.mean([scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(norm, refs)]))
    elif metric == "bleu":
        try:
            import sacrebleu
        except ImportError:
            raise ImportError("--metric bleu needs sacrebleu: pip install 'encdec[train]'") from None
        out["bleu"] = float(sacrebleu.corpus_bleu(norm, [refs]).score)
    return out


# ------------------------------------------------------------------------------------------------
# The metrics log and checkpoints


class MetricsLog:
    """``DIR/metrics.jsonl``: one JSON object per logged step. On resume, lines past the checkpoint's
    step are dropped, so the file reads as one uninterrupted run."""

    def __init__(self, output: str, resume_step: int, enabled: bool):
        self.path = os.path.join(output, "metrics.jsonl")
        self.enabled = enabled
        if not enabled:
            return
        os.makedirs(output, exist_ok=True)
        kept = []
        if resume_step and os.path.exists(self.path):
            with open(self.path, encoding="utf-8") as f:
                kept = [line for line in f if line.strip() and json.loads(line)["step"] <= resume_step]
        with open(self.path, "w", encoding="utf-8") as f:
            f.writelines(kept)

    def write(self, record: Dict[str, Any]) -> None:
        if self.enabled:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")


def latest_checkpoint(output: str) -> Optional[str]:
    """The complete checkpoint of the highest step in ``output`` (None when there is none)."""
    if not os.path.isdir(output):
        return None
    steps = [int(m.group(1)) for m in map(CHECKPOINT.match, os.listdir(output)) if m]
    for step in sorted(steps, reverse=True):
        folder = os.path.join(output, f"checkpoint-{step}")
        if os.path.exists(os.path.join(folder, STATE_FILE)):
            return folder
    return None


def read_state(folder: str) -> Dict[str, Any]:
    with open(os.path.join(folder, STATE_FILE), encoding="utf-8") as f:
        return json.load(f)


def write_checkpoint(output: str, step: int, write: Callable[[str], None], state: Dict[str, Any]) -> str:
    """Write a checkpoint into a hidden temporary folder, then rename it to ``checkpoint-STEP``:
    an interrupted write leaves no ``checkpoint-*`` folder, so ``--resume`` never sees half of one.
    ``write(folder)`` writes the model, tokenizer and optimizer files; the state file comes last."""
    final = os.path.join(output, f"checkpoint-{step}")
    tmp = os.path.join(output, f".checkpoint-{step}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)  # makes ``output`` too
    write(tmp)
    with open(os.path.join(tmp, STATE_FILE), "w", encoding="utf-8") as f:
        json.dump(dict(state, step=step), f, indent=1)
    if os.path.exists(final):
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


class Progress:
    """tqdm bar (on the main process only) with the loss and the throughput in examples and tokens per second."""

    def __init__(self, start: int, total: int, enabled: bool, desc: str):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(initial=start, total=total, desc=desc, unit="step", dynamic_ncols=True, file=sys.stderr)
        self.t = time.perf_counter()

    def update(self, loss: float, examples: int, tokens: int) -> Dict[str, float]:
        now = time.perf_counter()
        dt, self.t = now - self.t, now
        rates = {"examples_per_s": examples / dt, "tokens_per_s": tokens / dt}
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", ex_s=f"{rates['examples_per_s']:.1f}")
            self.bar.update()
        return rates

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def config_dict(args: argparse.Namespace) -> Dict[str, Any]:
    return {k: v for k, v in vars(args).items() if k != "func"}
