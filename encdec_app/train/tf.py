"""``encdec train --framework tf``: TensorFlow / Keras 3 ``fit`` under ``tf.distribute``.

One code path: ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` is set, else ``MirroredStrategy``
on all local devices (one device included). ``fit`` splits each global batch over the replicas.
The train step (``Step.train_step``) sums the micro-batch gradients of the replica's share,
all-reduces them, clips the *global* norm (Keras's ``global_clipnorm`` clips each replica's
gradient before its own all-reduce, which is not the global batch's norm), and applies AdamW.
"""

from __future__ import annotations

import argparse
import os
from typing import Any, Dict, List, Optional

import numpy as np

from encdec.configuration import AutoConfig
from encdec_app.train.common import (MetricsLog, Progress, Setup, config_dict, dropout_fields, latest_checkpoint,
                                     lr_factor, read_state, score, set_dropout, write_checkpoint)

MODEL_INPUTS = ("input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask")
BATCH_KEYS = MODEL_INPUTS + ("labels", "label_weights")


def build_model(setup: Setup, args: argparse.Namespace, folder: Optional[str]):
    import keras

    from encdec_tf import TFEncoderDecoderModel

    keras.utils.set_random_seed(args.seed)
    path = folder or args.model
    if path:
        config = AutoConfig.from_pretrained(path)
        if args.dropout is not None and folder is None:
            set_dropout(config.encoder, args.dropout)
            set_dropout(config.decoder, args.dropout)
        return TFEncoderDecoderModel.from_pretrained(path, config=config)
    kwargs = setup.special_ids()
    if args.dropout is not None:
        for side, name in (("encoder", args.encoder), ("decoder", args.decoder)):
            kwargs.update({f"{side}_{k}": args.dropout for k in dropout_fields(AutoConfig.from_pretrained(name))})
    return TFEncoderDecoderModel.from_encoder_decoder_pretrained(args.encoder, args.decoder, **kwargs)


LOGICAL_CPUS = "ENCDEC_TF_LOGICAL_CPUS"


def local_devices(tf):
    """The devices of ``MirroredStrategy``: TensorFlow's default (every GPU, else the CPU), or, when
    the environment variable ``ENCDEC_TF_LOGICAL_CPUS=N`` is set, N logical devices carved out of the
    one physical CPU: a way to run the several-replica code path (all-reduce, per-replica shares) on
    a machine without accelerators, for tests and trials. It is refused where TensorFlow sees a GPU
    or more than one physical CPU, so it never stands in for real devices."""
    count = os.environ.get(LOGICAL_CPUS)
    if not count:
        return None
    if not count.isdigit() or int(count) < 1:
        raise SystemExit(f"encdec train: {LOGICAL_CPUS} must be a positive integer, got {count!r}")
    cpus, gpus = tf.config.list_physical_devices("CPU"), tf.config.list_physical_devices("GPU")
    if gpus or len(cpus) != 1:
        raise SystemExit(f"encdec train: {LOGICAL_CPUS} splits one physical CPU into logical devices; this machine "
                         f"has {len(gpus)} GPU(s) and {len(cpus)} physical CPU(s): unset it to use them")
    tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * int(count))
    return [d.name for d in tf.config.list_logical_devices("CPU")]


def is_chief(strategy) -> bool:
    """The worker of a ``MultiWorkerMirroredStrategy`` that writes the files: the ``chief`` task, or
    worker 0 in a cluster without one (the convention of ``TF_CONFIG`` and Keras)."""
    resolver = strategy.cluster_resolver
    if resolver.task_type == "chief":
        return True
    return resolver.task_type == "worker" and resolver.task_id == 0 and "chief" not in resolver.cluster_spec().jobs


def recompute_layers(tf, keras, model) -> None:
    """``--gradient-checkpointing``: every layer held in a list (the transformer layers of both
    sides, as PyTorch's ``ModuleList``) runs under ``tf.recompute_grad``, so its activations are
    recomputed in the backward pass instead of kept."""
    for layer in model._flatten_layers(include_self=True, recursive=True):
        for name, value in list(vars(layer).items()):
            # the model's own lists (``layer``, ``h``), not Keras's bookkeeping (``_layers``: every sublayer)
            if name.startswith("_") or not isinstance(value, (list, tuple)) or not value:
                continue
            if all(isinstance(v, keras.layers.Layer) for v in value):
                for block in value:
                    block.call = recomputed(tf, block.call, seed_generators(block))


def seed_generators(block) -> List[Any]:
    """The Keras seed generators the dropout layers of ``block`` draw their masks from."""
    return [layer.seed_generator for layer in block._flatten_layers(include_self=True, recursive=True)
            if getattr(layer, "seed_generator", None) is not None]


def recomputed(tf, call, generators=()):
    """``call`` under ``tf.recompute_grad``: a graph-mode custom gradient takes positional tensors
    and returns tensors only, so tensor keyword arguments (the encoder states, the masks) go in as
    positional ones, the others (``training``, None) are closed over, and None outputs are put back.

    Dropout: each call of a Keras dropout draws its mask from its seed generator's state and
    advances it, so the recomputation would drop other units than the forward pass did. The states
    of ``generators`` as the forward pass found them are kept, and each run of the layer
    (the forward pass and its recomputation) starts by putting them back: both draw the same masks,
    and both leave the states where the forward pass alone would."""
    def wrapper(*args, **kwargs):
        names = [k for k, v in kwargs.items() if tf.is_tensor(v)]
        fixed = {k: v for k, v in kwargs.items() if k not in names}
        structure = {}
        # closed over, not inputs: integer inputs of a custom gradient are watched with a warning
        states = [tf.identity(generator.state.value) for generator in generators]

        @tf.recompute_grad
        def tensors_only(*tensors):
            for generator, state in zip(generators, states):
                generator.state.assign(state)
            out = call(*tensors[:len(args)], **fixed, **dict(zip(names, tensors[len(args):])))
            structure["out"] = out
            return [x for x in tf.nest.flatten(out) if x is not None]

        tensors = iter(tensors_only(*args, *[kwargs[k] for k in names]))
        flat = [None if x is None else next(tensors) for x in tf.nest.flatten(structure["out"])]
        return tf.nest.pack_sequence_as(structure["out"], flat)

    return wrapper


def run(args: argparse.Namespace, setup: Setup) -> Dict[str, Any]:
    from encdec_app.frameworks import _import_tf_quietly

    tf = _import_tf_quietly()
    import keras

    multi_worker = bool(os.environ.get("TF_CONFIG"))
    if multi_worker:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        strategy = tf.distribute.MirroredStrategy(local_devices(tf))
    replicas = strategy.num_replicas_in_sync
    main = is_chief(strategy) if multi_worker else True
    if args.batch_size % (replicas * args.grad_accum):
        raise SystemExit(f"encdec train: --batch-size {args.batch_size} must split over {replicas} replicas "
                         f"and --grad-accum {args.grad_accum}")

    resume = latest_checkpoint(args.output) if args.resume else None
    state = read_state(resume) if resume else {"step": 0}
    start = state["step"]

    class Schedule(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            step = tf.cast(step, tf.float32)
            return args.learning_rate * lr_factor(step, args.warmup_steps, args.steps, tf.minimum, tf.maximum)

    class AdamW(keras.optimizers.AdamW):
        """Keras's AdamW with the update of torch's and optax's: Keras adds epsilon to sqrt(v) before
        the bias correction (in effect epsilon / sqrt(1 - beta_2^t), 30x larger on the first step),
        which moves every small gradient's update; here epsilon is added to the corrected sqrt(v)."""

        def update_step(self, gradient, variable, learning_rate):
            ops = keras.ops
            lr = ops.cast(learning_rate, variable.dtype)
            gradient = ops.cast(gradient, variable.dtype)
            t = ops.cast(self.iterations + 1, variable.dtype)
            m = self._momentums[self._get_variable_index(variable)]
            v = self._velocities[self._get_variable_index(variable)]
            self.assign_add(m, (gradient - m) * (1 - self.beta_1))
            self.assign_add(v, (ops.square(gradient) - v) * (1 - self.beta_2))
            m_hat = m / (1 - ops.power(ops.cast(self.beta_1, variable.dtype), t))
            v_hat = v / (1 - ops.power(ops.cast(self.beta_2, variable.dtype), t))
            self.assign_sub(variable, lr * m_hat / (ops.sqrt(v_hat) + self.epsilon))

    class Step(keras.Model):
        """The encoder-decoder behind ``fit`` with the weighted loss of encdec_app.train.data."""

        def __init__(self, model):
            # float32 whatever the global policy: under mixed_bfloat16 Keras would cast the batch's
            # float inputs (the label weights, 1/tokens) to bfloat16 on the way in; the model's
            # own layers keep the global policy and compute in bfloat16
            super().__init__(dtype="float32")
            self.model = model

        def call(self, batch, training=False):
            logits = self.model(**{k: batch[k] for k in MODEL_INPUTS}, training=training).logits
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(tf.maximum(tf.cast(batch["labels"], tf.int32), 0),
                                                                tf.cast(logits, tf.float32))
            return tf.reduce_sum(ce * batch["label_weights"])

        def _maybe_symbolic_build(self, iterator=None, data_batch=None):
            # Keras 3's TF trainer builds the model from fit's first distributed batch, reduced over
            # the replicas with ``strategy.reduce``, which under MultiWorkerMirroredStrategy takes one
            # tensor, not a dict ("Attempt to convert a value ({'input_ids': PerReplica...}) ... to a
            # Tensor"; keras-team/keras#20329): build it from one local batch instead, on every worker
            example = setup.train_batch(start, bucketed=True)
            super()._maybe_symbolic_build(data_batch={k: tf.constant(example[k]) for k in BATCH_KEYS})

        def train_step(self, batch):
            variables = self.trainable_variables
            loss, grads = 0.0, [tf.zeros_like(v) for v in variables]
            for i in range(args.grad_accum):  # micro-batch i = rows i::grad_accum, as the other frameworks
                micro = {k: v[i::args.grad_accum] for k, v in batch.items()}
                with tf.GradientTape() as tape:
                    li = self(micro, training=True)
                # a variable the loss does not reach (the encoder's pooler) gets a zero gradient
                step_grads = tape.gradient(li, variables)
                loss, grads = loss + li, [g if gi is None else g + gi for g, gi in zip(grads, step_grads)]
            context = tf.distribute.get_replica_context()
            loss, grads = context.all_reduce("sum", loss), context.all_reduce("sum", grads)
            if args.max_grad_norm:
                grads, _ = tf.clip_by_global_norm(grads, args.max_grad_norm)
            # the optimizer sums gradients over replicas once more: hand it each replica's 1/N
            self.optimizer.apply_gradients(zip([g / replicas for g in grads], variables))
            # shape (1,): fit reduces the step's outputs over the replicas, under
            # MultiWorkerMirroredStrategy with ``strategy.reduce("MEAN", v, axis=0)``, which a scalar
            # has no axis for; the loss is all-reduced already, so the mean over replicas is it
            return {"loss": tf.reshape(loss, [1])}

    with strategy.scope():
        # --bf16: the model's layers take Keras's mixed_bfloat16 policy (float32 variables, bfloat16
        # compute) when they are built; the global policy is put back, so that it does not leak
        # into later models of the same process
        policy = keras.config.dtype_policy()
        if args.bf16:
            keras.config.set_dtype_policy("mixed_bfloat16")
        try:
            model = build_model(setup, args, resume)
        finally:
            keras.config.set_dtype_policy(policy)
        if args.gradient_checkpointing:
            recompute_layers(tf, keras, model)
        trainer = Step(model)
        optimizer = AdamW(Schedule(), beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                                           weight_decay=args.weight_decay)
        trainer.compile(optimizer=optimizer, jit_compile=False)
        optimizer.build(trainer.trainable_variables)
    if resume:
        saved = np.load(os.path.join(resume, "optimizer.npz"))
        for i, v in enumerate(optimizer.variables):
            v.assign(saved[f"opt_{i}"])
        for i, v in enumerate(model.non_trainable_variables):
            v.assign(saved[f"state_{i}"])

    def batches():
        for step in range(start, args.steps):
            yield {k: v for k, v in setup.train_batch(step, bucketed=True).items() if k in BATCH_KEYS}

    spec = {k: tf.TensorSpec((None, None), tf.float32 if k == "label_weights" else tf.int32) for k in BATCH_KEYS}
    dataset = tf.data.Dataset.from_generator(batches, output_signature=spec)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = dataset.with_options(options)

    log = MetricsLog(args.output, start, main)
    bar = Progress(start, args.steps, main and not args.quiet, "train (TensorFlow, Keras fit)")
    losses = []

    def checkpoint(step: int) -> None:
        def write(folder):
            model.save_pretrained(folder)
            setup.save_tokenizers(folder)
            np.savez(os.path.join(folder, "optimizer.npz"),
                     **{f"opt_{i}": np.asarray(v) for i, v in enumerate(optimizer.variables)},
                     **{f"state_{i}": np.asarray(v) for i, v in enumerate(model.non_trainable_variables)})
        if main:
            write_checkpoint(args.output, step, write, {"examples_seen": step * args.batch_size,
                                                        "args": config_dict(args), "devices": replicas})

    class Callback(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            step = start + batch + 1
            loss_value = float(np.reshape(logs["loss"], ()))
            losses.append(loss_value)
            rates = bar.update(loss_value, args.batch_size, 0)
            if step % args.log_every == 0 or step == args.steps:
                log.write({"step": step, "loss": loss_value, "lr": float(Schedule()(step - 1)), **rates})
            if args.save_every and step % args.save_every == 0:
                checkpoint(step)

    if start < args.steps:
        trainer.fit(dataset, epochs=1, steps_per_epoch=args.steps - start, shuffle=False, verbose=0,
                    callbacks=[Callback()])
    bar.close()
    result: Dict[str, Any] = {"losses": losses}
    if setup.eval is not None:
        result["eval"] = evaluate(model, setup, args)
        log.write({"step": args.steps, "split": "eval", **result["eval"]})
    if main:
        model.save_pretrained(args.output)
        setup.save_tokenizers(args.output)
    return result


def evaluate(model, setup: Setup, args) -> Dict[str, float]:
    import tensorflow as tf

    ce_sum = count = 0.0
    predictions = []
    for batch, real in setup.eval_batches(bucketed=True):
        logits = model(**{k: batch[k] for k in MODEL_INPUTS}, training=False).logits
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(np.maximum(batch["labels"], 0), tf.cast(logits, tf.float32))
        mask = (batch["label_weights"] > 0).astype(np.float32)
        ce_sum, count = ce_sum + float(tf.reduce_sum(ce * mask)), count + float(mask.sum())
        out = model.generate(batch["input_ids"][:real], attention_mask=batch["attention_mask"][:real],
                             max_new_tokens=args.target_max_length, num_beams=1)
        predictions += setup.decoder_tokenizer.batch_decode(np.asarray(getattr(out, "sequences", out)),
                                                            skip_special_tokens=True)
    return {"loss": ce_sum / count, **score(args.metric, predictions, setup.references())}
