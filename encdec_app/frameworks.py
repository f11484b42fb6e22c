"""The three frameworks as the application sees them: the encoder-decoder class of each, and
generation that returns numpy whatever the framework. Each package is imported on first use
only, so ``encdec --help`` and the commands that need one framework import no other.
"""

from __future__ import annotations

import os
import sys

FRAMEWORKS = ("pt", "tf", "flax")


def _quiet_frameworks() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _import_tf_quietly():
    """Import TensorFlow with its C++ start-up chatter (absl lines that no environment variable
    silences in TF 2.21) kept off the terminal; shown after all if the import fails."""
    import tempfile

    if "tensorflow" in sys.modules:
        import tensorflow
        return tensorflow
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            import tensorflow
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    return tensorflow


def model_class(framework: str):
    """The encoder-decoder class of ``framework`` ("pt", "tf" or "flax")."""
    _quiet_frameworks()
    if framework == "tf":
        _import_tf_quietly()
    if framework == "pt":
        from encdec_pt import EncoderDecoderModel

        return EncoderDecoderModel
    if framework == "tf":
        from encdec_tf import TFEncoderDecoderModel

        return TFEncoderDecoderModel
    if framework == "flax":
        from encdec_flax import FlaxEncoderDecoderModel

        return FlaxEncoderDecoderModel
    raise ValueError(f"framework must be one of {FRAMEWORKS}, got {framework!r}")


def generate_ids(framework: str, model, input_ids, attention_mask, **kwargs):
    """``model.generate`` in any framework, returning a numpy array of sequences."""
    import numpy as np

    if framework == "pt":
        import torch

        with torch.no_grad():
            out = model.generate(input_ids=torch.from_numpy(input_ids), attention_mask=torch.from_numpy(attention_mask),
                                 **kwargs)
    else:
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
    sequences = getattr(out, "sequences", out)
    return np.asarray(sequences)
