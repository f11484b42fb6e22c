"""Architecture records: everything shared code needs to know about an architecture, as data.

One ``Architecture`` per architecture (``encdec/architectures/bert.py``, ``gpt2.py``, ...) holds
its config class and model_type(s), its parameter schema, the roles it can play (encoder; decoder
with cross-attention), where its decoder's attention and caches live, its legacy TF/Flax name
rules and its tokenizer family. Formats, conversion, the tokenizer, generation, static caches, the
auto classes and the testing helpers read these records; none of them tests a model_type, a class
name or an attribute name.

``ModelRegistry`` is the one mechanism by which each framework registers its module classes for a
record (``encdec_pt/models/auto.py``, ``encdec_tf/models/auto.py``, ``encdec_flax/models/auto.py``).

This module imports nothing from the rest of ``encdec``, so every layer can read the records.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Generic, Iterator, Mapping, Optional, Tuple, Type, TypeVar

ENCODER = "encoder"
DECODER = "decoder"


@dataclasses.dataclass(frozen=True)
class DecoderLayout:
    """Where a causal LM with cross-attention keeps what decoding reads (canonical names, no prefix).

    Args:
        cross_attention: the attribute name of each layer's cross-attention module (its cache
            entries and parameters sit under it): ``"crossattention"``.
        cross_key_value: the projections, inside ``cross_attention``, that map the encoder states
            to keys/values: computed once per input when the cache is made, never in a step.
        new_weights: a regex over canonical names: the weights that ``add_cross_attention`` adds
            (reported as "newly initialised, expected" when a decoder is warm-started).
        num_layers: the config attribute with the decoder's own layer count.
        num_heads: the config attribute with the decoder's own attention head count (BART's
            ``num_attention_heads`` is its encoder's).
    """

    cross_attention: str
    cross_key_value: Tuple[str, ...]
    new_weights: str
    num_layers: str = "num_hidden_layers"
    num_heads: str = "num_attention_heads"


@dataclasses.dataclass(frozen=True)
class TokenizerFamily:
    """What a tokenizer class of the reference adds to a ``tokenizers`` backend, as ``encdec.tokenizer``
    reads it for the architectures that use it.

    Args:
        name: the family's name; ``"wordpiece"`` (``vocab.txt``), ``"byte_level_bpe"`` (``vocab.json`` +
            ``merges.txt``) and ``"sentencepiece"`` (``spiece.model``) are also the families a folder of
            those files gets when its ``tokenizer_config.json`` names no class; ``"generic"``:
            ``tokenizer.json`` only.
        class_name: ``tokenizer_class`` written to ``tokenizer_config.json``.
        special_tokens: defaults the reference's class sets for special tokens the folder does not name.
        model_input_names: what ``__call__`` returns by default.
        normalizer_options: keyword -> (field of the backend's normalizer, default), rewritten
            into the normalizer when they differ from it (``do_lower_case`` of BERT).
        class_names: the ``tokenizer_class`` values of the folders of this family.
        slow_normalized: special tokens that the reference's slow class makes normalized
            AddedTokens when given as strings (it converts folders without tokenizer.json through it).
        template: ``(single, pair)`` of ``tokenizers.processors.TemplateProcessing`` that a backend
            built from vocabulary files gets; ``{cls_token}``-style fields name this tokenizer's special
            tokens (RoBERTa's converter reads them), other tokens are literal (XLM-R's converter writes
            ``<s>``). None: the algorithm's own default.
        lstrip: special tokens that, given as strings, swallow the spaces before them (``<mask>``).
        sentencepiece_vocab: how a SentencePiece model's pieces become ids, as the reference's
            converter of the family: ``(head, skip, tail)`` = pieces ``(token, score)`` put first, how
            many of the model's first pieces are dropped, tokens appended (score 0); the unknown
            token is ``<unk>`` of ``head`` when there is a head. None: the model's own ids.
        sentencepiece_file: the SentencePiece model of the family's folders (``spiece.model``), read
            even beside a ``tokenizer.json`` and saved again (the reference's slow class needs it).
        slow_only: the reference has no fast class for the family, so its slow class's rules apply:
            ``longest_first`` takes pair tokens one at a time from the longer sequence (the second on a
            tie), and decoding runs SentencePiece on each stretch between special tokens.
    """

    name: str
    class_name: Optional[str]
    special_tokens: Mapping[str, str]
    model_input_names: Tuple[str, ...]
    normalizer_options: Mapping[str, Tuple[str, Any]] = dataclasses.field(default_factory=dict)
    class_names: Tuple[str, ...] = ()
    slow_normalized: Tuple[str, ...] = ()
    template: Optional[Tuple[str, str]] = None
    lstrip: Tuple[str, ...] = ()
    sentencepiece_vocab: Optional[Tuple[Tuple[Tuple[str, float], ...], int, Tuple[str, ...]]] = None
    sentencepiece_file: Optional[str] = None
    slow_only: bool = False


@dataclasses.dataclass(frozen=True)
class Architecture:
    """One architecture's facts.

    Args:
        model_type: the ``config.json`` model_type; ``aliases`` are further model_types served by
            the same modules.
        config_class: its ``PretrainedConfig`` subclass.
        base_model_prefix: the attribute holding the base model inside the LM-head model
            (``bert``, ``transformer``); also the reference TF classes' main-layer name.
        base_schema: ``(config, add_pooling_layer) -> Schema`` of the base model.
        causal_lm_schema: ``config -> Schema`` of the causal LM, or None when it cannot be a decoder.
        decoder: where decoding reads its parts, or None when it cannot be a decoder.
        tokenizer: its tokenizer family.
        word_embeddings: canonical name (base model) of the input embedding matrix.
        lm_head: the attribute of the causal LM's output head (``cls``, ``lm_head``).
        tf_layer_names: attributes the reference's TF classes name differently (``{"cls": "mlm___cls"}``).
        tf_reused: (regex over canonical names, why) of tied tensors the reference's TF classes
            have no variable for.
        tiny: config fields of a tiny instance for tests (distinct odd sizes).
        can_encode: False for an architecture that is only ever a decoder here (BART's decoder):
            it has no encoder role, and ``base_schema`` is the base model its causal LM holds under
            ``base_model_prefix`` (what a base-model checkpoint of it is read as).
    """

    model_type: str
    config_class: Type[Any]
    base_model_prefix: str
    base_schema: Callable[..., Any]
    causal_lm_schema: Optional[Callable[[Any], Any]]
    decoder: Optional[DecoderLayout]
    tokenizer: TokenizerFamily
    word_embeddings: str
    lm_head: str
    has_pooler: bool = False
    aliases: Tuple[str, ...] = ()
    tf_layer_names: Dict[str, str] = dataclasses.field(default_factory=dict)
    tf_reused: Tuple[Tuple[str, str], ...] = ()
    tiny: Dict[str, Any] = dataclasses.field(default_factory=dict)
    can_encode: bool = True

    @property
    def model_types(self) -> Tuple[str, ...]:
        return (self.model_type,) + self.aliases

    @property
    def roles(self) -> Tuple[str, ...]:
        encoder = (ENCODER,) if self.can_encode else ()
        return encoder + ((DECODER,) if self.decoder is not None and self.causal_lm_schema is not None else ())

    def tiny_config(self, **overrides: Any) -> Any:
        values = dict(self.tiny)
        values.update(overrides)
        return self.config_class(**values)


ARCHITECTURES: Dict[str, Architecture] = {}


def register_architecture(record: Architecture) -> Architecture:
    """Add ``record`` under each of its model_types (a second record for one model_type is an error)."""
    for model_type in record.model_types:
        known = ARCHITECTURES.get(model_type)
        if known is not None and known is not record:
            raise ValueError(f"model_type {model_type!r} is already registered (config {known.config_class.__name__})")
        ARCHITECTURES[model_type] = record
    return record


def architecture(config_or_model_type: Any) -> Architecture:
    """The record of a config (its ``model_type``) or of a model_type string."""
    model_type = config_or_model_type if isinstance(config_or_model_type, str) else config_or_model_type.model_type
    try:
        return ARCHITECTURES[model_type]
    except KeyError:
        raise ValueError(
            f"unsupported model_type {model_type!r}; registered architectures: {sorted(ARCHITECTURES)}"
        ) from None


def records() -> Iterator[Architecture]:
    """Each registered record once, in registration order."""
    seen = set()
    for record in ARCHITECTURES.values():
        if id(record) not in seen:
            seen.add(id(record))
            yield record


def require_role(config: Any, role: str) -> Architecture:
    """The record of ``config``, or a ``ValueError`` naming the architecture and what it lacks for ``role``."""
    record = architecture(config)
    if role == ENCODER and ENCODER not in record.roles:
        raise ValueError(
            f"{record.model_type!r} cannot be the encoder of an encoder-decoder model: its architecture is "
            "registered as a decoder only (see docs/architectures.md)"
        )
    if role == DECODER and DECODER not in record.roles:
        raise ValueError(
            f"{record.model_type!r} cannot be the decoder of an encoder-decoder model: its architecture has no "
            "causal LM with cross-attention (a decoder needs causal self-attention, cross-attention over the "
            "encoder states and a key/value cache; see docs/architectures.md)"
        )
    return record


M = TypeVar("M")


class ModelRegistry(Generic[M]):
    """One framework's module classes per record and role: ``register`` once per architecture,
    ``lookup`` by config. The three frameworks' auto classes share this mechanism.

    Args:
        framework: ``"PyTorch"``, ``"TensorFlow"`` or ``"Flax"`` (for messages).
    """

    def __init__(self, framework: str):
        self.framework = framework
        self._classes: Dict[Tuple[str, str], M] = {}

    def register(self, model_type: str, *, encoder: Optional[M] = None, decoder: Optional[M] = None) -> None:
        """The base model (``encoder``) and the causal LM (``decoder``) of a registered architecture."""
        record = architecture(model_type)
        if decoder is not None and DECODER not in record.roles:
            raise ValueError(f"{model_type!r} has no decoder role in its record; cannot register {decoder!r}")
        if encoder is not None and ENCODER not in record.roles:
            raise ValueError(f"{model_type!r} has no encoder role in its record; cannot register {encoder!r}")
        for model_type_ in record.model_types:
            if encoder is not None:
                self._classes[(model_type_, ENCODER)] = encoder
            if decoder is not None:
                self._classes[(model_type_, DECODER)] = decoder

    def lookup(self, config: Any, role: str) -> M:
        record = require_role(config, role)
        try:
            return self._classes[(config.model_type, role)]
        except KeyError:
            have = sorted({t for (t, r) in self._classes if r == role})
            raise ValueError(
                f"no {self.framework} {role} class registered for model_type {config.model_type!r} "
                f"({record.config_class.__name__}); registered: {have}"
            ) from None

    def model_types(self, role: str) -> Tuple[str, ...]:
        return tuple(sorted(t for (t, r) in self._classes if r == role))


def check_decoder_contract(decoder: Any, methods: Tuple[str, ...]) -> None:
    """Refuse, naming the architecture and what is missing, a model that cannot be the decoder of an
    encoder-decoder model: its record has no decoder role, or it lacks a method of its framework's
    decoder contract (``docs/architectures.md``)."""
    record = require_role(decoder.config, DECODER)
    missing = [name for name in methods if not callable(getattr(decoder, name, None))]
    if missing:
        raise ValueError(
            f"{type(decoder).__name__} ({record.model_type!r}) cannot be the decoder of an encoder-decoder model: "
            f"it lacks {', '.join(missing)} of the decoder contract (see docs/architectures.md)"
        )
