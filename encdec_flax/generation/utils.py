"""``generate`` for ``FlaxEncoderDecoderModel``: greedy search, multinomial sampling and beam search,
each as ONE ``jax.jit``-compiled function (encoder, cache set-up and a ``lax.while_loop`` over the
decoder steps).

The semantics are documented once in docs/generation.md; settings are resolved by
``encdec.generation_utils.resolve_generation_settings`` (shared by the three frameworks) and the
loops are the fixed-shape twins of ``encdec_pt/generation/utils.py`` (same function names, same
steps), so the tokens equal the reference's PyTorch ``generate``:

    encode once -> project (enc_to_dec_proj, inside ``decode``) -> repeat rows (beams / returned samples)
    -> init_cache (self K/V preallocated to max_length, cross K/V projected once)
    -> ids = [[start, pad, ...]] (N, max_length) -> while_loop: logits = decoder step on ids[:, cur_len - 1]
       at position cur_len - 1 -> scores = process_scores(ids, cur_len, logits | log_softmax(logits))
       -> pick -> write at cur_len -> stop?

Fixed shapes: the token buffer, the cache and the per-step score buffer are preallocated; the host
trims the result to the length the loop reached. One compiled callable per shape signature
(batch, source length, settings, ...) is kept on the model (``model._generate_fns``) and reused:
the second call with the same shapes does not trace again (``trace_count``).

Layouts inside the loop (same numbers, faster products on CPU; docs/generation.md): the cache
holds keys/values as (N, H, T, D), the layout the attention's products read, and with several rows
per step GPT-2's (out, in) Conv1D kernels are read from (in, out) copies kept on the model
(``prepack_weights``).
"""

from __future__ import annotations

import collections
import dataclasses
import weakref
from typing import Any, Dict, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict
from jax import lax

from encdec.generation_config import GenerationConfig
from encdec.generation_utils import (GenerationSettings, check_generation_config_argument, check_host_features,
                                     resolve_generation_settings)
from encdec.modeling_outputs import ModelOutput
from encdec.naming.layout import framework_path
from encdec.naming.schema import CONV1D, schema_for
from encdec.registry import architecture
from encdec_flax.generation.logits_process import process_scores

# Encoder keyword arguments generate() passes through (everything else must be a generation setting).
_ENCODER_KWARGS = ("token_type_ids", "position_ids")

# How many times each signature's Python function was traced (jit re-traces only on a new signature).
TRACE_COUNTS: Dict[Any, int] = collections.Counter()


# Options for XLA when a generate function is compiled (``jax.jit(compiler_options=...)``), part of
# the signature. On CPU, XLA hands dots with several rows to YNNPACK fused with their neighbours, with
# layout copies around them; one YNNPACK call per dot is faster for beam and greedy search. LLVM
# optimisation level 1 instead of 2 for the code XLA emits itself: the products are YNNPACK's
# precompiled kernels, so the loops run as fast and XLA compiles sooner (docs/performance.md has
# both measurements). Options this XLA does not know are dropped (with a retry). The tiny-model
# tests set level 0 (a shorter compile; the same tokens).
CPU_COMPILER_OPTIONS: Dict[str, Any] = {"xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT",
                                        "xla_backend_optimization_level": 1}
COMPILER_OPTIONS: Dict[str, Any] = {}


def _compiler_options() -> Dict[str, Any]:
    options = dict(CPU_COMPILER_OPTIONS) if jax.default_backend() == "cpu" else {}
    options.update(COMPILER_OPTIONS)
    return options


def trace_count() -> int:
    """Total traces of all generate functions so far (a test asserts a repeated call adds none)."""
    return sum(TRACE_COUNTS.values())


@dataclasses.dataclass
class FlaxGreedySearchOutput(ModelOutput):
    """What greedy search returns (the reference's class): ``sequences`` (N, T) int32 numpy, trimmed
    to the generated length as in PyTorch (the reference pads them to ``max_length``)."""

    sequences: Any = None


@dataclasses.dataclass
class FlaxSampleOutput(ModelOutput):
    """What sampling returns (the reference's class): ``sequences`` (N, T) int32 numpy, N = batch *
    num_return_sequences."""

    sequences: Any = None


@dataclasses.dataclass
class FlaxBeamSearchOutput(ModelOutput):
    """What beam search returns (the reference's class): ``sequences`` (N, T) int32 numpy and
    ``scores`` (N,), the final score of each returned sequence."""

    sequences: Any = None
    scores: Any = None


@dataclasses.dataclass
class FlaxGenerateEncoderDecoderOutput(ModelOutput):
    """Greedy search / sampling with ``return_dict_in_generate`` (the fields of the reference's
    PyTorch ``GenerateEncoderDecoderOutput``, in its order; numpy arrays).

    ``sequences`` (N, T) int32; ``scores``: one (N, V) float32 array of processed scores per
    generated step (with ``output_scores``); ``past_key_values``: the ``cache`` collection after the
    last step, as ``decode`` takes it (self keys/values preallocated to max_length, jax arrays).
    ``logits`` and the attention / hidden-state fields are not computed by this generate."""

    sequences: Any = None
    scores: Optional[Tuple[Any, ...]] = None
    logits: Optional[Tuple[Any, ...]] = None
    encoder_attentions: Any = None
    encoder_hidden_states: Any = None
    decoder_attentions: Any = None
    cross_attentions: Any = None
    decoder_hidden_states: Any = None
    past_key_values: Any = None


@dataclasses.dataclass
class FlaxGenerateBeamEncoderDecoderOutput(ModelOutput):
    """Beam search with ``return_dict_in_generate`` (the fields of the reference's PyTorch
    ``GenerateBeamEncoderDecoderOutput``, in its order): ``sequences`` (N, T), ``sequences_scores``
    (N,), ``scores`` (one (batch * num_beams, V) array per step, with ``output_scores``),
    ``beam_indices`` (N, T - 1), ``past_key_values`` of the running beams (batch * num_beams rows);
    ``sequences_scores`` only with ``output_scores``, as the reference."""

    sequences: Any = None
    sequences_scores: Any = None
    scores: Optional[Tuple[Any, ...]] = None
    logits: Optional[Tuple[Any, ...]] = None
    beam_indices: Any = None
    encoder_attentions: Any = None
    encoder_hidden_states: Any = None
    decoder_attentions: Any = None
    cross_attentions: Any = None
    decoder_hidden_states: Any = None
    past_key_values: Any = None


def _infer_attention_mask(input_ids: np.ndarray, settings: GenerationSettings) -> np.ndarray:
    """The reference's rule when no mask is given: ``input_ids != pad`` if pad occurs in the inputs
    and pad is not an eos id; otherwise all positions attended."""
    pad = settings.pad_token_id
    if bool((input_ids == pad).any()) and pad not in settings.eos_token_ids:
        return (input_ids != pad).astype(np.int32)
    return np.ones_like(input_ids, dtype=np.int32)


def _length_penalties(max_length: int, length_penalty: float) -> np.ndarray:
    """``x ** length_penalty`` for x = 0 .. max_length as the reference computes it (Python double,
    used against float32 scores), indexed by the traced length."""
    return np.asarray([float(x) ** length_penalty if x > 0 else 1.0 for x in range(max_length + 1)],
                      dtype=np.float32)


def _is_cross(path, cross_attention: str) -> bool:
    """A cache leaf under the decoder's cross-attention module (named by its record's ``DecoderLayout``)."""
    return any(getattr(p, "key", None) == cross_attention for p in path)


def loop_kernel_paths(config) -> Tuple[Tuple[str, ...], ...]:
    """The params paths of the (out, in) kernels a cached decoding step multiplies by: the decoder's
    ``conv1d`` weights of the schema (GPT-2's ``FlaxConv1D``; ``linear`` kernels are stored (in, out)
    already), less the cross-attention's key/value projections, used once when the cache is made."""
    layout = architecture(config.decoder).decoder
    once = tuple(f".{layout.cross_attention}.{projection}." for projection in layout.cross_key_value)
    return tuple(sorted(
        framework_path(spec, "flax") for spec in schema_for(config)
        if spec.kind == CONV1D and spec.leaf == "weight" and spec.tied_to is None and spec.name.startswith("decoder.")
        and not any(part in spec.name for part in once)
    ))


def _kernel_key(path: Tuple[str, ...]) -> str:
    return "/".join(path)


def _with_loop_kernels(params, loop_kernels: Dict[str, Any]):
    """``params`` whose (out, in) kernels named in ``loop_kernels`` are read from their (in, out)
    copies there, transposed back. Inside the loop XLA folds that transpose into the product, which
    then reads the (in, out) array as it is stored."""
    if not loop_kernels:
        return params
    flat = flatten_dict(params)
    for key, kernel in loop_kernels.items():
        flat[tuple(key.split("/"))] = kernel.T
    return unflatten_dict(flat)


class _SharedParts:
    """The pieces every generate function of a model traces alike for the same source shape: the
    encoder and the cross-attention cache. Each is an inner ``jax.jit``, whose traced jaxpr jax keeps:
    a new signature with the same source shape (beam search after greedy, another ``max_length``)
    reuses them instead of tracing them again."""

    def __init__(self, module):
        def encode(params, source, attention_mask, encoder_kwargs):
            return module.apply(
                {"params": params}, source, attention_mask=attention_mask, deterministic=True,
                method="encode", **encoder_kwargs,
            ).last_hidden_state

        def cross_cache(params, hidden, mask):
            # The (projected) encoder states through each layer's key/value projections, by a
            # one-token pass that creates the cache; XLA drops the rest of that pass.
            _, cache = module.apply(
                {"params": params}, jnp.ones((hidden.shape[0], 1), dtype="i4"), hidden,
                encoder_attention_mask=mask, init_cache=True, mutable=["cache"],
                method="decode",
            )
            return cache["cache"]

        self.encode, self.cross_cache = jax.jit(encode), jax.jit(cross_cache)


class _Decoder:
    """Fixed-shape decoder steps on the cache from ``init_cache`` (traced inside the loop)."""

    def __init__(self, module, parts: _SharedParts, params, hidden, mask, max_length: int, expand: int = 1,
                 loop_kernels: Optional[Dict[str, Any]] = None, cross_attention: str = ""):
        """``hidden`` (B, S, E) and ``mask`` (B, S) per input; every row is repeated ``expand`` times
        (beams / returned samples) for the decoder. ``loop_kernels``: (in, out) copies of (out, in)
        decoder kernels, by params path (``_with_loop_kernels``), for the steps of the loop."""
        self.module, self.params, self.loop_kernels = module, params, loop_kernels or {}
        self.cross_attention = cross_attention
        # Cross K/V once per input (``parts.cross_cache``); the self K/V buffers of that one-token
        # pass (1 slot) are replaced by zeros (N, H, max_length, D). No decoder pass over
        # max_length dummy tokens. Every key/value buffer is (N, H, T, D), the layout the attention's
        # products read, so the loop transposes none of them.
        cache = parts.cross_cache(params, hidden, mask)
        n_rows = hidden.shape[0] * expand

        def preallocate(path, leaf):
            if leaf.ndim == 0:  # cache_index
                return leaf
            if _is_cross(path, cross_attention):
                return jnp.repeat(leaf, expand, axis=0) if expand > 1 else leaf
            return jnp.zeros((n_rows, leaf.shape[1], max_length, leaf.shape[3]), leaf.dtype)

        self.initial_cache = jax.tree_util.tree_map_with_path(preallocate, cache)
        if expand > 1:
            hidden = jnp.repeat(hidden, expand, axis=0)
            mask = jnp.repeat(mask, expand, axis=0)
        self.hidden, self.mask = hidden, mask
        self.decoder_mask = jnp.ones((n_rows, max_length), dtype="i4")  # the causal mask hides unwritten slots

    def prefill(self, cache, input_ids, prompt_len: int):
        """The cache with the self keys/values of the prompt's first P - 1 tokens (``input_ids``
        (N, max_length) holds the prompt first), one fixed-shape step each; the loop feeds the last
        one. The start token alone needs none."""
        if prompt_len == 1:
            return cache

        def body(position, cache):
            tokens = lax.dynamic_slice_in_dim(input_ids, position, 1, axis=1)[:, 0]
            return self.step(cache, tokens, position + 1)[1]

        return lax.fori_loop(0, prompt_len - 1, body, cache)

    def step(self, cache, tokens, cur_len):
        """Next-token logits (N, V) float32 for the tokens (N,) at position cur_len - 1, and the new cache."""
        positions = jnp.full((tokens.shape[0], 1), cur_len - 1, dtype="i4")
        out, mutated = self.module.apply(
            {"params": _with_loop_kernels(self.params, self.loop_kernels), "cache": cache},
            tokens[:, None].astype("i4"), self.hidden,
            encoder_attention_mask=self.mask, decoder_attention_mask=self.decoder_mask,
            decoder_position_ids=positions, mutable=["cache"], method="decode",
        )
        return out.logits[:, -1, :].astype(jnp.float32), mutated["cache"]

    def reorder(self, cache, beam_idx):
        """Rows of the self-attention cache follow their beams. Cross keys/values are equal for every
        beam of an input (rows were repeated), and beams never move across inputs: left as they are."""
        def gather(path, leaf):
            if leaf.ndim == 0 or _is_cross(path, self.cross_attention):
                return leaf
            return jnp.take(leaf, beam_idx, axis=0)

        return jax.tree_util.tree_map_with_path(gather, cache)


class _PrepackedKernels:
    """(in, out) copies of the decoder's (out, in) kernels, made once and kept on the model for
    loops with several rows, with weak references to the params leaves they were made from. jax
    arrays are immutable, so a changed params tree has new leaves: the copies are made again when
    a leaf is another object (or was freed). The old params are not kept alive."""

    def __init__(self):
        self.sources: Tuple[weakref.ref, ...] = ()
        self.packed: Dict[str, Any] = {}

    def get(self, flat_params: Dict[Tuple[str, ...], Any], paths: Tuple[Tuple[str, ...], ...]) -> Dict[str, Any]:
        leaves = tuple(flat_params[path] for path in paths)
        keys = tuple(_kernel_key(path) for path in paths)
        if (tuple(self.packed) != keys or len(leaves) != len(self.sources)
                or any(ref() is not leaf for ref, leaf in zip(self.sources, leaves))):
            self.packed = {}  # the old copies go before the new ones are made
            self.packed = {key: jnp.transpose(leaf) for key, leaf in zip(keys, leaves)}
            self.sources = tuple(weakref.ref(leaf) for leaf in leaves)
        return self.packed

    def clear(self) -> None:
        self.sources, self.packed = (), {}


class FlaxGenerationMixin:
    """Adds ``generate`` to ``FlaxEncoderDecoderModel``."""

    def _prepacked_kernels(self, params) -> Dict[str, Any]:
        """(in, out) copies of the (out, in) kernels a decoding step multiplies by
        (``loop_kernel_paths``), by params path; empty for decoders that have none."""
        paths = loop_kernel_paths(self.config)
        if not paths:
            return {}
        flat = flatten_dict(params)
        store = self.__dict__.get("_prepacked_store")
        if store is None:
            store = self.__dict__["_prepacked_store"] = _PrepackedKernels()
        return store.get(flat, paths)

    def clear_prepacked_weights(self) -> None:
        """Free the (in, out) kernel copies that generate made for loops with several rows (made
        again, once, by the next such call)."""
        store = self.__dict__.get("_prepacked_store")
        if store is not None:
            store.clear()

    def generate(
        self,
        inputs=None,
        generation_config: Optional[GenerationConfig] = None,
        attention_mask=None,
        encoder_outputs: Any = None,
        prng_key=None,
        params: Any = None,
        prepack_weights: Optional[bool] = None,
        streamer: Any = None,
        **kwargs: Any,
    ):
        """Generate decoder token ids with one compiled function per shape signature.

        Args:
            inputs: encoder ``input_ids`` (B, S) (also accepted as ``input_ids=``).
            generation_config: a ``GenerationConfig`` for this call (second positional argument, as in
                the reference); its values at the defaults take the model's (``prepare_generation_config``),
                keyword settings win over it.
            attention_mask: encoder mask (B, S); when absent it is inferred from pad tokens as the reference does.
            decoder_input_ids: a decoder prompt (B, P), continued by the generation (the start token is
                prepended when no row begins with it, as in the reference; docs/generation.md).
            encoder_outputs: reuse an encoder output (object, tuple or array whose first item is the
                last hidden state (B, S, E)); the encoder is not run.
            prng_key: ``jax.random.PRNGKey`` for sampling (default ``PRNGKey(0)``); the same key gives the same tokens.
            params: the params tree (default ``model.params``).
            prepack_weights: run the loop's products on (in, out) copies of the decoder's (out, in)
                kernels (GPT-2's Conv1D), made once and kept on the model. ``None``: on for the CPU
                backend when a step has several rows (batch x beams or returned sequences), where
                XLA's products read (in, out) kernels faster; ``False``: the stored kernels, no
                copy. The tokens are the same.
            streamer: refused (as ``max_time``): both need a host call at every step, which the
                compiled loop does not make.
            **kwargs: generation settings (``max_new_tokens``, ``num_beams``, ``generation_config`` ...),
                resolved by ``encdec.generation_utils.resolve_generation_settings``; ``token_type_ids`` /
                ``position_ids`` for the encoder.

        Returns, as the reference, an output with ``sequences`` (B * num_return_sequences, T) int32
        numpy: ``FlaxGreedySearchOutput``, ``FlaxSampleOutput`` or ``FlaxBeamSearchOutput``; with
        ``return_dict_in_generate`` a ``FlaxGenerateEncoderDecoderOutput`` /
        ``FlaxGenerateBeamEncoderDecoderOutput`` (the fields of PyTorch's).
        """
        if inputs is None:
            inputs = kwargs.pop("input_ids", None)
        elif "input_ids" in kwargs:
            raise ValueError("pass the encoder input ids once: as `inputs` or as `input_ids`, not both")
        check_generation_config_argument(generation_config)
        vocab_size = self.config.decoder.vocab_size
        settings, model_kwargs = resolve_generation_settings(
            self.config, getattr(self, "generation_config", None), vocab_size=vocab_size,
            generation_config=generation_config, **kwargs
        )
        check_host_features(settings, streamer, "flax")
        encoder_kwargs = {k: model_kwargs.pop(k) for k in _ENCODER_KWARGS if k in model_kwargs}
        encoder_kwargs = {k: np.asarray(v, dtype=np.int32) for k, v in encoder_kwargs.items() if v is not None}
        prompt = model_kwargs.pop("decoder_input_ids", None)  # (B, P) numpy, the start token first
        model_kwargs.pop("use_cache", None)
        if model_kwargs:
            raise ValueError(f"generate got arguments that are neither generation settings nor encoder inputs: "
                             f"{sorted(model_kwargs)}")
        if prepack_weights not in (None, True, False):
            raise ValueError(f"prepack_weights must be None, True or False, got {prepack_weights!r}")
        params = self._expand(self._params_or_raise(params))

        # === The source: input ids (encoded inside the compiled function) or given encoder outputs ===
        if encoder_outputs is None:
            if inputs is None:
                raise ValueError("generate needs encoder input ids (inputs=...) or encoder_outputs=...")
            inputs = np.asarray(inputs)
            if inputs.ndim != 2:
                raise ValueError(f"inputs must be (batch, length) token ids, got shape {inputs.shape}")
            self.check_inputs(input_ids=inputs, **encoder_kwargs)
            source = inputs.astype(np.int32)
            if attention_mask is None:
                attention_mask = _infer_attention_mask(source, settings)
        else:
            if encoder_kwargs:
                raise ValueError(f"{sorted(encoder_kwargs)} are encoder inputs: not used with encoder_outputs")
            if isinstance(encoder_outputs, (tuple, list)):
                source = encoder_outputs[0]
            else:
                source = getattr(encoder_outputs, "last_hidden_state", encoder_outputs)
            source = jnp.asarray(source)
            if source.ndim != 3:
                raise ValueError(f"encoder_outputs[0] must be (batch, length, hidden), got shape {source.shape}")
            if attention_mask is None:
                attention_mask = np.ones(source.shape[:2], dtype=np.int32)
        attention_mask = np.asarray(attention_mask, dtype=np.int32)
        if attention_mask.shape != tuple(source.shape[:2]):
            raise ValueError(f"attention_mask has shape {attention_mask.shape} but the source has "
                             f"(batch, length) = {tuple(source.shape[:2])}")
        if prompt is None:
            prompt = np.full((source.shape[0], 1), settings.decoder_start_token_id, np.int32)
        elif prompt.shape[0] != source.shape[0]:
            raise ValueError(f"decoder_input_ids has {prompt.shape[0]} rows but the encoder input has {source.shape[0]}")
        prompt = prompt.astype(np.int32)
        if prng_key is None:
            prng_key = jax.random.PRNGKey(0)
        rows = source.shape[0] * (settings.num_beams if settings.is_beam else settings.num_return_sequences)
        if prepack_weights is None:
            prepack_weights = rows > 1 and jax.default_backend() == "cpu"
        loop_kernels = self._prepacked_kernels(params) if prepack_weights else {}

        # return_dict_in_generate only changes the host-side packing: not part of the signature.
        traced_settings = dataclasses.replace(settings, return_dict_in_generate=False)
        signature = (id(self.module), encoder_outputs is None, tuple(source.shape), str(source.dtype),
                     tuple(sorted(encoder_kwargs)), traced_settings, tuple(loop_kernels),
                     tuple(sorted(_compiler_options().items())))
        fns = self.__dict__.setdefault("_generate_fns", {})
        if signature not in fns:
            shared = self.__dict__.setdefault("_generate_parts", {})
            parts = shared.get(id(self.module))
            if parts is None:
                parts = shared[id(self.module)] = _SharedParts(self.module)
            fns[signature] = _make_generate_fn(self.module, traced_settings, vocab_size, signature,
                                               encode=encoder_outputs is None,
                                               encoder_kwarg_names=tuple(sorted(encoder_kwargs)), parts=parts)
        out = _run(fns, signature, (params, source, attention_mask, encoder_kwargs, prompt, prng_key, loop_kernels))
        cache = out.pop("cache")  # left on the device: only return_dict_in_generate hands it out
        out = jax.device_get(out)
        out["cache"] = cache
        batch_size = source.shape[0]
        if settings.is_beam:
            return _finish_beam_search(out, settings, batch_size)
        return _finish_greedy_or_sample(out, settings)


def _run(fns, signature, args):
    """Call the compiled function of ``signature`` (jitted here on first use); if XLA rejects one of
    ``CPU_COMPILER_OPTIONS`` (another jaxlib), compile without them."""
    entry = fns[signature]
    if not isinstance(entry, tuple):
        options = dict(signature[-1])
        entry = fns[signature] = (jax.jit(entry, compiler_options=options or None), entry)
    try:
        return entry[0](*args)
    except Exception as error:  # noqa: BLE001 - only option errors are retried
        unknown = [k for k in CPU_COMPILER_OPTIONS if k in str(error)]
        if not unknown:
            raise
        for key in unknown:
            CPU_COMPILER_OPTIONS.pop(key)
        options = {k: v for k, v in signature[-1] if k not in unknown}
        fns[signature] = (jax.jit(entry[1], compiler_options=options or None), entry[1])
        return fns[signature][0](*args)


def _make_generate_fn(module, s: GenerationSettings, vocab_size: int, signature, encode: bool,
                      encoder_kwarg_names: Tuple[str, ...], parts: _SharedParts):
    """The function ``jax.jit`` compiles: (params, source, mask, encoder kwargs, decoder prompt, key,
    loop kernels) ->
    loop outputs; ``parts`` are the model's shared encoder and cross-cache functions."""

    def generate_fn(params, source, attention_mask, encoder_kwargs, prompt, prng_key, loop_kernels):
        TRACE_COUNTS[signature] += 1  # Python side effect: runs only while tracing
        expand = s.num_beams if s.is_beam else s.num_return_sequences
        # === Encode once ===
        if encode:
            hidden = parts.encode(params, source, attention_mask, encoder_kwargs)
        else:
            hidden = source
        batch_size = hidden.shape[0]
        # === One row per beam / returned sample ===
        decoder = _Decoder(module, parts, params, hidden, attention_mask, s.max_length, expand, loop_kernels,
                           cross_attention=architecture(module.config.decoder).decoder.cross_attention)
        input_ids = jnp.full((batch_size * expand, s.max_length), s.pad_token_id, dtype=jnp.int32)
        input_ids = input_ids.at[:, :s.prompt_length].set(jnp.repeat(prompt, expand, axis=0))  # the prompt first
        if s.is_beam:
            return _beam_search(decoder, input_ids, s, batch_size, vocab_size, prng_key)
        return _greedy_or_sample(decoder, input_ids, s, prng_key, vocab_size)

    return generate_fn


def _greedy_or_sample(decoder: _Decoder, input_ids, s: GenerationSettings, prng_key, vocab_size: int):
    """Greedy search / multinomial sampling (the reference's ``_sample``) in a ``lax.while_loop``."""
    n_rows = input_ids.shape[0]
    eos = jnp.asarray(s.eos_token_ids or (-1,), dtype=jnp.int32)
    has_eos = len(s.eos_token_ids) > 0
    prompt_len = s.prompt_length
    all_scores = jnp.zeros((s.max_length - prompt_len, n_rows, vocab_size) if s.output_scores else (0,), jnp.float32)
    state = dict(cur_len=jnp.array(prompt_len, jnp.int32), input_ids=input_ids, unfinished=jnp.ones((n_rows,), bool),
                 cache=decoder.prefill(decoder.initial_cache, input_ids, prompt_len), all_scores=all_scores,
                 done=jnp.array(False))

    def body(st):
        cur_len, input_ids, unfinished = st["cur_len"], st["input_ids"], st["unfinished"]
        tokens = lax.dynamic_slice_in_dim(input_ids, cur_len - 1, 1, axis=1)[:, 0]
        logits, cache = decoder.step(st["cache"], tokens, cur_len)  # (N, V)
        scores = process_scores(s, input_ids, cur_len, logits)
        all_scores = st["all_scores"]
        if s.output_scores:
            all_scores = lax.dynamic_update_index_in_dim(all_scores, scores, cur_len - prompt_len, axis=0)
        if s.do_sample:
            next_tokens = jax.random.categorical(jax.random.fold_in(prng_key, cur_len), scores, axis=-1)
        else:
            next_tokens = jnp.argmax(scores, axis=-1)
        next_tokens = next_tokens.astype(jnp.int32)
        if has_eos:  # finished rows get pad
            next_tokens = jnp.where(unfinished, next_tokens, s.pad_token_id)
        input_ids = lax.dynamic_update_slice_in_dim(input_ids, next_tokens[:, None], cur_len, axis=1)
        if has_eos:
            unfinished = unfinished & ~jnp.isin(next_tokens, eos)
        cur_len = cur_len + 1
        done = (cur_len >= s.max_length) | ~jnp.any(unfinished)
        return dict(cur_len=cur_len, input_ids=input_ids, unfinished=unfinished, cache=cache,
                    all_scores=all_scores, done=done)

    state = lax.while_loop(lambda st: ~st["done"], body, state)
    # The cache is the loop's state already: returning it costs no copy (kept for past_key_values).
    return {"sequences": state["input_ids"], "cur_len": state["cur_len"], "scores": state["all_scores"],
            "cache": state["cache"]}


def _finish_greedy_or_sample(out: Dict[str, np.ndarray], s: GenerationSettings):
    cur_len = int(out["cur_len"])
    sequences = np.asarray(out["sequences"])[:, :cur_len]
    if s.return_dict_in_generate:
        steps = cur_len - s.prompt_length
        scores = tuple(np.asarray(out["scores"][i]) for i in range(steps)) if s.output_scores else None
        return FlaxGenerateEncoderDecoderOutput(sequences=sequences, scores=scores, past_key_values=out["cache"])
    return FlaxSampleOutput(sequences=sequences) if s.do_sample else FlaxGreedySearchOutput(sequences=sequences)


def _gather_beams(tensor, beam_indices):
    """tensor (B, K, ...) , beam_indices (B, K') -> (B, K', ...)."""
    while beam_indices.ndim < tensor.ndim:
        beam_indices = beam_indices[..., None]
    return jnp.take_along_axis(tensor, beam_indices, axis=1)


def _beam_search(decoder: _Decoder, input_ids, s: GenerationSettings, batch_size: int, vocab_size: int, prng_key):
    """The reference's vectorised beam search (transformers 4.57 ``_beam_search``) in a
    ``lax.while_loop`` (``encdec_pt/generation/utils.py::_beam_search`` step for step); with
    ``do_sample`` beam sampling: the continuations are drawn without replacement from
    softmax(accumulated scores), by Gumbel-top-k (the K largest of scores + Gumbel noise, in the order
    drawn: the distribution of the reference's ``torch.multinomial`` without replacement).

    Keeps, per input, ``num_beams`` running beams and ``num_beams`` finished hypotheses; each step
    takes the top ``beams_to_keep = max(2, 1 + n_eos) * num_beams`` continuations of all running
    beams, moves the ones that stop (eos or max length) among the first ``num_beams`` into the
    finished set (score / generated_length ** length_penalty) and continues the best non-stopped ones.
    """
    nb, max_length = s.num_beams, s.max_length
    length_penalty, early_stopping = s.length_penalty, s.early_stopping
    eos = jnp.asarray(s.eos_token_ids or (-1,), dtype=jnp.int32)
    n_eos = len(s.eos_token_ids)
    beams_to_keep = max(2, 1 + n_eos) * nb
    top_num_beam_mask = jnp.asarray([True] * nb + [False] * (beams_to_keep - nb))
    # The reference fills unused positions with `pad or eos[0]` (so eos when pad == 0), -1 without eos.
    if n_eos:
        fill_value = s.pad_token_id if s.pad_token_id else s.eos_token_ids[0]
    else:
        fill_value = -1
    prompt_len = s.prompt_length  # the start token, or the decoder prompt
    penalties = jnp.asarray(_length_penalties(max_length, length_penalty))  # penalties[x] = x ** length_penalty

    running_sequences = jnp.full((batch_size, nb, max_length), fill_value, dtype=jnp.int32)
    running_sequences = running_sequences.at[:, :, :prompt_len].set(
        input_ids[:, :prompt_len].reshape(batch_size, nb, prompt_len))
    running_beam_scores = jnp.zeros((batch_size, nb), jnp.float32).at[:, 1:].set(-1e9)  # only beam 0 is live
    running_beam_indices = jnp.full((batch_size, nb, max_length - prompt_len), -1, dtype=jnp.int32)
    all_scores = jnp.zeros((max_length - prompt_len, batch_size * nb, vocab_size) if s.output_scores else (0,),
                           jnp.float32)
    state = dict(
        cur_len=jnp.array(prompt_len, jnp.int32),
        running_sequences=running_sequences, sequences=running_sequences,
        running_beam_scores=running_beam_scores,
        beam_scores=jnp.full((batch_size, nb), -1e9, jnp.float32),
        is_sent_finished=jnp.zeros((batch_size, nb), bool),
        improvement_possible=jnp.ones((batch_size, 1), bool),
        running_beam_indices=running_beam_indices, beam_indices=running_beam_indices,
        cache=decoder.prefill(decoder.initial_cache, input_ids, prompt_len), all_scores=all_scores,
        done=jnp.array(False),
    )
    batch_offset = jnp.arange(batch_size, dtype=jnp.int32)[:, None] * nb

    def body(st):
        cur_len = st["cur_len"]
        flat_running = st["running_sequences"].reshape(batch_size * nb, max_length)
        tokens = lax.dynamic_slice_in_dim(flat_running, cur_len - 1, 1, axis=1)[:, 0]
        logits, cache = decoder.step(st["cache"], tokens, cur_len)  # (B * nb, V)
        log_probs = jax.nn.log_softmax(logits, axis=-1)
        log_probs = process_scores(s, flat_running, cur_len, log_probs)
        all_scores = st["all_scores"]
        if s.output_scores:
            all_scores = lax.dynamic_update_index_in_dim(all_scores, log_probs, cur_len - prompt_len, axis=0)
        acc = (log_probs.reshape(batch_size, nb, vocab_size) + st["running_beam_scores"][:, :, None]).reshape(
            batch_size, nb * vocab_size)

        # --- top-k continuations over all beams of an input ---
        if s.do_sample:
            noise = jax.random.gumbel(jax.random.fold_in(prng_key, cur_len), acc.shape, jnp.float32)
            topk_indices = lax.top_k(acc + noise, beams_to_keep)[1]  # (B, K), in drawing order
            topk_log_probs = jnp.take_along_axis(acc, topk_indices, axis=1)
        else:
            topk_log_probs, topk_indices = lax.top_k(acc, beams_to_keep)  # (B, K)
        topk_beam = topk_indices // vocab_size
        topk_running_beam_indices = _gather_beams(st["running_beam_indices"], topk_beam)
        topk_running_sequences = _gather_beams(st["running_sequences"], topk_beam)
        topk_ids = (topk_indices % vocab_size).astype(jnp.int32)
        topk_running_sequences = lax.dynamic_update_slice_in_dim(
            topk_running_sequences, topk_ids[:, :, None], cur_len, axis=2)
        topk_running_beam_indices = lax.dynamic_update_slice_in_dim(
            topk_running_beam_indices, (topk_beam + batch_offset).astype(jnp.int32)[:, :, None],
            cur_len - prompt_len, axis=2)

        # --- which continuations stop (max length reached or eos) ---
        hits = jnp.broadcast_to(cur_len + 1 >= max_length, topk_ids.shape)
        if n_eos:
            hits = hits | jnp.isin(topk_ids, eos)

        # --- running beams for the next step: best non-stopping continuations ---
        topk_running_log_probs = topk_log_probs + hits.astype(jnp.float32) * -1.0e9
        next_topk = lax.top_k(topk_running_log_probs, nb)[1]
        running_sequences = _gather_beams(topk_running_sequences, next_topk)
        running_beam_scores = _gather_beams(topk_running_log_probs, next_topk)
        running_beam_indices = _gather_beams(topk_running_beam_indices, next_topk)

        # --- finished hypotheses: merge the stopping ones among the first nb, keep the best nb ---
        is_sent_finished, improvement_possible = st["is_sent_finished"], st["improvement_possible"]
        just_finished = hits & top_num_beam_mask[None, :]
        finished_scores = topk_log_probs / penalties[cur_len + 1 - prompt_len]
        beams_in_batch_are_full = jnp.all(is_sent_finished, axis=-1, keepdims=True) & (early_stopping is True)
        finished_scores = finished_scores + beams_in_batch_are_full.astype(jnp.float32) * -1.0e9
        finished_scores = finished_scores + (~improvement_possible).astype(jnp.float32) * -1.0e9
        finished_scores = finished_scores + (~just_finished).astype(jnp.float32) * -1.0e9
        merged_sequences = jnp.concatenate((st["sequences"], topk_running_sequences), axis=1)
        merged_scores = jnp.concatenate((st["beam_scores"], finished_scores), axis=1)
        merged_beam_indices = jnp.concatenate((st["beam_indices"], topk_running_beam_indices), axis=1)
        merged_finished = jnp.concatenate((is_sent_finished, just_finished), axis=1)
        keep = lax.top_k(merged_scores, nb)[1]
        sequences = _gather_beams(merged_sequences, keep)
        beam_scores = _gather_beams(merged_scores, keep)
        beam_indices = _gather_beams(merged_beam_indices, keep)
        is_sent_finished = _gather_beams(merged_finished, keep)

        # --- the cache follows the running beams ---
        beam_idx = lax.dynamic_slice_in_dim(running_beam_indices, cur_len - prompt_len, 1, axis=2).reshape(-1)
        cache = decoder.reorder(cache, beam_idx)
        cur_len = cur_len + 1

        # --- can a running beam still beat the worst finished one? ---
        if early_stopping == "never" and length_penalty > 0.0:
            best_length = max_length - prompt_len
        else:
            best_length = cur_len - prompt_len
        best_running = running_beam_scores[:, :1] / penalties[best_length]
        worst_finished = jnp.where(is_sent_finished, jnp.min(beam_scores, axis=1, keepdims=True), -1.0e9)
        improvement_possible = improvement_possible & jnp.any(best_running > worst_finished, axis=-1, keepdims=True)

        exists_open_beam = ~(jnp.all(is_sent_finished) & (early_stopping is True))
        valid_continuations = ~jnp.all(hits)
        done = ~(jnp.any(improvement_possible) & exists_open_beam & valid_continuations)
        return dict(
            cur_len=cur_len, running_sequences=running_sequences, sequences=sequences,
            running_beam_scores=running_beam_scores, beam_scores=beam_scores, is_sent_finished=is_sent_finished,
            improvement_possible=improvement_possible, running_beam_indices=running_beam_indices,
            beam_indices=beam_indices, cache=cache, all_scores=all_scores, done=done,
        )

    state = lax.while_loop(lambda st: ~st["done"], body, state)
    nrs = s.num_return_sequences
    return {
        "sequences": state["sequences"][:, :nrs], "sequences_scores": state["beam_scores"][:, :nrs],
        "beam_indices": state["beam_indices"][:, :nrs], "cur_len": state["cur_len"], "scores": state["all_scores"],
        "cache": state["cache"],
    }


def _finish_beam_search(out: Dict[str, np.ndarray], s: GenerationSettings, batch_size: int):
    nrs, max_length, prompt_len = s.num_return_sequences, s.max_length, s.prompt_length
    sequences = np.asarray(out["sequences"]).reshape(batch_size * nrs, max_length)
    beam_scores = np.asarray(out["sequences_scores"]).reshape(batch_size * nrs)
    beam_indices = np.asarray(out["beam_indices"]).reshape(batch_size * nrs, -1)
    generated = int((beam_indices + 1).astype(bool).sum(axis=1).max())
    sequences = sequences[:, :prompt_len + generated]
    beam_indices = beam_indices[:, :generated]
    if s.return_dict_in_generate:
        steps = int(out["cur_len"]) - prompt_len
        scores = tuple(np.asarray(out["scores"][i]) for i in range(steps)) if s.output_scores else None
        return FlaxGenerateBeamEncoderDecoderOutput(sequences=sequences,
                                                    sequences_scores=beam_scores if s.output_scores else None,
                                                    scores=scores, beam_indices=beam_indices,
                                                    past_key_values=out["cache"])
    return FlaxBeamSearchOutput(sequences=sequences, scores=beam_scores)
