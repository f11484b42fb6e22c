"""Loading speed and memory: ``from_pretrained`` of ours next to the reference's (transformers), in one run.

Seconds to load the base-size random bert2gpt2 of ``benchmarks/generate.py`` (a PyTorch
``model.safetensors`` of 1.05 GB) into each framework's encoder-decoder class. Each number is the
minimum of ``--runs`` loads after one warm-up load (which also pays the framework's lazy imports,
and is printed), ours and the reference's interleaved. The reference's TF and Flax classes read
the PyTorch file with ``from_pt=True``, as a user of that file must; ours need no flag. After the
timed loads our model's weights are compared with the file's (max abs difference over every
tensor of the file).

Peak memory: each load once more in a fresh process of its own (``--peak``), which imports the
framework, resets the kernel's high-water mark of its resident memory (``/proc/self/clear_refs``),
loads, and reports ``VmHWM`` minus the resident memory before the load. Resident memory counts the
pages of a mapped file that the process has read: a PyTorch load that maps the file and reads
nothing costs almost nothing until the first forward pass reads the weights.

    .venv/bin/python benchmarks/load.py                      # pt, tf, flax and their references
    .venv/bin/python benchmarks/load.py --frameworks pt --folder /tmp/b2g
"""

from __future__ import annotations

import argparse
import gc
import os
import json
import platform
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, Tuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from generate import build_folder, versions  # noqa: E402


def _ours(framework: str) -> Tuple[Callable, Callable]:
    """(load(folder) -> model, canonical(model) -> {name: array})."""
    if framework == "pt":
        from encdec_pt import EncoderDecoderModel

        return EncoderDecoderModel.from_pretrained, lambda m: m.canonical_state_dict()
    if framework == "tf":
        from encdec_tf import TFEncoderDecoderModel

        return TFEncoderDecoderModel.from_pretrained, lambda m: m.state_dict()
    from encdec_flax import FlaxEncoderDecoderModel

    return FlaxEncoderDecoderModel.from_pretrained, lambda m: m.state_dict()


def _reference(framework: str) -> Callable:
    """load(folder) -> the reference's model (TF and Flax read the PyTorch file with from_pt=True)."""
    import transformers

    if framework == "pt":
        return transformers.EncoderDecoderModel.from_pretrained
    cls = transformers.TFEncoderDecoderModel if framework == "tf" else transformers.FlaxEncoderDecoderModel
    return lambda folder: cls.from_pretrained(folder, from_pt=True)


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def _peak(framework: str, who: str, folder: str) -> Dict[str, float]:
    """In this (fresh) process: one load; its seconds and its peak resident memory in bytes above
    the resident memory after the imports."""
    load = _ours(framework)[0] if who == "ours" else _reference(framework)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current resident size
    before = _status_kb("VmRSS")
    start = time.perf_counter()
    model = load(folder)
    seconds = time.perf_counter() - start
    peak = _status_kb("VmHWM") - before
    after = _status_kb("VmRSS") - before
    del model
    return {"seconds": seconds, "peak": peak * 1024.0, "after": after * 1024.0}


def _peak_in_child(framework: str, who: str, folder: str) -> Dict[str, float]:
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--peak", f"{framework}:{who}", "--folder", folder],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frameworks", default="pt,tf,flax")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-reference", action="store_true", help="time ours only")
    parser.add_argument("--folder", default=None, help="reuse a saved model folder")
    parser.add_argument("--peak", default=None, help=argparse.SUPPRESS)  # "framework:who", in a child process
    args = parser.parse_args(argv)
    if args.peak:
        print(json.dumps(_peak(*args.peak.split(":"), args.folder)))
        return 0
    folder = args.folder or build_folder(tempfile.mkdtemp(prefix="bench-bert2gpt2-"))
    size = sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))
    print(f"# {platform.platform()} | {os.cpu_count()} cpus")
    print(f"# {versions()}")
    weights = os.path.getsize(os.path.join(folder, "model.safetensors"))
    print(f"# base bert2gpt2 folder {folder} ({size / 1e9:.2f} GB), min of {args.runs} loads after a warm-up")
    print(f"# load average at the start: {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    rows = []
    for framework in [f for f in args.frameworks.split(",") if f]:
        load_ours, canonical = _ours(framework)
        loaders: Dict[str, Callable] = {"ours": load_ours}
        if not args.no_reference:
            try:
                loaders["reference"] = _reference(framework)
            except ImportError:
                print(f"# {framework}: transformers is not installed, ours only")
        first, best, last = {}, {}, {}
        for who, load in loaders.items():
            start = time.perf_counter()
            last[who] = load(folder)
            first[who] = time.perf_counter() - start
            best[who] = float("inf")
        for _ in range(args.runs):
            for who, load in loaders.items():
                last[who] = None
                gc.collect()
                start = time.perf_counter()
                last[who] = load(folder)
                best[who] = min(best[who], time.perf_counter() - start)
        from safetensors.numpy import load_file

        stored = load_file(os.path.join(folder, "model.safetensors"))
        ours_state = canonical(last["ours"])
        missing = sorted(set(stored) - set(ours_state))
        if missing:
            raise SystemExit(f"{framework}: our model has no tensor for {missing[:4]} of the file")
        diff = f"{max(float(np.max(np.abs(ours_state[k] - stored[k]))) for k in stored):.1e} ({len(stored)} tensors)"
        del stored, ours_state
        last.clear()
        gc.collect()
        peak = {who: _peak_in_child(framework, who, folder) for who in loaders}
        for who in loaders:
            print(f"# {framework} {who}: first {first[who]:.2f} s, best {best[who]:.2f} s; in a fresh process "
                  f"{peak[who]['seconds']:.2f} s, peak {peak[who]['peak'] / 1e9:.2f} GB above the imports, "
                  f"{peak[who]['after'] / 1e9:.2f} GB held after", flush=True)
        ref = best.get("reference")
        rows.append((framework, first["ours"], best["ours"], first.get("reference"), ref,
                     f"{ref / best['ours']:.2f}x" if ref else "", peak["ours"]["peak"],
                     peak.get("reference", {}).get("peak"), diff))
    print(f"\n| framework | ours first (s) | ours (s) | reference first (s) | reference (s) | ref / ours "
          f"| ours peak (GB) | reference peak (GB) | ours peak / weights ({weights / 1e9:.2f} GB) "
          "| ours vs the file (max abs diff) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for framework, f_ours, b_ours, f_ref, b_ref, ratio, p_ours, p_ref, diff in rows:
        fmt = lambda v: "" if v is None else f"{v:.2f}"  # noqa: E731
        gb = lambda v: "" if v is None else f"{v / 1e9:.2f}"  # noqa: E731
        print(f"| {framework} | {fmt(f_ours)} | {fmt(b_ours)} | {fmt(f_ref)} | {fmt(b_ref)} | {ratio} "
              f"| {gb(p_ours)} | {gb(p_ref)} | {p_ours / weights:.2f}x | {diff} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
