"""``encdec train --framework pt``: PyTorch, one process or several under ``torchrun``.

One code path for one device, DDP and FSDP2: the process group exists when ``torchrun`` set
``WORLD_SIZE`` > 1; each rank takes its contiguous 1/N share of the global batch; DDP averages
gradients over ranks and so does FSDP2's reduce-scatter, so each rank's loss is its share of the
global token mean times N. FSDP2 (``fully_shard``) shards every layer (every module held in a
``ModuleList``) and then the root; checkpoints are gathered with
``torch.distributed.checkpoint.state_dict`` into full tensors and written by rank 0 in the
library's single-folder format, which loads on one device.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from typing import Any, Dict, Optional

import numpy as np

from encdec.configuration import AutoConfig
from encdec_app.train.common import (MetricsLog, Progress, Setup, config_dict, dropout_fields, latest_checkpoint,
                                     lr_factor, read_state, score, set_dropout, write_checkpoint)
from encdec_app.train.data import micro_batches, shard

MODEL_INPUTS = ("input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask")


def build_model(setup: Setup, args: argparse.Namespace, folder: Optional[str]):
    """The model of a run: from a checkpoint ``folder`` (resume), a composite ``--model``, or a warm
    start from ``--encoder`` / ``--decoder``; ``--dropout`` sets every dropout probability."""
    import torch

    from encdec_pt import EncoderDecoderModel

    torch.manual_seed(args.seed)  # the same new cross-attention weights on every rank
    path = folder or args.model
    if path:
        config = AutoConfig.from_pretrained(path)
        if args.dropout is not None and folder is None:
            set_dropout(config.encoder, args.dropout)
            set_dropout(config.decoder, args.dropout)
        return EncoderDecoderModel.from_pretrained(path, config=config)
    kwargs = setup.special_ids()
    if args.dropout is not None:
        for side, name in (("encoder", args.encoder), ("decoder", args.decoder)):
            kwargs.update({f"{side}_{k}": args.dropout for k in dropout_fields(AutoConfig.from_pretrained(name))})
    return EncoderDecoderModel.from_encoder_decoder_pretrained(args.encoder, args.decoder, **kwargs)


def weighted_loss(logits, labels, weights):
    """sum(cross-entropy * label_weights): this share's part of the global batch's token mean."""
    import torch

    ce = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), labels.long().flatten().clamp_min(0),
                                           reduction="none")
    return (ce * weights.flatten()).sum()


def layers(model):
    """Every module held in a ``ModuleList`` (the transformer layers of both sides): FSDP2's units."""
    import torch

    return [m for lst in model.modules() if isinstance(lst, torch.nn.ModuleList) for m in lst]


def full_state(model) -> Dict[str, Any]:
    """Full (unsharded) tensors of every parameter, on CPU; collective under FSDP2."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def save_folder(model, state: Dict[str, Any], folder: str) -> None:
    """``save_pretrained``'s files from gathered full tensors (a sharded model cannot hand over its own)."""
    from encdec.formats.safetensors import save_state_dict
    from encdec.generation_config import GenerationConfig

    config = model.config.copy()
    if not config.architectures or config.architectures == [None]:
        config.architectures = [type(model).__name__]
    config.save_pretrained(folder)
    (getattr(model, "generation_config", None) or GenerationConfig.from_model_config(model.config)).save_pretrained(folder)
    save_state_dict({s.name: state[s.name].detach().float().contiguous().numpy() for s in model.schema().owned()},
                    folder)


def run(args: argparse.Namespace, setup: Setup) -> Dict[str, Any]:
    import torch
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_optimizer_state_dict,
                                                         set_optimizer_state_dict)

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    distributed = world > 1
    main = rank == 0

    resume = latest_checkpoint(args.output) if args.resume else None
    state = read_state(resume) if resume else {"step": 0}
    model = build_model(setup, args, resume)
    if args.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    model.to(device).train()
    forward = model
    if distributed and args.strategy == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if args.bf16 else None
        for layer in layers(model):
            fully_shard(layer, **({"mp_policy": mp} if mp else {}))
        fully_shard(model, **({"mp_policy": mp} if mp else {}))
    elif distributed:
        # find_unused_parameters: a parameter the loss never reaches (the encoder's pooler) would
        # leave DDP waiting for its gradient
        forward = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if cuda else None,
                                                            find_unused_parameters=True)

    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.learning_rate,
                                  betas=(0.9, 0.999), eps=1e-8, weight_decay=args.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, args.warmup_steps, args.steps,
                                                                                min, max))
    full = StateDictOptions(full_state_dict=True, cpu_offload=True)
    start = state["step"]
    if resume:
        saved = torch.load(os.path.join(resume, "optimizer.pt"), weights_only=True)
        # strict=False: a parameter the loss never reaches (the encoder's pooler) has no Adam state
        set_optimizer_state_dict(model, optimizer, optim_state_dict=saved["optimizer"],
                                 options=StateDictOptions(full_state_dict=True, cpu_offload=True, strict=False))
        schedule.load_state_dict(saved["schedule"])
        torch.set_rng_state(saved["rng"][rank])
    else:
        torch.manual_seed(args.seed + rank)  # dropout: one stream per rank

    def checkpoint(step: int) -> None:
        weights = full_state(model)
        optim = get_optimizer_state_dict(model, optimizer, options=full)
        rngs = [None] * world
        if distributed:
            dist.all_gather_object(rngs, torch.get_rng_state())
        else:
            rngs = [torch.get_rng_state()]
        if main:
            def write(folder):
                save_folder(model, weights, folder)
                setup.save_tokenizers(folder)
                torch.save({"optimizer": optim, "schedule": schedule.state_dict(), "rng": rngs},
                           os.path.join(folder, "optimizer.pt"))
            write_checkpoint(args.output, step, write, {"examples_seen": step * args.batch_size,
                                                        "args": config_dict(args), "devices": world})
        if distributed:
            dist.barrier()

    log = MetricsLog(args.output, start, main)
    bar = Progress(start, args.steps, main and not args.quiet, "train (PyTorch)")
    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if args.bf16 else contextlib.nullcontext
    losses = []
    for step in range(start, args.steps):
        batch = setup.train_batch(step, bucketed=False)
        share = shard(batch, rank, world)
        total = torch.zeros((), device=device)
        micros = micro_batches(share, args.grad_accum)
        for i, micro in enumerate(micros):
            last = i == len(micros) - 1
            t = {k: torch.from_numpy(v).to(device) for k, v in micro.items()}
            if distributed and args.strategy == "fsdp":
                model.set_requires_gradient_sync(last)
                sync = contextlib.nullcontext()
            else:
                sync = forward.no_sync() if distributed and not last else contextlib.nullcontext()
            with sync:
                with autocast():
                    logits = forward(**{k: t[k] for k in MODEL_INPUTS}).logits
                loss = weighted_loss(logits, t["labels"], t["label_weights"])
                (loss * world).backward()  # the all-reduce averages over ranks; shares add up
            total += loss.detach()
        if args.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.max_grad_norm)
        lr = schedule.get_last_lr()[0]
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if distributed:
            dist.all_reduce(total)
        loss_value = float(total)
        losses.append(loss_value)
        rates = bar.update(loss_value, args.batch_size, int((batch["labels"] != -100).sum()))
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            log.write({"step": step + 1, "loss": loss_value, "lr": lr, **rates})
        if args.save_every and (step + 1) % args.save_every == 0:
            checkpoint(step + 1)
    bar.close()

    result: Dict[str, Any] = {"losses": losses}
    if setup.eval is not None:
        result["eval"] = evaluate(model, setup, args, device, autocast)
        log.write({"step": args.steps, "split": "eval", **result["eval"]})
    weights = full_state(model)
    if main:
        os.makedirs(args.output, exist_ok=True)
        save_folder(model, weights, args.output)
        setup.save_tokenizers(args.output)
    if distributed:
        dist.barrier()
        dist.destroy_process_group()
    return result


def evaluate(model, setup: Setup, args, device, autocast) -> Dict[str, float]:
    """Token-mean loss over the eval file and the chosen score of greedy outputs (every rank runs
    it whole: under FSDP2 each forward gathers the layers collectively)."""
    import torch

    model.eval()
    ce_sum = count = 0.0
    predictions = []
    with torch.no_grad():
        for batch, real in setup.eval_batches(bucketed=False):
            t = {k: torch.from_numpy(v).to(device) for k, v in batch.items()}
            with autocast():
                logits = model(**{k: t[k] for k in MODEL_INPUTS}).logits
            mask = (t["label_weights"] > 0).float()
            ce_sum += float(weighted_loss(logits, t["labels"], mask))
            count += float(mask.sum())
            with autocast():
                ids = model.generate(input_ids=t["input_ids"][:real], attention_mask=t["attention_mask"][:real],
                                     max_new_tokens=args.target_max_length, num_beams=1)
            predictions += setup.decoder_tokenizer.batch_decode(np.asarray(ids.cpu()), skip_special_tokens=True)
    model.train()
    return {"loss": ce_sum / count, **score(args.metric, predictions, setup.references())}
