"""Tiny warm-start folders and data for the ``encdec train`` tests.

The encoder and decoder are tiny records (``encdec.testing.tiny_arch_config``) with the real
MiniLM tokenizer's vocabulary, deterministic numpy weights, and the MiniLM tokenizer files, so the
whole command runs (read file -> tokenise -> train -> save -> load) in seconds on a CPU.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Dict, List, Optional

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


PYTHON = sys.executable
