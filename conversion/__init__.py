"""Convert checkpoints between PyTorch, TensorFlow and Flax files, ours and the Hugging Face ones.

    from conversion import convert
    convert("bert2bert-pt", "bert2bert-tf", to="tf", verify=True)

Command line: ``encdec-convert SRC DST --to pt|tf|flax`` (see ``encdec-convert --help``).
Frameworks are imported lazily, only those a call needs.
"""

from conversion.api import TARGETS, ConversionError, ConversionResult, convert, read_canonical
from conversion.verify import VerificationError, fixed_inputs, verify_conversion

__all__ = [
    "convert", "read_canonical", "ConversionError", "ConversionResult", "TARGETS",
    "VerificationError", "fixed_inputs", "verify_conversion",
]
