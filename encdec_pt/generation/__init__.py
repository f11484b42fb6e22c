"""Generation for the PyTorch models: ``GenerationMixin.generate`` and the logits processors."""

from encdec_pt.generation import logits_process
from encdec_pt.generation.logits_process import process_scores
from encdec_pt.generation.utils import GenerateBeamEncoderDecoderOutput, GenerateEncoderDecoderOutput, GenerationMixin

__all__ = ["GenerationMixin", "GenerateEncoderDecoderOutput", "GenerateBeamEncoderDecoderOutput", "logits_process",
           "process_scores"]
