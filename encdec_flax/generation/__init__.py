"""Generation for the Flax models: ``FlaxGenerationMixin.generate`` (one ``jax.jit``-compiled loop)
and the logits processors."""

from encdec_flax.generation import logits_process
from encdec_flax.generation.logits_process import process_scores
from encdec_flax.generation.utils import (
    FlaxBeamSearchOutput,
    FlaxGenerateBeamEncoderDecoderOutput,
    FlaxGenerateEncoderDecoderOutput,
    FlaxGenerationMixin,
    FlaxGreedySearchOutput,
    FlaxSampleOutput,
    trace_count,
)

__all__ = ["FlaxGenerationMixin", "FlaxGreedySearchOutput", "FlaxSampleOutput", "FlaxBeamSearchOutput",
           "FlaxGenerateEncoderDecoderOutput", "FlaxGenerateBeamEncoderDecoderOutput", "logits_process",
           "process_scores", "trace_count"]
