"""``generate`` for ``TFEncoderDecoderModel``: greedy search, multinomial sampling and beam search,
compiled whole with XLA.

The TensorFlow port of ``encdec_pt/generation/utils.py`` (semantics in docs/generation.md;
settings resolved by ``encdec.generation_utils.resolve_generation_settings``); the tokens equal
the reference's PyTorch ``generate``. Everything has fixed shapes so that one call is ONE
``tf.function(jit_compile=True)``: the encoder, ``enc_to_dec_proj``, the cross-attention keys/values,
then a ``tf.while_loop`` of fixed-shape steps on a static
self-attention cache (N, H, max_length, Dh) with explicit position ids and decoder mask
(``static_cache.py``). Token buffers are (N, max_length); the loop state carries ``cur_len``.

    encode once -> project (enc_to_dec_proj) -> repeat rows (beams / returned samples)
    -> ids = [[start]] -> cross K/V once -> loop: logits = static step on the last token
       -> scores = process_scores(ids, logits | log_softmax(logits)) -> pick -> write at cur_len -> stop?

One compiled function is kept per shape signature (batch, source length, the settings, which
include max_length and num_beams, and the input kind) and reused: a second call with the same
shapes does not trace again. ``use_xla=False`` runs the same Python function eagerly.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import tensorflow as tf

from encdec.generation_config import GenerationConfig
from encdec.generation_utils import (GenerationSettings, check_generation_config_argument, check_host_features,
                                     resolve_generation_settings)
from encdec_tf.generation.logits_process import process_scores
from encdec_tf.generation.static_cache import allocate_static_cache, static_decoder_step
from encdec_tf.layers import xla_trace
from encdec_tf.modeling_outputs import ModelOutput
from encdec_tf.modeling_utils import additive_mask, check_ids

# Encoder keyword arguments generate() passes through (everything else must be a generation setting).
_ENCODER_KWARGS = ("token_type_ids", "position_ids")


@dataclasses.dataclass
class TFGenerateEncoderDecoderOutput(ModelOutput):
    """Greedy search / sampling with ``return_dict_in_generate`` (the fields of the reference's
    PyTorch ``GenerateEncoderDecoderOutput``, in its order).

    ``sequences`` (N, T) int32, N = batch * num_return_sequences; ``scores``: one (N, V) float32
    tensor of processed scores per generated step (with ``output_scores``); ``past_key_values``:
    per decoder layer ``(self_k, self_v, cross_k, cross_v)``, self (N, H, T - 1, Dh) (the last
    token was not fed back), cross (N, H, S, Dh). ``logits`` and the attention / hidden-state
    fields are not computed by this generate and stay None."""

    sequences: tf.Tensor = None
    scores: Optional[Tuple[tf.Tensor, ...]] = None
    logits: Optional[Tuple[tf.Tensor, ...]] = None
    encoder_attentions: Optional[Tuple[tf.Tensor, ...]] = None
    encoder_hidden_states: Optional[Tuple[tf.Tensor, ...]] = None
    decoder_attentions: Optional[Tuple[Tuple[tf.Tensor, ...], ...]] = None
    cross_attentions: Optional[Tuple[Tuple[tf.Tensor, ...], ...]] = None
    decoder_hidden_states: Optional[Tuple[Tuple[tf.Tensor, ...], ...]] = None
    past_key_values: Optional[Tuple[Tuple[tf.Tensor, ...], ...]] = None


@dataclasses.dataclass
class TFGenerateBeamEncoderDecoderOutput(ModelOutput):
    """Beam search with ``return_dict_in_generate`` (the fields of the reference's PyTorch
    ``GenerateBeamEncoderDecoderOutput``, in its order): ``sequences`` (N, T), ``sequences_scores``
    (N,), ``scores`` (one (batch * num_beams, V) tensor per step, with ``output_scores``),
    ``beam_indices`` (N, T - 1), ``past_key_values`` of the running beams (batch * num_beams rows);
    ``sequences_scores`` only with ``output_scores``, as the reference."""

    sequences: tf.Tensor = None
    sequences_scores: Optional[tf.Tensor] = None
    scores: Optional[Tuple[tf.Tensor, ...]] = None
    logits: Optional[Tuple[tf.Tensor, ...]] = None
    beam_indices: Optional[tf.Tensor] = None
    encoder_attentions: Optional[Tuple[tf.Tensor, ...]] = None
    encoder_hidden_states: Optional[Tuple[tf.Tensor, ...]] = None
    decoder_attentions: Optional[Tuple[Tuple[tf.Tensor, ...], ...]] = None
    cross_attentions: Optional[Tuple[Tuple[tf.Tensor, ...], ...]] = None
    decoder_hidden_states: Optional[Tuple[Tuple[tf.Tensor, ...], ...]] = None
    past_key_values: Optional[Tuple[Tuple[tf.Tensor, ...], ...]] = None


class _StaticDecoder:
    """Fixed-shape steps on (N, H, max_length, Dh) buffers (``static_decoder_step``), the start
    token's included; the cross-attention keys/values are computed once (``allocate_static_cache``)."""

    def __init__(self, decoder, hidden: tf.Tensor, mask: tf.Tensor, max_length: int):
        self.decoder, self.hidden, self.mask, self.max_length = decoder, hidden, mask, max_length
        self.cross_bias = additive_mask(tf.cast(mask, tf.int32)[:, None, None, :], hidden.dtype)  # (N, 1, 1, S)

    def allocate(self) -> List[tf.Tensor]:
        return allocate_static_cache(self.decoder, self.hidden, self.max_length)

    def prefill(self, prompt: tf.Tensor, buffers: List[tf.Tensor]) -> List[tf.Tensor]:
        """The buffers with the self keys/values of the prompt's first P - 1 tokens (N, P), one
        fixed-shape step each; the loop feeds the last one. The start token alone needs none."""
        prompt_len = prompt.shape[1]
        if prompt_len == 1:
            return buffers

        def body(position, buffers):
            tokens = tf.gather(prompt, position, axis=1)[:, None]  # (N, 1)
            return position + 1, self.step(tokens, position, buffers)[1]

        return tf.while_loop(lambda position, _: position < prompt_len - 1, body, (tf.constant(0), buffers),
                             maximum_iterations=prompt_len - 1)[1]

    def step(self, input_ids: tf.Tensor, position: tf.Tensor, buffers: List[tf.Tensor]):
        """Logits (N, V) for ``input_ids`` (N, 1) at ``position`` and the updated buffers."""
        logits, buffers = static_decoder_step(self.decoder, input_ids, position, self.hidden, self.cross_bias, buffers)
        return tf.cast(logits, tf.float32), buffers

    @staticmethod
    def reorder(buffers: List[tf.Tensor], beam_idx: tf.Tensor) -> List[tf.Tensor]:
        """Rows of the self-attention cache follow their beams. Cross keys/values are equal for every
        beam of an input (rows were repeated), and beams never move across inputs: left as they are."""
        return [tf.gather(b, beam_idx, axis=0) if i % 4 < 2 else b for i, b in enumerate(buffers)]


def _infer_attention_mask(input_ids: np.ndarray, settings: GenerationSettings) -> Optional[np.ndarray]:
    """The reference's rule when no mask is given: ``input_ids != pad`` if pad occurs in the inputs
    and pad is not an eos id; otherwise no mask (all positions attended)."""
    pad = settings.pad_token_id
    if bool((input_ids == pad).any()) and pad not in settings.eos_token_ids:
        return (input_ids != pad).astype(np.int32)
    return None


def _last_hidden(encoder_outputs: Any) -> tf.Tensor:
    if isinstance(encoder_outputs, (tuple, list)):
        return tf.convert_to_tensor(encoder_outputs[0])
    if isinstance(encoder_outputs, ModelOutput):
        return tf.convert_to_tensor(encoder_outputs.last_hidden_state)
    return tf.convert_to_tensor(encoder_outputs)


class TFGenerationMixin:
    """Adds ``generate`` to ``TFEncoderDecoderModel``."""

    def generate(
        self,
        inputs: Optional[Any] = None,
        generation_config: Optional[GenerationConfig] = None,
        attention_mask: Optional[Any] = None,
        encoder_outputs: Any = None,
        seed: Optional[int] = None,
        use_xla: bool = True,
        streamer: Any = None,
        **kwargs: Any,
    ):
        """Generate decoder token ids.

        Args:
            inputs: encoder ``input_ids`` (B, S) (also accepted as ``input_ids=``).
            generation_config: a ``GenerationConfig`` for this call (second positional argument, as in
                the reference); its values at the defaults take the model's (``prepare_generation_config``),
                keyword settings win over it.
            attention_mask: encoder mask (B, S); when absent it is inferred from pad tokens as the reference does.
            decoder_input_ids: a decoder prompt (B, P), continued by the generation (the start token is
                prepended when no row begins with it, as in the reference; docs/generation.md).
            encoder_outputs: reuse an encoder output (object, tuple or tensor whose first item is the
                last hidden state (B, S, E)); the encoder is not run.
            seed: the seed of the stateless random ops of sampling (default 0): the same seed gives
                the same samples, with or without XLA.
            use_xla: run the whole generation as one ``tf.function(jit_compile=True)`` (default),
                compiled once per shape signature; False runs the same function eagerly.
            streamer: refused (as ``max_time``): both need a host call at every step, which the
                compiled loop does not make.
            **kwargs: generation settings (``max_new_tokens``, ``num_beams``, ``generation_config`` ...),
                resolved by ``encdec.generation_utils.resolve_generation_settings``.

        Returns ``sequences`` (B * num_return_sequences, T) int32, or with ``return_dict_in_generate``
        a ``TFGenerateEncoderDecoderOutput`` (``TFGenerateBeamEncoderDecoderOutput`` for beam search).
        """
        if inputs is None:
            inputs = kwargs.pop("input_ids", None)
        elif "input_ids" in kwargs:
            raise ValueError("pass the encoder input ids once: as `inputs` or as `input_ids`, not both")
        check_generation_config_argument(generation_config)
        settings, model_kwargs = resolve_generation_settings(
            self.config, getattr(self, "generation_config", None), vocab_size=self.config.decoder.vocab_size,
            generation_config=generation_config, **kwargs
        )
        check_host_features(settings, streamer, "tf")
        encoder_kwargs = {k: tf.convert_to_tensor(model_kwargs.pop(k)) for k in _ENCODER_KWARGS if k in model_kwargs}
        prompt = model_kwargs.pop("decoder_input_ids", None)  # (B, P) numpy, the start token first
        model_kwargs.pop("use_cache", None)  # the loop always uses its static cache
        if model_kwargs:
            raise ValueError(f"generate got arguments that are neither generation settings nor encoder inputs: "
                             f"{sorted(model_kwargs)}")

        # === Encoder input or output; a mask always (ones when none is given or inferred) ===
        if encoder_outputs is None:
            if inputs is None:
                raise ValueError("generate needs encoder input ids (inputs=...) or encoder_outputs=...")
            source = tf.cast(tf.convert_to_tensor(inputs), tf.int32)
            if source.shape.rank != 2:
                raise ValueError(f"inputs must be (batch, length) token ids, got shape {tuple(source.shape)}")
            check_ids(source, self.config.encoder.vocab_size, "input_ids")  # the compiled gather would not
            if attention_mask is None:
                attention_mask = _infer_attention_mask(source.numpy(), settings)
            batch_size, source_length = source.shape
        else:
            source = _last_hidden(encoder_outputs)
            if source.shape.rank != 3:
                raise ValueError(f"encoder_outputs[0] must be (batch, length, hidden), got shape {tuple(source.shape)}")
            batch_size, source_length = source.shape[0], source.shape[1]
        if attention_mask is None:
            attention_mask = tf.ones((batch_size, source_length), tf.int32)
        attention_mask = tf.cast(tf.convert_to_tensor(attention_mask), tf.int32)
        if tuple(attention_mask.shape) != (batch_size, source_length):
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)} but the encoder input has "
                             f"(batch, length) = {(batch_size, source_length)}")
        if prompt is None:
            prompt = np.full((batch_size, 1), settings.decoder_start_token_id, np.int32)
        elif prompt.shape[0] != batch_size:
            raise ValueError(f"decoder_input_ids has {prompt.shape[0]} rows but the encoder input has {batch_size}")
        prompt = tf.constant(prompt, tf.int32)
        seed_pair = tf.constant([0 if seed is None else int(seed), 0], dtype=tf.int32)

        # === One function per shape signature, traced once ===
        kind = "ids" if encoder_outputs is None else "hidden"
        traced_settings = dataclasses.replace(settings, return_dict_in_generate=False)  # not part of the graph
        signature = (kind, tuple(source.shape), source.dtype.name,
                     tuple(sorted((k, tuple(v.shape)) for k, v in encoder_kwargs.items())), traced_settings)
        fn = self._generate_function(signature, use_xla)
        out = fn(source, attention_mask, encoder_kwargs, prompt, seed_pair)
        return _finish(out, settings, batch_size)

    def _generate_function(self, signature: Tuple, use_xla: bool) -> Callable:
        """The (compiled) generation function for this signature, built once."""
        kind, settings = signature[0], signature[-1]

        def run(source, attention_mask, encoder_kwargs, prompt, seed_pair):
            self.__dict__["_generate_traces"] = self.__dict__.get("_generate_traces", 0) + 1
            return self._generate_graph(kind, settings, source, attention_mask, encoder_kwargs, prompt, seed_pair)

        if not use_xla:
            return run

        def run_for_xla(source, attention_mask, encoder_kwargs, prompt, seed_pair):
            with xla_trace():  # this body runs only while tracing
                return run(source, attention_mask, encoder_kwargs, prompt, seed_pair)

        functions = self.__dict__.setdefault("_generate_functions", {})
        # a traced function holds the variables it read: a resized vocabulary makes new ones
        signature = signature + ((self.config.encoder.vocab_size, self.config.decoder.vocab_size),)
        if signature not in functions:
            functions[signature] = tf.function(run_for_xla, jit_compile=True, autograph=False)
        return functions[signature]

    def _generate_graph(self, kind: str, s: GenerationSettings, source, attention_mask, encoder_kwargs, prompt,
                        seed_pair):
        """Everything after the settings: encoder, projection, expansion, the decoding loop."""
        # === Encode once ===
        if kind == "ids":
            encoder_outputs = self.encoder(input_ids=source, attention_mask=attention_mask, return_dict=True,
                                           training=False, **encoder_kwargs)
            hidden = encoder_outputs.last_hidden_state  # (B, S, E_enc)
        else:
            hidden = source
        if self.enc_to_dec_proj is not None:
            hidden = self.enc_to_dec_proj(hidden)  # (B, S, E_dec)
        batch_size = hidden.shape[0]

        # === One row per beam / returned sample ===
        expand = s.num_beams if s.is_beam else s.num_return_sequences
        if expand > 1:
            hidden = tf.repeat(hidden, expand, axis=0)
            attention_mask = tf.repeat(attention_mask, expand, axis=0)
        decoder = _StaticDecoder(self.decoder, hidden, attention_mask, s.max_length)
        input_ids = tf.repeat(prompt, expand, axis=0) if expand > 1 else prompt  # (B * n, P)
        if s.is_beam:
            return _beam_search(decoder, input_ids, s, batch_size, self.config.decoder.vocab_size, seed_pair)
        return _greedy_or_sample(decoder, input_ids, s, seed_pair)


def _write_column(buffer: tf.Tensor, values: tf.Tensor, index: tf.Tensor) -> tf.Tensor:
    """buffer (..., L) with position ``index`` of its last axis replaced by values (...)."""
    at = tf.range(buffer.shape[-1]) == index  # (L,)
    return tf.where(at, values[..., None], buffer)


def _gumbel(shape, seed: tf.Tensor) -> tf.Tensor:
    """Gumbel noise -log(-log(u)) of ``shape``.

    The random bits are stateless Philox bits, made uniform in (0, 1) here: XLA's and TensorFlow's
    kernels give the same bits but not the same floats (nor the same ``stateless_categorical``), and
    eager generation must give the compiled tokens.
    """
    bits = tf.random.stateless_uniform(shape, seed=seed, minval=None, maxval=None, dtype=tf.uint32, alg="philox")
    top24 = tf.bitwise.right_shift(bits, tf.constant(8, tf.uint32))
    uniform = (tf.cast(top24, tf.float32) + 0.5) * (1.0 / (1 << 24))  # in (0, 1), exact in float32
    return -tf.math.log(-tf.math.log(uniform))


def _sample(scores: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """One draw per row from softmax(scores) (N, V), by Gumbel-max: argmax(scores + Gumbel noise)."""
    return tf.argmax(scores + _gumbel(tf.shape(scores), seed), axis=-1, output_type=tf.int32)


def _greedy_or_sample(decoder: _StaticDecoder, input_ids: tf.Tensor, s: GenerationSettings, seed_pair: tf.Tensor):
    """Greedy search / multinomial sampling (the reference's ``_sample``)."""
    (n, prompt_len), max_length = input_ids.shape, s.max_length
    has_eos = len(s.eos_token_ids) > 0
    eos = tf.constant(s.eos_token_ids or (0,), dtype=tf.int32)
    sequences = tf.concat([input_ids, tf.fill((n, max_length - prompt_len), s.pad_token_id)], axis=1)  # (N, L)
    buffers = decoder.prefill(input_ids, decoder.allocate())
    vocab_size = decoder.decoder.config.vocab_size
    all_scores = tf.zeros((max_length - prompt_len if s.output_scores else 0, n, vocab_size), tf.float32)

    def cond(cur_len, sequences, buffers, unfinished, all_scores):
        return (cur_len < max_length) & tf.reduce_any(unfinished)

    def body(cur_len, sequences, buffers, unfinished, all_scores):
        last_tokens = tf.gather(sequences, cur_len - 1, axis=1)[:, None]  # (N, 1)
        logits, buffers = decoder.step(last_tokens, cur_len - 1, buffers)  # (N, V)
        scores = process_scores(s, sequences, cur_len, logits)
        if s.output_scores:
            all_scores = tf.tensor_scatter_nd_update(all_scores, tf.reshape(cur_len - prompt_len, (1, 1)), scores[None])
        if s.do_sample:
            next_tokens = _sample(scores, tf.stack([seed_pair[0], seed_pair[1] + cur_len]))
        else:
            next_tokens = tf.argmax(scores, axis=-1, output_type=tf.int32)
        if has_eos:  # finished rows get pad
            next_tokens = tf.where(unfinished, next_tokens, s.pad_token_id)
        sequences = _write_column(sequences, next_tokens, cur_len)
        if has_eos:
            unfinished = unfinished & ~tf.reduce_any(next_tokens[:, None] == eos[None, :], axis=1)
        return cur_len + 1, sequences, buffers, unfinished, all_scores

    state = (tf.constant(prompt_len), sequences, buffers, tf.ones((n,), tf.bool), all_scores)
    cur_len, sequences, buffers, _, all_scores = tf.while_loop(cond, body, state,
                                                               maximum_iterations=max_length - prompt_len)
    # The buffers are the loop's state already: returning them costs no copy (kept for past_key_values).
    return {"sequences": sequences, "cur_len": cur_len, "scores": all_scores, "cache": buffers}


def _gather_beams(tensor: tf.Tensor, beam_indices: tf.Tensor) -> tf.Tensor:
    """tensor (B, K, ...) , beam_indices (B, K') -> (B, K', ...)."""
    return tf.gather(tensor, beam_indices, batch_dims=1)


def _beam_search(decoder: _StaticDecoder, input_ids: tf.Tensor, s: GenerationSettings, batch_size: int,
                 vocab_size: int, seed_pair: tf.Tensor):
    """The reference's vectorised beam search (transformers 4.57 ``_beam_search``); with ``do_sample``
    beam sampling: the continuations are drawn without replacement from softmax(accumulated scores),
    by Gumbel-top-k (the K largest of scores + Gumbel noise, in the order drawn: the distribution of
    the reference's ``torch.multinomial`` without replacement), instead of taken best first.

    Keeps, per input, ``num_beams`` running beams and ``num_beams`` finished hypotheses; each step
    takes the top ``beams_to_keep = max(2, 1 + n_eos) * num_beams`` continuations of all running
    beams, moves the ones that stop (eos or max length) among the first ``num_beams`` into the
    finished set (score / generated_length ** length_penalty) and continues the best non-stopped ones.
    """
    nb, max_length = s.num_beams, s.max_length
    length_penalty, early_stopping = s.length_penalty, s.early_stopping
    eos = tf.constant(s.eos_token_ids or (0,), dtype=tf.int32)
    n_eos = len(s.eos_token_ids)
    beams_to_keep = max(2, 1 + n_eos) * nb
    top_num_beam_mask = tf.constant([True] * nb + [False] * (beams_to_keep - nb))
    # The reference fills unused positions with `pad or eos[0]` (so eos when pad == 0), -1 without eos.
    if n_eos:
        fill_value = s.pad_token_id if s.pad_token_id else s.eos_token_ids[0]
    else:
        fill_value = -1
    prompt_len = input_ids.shape[1]  # the start token, or the decoder prompt

    running_sequences = tf.concat([tf.reshape(input_ids, (batch_size, nb, prompt_len)),
                                   tf.fill((batch_size, nb, max_length - prompt_len), fill_value)], axis=2)  # (B, nb, L)
    sequences = running_sequences
    running_beam_scores = tf.concat([tf.zeros((batch_size, 1)), tf.fill((batch_size, nb - 1), -1e9)], axis=1)
    beam_scores = tf.fill((batch_size, nb), -1e9)
    is_sent_finished = tf.zeros((batch_size, nb), tf.bool)
    improvement_possible = tf.ones((batch_size, 1), tf.bool)
    running_beam_indices = tf.fill((batch_size, nb, max_length - prompt_len), -1)
    beam_indices = running_beam_indices
    batch_offset = tf.range(batch_size)[:, None] * nb  # (B, 1)
    buffers = decoder.prefill(input_ids, decoder.allocate())
    all_scores = tf.zeros((max_length - prompt_len if s.output_scores else 0, batch_size * nb, vocab_size), tf.float32)

    def cond(cur_len, keep_going, *_):
        return keep_going & (cur_len < max_length)

    def body(cur_len, keep_going, buffers, running_sequences, running_beam_scores, running_beam_indices,
             sequences, beam_scores, beam_indices, is_sent_finished, improvement_possible, all_scores):
        flat_running = tf.reshape(running_sequences, (batch_size * nb, max_length))
        last_tokens = tf.gather(flat_running, cur_len - 1, axis=1)[:, None]  # (B * nb, 1)
        logits, buffers = decoder.step(last_tokens, cur_len - 1, buffers)  # (B * nb, V)
        log_probs = tf.nn.log_softmax(logits, axis=-1)
        log_probs = process_scores(s, flat_running, cur_len, log_probs)
        if s.output_scores:
            all_scores = tf.tensor_scatter_nd_update(all_scores, tf.reshape(cur_len - prompt_len, (1, 1)),
                                                     log_probs[None])
        acc = tf.reshape(tf.reshape(log_probs, (batch_size, nb, vocab_size)) + running_beam_scores[:, :, None],
                         (batch_size, nb * vocab_size))

        # --- top-k continuations over all beams of an input ---
        if s.do_sample:
            noise = _gumbel(tf.shape(acc), tf.stack([seed_pair[0], seed_pair[1] + cur_len]))
            topk_indices = tf.math.top_k(acc + noise, k=beams_to_keep).indices  # (B, K), in drawing order
            topk_log_probs = tf.gather(acc, topk_indices, batch_dims=1)
        else:
            topk_log_probs, topk_indices = tf.math.top_k(acc, k=beams_to_keep)  # (B, K)
        topk_beam = topk_indices // vocab_size
        topk_running_beam_indices = _gather_beams(running_beam_indices, topk_beam)
        topk_running_sequences = _gather_beams(running_sequences, topk_beam)
        topk_ids = topk_indices % vocab_size
        topk_running_sequences = _write_column(topk_running_sequences, topk_ids, cur_len)
        topk_running_beam_indices = _write_column(topk_running_beam_indices, topk_beam + batch_offset,
                                                  cur_len - prompt_len)

        # --- which continuations stop (max length reached or eos) ---
        hits = tf.fill(tf.shape(topk_ids), cur_len + 1 >= max_length)
        if n_eos:
            hits = hits | tf.reduce_any(topk_ids[:, :, None] == eos, axis=-1)

        # --- running beams for the next step: best non-stopping continuations ---
        topk_running_log_probs = topk_log_probs + tf.cast(hits, tf.float32) * -1.0e9
        next_topk = tf.math.top_k(topk_running_log_probs, k=nb).indices
        running_sequences = _gather_beams(topk_running_sequences, next_topk)
        running_beam_scores = _gather_beams(topk_running_log_probs, next_topk)
        running_beam_indices = _gather_beams(topk_running_beam_indices, next_topk)

        # --- finished hypotheses: merge the stopping ones among the first nb, keep the best nb ---
        just_finished = hits & top_num_beam_mask[None, :]
        finished_scores = topk_log_probs / (tf.cast(cur_len + 1 - prompt_len, tf.float32) ** length_penalty)
        beams_in_batch_are_full = tf.reduce_all(is_sent_finished, axis=-1, keepdims=True) & (early_stopping is True)
        finished_scores = finished_scores + tf.cast(beams_in_batch_are_full, tf.float32) * -1.0e9
        finished_scores = finished_scores + tf.cast(~improvement_possible, tf.float32) * -1.0e9
        finished_scores = finished_scores + tf.cast(~just_finished, tf.float32) * -1.0e9
        merged_sequences = tf.concat([sequences, topk_running_sequences], axis=1)
        merged_scores = tf.concat([beam_scores, finished_scores], axis=1)
        merged_beam_indices = tf.concat([beam_indices, topk_running_beam_indices], axis=1)
        merged_finished = tf.concat([is_sent_finished, just_finished], axis=1)
        keep = tf.math.top_k(merged_scores, k=nb).indices
        sequences = _gather_beams(merged_sequences, keep)
        beam_scores = _gather_beams(merged_scores, keep)
        beam_indices = _gather_beams(merged_beam_indices, keep)
        is_sent_finished = _gather_beams(merged_finished, keep)

        # --- the cache follows the running beams ---
        beam_idx = tf.reshape(tf.gather(running_beam_indices, cur_len - prompt_len, axis=2), (-1,))
        buffers = decoder.reorder(buffers, beam_idx)
        cur_len = cur_len + 1

        # --- can a running beam still beat the worst finished one? ---
        if early_stopping == "never" and length_penalty > 0.0:
            best_length = tf.constant(float(max_length - prompt_len))
        else:
            best_length = tf.cast(cur_len - prompt_len, tf.float32)
        best_running = running_beam_scores[:, :1] / (best_length ** length_penalty)
        worst_finished = tf.where(is_sent_finished, tf.reduce_min(beam_scores, axis=1, keepdims=True), -1.0e9)
        improvement_possible = improvement_possible & tf.reduce_any(best_running > worst_finished, axis=-1,
                                                                    keepdims=True)

        exists_open_beam = ~(tf.reduce_all(is_sent_finished) & (early_stopping is True))
        valid_continuations = ~tf.reduce_all(hits)
        keep_going = tf.reduce_any(improvement_possible) & exists_open_beam & valid_continuations
        return (cur_len, keep_going, buffers, running_sequences, running_beam_scores, running_beam_indices,
                sequences, beam_scores, beam_indices, is_sent_finished, improvement_possible, all_scores)

    state = (tf.constant(prompt_len), tf.constant(True), buffers, running_sequences, running_beam_scores,
             running_beam_indices, sequences, beam_scores, beam_indices, is_sent_finished, improvement_possible,
             all_scores)
    final = tf.while_loop(cond, body, state, maximum_iterations=max_length - prompt_len)
    cur_len, sequences, beam_scores, beam_indices = final[0], final[6], final[7], final[8]
    nrs = s.num_return_sequences
    return {
        "sequences": tf.reshape(sequences[:, :nrs], (batch_size * nrs, max_length)),
        "sequences_scores": tf.reshape(beam_scores[:, :nrs], (batch_size * nrs,)),
        "beam_indices": tf.reshape(beam_indices[:, :nrs], (batch_size * nrs, max_length - prompt_len)),
        "cur_len": cur_len,
        "scores": final[11],
        "cache": final[2],
    }


def _past_key_values(buffers: List[tf.Tensor], fed: int) -> Tuple[Tuple[tf.Tensor, ...], ...]:
    """The static buffers as the per-layer cache ``(self_k, self_v, cross_k, cross_v)`` of the
    ``fed`` tokens the decoder saw (the layout of ``TFEncoderDecoderModel``'s ``past_key_values``)."""
    return tuple((buffers[i][:, :, :fed], buffers[i + 1][:, :, :fed], buffers[i + 2], buffers[i + 3])
                 for i in range(0, len(buffers), 4))


def _finish(out: Dict[str, tf.Tensor], s: GenerationSettings, batch_size: int):
    """Trim the fixed-shape buffers to the generated length (eagerly, outside the compiled function)."""
    cur_len = int(out["cur_len"])
    steps = cur_len - s.prompt_length  # generated tokens
    scores = None
    if s.output_scores:
        scores = tuple(out["scores"][i] for i in range(steps))
    if s.is_beam:
        beam_indices = out["beam_indices"]
        generated = int(tf.reduce_max(tf.reduce_sum(tf.cast(beam_indices >= 0, tf.int32), axis=1)))
        sequences = out["sequences"][:, :s.prompt_length + generated]
        if not s.return_dict_in_generate:
            return sequences
        return TFGenerateBeamEncoderDecoderOutput(sequences=sequences, sequences_scores=out["sequences_scores"] if s.output_scores else None,
                                                  scores=scores, beam_indices=beam_indices[:, :generated],
                                                  past_key_values=_past_key_values(out["cache"], cur_len - 1))
    sequences = out["sequences"][:, :cur_len]
    if not s.return_dict_in_generate:
        return sequences
    return TFGenerateEncoderDecoderOutput(sequences=sequences, scores=scores,
                                          past_key_values=_past_key_values(out["cache"], cur_len - 1))
