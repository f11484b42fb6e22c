"""encdec: encoder-decoder models (bert2bert, bert2gpt2, ...) over one checkpoint layout.

This package is framework-free (numpy only): architecture records, configs, the canonical weight-name schema,
checkpoint files, hub resolution, the tokenizer and the generation config. The models live in
``encdec_pt`` (PyTorch), ``encdec_tf`` (TensorFlow/Keras) and ``encdec_flax`` (JAX/Flax).
"""

from encdec.configuration import AutoConfig, EncoderDecoderConfig, PretrainedConfig
from encdec.architectures import BertConfig, GPT2Config  # registers the built-in architectures
from encdec.generation_config import GenerationConfig
from encdec.tokenizer import (
    AutoTokenizer,
    BatchEncoding,
    BertTokenizer,
    BertTokenizerFast,
    GPT2Tokenizer,
    GPT2TokenizerFast,
    Tokenizer,
)

__version__ = "0.1.0"

__all__ = [
    "AutoConfig",
    "AutoTokenizer",
    "BatchEncoding",
    "BertConfig",
    "BertTokenizer",
    "BertTokenizerFast",
    "EncoderDecoderConfig",
    "GPT2Config",
    "GPT2Tokenizer",
    "GPT2TokenizerFast",
    "GenerationConfig",
    "PretrainedConfig",
    "Tokenizer",
    "pipeline",
]


def __getattr__(name: str):
    # The one upward reference (DESIGN.md, layers): `pipeline` lives in the application package,
    # which imports the frameworks; it is imported only when asked for, so `import encdec` stays
    # framework-free.
    if name == "pipeline":
        from encdec_app.pipeline import pipeline

        return pipeline
    raise AttributeError(f"module 'encdec' has no attribute {name!r}")
