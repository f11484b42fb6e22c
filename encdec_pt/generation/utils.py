"""``generate`` for ``EncoderDecoderModel``: greedy search, multinomial sampling and beam search.

The semantics are documented once in docs/generation.md; settings are resolved by
``encdec.generation_utils.resolve_generation_settings`` (shared by the three frameworks) and the
loops follow the reference (transformers 4.57 ``GenerationMixin._sample`` / ``_beam_search``)
step for step, so the tokens equal its PyTorch ``generate``. The algorithm is written to be
copied line by line by the TensorFlow and Flax ports:

    encode once -> project (enc_to_dec_proj) -> repeat rows (beams / returned samples)
    -> ids = [[start]] -> loop: logits = decoder step on the last token with the cache
       -> scores = process_scores(ids, logits | log_softmax(logits)) -> pick -> append -> stop?
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from typing import Any, Callable, List, Optional, Tuple

import torch
from torch import nn

from encdec.generation_config import GenerationConfig
from encdec.generation_utils import (GenerationSettings, StopStrings, check_generation_config_argument, check_host_features,
                                     resolve_generation_settings)
from encdec_pt.generation.logits_process import process_scores
from encdec_pt.generation.prepacked import PrepackedWeights, prepacked_linears, prepacking_available
from encdec_pt.generation.static_cache import allocate_static_cache, static_decoder_step
from encdec_pt.modeling_outputs import ModelOutput
from encdec_pt.modeling_utils import RuntimeCache, cross_attention_bias

# Encoder keyword arguments generate() passes through (everything else must be a generation setting).
_ENCODER_KWARGS = ("token_type_ids", "position_ids", "inputs_embeds")


@dataclasses.dataclass
class GenerateEncoderDecoderOutput(ModelOutput):
    """Greedy search / sampling with ``return_dict_in_generate`` (the reference's fields, in its order).

    ``sequences`` (N, T) int64, N = batch * num_return_sequences; ``scores``: one (N, V) float32
    tensor of processed scores per generated step (with ``output_scores``); ``past_key_values``:
    per decoder layer ``(self_k, self_v, cross_k, cross_v)``, self (N, H, T - 1, Dh) (the last
    token was not fed back), cross (N, H, S, Dh) (with ``use_cache``). ``logits`` and the attention /
    hidden-state fields are not computed by this generate and stay None."""

    sequences: torch.Tensor = None
    scores: Optional[Tuple[torch.Tensor, ...]] = None
    logits: Optional[Tuple[torch.Tensor, ...]] = None
    encoder_attentions: Optional[Tuple[torch.Tensor, ...]] = None
    encoder_hidden_states: Optional[Tuple[torch.Tensor, ...]] = None
    decoder_attentions: Optional[Tuple[Tuple[torch.Tensor, ...], ...]] = None
    cross_attentions: Optional[Tuple[Tuple[torch.Tensor, ...], ...]] = None
    decoder_hidden_states: Optional[Tuple[Tuple[torch.Tensor, ...], ...]] = None
    past_key_values: Optional[Tuple[Tuple[torch.Tensor, ...], ...]] = None


@dataclasses.dataclass
class GenerateBeamEncoderDecoderOutput(ModelOutput):
    """Beam search with ``return_dict_in_generate`` (the reference's fields, in its order).

    ``sequences`` (N, T), N = batch * num_return_sequences; ``sequences_scores`` (N,) (with ``output_scores``,
    as the reference);
    ``scores``: one (batch * num_beams, V) tensor of processed log-probabilities per step (with
    ``output_scores``); ``beam_indices`` (N, T - 1); ``past_key_values`` as in
    ``GenerateEncoderDecoderOutput``, rows = the running beams at the end (batch * num_beams)."""

    sequences: torch.Tensor = None
    sequences_scores: Optional[torch.Tensor] = None
    scores: Optional[Tuple[torch.Tensor, ...]] = None
    logits: Optional[Tuple[torch.Tensor, ...]] = None
    beam_indices: Optional[torch.Tensor] = None
    encoder_attentions: Optional[Tuple[torch.Tensor, ...]] = None
    encoder_hidden_states: Optional[Tuple[torch.Tensor, ...]] = None
    decoder_attentions: Optional[Tuple[Tuple[torch.Tensor, ...], ...]] = None
    cross_attentions: Optional[Tuple[Tuple[torch.Tensor, ...], ...]] = None
    decoder_hidden_states: Optional[Tuple[Tuple[torch.Tensor, ...], ...]] = None
    past_key_values: Optional[Tuple[Tuple[torch.Tensor, ...], ...]] = None


class _DynamicDecoder:
    """Decoder steps with the growing per-layer cache ``(self_k, self_v, cross_k, cross_v)``."""

    def __init__(self, decoder: nn.Module, hidden: torch.Tensor, mask: Optional[torch.Tensor], use_cache: bool):
        self.decoder, self.hidden, self.mask, self.use_cache = decoder, hidden, mask, use_cache
        self.past = None

    def step(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Next-token logits (N, V) float32 given all tokens so far (N, cur_len)."""
        feed = input_ids[:, -1:] if self.past is not None else input_ids
        out = self.decoder(input_ids=feed, encoder_hidden_states=self.hidden, encoder_attention_mask=self.mask,
                           past_key_values=self.past, use_cache=self.use_cache, return_dict=True)
        if self.use_cache:
            self.past = out.past_key_values
        return out.logits[:, -1, :].float()

    def reorder(self, beam_idx: torch.Tensor) -> None:
        """Rows of the self-attention cache follow their beams. Cross keys/values are equal for every
        beam of an input (rows were repeated), and beams never move across inputs: left as they are."""
        if self.past is not None:
            self.past = tuple((k.index_select(0, beam_idx), v.index_select(0, beam_idx), ck, cv)
                              for k, v, ck, cv in self.past)

    def cache(self, cur_len: int):
        """The cache after the last step: per layer (self_k, self_v, cross_k, cross_v)."""
        return self.past


class _StaticDecoder:
    """First step dynamic (fills the cross-attention cache), then fixed-shape steps on
    (N, H, max_length, Dh) buffers updated in place (``static_decoder_step``)."""

    def __init__(self, decoder: nn.Module, hidden: torch.Tensor, mask: Optional[torch.Tensor], max_length: int,
                 step_fn: Callable):
        self.decoder, self.hidden, self.max_length, self.step_fn = decoder, hidden, max_length, step_fn
        self.mask = mask
        self.cross_bias = cross_attention_bias(mask, hidden.dtype)
        self.buffers: Optional[List[torch.Tensor]] = None

    def step(self, input_ids: torch.Tensor) -> torch.Tensor:
        cur_len = input_ids.shape[1]
        if self.buffers is None:
            out = self.decoder(input_ids=input_ids, encoder_hidden_states=self.hidden,
                               encoder_attention_mask=self.mask, use_cache=True, return_dict=True)
            self.buffers = allocate_static_cache(out.past_key_values, self.max_length)
            return out.logits[:, -1, :].float()
        position = torch.tensor([cur_len - 1], dtype=torch.long, device=input_ids.device)
        logits = self.step_fn(self.decoder, input_ids[:, -1:], position, self.hidden, self.cross_bias, self.buffers)
        return logits.float()

    def reorder(self, beam_idx: torch.Tensor) -> None:
        if self.buffers is not None:
            for i in range(0, len(self.buffers), 4):  # self k, v only (see _DynamicDecoder.reorder)
                for j in (i, i + 1):
                    self.buffers[j].copy_(self.buffers[j].index_select(0, beam_idx))

    def cache(self, cur_len: int):
        """The cache after the last step, as the dynamic one: self keys/values of the cur_len - 1 fed tokens."""
        if self.buffers is None:
            return None
        b = self.buffers
        return tuple((b[i][:, :, :cur_len - 1].clone(), b[i + 1][:, :, :cur_len - 1].clone(), b[i + 2], b[i + 3])
                     for i in range(0, len(b), 4))


def _infer_attention_mask(input_ids: torch.Tensor, settings: GenerationSettings) -> Optional[torch.Tensor]:
    """The reference's rule when no mask is given: ``input_ids != pad`` if pad occurs in the inputs
    and pad is not an eos id; otherwise no mask (all positions attended)."""
    pad = settings.pad_token_id
    if bool((input_ids == pad).any()) and pad not in settings.eos_token_ids:
        return (input_ids != pad).long()
    return None


class _CompiledSteps(RuntimeCache, dict):
    """backend -> the compiled static step."""


def _in_inference_mode(generate: Callable) -> Callable:
    """Runs ``generate`` under ``torch.inference_mode()`` and returns ordinary tensors.

    Inference mode drops autograd's per-op bookkeeping (version counters, view tracking), which a
    decoding step of small products feels (docs/performance.md). The output is cloned out of inference
    mode, so callers can edit it in place or feed it to autograd as they could a ``no_grad`` output
    (inside a caller's own ``inference_mode`` it stays an inference tensor)."""

    @functools.wraps(generate)
    def wrapper(*args: Any, **kwargs: Any):
        with torch.inference_mode():
            out = generate(*args, **kwargs)
        return _ordinary_tensors(out)

    return wrapper


def _ordinary_tensors(out):
    """``generate``'s output (a tensor or an output dataclass, whose ``scores`` is a tuple) with every
    inference tensor cloned into an ordinary one."""
    def plain(value):
        if isinstance(value, tuple):
            return tuple(plain(v) for v in value)
        return value.clone() if isinstance(value, torch.Tensor) and value.is_inference() else value

    if dataclasses.is_dataclass(out):
        return dataclasses.replace(out, **{f.name: plain(getattr(out, f.name)) for f in dataclasses.fields(out)})
    return plain(out)


class GenerationMixin:
    """Adds ``generate`` to ``EncoderDecoderModel``."""

    def _compiled_static_step(self, backend: Optional[str]) -> Callable:
        if backend is None:
            return static_decoder_step
        cache = self.__dict__.setdefault("_static_step_cache", _CompiledSteps())
        if backend not in cache:
            cache[backend] = torch.compile(static_decoder_step, backend=backend, fullgraph=True)
        return cache[backend]

    def _prepacked_weights(self) -> PrepackedWeights:
        store = self.__dict__.get("_prepacked_store")
        if store is None:
            store = self.__dict__["_prepacked_store"] = PrepackedWeights()
        return store

    def clear_prepacked_weights(self) -> None:
        """Free the weights that ``generate`` packed for oneDNN (they are packed again, once, by the
        next ``generate`` call that uses them)."""
        self._prepacked_weights().clear()

    @_in_inference_mode
    def generate(
        self,
        inputs: Optional[torch.Tensor] = None,
        generation_config: Optional[GenerationConfig] = None,
        attention_mask: Optional[torch.Tensor] = None,
        encoder_outputs: Any = None,
        generator: Optional[torch.Generator] = None,
        seed: Optional[int] = None,
        cache_implementation: Optional[str] = None,
        compile_backend: Optional[str] = None,
        prepack_weights: Optional[bool] = None,
        streamer: Any = None,
        tokenizer: Any = None,
        **kwargs: Any,
    ):
        """Generate decoder token ids.

        Args:
            inputs: encoder ``input_ids`` (B, S) (also accepted as ``input_ids=``).
            generation_config: a ``GenerationConfig`` for this call (second positional argument, as in
                the reference); its values at the defaults take the model's (``prepare_generation_config``),
                keyword settings win over it.
            attention_mask: encoder mask (B, S); when absent it is inferred from pad tokens as the reference does.
            encoder_outputs: reuse an encoder output (object, tuple or tensor whose first item is the
                last hidden state (B, S, E)); the encoder is not run.
            decoder_input_ids: a decoder prompt (B, P), continued by the generation (the start token is
                prepended when no row begins with it, as in the reference; docs/generation.md).
            generator / seed: the random source for sampling (default: torch's global generator).
            streamer: an object with ``put(token_ids)`` / ``end()`` (the reference's ``TextStreamer`` ...):
                ``put`` gets the decoder's first tokens (B, P), then each step's new tokens (B,), as in
                the reference; greedy search and sampling only.
            tokenizer: the decoder's tokenizer, needed with ``stop_strings`` (as in the reference) to
                read the text of the tokens.
            cache_implementation: ``None``/``"dynamic"`` (growing cache) or ``"static"``
                (preallocated, fixed-shape steps); the tokens are the same.
            compile_backend: with the static cache, ``torch.compile(backend=..., fullgraph=True)`` the step.
            prepack_weights: run the linear layers of the encoder, ``enc_to_dec_proj`` and the decoder
                on oneDNN-prepacked copies of their weights (CPU float32; packed once and kept on the
                model, see ``encdec_pt.generation.prepacked``). ``None``: on where available and no
                ``compile_backend`` is given; ``False``: the plain layers, no copy.
            **kwargs: generation settings (``max_new_tokens``, ``num_beams``, ``generation_config`` ...),
                resolved by ``encdec.generation_utils.resolve_generation_settings``.

        Returns ``sequences`` (B * num_return_sequences, T) int64, or with ``return_dict_in_generate``
        a ``GenerateEncoderDecoderOutput`` (``GenerateBeamEncoderDecoderOutput`` for beam search).
        """
        if inputs is None:
            inputs = kwargs.pop("input_ids", None)
        elif "input_ids" in kwargs:
            raise ValueError("pass the encoder input ids once: as `inputs` or as `input_ids`, not both")
        started = time.time()  # max_time counts from here, as the reference's MaxTimeCriteria
        check_generation_config_argument(generation_config)
        settings, model_kwargs = resolve_generation_settings(
            self.config, getattr(self, "generation_config", None), vocab_size=self.config.decoder.vocab_size,
            generation_config=generation_config, **kwargs
        )
        check_host_features(settings, streamer, "pt")
        stop = StopStrings(settings.stop_strings, tokenizer) if settings.stop_strings else None
        encoder_kwargs = {k: model_kwargs.pop(k) for k in _ENCODER_KWARGS if k in model_kwargs}
        prompt = model_kwargs.pop("decoder_input_ids", None)  # (B, P) numpy, the start token first
        model_kwargs.pop("use_cache", None)
        if model_kwargs:
            raise ValueError(f"generate got arguments that are neither generation settings nor encoder inputs: "
                             f"{sorted(model_kwargs)}")
        if cache_implementation not in (None, "dynamic", "static"):
            raise ValueError(f"cache_implementation must be None, 'dynamic' or 'static', got {cache_implementation!r}")
        if cache_implementation == "static" and not settings.use_cache:
            raise ValueError("cache_implementation='static' needs use_cache=True")
        if prepack_weights is None:
            prepack_weights = compile_backend is None and prepacking_available()
        elif prepack_weights:
            if compile_backend is not None:
                raise ValueError("prepack_weights=True and compile_backend cannot be combined: torch.compile "
                                 "packs weights its own way")
            if not prepacking_available():
                raise ValueError("prepack_weights=True needs torch built with oneDNN (torch.backends.mkldnn); "
                                 "this torch has no oneDNN linear ops")
        if seed is not None:
            if generator is not None:
                raise ValueError("pass either generator or seed, not both")
            generator = torch.Generator(device=next(self.parameters()).device).manual_seed(int(seed))

        store = self._prepacked_weights() if prepack_weights else None

        def packed(module: nn.Module):
            """``module``'s linear layers on packed weights, within the block."""
            return prepacked_linears(module, store) if store is not None else contextlib.nullcontext()

        # === Encode once ===
        if encoder_outputs is None:
            if inputs is None and "inputs_embeds" not in encoder_kwargs:
                raise ValueError("generate needs encoder input ids (inputs=...) or encoder_outputs=...")
            if attention_mask is None and inputs is not None:
                attention_mask = _infer_attention_mask(inputs, settings)
            # Every source position is a row of the encoder's products: compute-bound, and faster on
            # oneDNN's packed weights too (see prepacked).
            with packed(self.encoder):
                encoder_outputs = self.encoder(input_ids=inputs, attention_mask=attention_mask, return_dict=True,
                                               **encoder_kwargs)
        if isinstance(encoder_outputs, torch.Tensor):
            last_hidden = encoder_outputs
        elif isinstance(encoder_outputs, (tuple, list)):
            last_hidden = encoder_outputs[0]
        else:
            last_hidden = encoder_outputs.last_hidden_state
        if last_hidden.dim() != 3:
            raise ValueError(
                f"encoder_outputs[0] must be (batch, length, hidden), got shape {tuple(last_hidden.shape)}"
            )
        batch_size = last_hidden.shape[0]
        if attention_mask is not None and tuple(attention_mask.shape) != tuple(last_hidden.shape[:2]):
            raise ValueError(f"attention_mask has shape {tuple(attention_mask.shape)} but the encoder output has "
                             f"(batch, length) = {tuple(last_hidden.shape[:2])}")
        hidden = last_hidden
        if self.enc_to_dec_proj is not None:
            with packed(self.enc_to_dec_proj):
                hidden = self.enc_to_dec_proj(hidden)  # (B, S, E_dec)

        # === One row per beam / returned sample ===
        expand = settings.num_beams if settings.is_beam else settings.num_return_sequences
        if expand > 1:
            hidden = hidden.repeat_interleave(expand, dim=0)
            attention_mask = None if attention_mask is None else attention_mask.repeat_interleave(expand, dim=0)
        if cache_implementation == "static":
            decoder = _StaticDecoder(self.decoder, hidden, attention_mask, settings.max_length,
                                     self._compiled_static_step(compile_backend))
        else:
            decoder = _DynamicDecoder(self.decoder, hidden, attention_mask, settings.use_cache)
        if prompt is None:
            input_ids = torch.full((batch_size * expand, 1), settings.decoder_start_token_id, dtype=torch.long,
                                   device=hidden.device)
        else:
            if prompt.shape[0] != batch_size:
                raise ValueError(f"decoder_input_ids has {prompt.shape[0]} rows but the encoder input has {batch_size}")
            input_ids = torch.from_numpy(prompt).to(hidden.device).repeat_interleave(expand, dim=0)  # (B * n, P)
        with packed(self.decoder):
            if settings.is_beam:
                return _beam_search(decoder, input_ids, settings, batch_size, self.config.decoder.vocab_size,
                                    generator, started, stop)
            return _greedy_or_sample(decoder, input_ids, settings, generator, streamer, started, stop)


def _out_of_time(s: GenerationSettings, started: float) -> bool:
    """``max_time`` seconds have passed since generate was called (the reference's ``MaxTimeCriteria``)."""
    return s.max_time is not None and time.time() - started > s.max_time


def _greedy_or_sample(decoder, input_ids: torch.Tensor, s: GenerationSettings,
                      generator: Optional[torch.Generator], streamer: Any = None, started: float = 0.0,
                      stop: Optional[StopStrings] = None):
    """Greedy search / multinomial sampling (the reference's ``_sample``)."""
    eos = torch.tensor(s.eos_token_ids, dtype=torch.long, device=input_ids.device)
    has_eos = len(s.eos_token_ids) > 0
    unfinished = torch.ones(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    all_scores: List[torch.Tensor] = []
    if streamer is not None:
        streamer.put(input_ids.cpu())
    while True:
        logits = decoder.step(input_ids)  # (N, V)
        scores = process_scores(s, input_ids, logits)
        if s.output_scores:
            all_scores.append(scores)
        if s.do_sample:
            probs = nn.functional.softmax(scores, dim=-1)
            next_tokens = torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)
        else:
            next_tokens = torch.argmax(scores, dim=-1)
        if has_eos:  # finished rows get pad
            next_tokens = torch.where(unfinished, next_tokens, s.pad_token_id)
        input_ids = torch.cat([input_ids, next_tokens[:, None]], dim=-1)
        if streamer is not None:
            streamer.put(next_tokens.cpu())
        if has_eos:
            unfinished = unfinished & ~torch.isin(next_tokens, eos)
        if stop is not None:
            unfinished = unfinished & ~torch.from_numpy(stop(input_ids.cpu().numpy())).to(unfinished.device)
        if _out_of_time(s, started):
            unfinished = torch.zeros_like(unfinished)
        if input_ids.shape[1] >= s.max_length or not bool(unfinished.any()):
            break
    if streamer is not None:
        streamer.end()
    if s.return_dict_in_generate:
        return GenerateEncoderDecoderOutput(sequences=input_ids,
                                            scores=tuple(all_scores) if s.output_scores else None,
                                            past_key_values=decoder.cache(input_ids.shape[1]))
    return input_ids


def _gather_beams(tensor: torch.Tensor, beam_indices: torch.Tensor) -> torch.Tensor:
    """tensor (B, K, ...) , beam_indices (B, K') -> (B, K', ...)."""
    while beam_indices.dim() < tensor.dim():
        beam_indices = beam_indices.unsqueeze(-1)
    return torch.take_along_dim(tensor, beam_indices, dim=1)


def _beam_search(decoder, input_ids: torch.Tensor, s: GenerationSettings, batch_size: int, vocab_size: int,
                 generator: Optional[torch.Generator] = None, started: float = 0.0,
                 stop: Optional[StopStrings] = None):
    """The reference's vectorised beam search (transformers 4.57 ``_beam_search``); with ``do_sample``
    beam sampling: the continuations are drawn without replacement from softmax(accumulated scores)
    instead of taken best first (the warpers ran on the log-probabilities before).

    Keeps, per input, ``num_beams`` running beams and ``num_beams`` finished hypotheses; each step
    takes the top ``beams_to_keep = max(2, 1 + n_eos) * num_beams`` continuations of all running
    beams, moves the ones that stop (eos or max length) among the first ``num_beams`` into the
    finished set (score / generated_length ** length_penalty) and continues the best non-stopped ones.
    """
    device = input_ids.device
    nb, max_length = s.num_beams, s.max_length
    length_penalty, early_stopping = s.length_penalty, s.early_stopping
    eos = torch.tensor(s.eos_token_ids, dtype=torch.long, device=device)
    n_eos = len(s.eos_token_ids)
    beams_to_keep = max(2, 1 + n_eos) * nb
    top_num_beam_mask = torch.cat([torch.ones(nb, dtype=torch.bool), torch.zeros(beams_to_keep - nb, dtype=torch.bool)]
                                  ).to(device)
    # The reference fills unused positions with `pad or eos[0]` (so eos when pad == 0), -1 without eos.
    if n_eos:
        fill_value = s.pad_token_id if s.pad_token_id else s.eos_token_ids[0]
    else:
        fill_value = -1
    prompt_len = input_ids.shape[1]  # the start token, or the decoder prompt
    cur_len = prompt_len

    running_sequences = torch.full((batch_size, nb, max_length), fill_value, dtype=torch.long, device=device)
    running_sequences[:, :, :cur_len] = input_ids.view(batch_size, nb, cur_len)
    sequences = running_sequences.clone()
    running_beam_scores = torch.zeros((batch_size, nb), dtype=torch.float32, device=device)
    running_beam_scores[:, 1:] = -1e9  # only the first beam is live at the start
    beam_scores = torch.full((batch_size, nb), -1e9, dtype=torch.float32, device=device)
    is_sent_finished = torch.zeros((batch_size, nb), dtype=torch.bool, device=device)
    improvement_possible = torch.ones((batch_size, 1), dtype=torch.bool, device=device)
    running_beam_indices = torch.full((batch_size, nb, max_length - cur_len), -1, dtype=torch.int32, device=device)
    beam_indices = running_beam_indices.clone()
    all_scores: List[torch.Tensor] = []
    batch_offset = torch.arange(batch_size, device=device).view(-1, 1) * nb

    while True:
        flat_running = running_sequences[:, :, :cur_len].reshape(batch_size * nb, cur_len)
        logits = decoder.step(flat_running)  # (B * nb, V)
        log_probs = nn.functional.log_softmax(logits, dim=-1)
        log_probs = process_scores(s, flat_running, log_probs)
        if s.output_scores:
            all_scores.append(log_probs)
        acc = (log_probs.view(batch_size, nb, vocab_size) + running_beam_scores[:, :, None]).view(
            batch_size, nb * vocab_size)

        # --- top-k continuations over all beams of an input ---
        if s.do_sample:
            topk_indices = torch.multinomial(nn.functional.softmax(acc, dim=-1), num_samples=beams_to_keep,
                                             generator=generator)  # (B, K), in drawing order
            topk_log_probs = torch.gather(acc, 1, topk_indices)
        else:
            topk_log_probs, topk_indices = torch.topk(acc, k=beams_to_keep)  # (B, K)
        topk_beam = topk_indices // vocab_size
        topk_running_beam_indices = _gather_beams(running_beam_indices, topk_beam)
        topk_running_sequences = _gather_beams(running_sequences, topk_beam)
        topk_ids = topk_indices % vocab_size
        topk_running_sequences[:, :, cur_len] = topk_ids
        topk_running_beam_indices[:, :, cur_len - prompt_len] = (topk_beam + batch_offset).to(torch.int32)

        # --- which continuations stop (max length reached or eos) ---
        hits = torch.full_like(topk_ids, cur_len + 1 >= max_length, dtype=torch.bool)
        if n_eos:
            hits = hits | torch.isin(topk_ids, eos)
        if stop is not None:
            written = topk_running_sequences[:, :, :cur_len + 1].reshape(-1, cur_len + 1).cpu().numpy()
            hits = hits | torch.from_numpy(stop(written)).to(device).view_as(hits)
        if _out_of_time(s, started):
            hits = torch.ones_like(hits)

        # --- running beams for the next step: best non-stopping continuations ---
        topk_running_log_probs = topk_log_probs + hits.to(torch.float32) * -1.0e9
        next_topk = torch.topk(topk_running_log_probs, k=nb)[1]
        running_sequences = _gather_beams(topk_running_sequences, next_topk)
        running_beam_scores = _gather_beams(topk_running_log_probs, next_topk)
        running_beam_indices = _gather_beams(topk_running_beam_indices, next_topk)

        # --- finished hypotheses: merge the stopping ones among the first nb, keep the best nb ---
        just_finished = hits & top_num_beam_mask[None, :]
        finished_scores = topk_log_probs / ((cur_len + 1 - prompt_len) ** length_penalty)
        beams_in_batch_are_full = torch.all(is_sent_finished, dim=-1, keepdim=True) & (early_stopping is True)
        finished_scores = finished_scores + beams_in_batch_are_full.to(torch.float32) * -1.0e9
        finished_scores = finished_scores + (~improvement_possible).to(torch.float32) * -1.0e9
        finished_scores = finished_scores + (~just_finished).to(torch.float32) * -1.0e9
        merged_sequences = torch.cat((sequences, topk_running_sequences), dim=1)
        merged_scores = torch.cat((beam_scores, finished_scores), dim=1)
        merged_beam_indices = torch.cat((beam_indices, topk_running_beam_indices), dim=1)
        merged_finished = torch.cat((is_sent_finished, just_finished), dim=1)
        keep = torch.topk(merged_scores, k=nb)[1]
        sequences = _gather_beams(merged_sequences, keep)
        beam_scores = _gather_beams(merged_scores, keep)
        beam_indices = _gather_beams(merged_beam_indices, keep)
        is_sent_finished = _gather_beams(merged_finished, keep)

        # --- the cache follows the running beams ---
        decoder.reorder(running_beam_indices[:, :, cur_len - prompt_len].reshape(-1).long())
        cur_len += 1

        # --- can a running beam still beat the worst finished one? ---
        if early_stopping == "never" and length_penalty > 0.0:
            best_length = max_length - prompt_len
        else:
            best_length = cur_len - prompt_len
        best_running = running_beam_scores[:, :1] / (best_length ** length_penalty)
        worst_finished = torch.where(is_sent_finished, torch.min(beam_scores, dim=1, keepdim=True)[0], -1.0e9)
        improvement_possible = improvement_possible & torch.any(best_running > worst_finished, dim=-1, keepdim=True)

        exists_open_beam = not (bool(torch.all(is_sent_finished)) and early_stopping is True)
        valid_continuations = not bool(torch.all(hits))
        if not (bool(torch.any(improvement_possible)) and exists_open_beam and valid_continuations):
            break

    nrs = s.num_return_sequences
    sequences = sequences[:, :nrs].reshape(batch_size * nrs, max_length)
    beam_scores = beam_scores[:, :nrs].reshape(batch_size * nrs)
    beam_indices = beam_indices[:, :nrs].reshape(batch_size * nrs, -1)
    generated = int((beam_indices + 1).bool().sum(dim=1).max())
    sequences = sequences[:, :prompt_len + generated]
    beam_indices = beam_indices[:, :generated]
    if s.return_dict_in_generate:
        return GenerateBeamEncoderDecoderOutput(
            sequences=sequences, sequences_scores=beam_scores if s.output_scores else None, scores=tuple(all_scores) if s.output_scores else None,
            beam_indices=beam_indices, past_key_values=decoder.cache(cur_len),
        )
    return sequences
