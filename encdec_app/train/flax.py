"""``encdec train --framework flax``: JAX/Flax with optax, on a ``jax.sharding`` mesh.

One code path for any device count: a ``Mesh`` with axes ``data`` and ``model`` (``--mesh
data=D,model=M``; default all devices on ``data``). The batch is split over ``data``; each
parameter is split over ``model`` along the axis the model's schema gives it (``param_sharding``);
the train step is one ``jax.jit`` with those in/out shardings, compiled once per length bucket.
Several hosts: ``--coordinator-address/--num-processes/--process-id`` call
``jax.distributed.initialize``; each process feeds its devices their rows of the global batch.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Dict, Optional, Tuple

import numpy as np

from encdec.configuration import AutoConfig
from encdec.naming.layout import framework_path
from encdec.naming.schema import CONV1D, EMBEDDING, LINEAR
from encdec_app.train.common import (MetricsLog, Progress, Setup, config_dict, dropout_fields, latest_checkpoint,
                                     lr_factor, read_state, score, set_dropout, write_checkpoint)

MODEL_INPUTS = ("input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask")
# The dropout keys: XLA's own bit generator rather than JAX's default Threefry, whose cost is a
# noticeable part of a train step with dropout (docs/training.md, "Measured"); dropout here draws
# a mask per element as PyTorch does, where the reference's Flax shares one attention mask over the
# batch and the heads.
PRNG_IMPL = "rbg"


def parse_mesh(spec: Optional[str], device_count: int) -> Tuple[int, int]:
    if not spec:
        return device_count, 1
    sizes = {}
    for part in spec.split(","):
        name, _, value = part.partition("=")
        if name.strip() not in ("data", "model") or not value.strip().isdigit():
            raise SystemExit(f"encdec train: --mesh wants 'data=D,model=M', got {spec!r}")
        sizes[name.strip()] = int(value)
    data, model = sizes.get("data", device_count // sizes.get("model", 1)), sizes.get("model", 1)
    if data * model != device_count:
        raise SystemExit(f"encdec train: --mesh {spec} needs {data * model} devices, there are {device_count}")
    return data, model


def split_axis(kind: str, shape: Tuple[int, ...], model_size: int) -> Optional[int]:
    """Which axis of a Flax parameter of ``kind`` and (Flax) ``shape`` is split over ``model``:
    a kernel's output features (else its input features), an embedding's rows (else its features);
    None (replicated) for norms, biases, and axes ``model_size`` does not divide."""
    if model_size == 1 or kind not in (LINEAR, CONV1D, EMBEDDING) or len(shape) != 2:
        return None
    order = (0, 1) if kind == EMBEDDING else (1, 0)  # Flax kernels are (in, out), embeddings (rows, features)
    return next((axis for axis in order if shape[axis] % model_size == 0), None)


def param_sharding(params, schema, mesh):
    """A ``NamedSharding`` per leaf of ``params``, read from the schema's kind of each canonical name."""
    from flax.traverse_util import flatten_dict, unflatten_dict
    from jax.sharding import NamedSharding, PartitionSpec as P

    kinds = {framework_path(spec, "flax"): spec.kind for spec in schema.owned()}
    out = {}
    for path, leaf in flatten_dict(dict(params)).items():
        axis = split_axis(kinds[tuple(path)], tuple(leaf.shape), mesh.shape["model"])
        spec = [None] * leaf.ndim
        if axis is not None:
            spec[axis] = "model"
        out[path] = NamedSharding(mesh, P(*spec))
    return unflatten_dict(out)


def build_model(setup: Setup, args: argparse.Namespace, folder: Optional[str], dtype):
    from encdec_flax import FlaxEncoderDecoderModel

    extra = dict(gradient_checkpointing=args.gradient_checkpointing, dtype=dtype)
    path = folder or args.model
    if path:
        config = AutoConfig.from_pretrained(path)
        if args.dropout is not None and folder is None:
            set_dropout(config.encoder, args.dropout)
            set_dropout(config.decoder, args.dropout)
        return FlaxEncoderDecoderModel.from_pretrained(path, config=config, **extra)
    kwargs = setup.special_ids()
    if args.dropout is not None:
        for side, name in (("encoder", args.encoder), ("decoder", args.decoder)):
            kwargs.update({f"{side}_{k}": args.dropout for k in dropout_fields(AutoConfig.from_pretrained(name))})
    return FlaxEncoderDecoderModel.from_encoder_decoder_pretrained(args.encoder, args.decoder, seed=args.seed,
                                                                   **kwargs, **extra)


def run(args: argparse.Namespace, setup: Setup) -> Dict[str, Any]:
    import jax
    import jax.numpy as jnp
    import optax
    from jax.experimental import multihost_utils
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    if args.coordinator_address:
        # the CPU backend's cross-process collectives (GPU and TPU backends bring their own, NCCL or
        # ICI, and ignore this option): gloo, unless the user chose another (mpi); older JAX
        # releases had none by default, and a several-process step on CPU then fails
        if not jax.config.jax_cpu_collectives_implementation:
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(args.coordinator_address, num_processes=args.num_processes,
                                   process_id=args.process_id)
    processes, process = jax.process_count(), jax.process_index()
    main = process == 0
    data_size, model_size = parse_mesh(args.mesh, jax.device_count())
    mesh = Mesh(np.asarray(jax.devices()).reshape(data_size, model_size), ("data", "model"))
    if args.batch_size % (data_size * args.grad_accum):
        raise SystemExit(f"encdec train: --batch-size {args.batch_size} must split over data={data_size} "
                         f"and --grad-accum {args.grad_accum}")

    resume = latest_checkpoint(args.output) if args.resume else None
    state = read_state(resume) if resume else {"step": 0}
    model = build_model(setup, args, resume, jnp.bfloat16 if args.bf16 else jnp.float32)
    schema = model.schema()
    p_sharding = param_sharding(model.params, schema, mesh)
    params = jax.device_put(model.params, p_sharding)

    schedule = lambda count: args.learning_rate * lr_factor(count, args.warmup_steps, args.steps,  # noqa: E731
                                                            jnp.minimum, jnp.maximum)
    adamw = optax.adamw(schedule, b1=0.9, b2=0.999, eps=1e-8, weight_decay=args.weight_decay)
    tx = optax.chain(optax.clip_by_global_norm(args.max_grad_norm), adamw) if args.max_grad_norm else adamw
    replicated = NamedSharding(mesh, P())
    # Adam's moments are sharded as their parameters, the step count replicated
    o_sharding = optax.tree_utils.tree_map_params(tx, lambda _, sharding: sharding, jax.eval_shape(tx.init, params),
                                                  p_sharding, transform_non_params=lambda _: replicated)
    opt_state = jax.jit(tx.init, out_shardings=o_sharding)(params)
    rng = jax.random.key(args.seed, impl=PRNG_IMPL)
    start = state["step"]
    if resume:
        saved = np.load(os.path.join(resume, "optimizer.npz"))
        leaves, treedef = jax.tree.flatten(opt_state)
        opt_state = jax.device_put(jax.tree.unflatten(treedef, [saved[f"leaf_{i}"] for i in range(len(leaves))]),
                                   o_sharding)
        rng = jax.random.wrap_key_data(jnp.asarray(saved["rng"]), impl=PRNG_IMPL)
    batch_sharding = NamedSharding(mesh, P("data"))
    accum = args.grad_accum

    def loss_fn(p, micro, dropout_rng):
        logits = model(**{k: micro[k] for k in MODEL_INPUTS}, params=p, train=True, dropout_rng=dropout_rng).logits
        ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), jnp.maximum(micro["labels"], 0))
        return jnp.sum(ce * micro["label_weights"])

    def train_step(p, o, batch, step_rng):
        # micro-batch i = rows i::accum, as encdec_app.train.data.micro_batches; the grads add up
        # to the global batch's (the label weights are global)
        loss, grads = 0.0, jax.tree.map(jnp.zeros_like, p)
        for i in range(accum):
            micro = {k: v[i::accum] for k, v in batch.items()}
            li, gi = jax.value_and_grad(loss_fn)(p, micro, jax.random.fold_in(step_rng, i))
            loss, grads = loss + li, jax.tree.map(jnp.add, grads, gi)
        updates, o = tx.update(grads, o, p)
        return optax.apply_updates(p, updates), o, loss

    step_fn = jax.jit(train_step, in_shardings=(p_sharding, o_sharding, batch_sharding, replicated),
                      out_shardings=(p_sharding, o_sharding, replicated), donate_argnums=(0, 1))

    def global_array(array):
        # every process holds the whole global batch (a pure function of seed and step) and hands
        # each of its devices the rows the sharding gives that device: its share, whatever the mesh
        # (a process whose devices span the model axis only, data=1, takes every row)
        return jax.make_array_from_callback(array.shape, batch_sharding, lambda index: array[index])

    def host_params(p):
        return multihost_utils.process_allgather(p, tiled=True) if processes > 1 else jax.device_get(p)

    def checkpoint(step: int) -> None:
        host, opt_host = host_params(params), host_params(opt_state)
        if main:
            def write(folder):
                model.params = host
                model.save_pretrained(folder)
                setup.save_tokenizers(folder)
                leaves = jax.tree.leaves(opt_host)
                np.savez(os.path.join(folder, "optimizer.npz"), rng=np.asarray(jax.random.key_data(rng)),
                         **{f"leaf_{i}": np.asarray(x) for i, x in enumerate(leaves)})
            write_checkpoint(args.output, step, write, {"examples_seen": step * args.batch_size,
                                                        "args": config_dict(args), "devices": data_size * model_size,
                                                        "mesh": [data_size, model_size]})
        multihost_utils.sync_global_devices(f"checkpoint-{step}")

    log = MetricsLog(args.output, start, main)
    bar = Progress(start, args.steps, main and not args.quiet, "train (Flax, optax)")
    losses = []
    with mesh:
        for step in range(start, args.steps):
            batch = setup.train_batch(step, bucketed=True)
            rng, step_rng = jax.random.split(rng)
            lr = float(schedule(step))
            params, opt_state, loss = step_fn(params, opt_state, {k: global_array(v) for k, v in batch.items()},
                                              step_rng)
            loss_value = float(loss)
            losses.append(loss_value)
            rates = bar.update(loss_value, args.batch_size, int((batch["labels"] != -100).sum()))
            if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
                log.write({"step": step + 1, "loss": loss_value, "lr": lr, **rates})
            if args.save_every and (step + 1) % args.save_every == 0:
                checkpoint(step + 1)
    bar.close()
    model.params = host_params(params)
    result: Dict[str, Any] = {"losses": losses}
    if setup.eval is not None:
        result["eval"] = evaluate(model, setup, args)
        log.write({"step": args.steps, "split": "eval", **result["eval"]})
    if main:
        model.save_pretrained(args.output)
        setup.save_tokenizers(args.output)
    return result


def evaluate(model, setup: Setup, args) -> Dict[str, float]:
    """Token-mean loss over the eval file and the chosen score of greedy outputs (on the host's
    gathered parameters)."""
    import jax
    import jax.numpy as jnp
    import optax

    @jax.jit
    def sums(params, batch):
        logits = model(**{k: batch[k] for k in MODEL_INPUTS}, params=params).logits
        ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), jnp.maximum(batch["labels"], 0))
        mask = (batch["label_weights"] > 0).astype(jnp.float32)
        return jnp.sum(ce * mask), jnp.sum(mask)

    ce_sum = count = 0.0
    predictions = []
    for batch, real in setup.eval_batches(bucketed=True):
        s, n = sums(model.params, batch)
        ce_sum, count = ce_sum + float(s), count + float(n)
        out = model.generate(batch["input_ids"][:real], attention_mask=batch["attention_mask"][:real],
                             max_new_tokens=args.target_max_length, num_beams=1)
        predictions += setup.decoder_tokenizer.batch_decode(np.asarray(getattr(out, "sequences", out)),
                                                            skip_special_tokens=True)
    return {"loss": ce_sum / count, **score(args.metric, predictions, setup.references())}
