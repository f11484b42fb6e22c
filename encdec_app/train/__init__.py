"""``encdec train``: fine-tune an encoder-decoder on a JSON Lines or CSV file, in PyTorch, TF or Flax,
on one device or several through each framework's own engine (``torchrun`` + DDP / FSDP2,
``jax.sharding`` meshes, ``tf.distribute``). See docs/training.md.

``encdec_app.train.common`` and ``encdec_app.train.data`` are framework-free; the framework
modules (``pt``, ``tf``, ``flax``) are imported only by the run that needs them.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from typing import Any, Dict

from encdec_app.frameworks import FRAMEWORKS


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--framework", choices=FRAMEWORKS, required=True)
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--model", help="composite encoder-decoder folder or hub id to continue from")
    model.add_argument("--encoder", help="encoder folder or hub id (warm start, with --decoder)")
    p.add_argument("--decoder", help="decoder folder or hub id (warm start, with --encoder)")
    p.add_argument("--data", required=True, help="training data: .jsonl (one JSON object per line) or .csv/.tsv")
    p.add_argument("--eval-data", help="held-out data in the same format, evaluated at the end")
    p.add_argument("--source-column", default="source")
    p.add_argument("--target-column", default="target")
    p.add_argument("--output", required=True, help="run folder: checkpoints, metrics.jsonl, the final model")
    p.add_argument("--steps", type=int, default=1000, help="optimizer updates (default 1000)")
    p.add_argument("--batch-size", type=int, default=8, help="global batch, split over devices (default 8)")
    p.add_argument("--learning-rate", type=float, default=5e-5)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--warmup-steps", type=int, default=0)
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per update (each device's share split)")
    p.add_argument("--max-grad-norm", type=float, default=1.0, help="clip the global gradient norm (0: no clipping)")
    p.add_argument("--source-max-length", type=int, default=128)
    p.add_argument("--target-max-length", type=int, default=64)
    p.add_argument("--log-every", type=int, default=1)
    p.add_argument("--save-every", type=int, default=0, help="checkpoint every K steps (0: none)")
    p.add_argument("--dropout", type=float, default=None, help="set every dropout probability of both sides")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --output")
    p.add_argument("--metric", choices=("exact", "rouge", "bleu"), default="exact")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gradient-checkpointing", action="store_true", help="recompute layers in the backward pass")
    p.add_argument("--bf16", action="store_true", help="bfloat16 mixed precision (float32 parameters)")
    p.add_argument("--strategy", choices=("ddp", "fsdp"), default="ddp", help="PyTorch under torchrun (default ddp)")
    p.add_argument("--mesh", default=None, help="Flax: device mesh 'data=D,model=M' (default: all devices on data)")
    p.add_argument("--coordinator-address", default=None, help="Flax, several hosts: jax.distributed coordinator")
    p.add_argument("--num-processes", type=int, default=None, help="Flax, several hosts: process count")
    p.add_argument("--process-id", type=int, default=None, help="Flax, several hosts: this process's index")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def check_arguments(args: argparse.Namespace) -> None:
    if args.encoder and not args.decoder:
        raise SystemExit("encdec train: --encoder needs --decoder (or give a composite --model)")
    if args.decoder and not args.encoder:
        raise SystemExit("encdec train: --decoder needs --encoder")
    for name in ("steps", "batch_size", "grad_accum", "log_every", "source_max_length", "target_max_length"):
        if getattr(args, name) < 1:
            raise SystemExit(f"encdec train: --{name.replace('_', '-')} must be at least 1")
    if args.batch_size % args.grad_accum:
        raise SystemExit(f"encdec train: --batch-size {args.batch_size} is not a multiple of --grad-accum "
                         f"{args.grad_accum}")
    if args.dropout is not None and not 0.0 <= args.dropout < 1.0:
        raise SystemExit("encdec train: --dropout must be in [0, 1)")


def run(args: argparse.Namespace) -> Dict[str, Any]:
    """Train; returns ``{"losses": [...], "eval": {...}}`` (the CLI prints the eval scores)."""
    from encdec_app.frameworks import _quiet_frameworks
    from encdec_app.train.common import Setup

    check_arguments(args)
    _quiet_frameworks()
    setup = Setup(args)
    module = importlib.import_module(f"encdec_app.train.{args.framework}")
    return module.run(args, setup)


def main(args: argparse.Namespace) -> int:
    from encdec_app.train.data import DataError

    try:
        result = run(args)
    except DataError as e:
        print(f"encdec train: {e}", file=sys.stderr)
        return 2
    if "eval" in result:
        print(json.dumps({"eval": result["eval"]}))
    return 0
