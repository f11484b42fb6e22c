"""``encdec-convert``: the command line of ``conversion.convert``."""

from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

DESCRIPTION = """\
Convert an encoder-decoder checkpoint (a folder with config.json and weights, or a Hugging Face
hub id) into the files another framework loads natively. Any layout is read: model.safetensors
(PyTorch, or the TF / Flax flavours the Hugging Face classes write), pytorch_model.bin, tf_model.h5,
flax_model.msgpack, each single or sharded. config.json, generation_config.json and tokenizer files
are copied next to the new weights. Only the file formats' own readers are used (numpy, h5py,
msgpack; torch for .bin); --verify also loads both checkpoints in their frameworks.

written per --to / --format (the first format is the default):
  pt           model.safetensors (canonical; every framework here loads it) | bin: pytorch_model.bin
  tf           h5: tf_model.h5 (what TFEncoderDecoderModel writes)  | safetensors with format: tf
  flax         msgpack: flax_model.msgpack                          | safetensors with format: flax
  safetensors  model.safetensors (canonical PyTorch names)
"""

EPILOG = """\
examples:
  # a PyTorch checkpoint to TensorFlow's tf_model.h5, checking the outputs
  encdec-convert ./bert2bert ./bert2bert-tf --to tf --verify

  # to Flax, sharded into files of at most 200 MB, with flax_model.msgpack.index.json
  encdec-convert ./bert2bert ./bert2bert-flax --to flax --max-shard-size 200MB

  # a Hugging Face TF checkpoint (tf_model.h5) back to PyTorch's pytorch_model.bin
  encdec-convert ./from-tf ./as-bin --to pt --format bin

  # a hub repo to canonical model.safetensors, verified at a looser tolerance
  encdec-convert someuser/bert2bert ./local --to safetensors --verify --tolerance 1e-4

--verify runs a fixed input (random token ids from the config's vocabulary, seed fixed)
through the source in the framework its file belongs to (PyTorch for model.safetensors /
pytorch_model.bin) and through the result in the target framework, prints the max abs
difference of the logits, the encoder's last hidden state and the decoder hidden states, and
exits with status 1 when one exceeds --tolerance.

exit status: 0 done (and verified), 1 verification failed, 2 bad arguments or checkpoint.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="encdec-convert", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("src", metavar="SRC", help="checkpoint folder or hub id to read")
    parser.add_argument("dst", metavar="DST", help="folder to write (created; must not hold weights of another layout)")
    parser.add_argument("--to", required=True, choices=["pt", "tf", "flax", "safetensors"],
                        help="target framework (safetensors: canonical model.safetensors)")
    parser.add_argument("--format", choices=["safetensors", "bin", "h5", "msgpack"],
                        help="target file format (default: the target's native one, see above)")
    parser.add_argument("--from", dest="prefer", choices=["pt", "tf", "flax"],
                        help="which layout of SRC to read when it holds several (default: safetensors, bin, h5, msgpack)")
    parser.add_argument("--max-shard-size", default="5GB", metavar="SIZE",
                        help="split the weights into shards of at most SIZE, e.g. 5GB, 200MB, 10MiB (default: 5GB)")
    parser.add_argument("--verify", action="store_true", help="compare source and result outputs on a fixed input")
    parser.add_argument("--tolerance", type=float, default=1e-5, metavar="TOL",
                        help="max abs difference --verify accepts per output (default: 1e-5)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _progress(enabled: bool):
    if not enabled:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional: convert without a bar
        return None
    return lambda items, total: tqdm(items, total=total, desc="converting", unit="tensor", file=sys.stderr)


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    from conversion.api import ConversionError, convert
    from conversion.verify import OUTPUTS, VerificationError
    from encdec.files import CheckpointError

    try:
        result = convert(args.src, args.dst, to=args.to, format=args.format, max_shard_size=args.max_shard_size,
                         verify=args.verify, tolerance=args.tolerance, prefer=args.prefer,
                         progress=_progress(not args.quiet))
    except VerificationError as e:
        _print_diffs(e.diffs, OUTPUTS, args.tolerance)
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (ConversionError, CheckpointError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"read {result.source} ({result.source_format}, {result.source_framework}): {result.num_tensors} tensors")
    names = [os.path.basename(f) for f in result.files]
    shown = ", ".join(names) if len(names) <= 4 else f"{names[0]} ... {names[-1]}"
    print(f"wrote {len(names)} file(s) to {result.destination} for {result.target_framework} "
          f"({result.target_format}): {shown}")
    if result.copied:
        print(f"copied {', '.join(result.copied)}")
    for name, reason in sorted(result.dropped.items()):
        print(f"not written: {name} ({reason})")
    if result.verify is not None:
        _print_diffs(result.verify, OUTPUTS, args.tolerance)
        print(f"verified: {result.source_framework} vs {result.target_framework} within {args.tolerance:g}")
    return 0


def _print_diffs(diffs, outputs, tolerance) -> None:
    print(f"max abs difference per output (tolerance {tolerance:g}):")
    for name in outputs:
        if name in diffs:
            flag = "ok" if diffs[name] <= tolerance else "FAIL"
            print(f"  {name:28s} {diffs[name]:.3e}  {flag}")


if __name__ == "__main__":
    sys.exit(main())
