"""Training speed and memory: ours next to the reference (transformers), in the same run.

A base-size random bert2gpt2 (BERT-base encoder, GPT-2-small decoder with cross-attention; PyTorch
init, seed 0), batch 8, source 128 tokens, target 64 tokens, dropout as configured (0.1: a real
fine-tuning step).

Part 1, ``step``: one train step of the model, ours next to the reference's, with the same step code
around both: forward in training mode, the token-mean cross-entropy of ``encdec train``, backward,
global-norm clipping at 1, AdamW (torch's, optax's, Keras's / tf-keras's). Each implementation runs
in a child process of its own (so its peak memory is its own), ours and the reference's alternating
for ``--rounds`` rounds; each child does one warm-up step (the compile, for the compiled frameworks)
then ``--steps`` timed steps. Reported: the median step over all rounds, the warm-up, and the peak
resident memory (``ru_maxrss``) of the child.

Part 2, ``trainer``: ``encdec train`` itself on the same model (``--model`` folder) and on data whose
rows all fill the 128 / 64 tokens, for one device, gradient checkpointing and the several-device
setups on this machine's virtual devices (2 gloo processes for PyTorch DDP / FSDP2, 8 XLA host devices
for Flax meshes, 2 logical CPUs for TF); step time is the median of the logged steps after the first
(``metrics.jsonl`` throughput), memory the peak resident memory of the largest process.

    .venv/bin/python benchmarks/train.py                                  # both parts, every framework
    .venv/bin/python benchmarks/train.py --part step --impls pt,ref-pt --rounds 2
    .venv/bin/python benchmarks/train.py --part trainer --setups pt,pt-ddp-2,flax-4x2

Ratios are reference / ours (> 1: ours is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

BATCH, SRC_LEN, TGT_LEN = 8, 128, 64
START, EOS, PAD = 101, 102, 0  # MiniLM's [CLS], [SEP], [PAD]: the trainer's data uses its tokenizer
LR = 1e-5


def build_folder(path: str) -> str:
    """A random base-size bert2gpt2 (PyTorch init, seed 0) with MiniLM's tokenizer files (BERT-base's
    vocabulary size: 30522), so ``encdec train --model`` runs on it."""
    import shutil

    import torch

    from encdec import BertConfig, EncoderDecoderConfig, GPT2Config
    from encdec.testing import minilm_path
    from encdec_pt import EncoderDecoderModel

    torch.manual_seed(0)
    config = EncoderDecoderConfig.from_encoder_decoder_configs(
        BertConfig(), GPT2Config(is_decoder=True, add_cross_attention=True),
        decoder_start_token_id=START, pad_token_id=PAD, eos_token_id=EOS,
    )
    EncoderDecoderModel(config).save_pretrained(path)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(os.path.join(minilm_path(), name), path)
    return path


def make_batch(seed: int = 0) -> Dict[str, np.ndarray]:
    """The trainer's batch fields: full rows, labels the decoder inputs shifted left, label weights
    1 / (target tokens of the batch)."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, 30000, size=(BATCH, SRC_LEN)).astype(np.int64)
    target = rng.integers(1000, 30000, size=(BATCH, TGT_LEN)).astype(np.int64)
    decoder_ids = np.concatenate([np.full((BATCH, 1), START), target[:, :-1]], axis=1)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids), "decoder_input_ids": decoder_ids,
            "decoder_attention_mask": np.ones_like(decoder_ids), "labels": target,
            "label_weights": np.full((BATCH, TGT_LEN), 1.0 / (BATCH * TGT_LEN), np.float32)}


MODEL_INPUTS = ("input_ids", "attention_mask", "decoder_input_ids", "decoder_attention_mask")


# === part 1: step builders: name -> (folder) -> step(batch) -> loss (a float, after the update) ====
def _pt_step(model) -> Callable:
    import torch

    from encdec_app.train.pt import weighted_loss

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    batch = {k: torch.from_numpy(v) for k, v in make_batch().items()}

    def step():
        logits = model(**{k: batch[k] for k in MODEL_INPUTS}).logits
        loss = weighted_loss(logits, batch["labels"], batch["label_weights"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss)

    return step


def _pt(folder: str) -> Callable:
    from encdec_pt import EncoderDecoderModel

    return _pt_step(EncoderDecoderModel.from_pretrained(folder))


def _pt_checkpointing(folder: str) -> Callable:
    from encdec_pt import EncoderDecoderModel

    model = EncoderDecoderModel.from_pretrained(folder)
    model.gradient_checkpointing_enable()
    return _pt_step(model)


def _ref_pt(folder: str) -> Callable:
    import transformers

    transformers.logging.set_verbosity_error()
    return _pt_step(transformers.EncoderDecoderModel.from_pretrained(folder))


def _ref_pt_checkpointing(folder: str) -> Callable:
    import transformers

    transformers.logging.set_verbosity_error()
    model = transformers.EncoderDecoderModel.from_pretrained(folder)
    model.gradient_checkpointing_enable()
    return _pt_step(model)


def _flax_step(model, params, prng: str = "threefry2x32") -> Callable:
    """``prng``: the implementation of the dropout keys (``BENCH_PRNG`` in the environment sets it
    for ours and the reference alike)."""
    import jax
    import jax.numpy as jnp
    import optax

    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(LR, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0))
    batch = {k: jnp.asarray(v) for k, v in make_batch().items()}

    def loss_fn(p, rng):
        logits = model(**{k: batch[k] for k in MODEL_INPUTS}, params=p, train=True, dropout_rng=rng).logits
        ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), batch["labels"])
        return jnp.sum(ce * batch["label_weights"])

    def train_step(p, o, rng):
        loss, grads = jax.value_and_grad(loss_fn)(p, rng)
        updates, o = tx.update(grads, o, p)
        return optax.apply_updates(p, updates), o, loss

    compiled = jax.jit(train_step, donate_argnums=(0, 1))
    state = {"p": params, "o": tx.init(params), "rng": jax.random.key(0, impl=os.environ.get("BENCH_PRNG", prng))}

    def step():
        state["rng"], rng = jax.random.split(state["rng"])
        state["p"], state["o"], loss = compiled(state["p"], state["o"], rng)
        return float(loss)

    return step


def _flax(folder: str) -> Callable:
    """Ours with the trainer's dropout keys (``encdec_app.train.flax.PRNG_IMPL``); the reference's
    with JAX's default."""
    from encdec_app.train.flax import PRNG_IMPL
    from encdec_flax import FlaxEncoderDecoderModel

    model = FlaxEncoderDecoderModel.from_pretrained(folder)
    return _flax_step(model, model.params, PRNG_IMPL)


def _flax_checkpointing(folder: str) -> Callable:
    from encdec_app.train.flax import PRNG_IMPL
    from encdec_flax import FlaxEncoderDecoderModel

    model = FlaxEncoderDecoderModel.from_pretrained(folder, gradient_checkpointing=True)
    return _flax_step(model, model.params, PRNG_IMPL)


def _ref_flax(folder: str) -> Callable:
    import transformers

    transformers.logging.set_verbosity_error()
    model = transformers.FlaxEncoderDecoderModel.from_pretrained(folder)
    return _flax_step(model, model.params)


def _tf_step(tf, model, optimizer) -> Callable:
    batch = {k: tf.constant(v) for k, v in make_batch().items()}
    variables = model.trainable_variables
    optimizer.build(variables)

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            logits = model(**{k: batch[k] for k in MODEL_INPUTS}, training=True).logits
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(batch["labels"], tf.cast(logits, tf.float32))
            loss = tf.reduce_sum(ce * batch["label_weights"])
        grads = tape.gradient(loss, variables)
        # a variable the loss does not reach (the encoder's pooler) gets a zero gradient
        grads = [tf.zeros_like(v) if g is None else g for g, v in zip(grads, variables)]
        grads, _ = tf.clip_by_global_norm(grads, 1.0)
        optimizer.apply_gradients(zip(grads, variables))
        return loss

    return lambda: float(train_step())


def _tf(folder: str) -> Callable:
    from encdec_app.frameworks import _import_tf_quietly

    tf = _import_tf_quietly()
    import keras

    from encdec_tf import TFEncoderDecoderModel

    model = TFEncoderDecoderModel.from_pretrained(folder)
    return _tf_step(tf, model, keras.optimizers.AdamW(LR, beta_1=0.9, beta_2=0.999, epsilon=1e-8, weight_decay=0.0))


def _tf_checkpointing(folder: str) -> Callable:
    from encdec_app.frameworks import _import_tf_quietly
    from encdec_app.train.tf import recompute_layers

    tf = _import_tf_quietly()
    import keras

    from encdec_tf import TFEncoderDecoderModel

    model = TFEncoderDecoderModel.from_pretrained(folder)
    recompute_layers(tf, keras, model)
    return _tf_step(tf, model, keras.optimizers.AdamW(LR, beta_1=0.9, beta_2=0.999, epsilon=1e-8, weight_decay=0.0))


def _ref_tf(folder: str) -> Callable:
    import tensorflow as tf
    import tf_keras
    import transformers

    transformers.logging.set_verbosity_error()
    model = transformers.TFEncoderDecoderModel.from_pretrained(folder, from_pt=True)
    return _tf_step(tf, model, tf_keras.optimizers.AdamW(LR, beta_1=0.9, beta_2=0.999, epsilon=1e-8,
                                                         weight_decay=0.0))


STEPS: Dict[str, Callable] = {
    "pt": _pt, "ref-pt": _ref_pt, "pt-checkpointing": _pt_checkpointing, "ref-pt-checkpointing": _ref_pt_checkpointing,
    "flax": _flax, "ref-flax": _ref_flax, "flax-checkpointing": _flax_checkpointing,
    "tf": _tf, "ref-tf": _ref_tf, "tf-checkpointing": _tf_checkpointing,
}
REFERENCE_OF = {"pt": "ref-pt", "pt-checkpointing": "ref-pt-checkpointing", "flax": "ref-flax", "tf": "ref-tf"}


def child_step(name: str, folder: str, steps: int) -> Dict:
    """Run in a child process: build ``name``'s step, one warm-up step, ``steps`` timed steps."""
    t = time.perf_counter()
    step = STEPS[name](folder)
    load = time.perf_counter() - t
    t = time.perf_counter()
    losses = [step()]
    warmup = time.perf_counter() - t
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - t)
    return {"name": name, "load_s": load, "warmup_s": warmup, "times": times, "losses": losses,
            "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def run_child(args: List[str], env=None) -> Dict:
    """``benchmarks/train.py --child ...`` in a fresh process; its last stdout line is the result."""
    out = subprocess.run([sys.executable, os.path.abspath(__file__), *args], capture_output=True, text=True,
                         env=env, cwd=ROOT)
    if out.returncode:
        raise RuntimeError(f"child {args} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def part_step(folder: str, impls: List[str], steps: int, rounds: int) -> None:
    results: Dict[str, Dict] = {}
    for r in range(rounds):
        for name in impls:
            res = run_child(["--child", name, "--folder", folder, "--steps", str(steps)])
            kept = results.setdefault(name, {"times": [], "warmup_s": [], "peak_gb": [], "losses": res["losses"]})
            kept["times"] += res["times"]
            kept["warmup_s"].append(res["warmup_s"])
            kept["peak_gb"].append(res["peak_gb"])
            print(f"  round {r + 1} {name:22s} steps {' '.join(f'{x:.2f}' for x in res['times'])} s"
                  f"  warm-up {res['warmup_s']:.1f} s  peak {res['peak_gb']:.2f} GB  loss {res['losses'][0]:.4f}",
                  flush=True)
    print(f"\n## train step, batch {BATCH}, source {SRC_LEN}, target {TGT_LEN} (median of {steps} x {rounds})\n")
    print("| implementation | step (s) | min | max | warm-up (s) | peak memory (GB) | reference / ours |")
    print("|---|---|---|---|---|---|---|")
    for name in impls:
        r = results[name]
        med = float(np.median(r["times"]))
        ref = REFERENCE_OF.get(name)
        ratio = f"{np.median(results[ref]['times']) / med:.2f}x" if ref in results else ""
        print(f"| {name} | {med:.2f} | {min(r['times']):.2f} | {max(r['times']):.2f} | "
              f"{np.median(r['warmup_s']):.1f} | {max(r['peak_gb']):.2f} | {ratio} |")
    # the first (warm-up) step's loss: ours and the reference's start from the same weights and batch
    # (dropout differs: each framework draws its own masks)
    for name, ref in REFERENCE_OF.items():
        if name in results and ref in results:
            print(f"first-step loss {name} {results[name]['losses'][0]:.5f}  {ref} {results[ref]['losses'][0]:.5f}")


# === part 2: ``encdec train`` setups ===============================================================
SETUPS: Dict[str, Dict] = {
    # name: framework, extra arguments, environment, launcher processes
    "pt": {"framework": "pt"},
    "pt-checkpointing": {"framework": "pt", "args": ["--gradient-checkpointing"]},
    "pt-ddp-2": {"framework": "pt", "nproc": 2, "args": ["--strategy", "ddp"]},
    "pt-fsdp-2": {"framework": "pt", "nproc": 2, "args": ["--strategy", "fsdp"]},
    "flax": {"framework": "flax"},
    "flax-checkpointing": {"framework": "flax", "args": ["--gradient-checkpointing"]},
    "flax-2x1": {"framework": "flax", "devices": 2, "args": ["--mesh", "data=2,model=1"]},
    "flax-4x1": {"framework": "flax", "devices": 4, "args": ["--mesh", "data=4,model=1"]},
    "flax-8x1": {"framework": "flax", "devices": 8, "args": ["--mesh", "data=8,model=1"]},
    "flax-4x2": {"framework": "flax", "devices": 8, "args": ["--mesh", "data=4,model=2"]},
    "flax-2x4": {"framework": "flax", "devices": 8, "args": ["--mesh", "data=2,model=4"]},
    "tf": {"framework": "tf"},
    "tf-checkpointing": {"framework": "tf", "args": ["--gradient-checkpointing"]},
    "tf-2": {"framework": "tf", "tf_cpus": 2},
}


def write_data(path: str, rows: int) -> str:
    """Rows whose source and target both exceed the length caps, so every batch is 128 x 64 tokens."""
    rng = np.random.default_rng(0)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]
    with open(path, "w") as f:
        for _ in range(rows):
            f.write(json.dumps({"source": " ".join(rng.choice(words, 200)),
                                "target": " ".join(rng.choice(words, 100))}) + "\n")
    return path


def child_trainer(command: List[str]) -> Dict:
    """Run in a child process: run ``command`` and report the peak resident memory of its largest
    process (``RUSAGE_CHILDREN`` of this fresh process covers that command's processes only)."""
    t = time.perf_counter()
    out = subprocess.run(command, capture_output=True, text=True)
    return {"wall_s": time.perf_counter() - t, "returncode": out.returncode, "stderr": out.stderr[-2000:],
            "peak_gb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20}


def part_trainer(folder: str, setups: List[str], steps: int) -> None:
    encdec = os.path.join(os.path.dirname(sys.executable), "encdec")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = write_data(os.path.join(tmp, "train.jsonl"), BATCH * (steps + 1))
        for name in setups:
            s = SETUPS[name]
            out = os.path.join(tmp, name)
            train = [encdec, "train", "--framework", s["framework"], "--model", folder, "--data", data, "--output", out,
                     "--steps", str(steps + 1), "--batch-size", str(BATCH), "--learning-rate", str(LR),
                     "--source-max-length", str(SRC_LEN), "--target-max-length", str(TGT_LEN), "--log-every", "1",
                     "--quiet", *s.get("args", [])]
            env = dict(os.environ)
            if s.get("nproc"):
                train = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(s["nproc"]),
                         "--master-port", "29517", "--no-python", *train]
            if s.get("devices"):
                env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={s['devices']}"
            if s.get("tf_cpus"):
                env["ENCDEC_TF_LOGICAL_CPUS"] = str(s["tf_cpus"])
            res = run_child(["--child-trainer", json.dumps(train)], env=env)
            if res["returncode"]:
                # -9: killed, on this machine by the kernel for want of memory
                why = "out of memory (killed)" if res["returncode"] == -9 else f"exit {res['returncode']}"
                rows.append({"name": name, "failed": why, "peak_gb": res["peak_gb"]})
                print(f"  {name:20s} failed: {why}, peak {res['peak_gb']:.2f} GB\n{res['stderr']}", flush=True)
                continue
            with open(os.path.join(out, "metrics.jsonl")) as f:
                logged = [json.loads(line) for line in f if line.strip()]
            step_s = [BATCH / r["examples_per_s"] for r in logged if "examples_per_s" in r]
            first, rest = step_s[0], step_s[1:]
            row = {"name": name, "step_s": float(np.median(rest)), "min": min(rest), "max": max(rest), "first_s": first,
                   "peak_gb": res["peak_gb"], "wall_s": res["wall_s"], "loss": logged[-1]["loss"]}
            rows.append(row)
            print(f"  {name:20s} steps {' '.join(f'{x:.2f}' for x in rest)} s  first {first:.1f} s  "
                  f"peak {res['peak_gb']:.2f} GB  run {res['wall_s']:.0f} s", flush=True)
    print(f"\n## encdec train, batch {BATCH}, source {SRC_LEN}, target {TGT_LEN} (median of {steps} steps after the first)\n")
    print("| setup | step (s) | min | max | first step (s) | peak memory per process (GB) | vs one device |")
    print("|---|---|---|---|---|---|---|")
    base = {r["name"].split("-")[0]: r["step_s"] for r in rows if r["name"] in ("pt", "flax", "tf")}
    for r in rows:
        if "failed" in r:
            print(f"| {r['name']} | {r['failed']} | | | | {r['peak_gb']:.2f} | |")
            continue
        one = base.get(r["name"].split("-")[0])
        rel = f"{r['step_s'] / one:.2f}x" if one and r["name"] not in ("pt", "flax", "tf") else ""
        print(f"| {r['name']} | {r['step_s']:.2f} | {r['min']:.2f} | {r['max']:.2f} | {r['first_s']:.1f} | "
              f"{r['peak_gb']:.2f} | {rel} |")


def versions() -> str:
    from importlib import metadata

    parts = [f"python {platform.python_version()}", f"numpy {np.__version__}"]
    for dist in ("torch", "transformers", "tensorflow", "jax", "flax", "optax"):
        try:
            parts.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(parts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["step", "trainer", "both"], default="both")
    p.add_argument("--impls", default="pt,ref-pt,flax,ref-flax,tf,ref-tf,pt-checkpointing,flax-checkpointing,tf-checkpointing",
                   help=f"part 1, among {','.join(STEPS)}")
    p.add_argument("--setups", default=",".join(SETUPS), help=f"part 2, among {','.join(SETUPS)}")
    p.add_argument("--steps", type=int, default=3, help="timed steps per child (part 1) / run (part 2)")
    p.add_argument("--rounds", type=int, default=1, help="part 1: alternating rounds of every implementation")
    p.add_argument("--folder", default=None, help="a saved base bert2gpt2 (made in a temporary folder if absent)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-trainer", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child_step(args.child, args.folder, args.steps)))
        return
    if args.child_trainer:
        print(json.dumps(child_trainer(json.loads(args.child_trainer))))
        return
    print(f"{platform.machine()}, {os.cpu_count()} CPUs; {versions()}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.folder or build_folder(os.path.join(tmp, "bert2gpt2"))
        if args.part in ("step", "both"):
            part_step(folder, args.impls.split(","), args.steps, args.rounds)
        if args.part in ("trainer", "both"):
            part_trainer(folder, args.setups.split(","), args.steps)


if __name__ == "__main__":
    main()
