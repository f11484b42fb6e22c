"""Generation for the TensorFlow models: ``TFGenerationMixin.generate`` (one XLA-compiled loop)
and the logits processors."""

from encdec_tf.generation import logits_process
from encdec_tf.generation.logits_process import process_scores
from encdec_tf.generation.utils import (
    TFGenerateBeamEncoderDecoderOutput,
    TFGenerateEncoderDecoderOutput,
    TFGenerationMixin,
)

__all__ = ["TFGenerationMixin", "TFGenerateEncoderDecoderOutput", "TFGenerateBeamEncoderDecoderOutput",
           "logits_process", "process_scores"]
