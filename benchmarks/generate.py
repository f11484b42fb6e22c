"""Generation speed: ours next to the reference (transformers), in the same run.

Seconds for greedy search and 4-beam search, batch 1 and 8, 32 new tokens (exactly: min_new_tokens=32
keeps random weights from stopping early) from a 64-token source, on a base-size random bert2gpt2
(BERT-base encoder, GPT-2-small decoder with cross-attention). Each number is the minimum of
``--runs`` runs after one warm-up call (the warm-up / first-call time is printed too).

    .venv/bin/python benchmarks/generate.py                      # every framework and its reference
    .venv/bin/python benchmarks/generate.py --frameworks pt,pt-static,ref-pt --batch 1
    .venv/bin/python benchmarks/generate.py --same-process                       # all in one process

Each framework runs in a child process of its own, our runner next to the reference's in it (their
timed calls interleaved); ``--same-process`` runs them all in this one (their thread pools then
compete for the cores: see ``measure_each_framework_alone``).

Each entry of ``RUNNERS`` builds a ``generate(input_ids, attention_mask, num_beams) -> ids`` callable
from the saved folder: ours (``pt``, ``pt-plain``, ``pt-static``, ``tf``, ``flax``) and the reference's
(``ref-pt``, ``ref-tf`` under XLA, ``ref-flax``). Ratios are reference / ours for the same framework (> 1:
ours is faster). "same tokens" compares ours with the reference of the same framework; "= pt" compares our
TF / Flax output with our PyTorch one.
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

NEW_TOKENS = 32
SRC_LEN = 64
START, PAD, EOS = 50256, 0, 50256


def build_folder(path: str) -> str:
    """Save a random base-size bert2gpt2 (PyTorch init, seed 0) to ``path``."""
    import torch

    from encdec import BertConfig, EncoderDecoderConfig, GPT2Config
    from encdec_pt import EncoderDecoderModel

    torch.manual_seed(0)
    config = EncoderDecoderConfig.from_encoder_decoder_configs(
        BertConfig(), GPT2Config(is_decoder=True, add_cross_attention=True),
        decoder_start_token_id=START, pad_token_id=PAD, eos_token_id=EOS,
    )
    EncoderDecoderModel(config).eval().save_pretrained(path)
    return path


def make_inputs(batch: int):
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 30000, size=(batch, SRC_LEN)).astype(np.int64)
    mask = np.ones_like(ids)
    return ids, mask


GEN_KW = dict(max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS)
# The reference's TF and Flax generate ignore min_new_tokens; min_length counts the start token.
REF_XLA_KW = dict(max_new_tokens=NEW_TOKENS, min_length=1 + NEW_TOKENS)


# === runners: name -> (folder) -> generate(ids_np, mask_np, num_beams) -> np.ndarray ===========
def _pt(folder: str, **extra) -> Callable:
    import torch

    from encdec_pt import EncoderDecoderModel

    model = EncoderDecoderModel.from_pretrained(folder).eval()

    def run(ids, mask, num_beams):
        out = model.generate(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), num_beams=num_beams,
                             **GEN_KW, **extra)
        return out.numpy()

    return run


def _pt_plain(folder: str) -> Callable:
    """The decoder's layers on their own weights (MKL through addmm / F.linear), not the prepacked
    oneDNN copies that generate uses by default on CPU (docs/generation.md)."""
    return _pt(folder, prepack_weights=False)


def _pt_static(folder: str) -> Callable:
    return _pt(folder, cache_implementation="static")


def _pt_static_compiled(folder: str) -> Callable:
    return _pt(folder, cache_implementation="static", compile_backend="inductor")


def _ref_pt(folder: str) -> Callable:
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    model = transformers.EncoderDecoderModel.from_pretrained(folder).eval()

    def run(ids, mask, num_beams):
        with torch.no_grad():
            out = model.generate(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), num_beams=num_beams,
                                 use_cache=True, **GEN_KW)
        return out.numpy()

    return run


def _tf(folder: str) -> Callable:
    from encdec_tf import TFEncoderDecoderModel

    model = TFEncoderDecoderModel.from_pretrained(folder)  # generate is one XLA function by default

    def run(ids, mask, num_beams):
        return np.asarray(model.generate(ids, attention_mask=mask, num_beams=num_beams, **GEN_KW))

    return run


def _ref_tf(folder: str) -> Callable:
    """The reference's fastest TF path: generate wrapped in tf.function(jit_compile=True)."""
    import tensorflow as tf
    import transformers

    transformers.logging.set_verbosity_error()
    model = transformers.TFEncoderDecoderModel.from_pretrained(folder, from_pt=True)
    compiled = tf.function(model.generate, jit_compile=True)

    def run(ids, mask, num_beams):
        out = compiled(tf.constant(ids), attention_mask=tf.constant(mask), num_beams=num_beams, use_cache=True,
                       **REF_XLA_KW)
        return np.asarray(out)

    return run


def _flax(folder: str) -> Callable:
    from encdec_flax import FlaxEncoderDecoderModel

    model = FlaxEncoderDecoderModel.from_pretrained(folder)  # generate is one jitted loop per shape

    def run(ids, mask, num_beams):
        out = model.generate(ids, attention_mask=mask, num_beams=num_beams, **GEN_KW)
        return np.asarray(getattr(out, "sequences", out))

    return run


def _ref_flax(folder: str) -> Callable:
    """The reference's Flax generate (traced with lax.while_loop on every call; its BERT encode()
    is broken (bug B2), so its tokens are garbage, but the time is what its users pay)."""
    import transformers

    transformers.logging.set_verbosity_error()
    model = transformers.FlaxEncoderDecoderModel.from_pretrained(folder)

    def run(ids, mask, num_beams):
        out = model.generate(ids, attention_mask=mask, num_beams=num_beams, **REF_XLA_KW)
        return np.asarray(out.sequences)

    return run


RUNNERS: Dict[str, Callable] = {
    "pt": _pt,
    "pt-plain": _pt_plain,
    "pt-static": _pt_static,
    "pt-static-compiled": _pt_static_compiled,
    "ref-pt": _ref_pt,
    "tf": _tf,
    "ref-tf": _ref_tf,
    "flax": _flax,
    "ref-flax": _ref_flax,
}
# ours -> the reference it is compared with
REFERENCE_OF = {"pt": "ref-pt", "pt-plain": "ref-pt", "pt-static": "ref-pt", "pt-static-compiled": "ref-pt",
                "tf": "ref-tf", "flax": "ref-flax"}


def versions() -> str:
    parts = [f"python {platform.python_version()}", f"numpy {np.__version__}"]
    from importlib import metadata

    for dist in ("torch", "transformers", "tensorflow", "jax", "flax"):
        try:
            parts.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    return ", ".join(parts)


def framework_of(name: str) -> str:
    """``pt`` for pt, pt-static, ref-pt, ...; ``tf``; ``flax``."""
    return name[len("ref-"):].split("-")[0] if name.startswith("ref-") else name.split("-")[0]


def measure(names, folder: str, batches, beams_list, runs: int) -> Dict:
    """``{(name, batch, beams): (first call s, best s, ids)}``, the runners of ``names`` in this process."""
    runners = {n: RUNNERS[n](folder) for n in names}
    results = {}
    for batch in batches:
        ids, mask = make_inputs(batch)
        for beams in beams_list:
            # Warm-up of every runner, then the timed runs interleaved (ours, reference, ours, ...) so
            # that load drifting on a shared machine hits both alike.
            first, best, outs = {}, {}, {}
            for name, run in runners.items():
                start = time.perf_counter()
                outs[name] = run(ids, mask, beams)
                first[name] = time.perf_counter() - start
                best[name] = float("inf")
            for _ in range(runs):
                for name, run in runners.items():
                    start = time.perf_counter()
                    run(ids, mask, beams)
                    best[name] = min(best[name], time.perf_counter() - start)
            for name in runners:
                results[(name, batch, beams)] = (first[name], best[name], outs[name])
                print(f"# {name} batch {batch} beams {beams}: first {first[name]:.3f} s, best {best[name]:.3f} s",
                      flush=True)
    return results


def measure_each_framework_alone(names, folder: str, args) -> Dict:
    """``measure`` in one child process per framework (ours next to its reference, interleaved, in
    the same child). TensorFlow's, XLA's and PyTorch's thread pools in one process slow each other
    down on a 2-core machine (threads that wait by spinning): our PyTorch greedy batch 1 took
    0.96 s with TF and JAX loaded beside it against 0.68 s on its own (docs/performance.md)."""
    groups: Dict[str, list] = {}
    for name in names:
        groups.setdefault(framework_of(name), []).append(name)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-results-") as tmp:
        for framework, members in groups.items():
            out = os.path.join(tmp, f"{framework}.pkl")
            command = [sys.executable, os.path.abspath(__file__), "--frameworks", ",".join(members),
                       "--batch", args.batch, "--beams", args.beams, "--runs", str(args.runs),
                       "--threads", str(args.threads), "--folder", folder, "--results-to", out]
            subprocess.run(command, check=True)
            with open(out, "rb") as f:
                results.update(pickle.load(f))
    return results


def print_table(results: Dict) -> None:
    print()
    print("| framework | search | batch | first call (s) | seconds | reference (s) | ref / ours | same tokens | = pt |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (name, batch, beams), (first, best, out) in results.items():
        ref_name = REFERENCE_OF.get(name)
        ref = results.get((ref_name, batch, beams)) if ref_name else None
        search = "greedy" if beams == 1 else f"beam {beams}"
        if ref is None:
            cells = ["", "", ""]
        else:
            same = ref[2].shape == out.shape and bool((ref[2] == out).all())
            cells = [f"{ref[1]:.3f}", f"{ref[1] / best:.2f}x", "yes" if same else "NO"]
        # Ours in TF / Flax against ours in PyTorch (the reference's TF and Flax outputs are not a
        # yardstick: bugs B5, B2); the columns stay empty for reference rows.
        pt = results.get(("pt", batch, beams))
        if ref_name and pt is not None and name != "pt":
            cells.append("yes" if pt[2].shape == out.shape and bool((pt[2] == out).all()) else "NO")
        else:
            cells.append("")
        print(f"| {name} | {search} | {batch} | {first:.3f} | {best:.3f} | " + " | ".join(cells) + " |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frameworks", default="pt,ref-pt,tf,ref-tf,flax,ref-flax", help=f"comma list from {sorted(RUNNERS)}")
    parser.add_argument("--batch", default="1,8")
    parser.add_argument("--beams", default="1,4", help="1 = greedy")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--folder", default=None, help="reuse a saved model folder")
    parser.add_argument("--same-process", action="store_true",
                        help="every framework in this one process (default: one child process per framework)")
    parser.add_argument("--results-to", default=None, help=argparse.SUPPRESS)  # a child's pickle of its results
    args = parser.parse_args(argv)

    names = [n for n in args.frameworks.split(",") if n]
    unknown = [n for n in names if n not in RUNNERS]
    if unknown:
        parser.error(f"unknown frameworks {unknown}; choose from {sorted(RUNNERS)}")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    folder = args.folder or build_folder(tempfile.mkdtemp(prefix="bench-bert2gpt2-"))
    batches = [int(b) for b in args.batch.split(",")]
    beams_list = [int(b) for b in args.beams.split(",")]
    if args.results_to:  # a child of measure_each_framework_alone
        with open(args.results_to, "wb") as f:
            pickle.dump(measure(names, folder, batches, beams_list, args.runs), f)
        return 0
    alone = not args.same_process and len({framework_of(n) for n in names}) > 1
    print(f"# {platform.platform()} | {os.cpu_count()} cpus | torch threads {torch.get_num_threads()}")
    print(f"# {versions()}")
    print(f"# base bert2gpt2, source {SRC_LEN} tokens, {NEW_TOKENS} new tokens, "
          f"min of {args.runs} runs after a warm-up; "
          + ("one process per framework, ours and its reference interleaved in it" if alone else "one process"))
    if alone:
        results = measure_each_framework_alone(names, folder, args)
    else:
        results = measure(names, folder, batches, beams_list, args.runs)
    print_table(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
