"""Tiny warm-start folders and data for the ``encdec train`` tests.

The encoder and decoder are tiny records (``encdec.testing.tiny_arch_config``) with the real
MiniLM tokenizer's vocabulary, deterministic numpy weights, and the MiniLM tokenizer files, so the
whole command runs (read file -> tokenise -> train -> save -> load) in seconds on a CPU.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from encdec.formats.safetensors import save_state_dict
from encdec.configuration import EncoderDecoderConfig
from encdec.naming.schema import schema_for
from encdec.testing import deterministic_state_dict, minilm_path, tiny_arch_config
from encdec_app.demo_data import make_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
VOCAB = 30522  # MiniLM's


def tiny_side(folder: str, model_type: str, head: str, seed: int) -> str:
    config = tiny_arch_config(model_type, vocab_size=VOCAB)
    if model_type == "gpt2":
        config.n_positions = 64
    os.makedirs(folder, exist_ok=True)
    config.save_pretrained(folder)
    save_state_dict(deterministic_state_dict(schema_for(config, head=head), seed=seed), folder)
    for name in TOKENIZER_FILES:
        shutil.copy(os.path.join(minilm_path(), name), folder)
    return folder


def tiny_pair(root: str, decoder_type: str = "bert") -> Dict[str, str]:
    """``{"encoder": dir, "decoder": dir}``: a tiny BERT encoder and a tiny ``decoder_type`` causal LM."""
    return {"encoder": tiny_side(os.path.join(root, "enc"), "bert", "base", 0),
            "decoder": tiny_side(os.path.join(root, "dec"), decoder_type, "causal_lm", 1)}


def tiny_composite(folder: str, decoder_type: str = "gpt2") -> str:
    """A composite folder (config, deterministic numpy weights of every parameter, cross-attention
    included, and the MiniLM tokenizer): every framework starts ``--model`` from the same weights,
    which a warm start cannot give (each framework draws the new cross-attention with its own RNG)."""
    encoder = tiny_arch_config("bert", vocab_size=VOCAB)
    decoder = tiny_arch_config(decoder_type, vocab_size=VOCAB)
    if decoder_type == "gpt2":
        decoder.n_positions = 64
    # MiniLM's [CLS] starts the decoder, [SEP] ends it, [PAD] pads
    config = EncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder, decoder_start_token_id=101,
                                                               eos_token_id=102, pad_token_id=0)
    os.makedirs(folder, exist_ok=True)
    config.save_pretrained(folder)
    save_state_dict(deterministic_state_dict(schema_for(config), seed=2), folder)
    for name in TOKENIZER_FILES:
        shutil.copy(os.path.join(minilm_path(), name), folder)
    return folder


def write_jsonl(path: str, n: int, seed: int = 0) -> str:
    train, _ = make_dataset(n, 0, seed=seed)
    with open(path, "w") as f:
        for words, iso in train:
            f.write(json.dumps({"source": words, "target": iso}) + "\n")
    return path


def train_args(pair: Dict[str, str], data: str, output: str, framework: str, *extra: str) -> List[str]:
    """``encdec train`` arguments: ``pair`` is ``{"encoder", "decoder"}`` (warm start) or ``{"model"}``."""
    model = ["--model", pair["model"]] if "model" in pair else ["--encoder", pair["encoder"], "--decoder", pair["decoder"]]
    return ["train", "--framework", framework, *model,
            "--data", data, "--output", output, "--batch-size", "4", "--steps", "3", "--learning-rate", "1e-3",
            "--source-max-length", "24", "--target-max-length", "12", "--quiet", *extra]


def metrics(output: str, split: Optional[str] = None) -> List[dict]:
    with open(os.path.join(output, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [r for r in rows if r.get("split") == split]


def run_subprocess(argv: List[str], env: Optional[Dict[str, str]] = None, timeout: int = 300) -> str:
    """Run a command with the worktree first on PYTHONPATH; raise with its output if it fails."""
    full = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {}))
    proc = subprocess.run(argv, env=full, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}")
    return proc.stdout


# the runs that several devices repeat: dropout off, global batch 8, learning rate 1e-4 (AdamW turns a
# gradient's rounding noise into an update of up to the learning rate: a larger one would measure
# Adam's amplification of float32 rounding, not the code)
STEPS_ARGS = ("--dropout", "0", "--batch-size", "8", "--learning-rate", "1e-4")


def device_setup(root) -> dict:
    """A composite folder of deterministic weights (every framework starts from them) and 16 rows of
    data under ``root``, and the cache of ``one_device``'s runs."""
    return {"model": tiny_composite(os.path.join(root, "composite")), "data": write_jsonl(os.path.join(root, "train.jsonl"), 16),
            "root": root, "one_device": {}}


def one_device(setup: dict, framework: str) -> str:
    """The output folder of the one-device run of ``framework`` with ``STEPS_ARGS`` (run once per
    ``setup``, in this process)."""
    from encdec_app.cli import main

    done = setup["one_device"]
    if framework not in done:
        out = os.path.join(setup["root"], f"one-{framework}")
        assert main(train_args({"model": setup["model"]}, setup["data"], out, framework, *STEPS_ARGS)) == 0
        done[framework] = out
    return done[framework]


def free_port() -> int:
    """A TCP port of localhost that nothing listens on now (for a rendezvous or a coordinator)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_together(commands: Sequence[Tuple[List[str], Dict[str, str]]], timeout: int = 600) -> None:
    """Start every ``(argv, env)`` at once (the hosts of one run, which wait for each other) and wait
    for all; raise with every output if one fails or the time runs out. When one fails the others
    are stopped: they would wait for it in a collective until the timeout."""
    logs = [tempfile.TemporaryFile(mode="w+") for _ in commands]  # files, not pipes: a full pipe would block a host
    procs = [subprocess.Popen(argv, env=dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""),
                                             **env), stdout=log, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
             for (argv, env), log in zip(commands, logs)]
    deadline = time.monotonic() + timeout
    try:
        while any(p.poll() is None for p in procs):
            if any(p.returncode for p in procs) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    if any(p.returncode for p in procs):
        outputs = []
        for (argv, _), p, log in zip(commands, procs, logs):
            log.seek(0)
            outputs.append(f"--- {' '.join(argv)} ({p.returncode}):\n{log.read()[-6000:]}")
        raise AssertionError("\n".join(outputs))


def losses(output: str) -> List[float]:
    """The losses of a 3-step run's ``metrics.jsonl`` (one line per step: one process wrote it)."""
    rows = metrics(output)
    assert [r["step"] for r in rows] == [1, 2, 3]
    return [r["loss"] for r in rows]


def logits(framework: str, folder: str) -> np.ndarray:
    """Logits of a fixed batch, with the folder loaded on one device."""
    from encdec_app.frameworks import model_class

    model = model_class(framework).from_pretrained(folder)
    ids = np.array([[101, 2023, 2003, 1037, 3231, 102, 0], [101, 7592, 102, 0, 0, 0, 0]], np.int32)
    dec = np.array([[101, 1015, 1011, 5890, 102], [101, 2184, 102, 0, 0]], np.int32)
    kwargs = dict(input_ids=ids, attention_mask=(ids > 0).astype(np.int32), decoder_input_ids=dec,
                  decoder_attention_mask=(dec > 0).astype(np.int32))
    if framework == "pt":
        import torch

        with torch.no_grad():
            return model(**{k: torch.from_numpy(v).long() for k, v in kwargs.items()}).logits.numpy()
    return np.asarray(model(**kwargs).logits)


def loss_free_elements(name: str, width: int):
    """The elements of parameter ``name`` of ``tiny_composite``'s BERT-to-GPT-2 model that no loss
    depends on: the attention key biases (the softmax ignores a shift shared by every key of a
    query). Their float32 gradient is rounding noise, which AdamW scales into moves of up to the
    learning rate, so they differ between device counts (a reduction order changes the noise) by
    1e-5 and more after 3 steps of 1e-4, while every loss and logit agrees. ``width`` is GPT-2's
    ``n_embd``; an empty slice for every other parameter."""
    if name.endswith("attention.self.key.bias"):  # BERT
        return slice(None)
    if name.endswith(".crossattention.c_attn.bias"):  # GPT-2 cross-attention: keys, values (q_attn: queries)
        return slice(0, width)
    if name.endswith(".attn.c_attn.bias"):  # GPT-2 self-attention: queries, keys, values
        return slice(width, 2 * width)
    return slice(0, 0)


def assert_repeats_one_device(framework: str, out: str, reference: str, devices: int, atol: float) -> None:
    """A run over several devices (``out``, with ``--save-every 3``) repeats the one-device run
    (``reference``): its losses and every final parameter (bar ``loss_free_elements``) within ``atol``;
    ``checkpoint-3`` records ``devices``, is one folder of the library's files (no per-rank files),
    and it and the final folder load on one device with the one-device run's logits."""
    from safetensors.numpy import load_file

    from encdec_app.train.common import read_state

    checkpoint = os.path.join(out, "checkpoint-3")
    assert read_state(checkpoint)["devices"] == devices
    np.testing.assert_allclose(losses(out), losses(reference), rtol=0, atol=atol)
    final, single = load_file(os.path.join(out, "model.safetensors")), load_file(os.path.join(reference, "model.safetensors"))
    assert final.keys() == single.keys()
    with open(os.path.join(reference, "config.json")) as f:
        width = json.load(f)["decoder"]["n_embd"]
    for name in final:
        compared = np.ones(final[name].shape, bool)
        compared[loss_free_elements(name, width)] = False
        np.testing.assert_allclose(final[name][compared], single[name][compared], rtol=0, atol=atol, err_msg=name)
    assert {"config.json", "model.safetensors", "trainer_state.json"} <= set(os.listdir(checkpoint))
    assert not [n for n in os.listdir(checkpoint) if "rank" in n or n.endswith(".distcp")]
    expected = logits(framework, reference)
    for folder in (out, checkpoint):
        np.testing.assert_allclose(logits(framework, folder), expected, rtol=0, atol=atol)


PYTHON = sys.executable
ENCDEC = os.path.join(os.path.dirname(PYTHON), "encdec")  # the console script next to this interpreter
