"""One resolution of ``generate`` settings, shared by the three frameworks.

Every value is taken from, in order: the keyword argument to ``generate``, the
``generation_config=`` passed to it, the model's ``generation_config``, the legacy generation
attributes of the model config (``config.max_length = 4`` set after loading), the decoder
sub-config (``docs/generation.md``; ``prepare_generation_config`` is the reference's
``_prepare_generation_config``). The result is a frozen ``GenerationSettings``: the frameworks only run
the decoding loop, so PyTorch, TensorFlow and Flax cannot disagree about what was asked.

Lengths count decoder tokens *including* the start token, as the reference does:
``max_new_tokens=N`` means ``max_length = 1 + N``.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from encdec.configuration import PretrainedConfig
from encdec.generation_config import GENERATION_DEFAULTS, GenerationConfig


@dataclasses.dataclass(frozen=True)
class GenerationSettings:
    """Everything a decoding loop needs, validated. Token ids are plain ints."""

    max_length: int
    min_length: int
    decoder_start_token_id: int
    pad_token_id: int
    eos_token_ids: Tuple[int, ...]
    bos_token_id: Optional[int]
    num_beams: int
    num_return_sequences: int
    length_penalty: float
    early_stopping: Any  # True, False or "never"
    do_sample: bool
    temperature: float
    top_k: int
    top_p: float
    typical_p: float
    repetition_penalty: float
    no_repeat_ngram_size: int
    bad_words_ids: Tuple[Tuple[int, ...], ...]
    forced_bos_token_id: Optional[int]
    forced_eos_token_id: Optional[int]
    output_scores: bool
    max_time: Optional[float]
    return_dict_in_generate: bool
    use_cache: bool
    stop_strings: Tuple[str, ...] = ()
    # Decoder tokens before the first generated one: the start token, or a decoder prompt
    # (``decoder_input_ids``, with the start token prepended as the reference does).
    prompt_length: int = 1

    @property
    def max_new_tokens(self) -> int:
        return self.max_length - self.prompt_length

    @property
    def min_tokens_to_keep(self) -> int:
        """Tokens the sampling warpers (top_k, top_p, typical_p) always keep: 1, or with beam sampling
        one more than the eos ids (2 without eos), so that a beam keeps a continuation that does not
        end it (the reference's rule in ``_get_logits_processor``)."""
        if self.num_beams > 1:
            return len(self.eos_token_ids) + 1 if self.eos_token_ids else 2
        return 1

    @property
    def is_beam(self) -> bool:
        return self.num_beams > 1



def _first(*values: Any) -> Any:
    for value in values:
        if value is not None:
            return value
    return None


def _config_value(config: PretrainedConfig, key: str) -> Any:
    """The top-level value, else the decoder sub-config's."""
    value = config.__dict__.get(key)
    if value is None:
        decoder = config.__dict__.get("decoder")
        if isinstance(decoder, PretrainedConfig):
            value = decoder.__dict__.get(key)
    return value


def _as_id_list(value: Any) -> Tuple[int, ...]:
    if value is None:
        return ()
    if isinstance(value, (list, tuple)):
        return tuple(int(v) for v in value)
    return (int(value),)


def _written_before_4_50(config: GenerationConfig) -> bool:
    """Whether the file was written by transformers older than 4.50 (``None``: this library or a new one)."""
    version = getattr(config, "_transformers_version", None)
    match = re.match(r"(\d+)\.(\d+)", str(version)) if version else None
    return bool(match) and (int(match.group(1)), int(match.group(2))) < (4, 50)


def prepare_generation_config(
    model_config: PretrainedConfig,
    model_generation_config: Optional[GenerationConfig],
    generation_config: Optional[GenerationConfig] = None,
    use_model_defaults: Optional[bool] = None,
) -> GenerationConfig:
    """The generation config a ``generate`` call starts from (a copy), by the reference's rule
    (transformers 4.57 ``GenerationMixin._prepare_generation_config``):

    - no ``generation_config``: the model's. If the model's was derived from its config
      (``_from_model_config``), is unmodified since, and the config holds non-default legacy
      generation attributes (``config.max_length = 4``), it is derived again from the config and
      replaces the model's *in place* (the reference rebinds ``model.generation_config``), with the
      reference's warning.
    - a ``generation_config``: each of its values still at the global default takes the model's
      non-default value (the model's token ids, ``num_beams`` ...). For a model generation config
      written by transformers < 4.50, or with ``use_model_defaults=False``, only the token ids are
      taken from the model, as the reference does.
    """
    if model_generation_config is None:
        model_generation_config = GenerationConfig.from_model_config(model_config)
    if generation_config is None:
        model = model_generation_config
        if (model._from_model_config and model._original_object_hash == hash(model)
                and model_config._get_non_default_generation_parameters()):
            derived = GenerationConfig.from_model_config(model_config)
            if derived != model:
                warnings.warn(
                    "You have modified the pretrained model configuration to control generation. This is a "
                    "deprecated strategy to control generation: set model.generation_config instead.",
                    UserWarning,
                )
                model.__dict__.clear()
                model.__dict__.update(derived.__dict__)
        return copy.deepcopy(model)
    if not isinstance(generation_config, GenerationConfig):
        raise TypeError(f"generation_config must be an encdec GenerationConfig, got {type(generation_config).__name__}")
    config = copy.deepcopy(generation_config)
    if use_model_defaults is True or (use_model_defaults is None
                                      and not _written_before_4_50(model_generation_config)):
        defaults = GenerationConfig()
        for key, model_value in model_generation_config.__dict__.items():
            if key.startswith("_"):
                continue
            default = getattr(defaults, key, None)
            if getattr(config, key, None) == default and model_value != default:
                setattr(config, key, copy.deepcopy(model_value))
        # `temperature=0.0` with a model that samples by default means greedy (the reference's edge case).
        if config.temperature == 0.0:
            config.do_sample = False
    else:
        for key in ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id"):
            if getattr(config, key, None) is None:
                setattr(config, key, getattr(model_generation_config, key, None))
    return config


def decoder_prompt(decoder_input_ids: Any, decoder_start_token_id: int,
                   vocab_size: Optional[int] = None) -> np.ndarray:
    """The decoder's first tokens (batch, P) int64 from ``generate(decoder_input_ids=...)``, by the
    reference's rule (``_prepare_decoder_input_ids_for_generation``): the start token is prepended
    when *no* row begins with it; a prompt some of whose rows begin with it is taken as it is.

    ``decoder_input_ids``: numpy, a list, or a framework tensor (read back to the host: the prompt
    decides the loop's shapes)."""
    if hasattr(decoder_input_ids, "detach"):  # torch
        decoder_input_ids = decoder_input_ids.detach().cpu().numpy()
    ids = np.asarray(decoder_input_ids)
    if ids.ndim == 1:
        ids = ids[None, :]
    if ids.ndim != 2 or ids.shape[1] == 0 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"decoder_input_ids must be (batch, length) integer token ids with length >= 1, got shape "
                         f"{ids.shape} and dtype {ids.dtype}")
    if vocab_size is not None and ((ids < 0) | (ids >= vocab_size)).any():
        bad = int(ids[(ids < 0) | (ids >= vocab_size)][0])
        raise ValueError(f"decoder_input_ids contains token id {bad}, outside the decoder vocabulary [0, {vocab_size})")
    ids = ids.astype(np.int64)
    if (ids[:, 0] != decoder_start_token_id).all():
        ids = np.concatenate([np.full((ids.shape[0], 1), decoder_start_token_id, np.int64), ids], axis=1)
    return ids


def check_host_features(settings: GenerationSettings, streamer: Any, framework: str) -> None:
    """``streamer=`` and ``max_time`` need the host at every step (a call with the new tokens; a
    clock): the compiled loops of TensorFlow (XLA) and Flax (``lax.while_loop``) make no such call,
    so they refuse them by name. ``streamer`` with beams is refused as in the reference."""
    if streamer is not None and settings.is_beam:
        raise ValueError("`streamer` cannot be used with beam search (yet!). Make sure that `num_beams` is set to 1.")
    wanted = [name for name, on in (("streamer", streamer is not None), ("max_time", settings.max_time is not None),
                                    ("stop_strings", bool(settings.stop_strings))) if on]
    if wanted and framework in ("tf", "flax"):
        where = "TensorFlow's tf.while_loop (compiled by XLA)" if framework == "tf" else "Flax's jitted lax.while_loop"
        raise NotImplementedError(f"{' and '.join(wanted)} need a host call at every decoding step, which "
                                  f"{where} does not make")


class StopStrings:
    """The reference's ``StopStringCriteria`` on the host: a row is done when one of the strings
    occurs in the text of its tokens and ends inside the last token (so it was just completed; a
    token may overhang either end of the string). A token's text is what the tokenizer writes for it
    after other text (the reference's ``clean_tokenizer_vocab``: "##ing" is "ing", "Ġthe" is " the")."""

    _PREFIX = "abcdef"

    def __init__(self, strings: Sequence[str], tokenizer: Any):
        if tokenizer is None:
            raise ValueError("There are one or more stop strings, either in the arguments to `generate` or in the "
                             "model's generation config, but we could not locate a tokenizer. When generating with "
                             "stop strings, you must pass the model's tokenizer to the `tokenizer` argument of "
                             "`generate`.")
        self.strings = tuple(strings)
        self.tokenizer = tokenizer
        self.longest = max(len(x) for x in self.strings)
        self._base = list(tokenizer(self._PREFIX, add_special_tokens=False)["input_ids"])
        self._texts: Dict[int, str] = {}

    def _text(self, token: int) -> str:
        text = self._texts.get(token)
        if text is None:
            written = self.tokenizer.decode(self._base + [token], skip_special_tokens=False,
                                            clean_up_tokenization_spaces=False)
            text = written[written.index(self._PREFIX) + len(self._PREFIX):] if self._PREFIX in written else written
            self._texts[token] = text
        return text

    def __call__(self, sequences: np.ndarray) -> np.ndarray:
        """sequences (N, L) int -> (N,) bool: the rows a stop string was just completed in."""
        sequences = np.asarray(sequences)
        done = np.zeros(sequences.shape[0], dtype=bool)
        for row in range(sequences.shape[0]):
            # each token writes at least one character, so the last `longest` tokens hold any match
            pieces = [self._text(int(t)) for t in sequences[row, -self.longest:]]
            text = "".join(pieces)
            last_start = len(text) - len(pieces[-1])
            for string in self.strings:
                if text.find(string, max(0, last_start - len(string) + 1)) != -1:
                    done[row] = True
                    break
        return done


def check_generation_config_argument(generation_config: Any) -> None:
    """``generate``'s second positional argument is ``generation_config`` (as in the reference);
    an array there is most likely an attention mask passed the old way."""
    if generation_config is not None and not isinstance(generation_config, GenerationConfig):
        raise TypeError(
            "the second argument of generate is generation_config (a GenerationConfig), as in transformers; "
            f"got {type(generation_config).__name__}. Pass the attention mask by keyword: attention_mask=..."
        )


def resolve_generation_settings(
    model_config: PretrainedConfig,
    model_generation_config: Optional[GenerationConfig] = None,
    vocab_size: Optional[int] = None,
    generation_config: Optional[GenerationConfig] = None,
    use_model_defaults: Optional[bool] = None,
    **kwargs: Any,
) -> Tuple[GenerationSettings, Dict[str, Any]]:
    """(settings, remaining model kwargs such as ``attention_mask`` / ``encoder_outputs``).

    ``model_generation_config`` is the model's ``generation_config`` (None: derived from
    ``model_config``); ``generation_config`` the one passed to ``generate``; ``kwargs`` the
    settings passed to ``generate``, which win over both (``prepare_generation_config``)."""
    base = prepare_generation_config(model_config, model_generation_config, generation_config, use_model_defaults)
    model_kwargs = {k: v for k, v in kwargs.items() if k not in GENERATION_DEFAULTS}
    for key in GENERATION_DEFAULTS:
        if key in kwargs and kwargs[key] is not None:
            setattr(base, key, kwargs[key])
    base.validate()
    g = base

    def token(key: str) -> Optional[int]:
        value = _first(getattr(g, key, None), _config_value(model_config, key))
        return None if value is None else value

    start = token("decoder_start_token_id")
    bos = token("bos_token_id")
    if start is None:
        start = bos
    if start is None:
        raise ValueError(
            "generate needs a decoder start token and none is set: pass decoder_start_token_id=... to "
            "generate, or set model.generation_config.decoder_start_token_id (or "
            "model.config.decoder_start_token_id; bos_token_id is used when it is set)"
        )
    eos = _as_id_list(token("eos_token_id"))
    pad = token("pad_token_id")
    if pad is None:
        # Finished rows are filled with pad; without one the first eos is used, like the reference.
        pad = eos[0] if eos else int(start)

    prompt = 1
    if model_kwargs.get("decoder_input_ids") is not None:
        model_kwargs["decoder_input_ids"] = decoder_prompt(model_kwargs["decoder_input_ids"], int(start), vocab_size)
        prompt = model_kwargs["decoder_input_ids"].shape[1]
    else:
        model_kwargs.pop("decoder_input_ids", None)
    max_new = g.max_new_tokens
    max_length = prompt + max_new if max_new is not None else int(g.max_length)
    min_new = g.min_new_tokens
    min_length = prompt + min_new if min_new is not None else int(g.min_length)
    if max_length <= prompt:
        what = "the start token" if prompt == 1 else f"the decoder prompt of {prompt} tokens (start token included)"
        raise ValueError(f"max_length={max_length} leaves no room for a new token after {what}; "
                         "set max_new_tokens")
    if min_length > max_length:
        # The reference warns and generates up to max_length with eos suppressed throughout; a
        # pipeline's own length check relies on that, so this is a warning, not an error.
        warnings.warn(f"Unfeasible length constraints: `min_length` ({min_length}) is larger than the maximum "
                      f"possible length ({max_length}). Generation will stop at the defined maximum length. "
                      "You should decrease the minimum length and/or increase the maximum length.",
                      UserWarning, stacklevel=3)
    # Learned absolute positions: a longer output has no position embedding (XLA's gather would
    # clamp the index silently).
    max_positions = getattr(getattr(model_config, "decoder", None), "max_position_embeddings", None)
    if max_positions is not None and max_length > max_positions:
        raise ValueError(f"max_length={max_length} is longer than the decoder's "
                         f"max_position_embeddings={max_positions}")

    num_beams, nrs = int(g.num_beams), int(g.num_return_sequences)
    if nrs < 1:
        raise ValueError(f"num_return_sequences must be >= 1, got {nrs}")
    if num_beams > 1 and nrs > num_beams:
        raise ValueError(f"num_return_sequences={nrs} cannot exceed num_beams={num_beams}")
    if num_beams == 1 and not g.do_sample and nrs > 1:
        raise ValueError("greedy search returns one sequence per input: use num_beams or do_sample for "
                         f"num_return_sequences={nrs}")
    if g.do_sample and not g.temperature > 0:
        raise ValueError(f"temperature must be > 0 when sampling, got {g.temperature}")
    if not 0 < g.top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {g.top_p}")
    if not 0 < g.typical_p <= 1:
        raise ValueError(f"typical_p must be in (0, 1], got {g.typical_p}")
    stop_strings = (g.stop_strings,) if isinstance(g.stop_strings, str) else tuple(g.stop_strings or ())
    if not all(isinstance(x, str) and x for x in stop_strings):
        raise ValueError(f"stop_strings must be a non-empty string or a list of them, got {g.stop_strings!r}")
    if int(g.num_beam_groups) > 1 or float(g.diversity_penalty) != 0.0:
        raise NotImplementedError(
            "group beam search (num_beam_groups > 1, diversity_penalty) is not built in: transformers 4.57 moved it "
            "to the Hub repository transformers-community/group-beam-search (generate(custom_generate=..., "
            "trust_remote_code=True) downloads and runs that code); this library runs no code from the Hub")
    if g.top_k is not None and g.top_k < 0:
        raise ValueError(f"top_k must be >= 0, got {g.top_k}")
    if not g.repetition_penalty > 0:
        raise ValueError(f"repetition_penalty must be > 0, got {g.repetition_penalty}")

    bad = tuple(tuple(int(t) for t in seq) for seq in (g.bad_words_ids or ()))
    if any(len(seq) == 0 for seq in bad):
        raise ValueError("bad_words_ids must not contain empty sequences")
    ids_to_check: List[Tuple[str, Sequence[int]]] = [
        ("decoder_start_token_id", [start]), ("pad_token_id", [pad]), ("eos_token_id", list(eos)),
        ("forced_bos_token_id", _as_id_list(g.forced_bos_token_id)),
        ("forced_eos_token_id", _as_id_list(g.forced_eos_token_id)),
        ("bad_words_ids", [t for seq in bad for t in seq]),
    ]
    if vocab_size is not None:
        for name, ids in ids_to_check:
            for i in ids:
                if not 0 <= i < vocab_size:
                    raise ValueError(f"{name} contains token id {i}, outside the decoder vocabulary [0, {vocab_size})")

    settings = GenerationSettings(
        max_length=max_length, min_length=min_length, decoder_start_token_id=int(start), pad_token_id=int(pad),
        eos_token_ids=eos, bos_token_id=None if bos is None else int(bos), num_beams=num_beams,
        num_return_sequences=nrs, length_penalty=float(g.length_penalty), early_stopping=g.early_stopping,
        do_sample=bool(g.do_sample), temperature=float(g.temperature), top_k=int(g.top_k or 0),
        top_p=float(g.top_p), typical_p=float(g.typical_p), repetition_penalty=float(g.repetition_penalty),
        no_repeat_ngram_size=int(g.no_repeat_ngram_size or 0), bad_words_ids=bad,
        forced_bos_token_id=None if g.forced_bos_token_id is None else int(g.forced_bos_token_id),
        forced_eos_token_id=None if g.forced_eos_token_id is None else int(g.forced_eos_token_id),
        output_scores=bool(g.output_scores),
        max_time=None if g.max_time is None else float(g.max_time), stop_strings=stop_strings, return_dict_in_generate=bool(g.return_dict_in_generate),
        use_cache=bool(g.use_cache), prompt_length=prompt,
    )
    return settings, model_kwargs
