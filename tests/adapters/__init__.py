"""Thin per-framework adapters used by the shared cross-framework tests.

Each module (``pt``, ``tf``, ``flax``) defines ``Adapter`` with:

- ``name``: ``"pt"`` | ``"tf"`` | ``"flax"``
- ``build(config, state)``: a model with the canonical numpy weights ``state`` loaded, in eval mode
- ``forward(model, inputs, **kw)``: dict of numpy outputs among ``loss``, ``logits``,
  ``encoder_last_hidden_state``, ``encoder_hidden_states``, ``encoder_attentions``,
  ``decoder_hidden_states``, ``decoder_attentions``, ``cross_attentions`` (lists for tuples)
- ``step_logits(model, inputs)``: decoder inputs fed one token at a time through the cache, (B, T, V)
- ``cache(model, inputs)``: the cache of one forward with ``use_cache=True``, one list per decoder layer
  of (self key, self value, cross key, cross value) arrays (B, H, T, D), as the reference's legacy
  cache; ``None`` where the framework keeps its cache in another form (``CACHE_FORM``)
- ``grads(model, inputs)``: d loss / d parameter for every owned canonical name, canonical layout
- ``state_dict(model)``: the owned canonical tensors
- ``save(model, path, **kwargs)`` (``save_pretrained``, e.g. ``max_shard_size=``) / ``load(path)``
- ``generate(model, inputs, **kwargs)``: sequences as a numpy array
- ``generate_output(model, inputs, **kwargs)``: with ``return_dict_in_generate=True``, a dict of numpy
  arrays (``sequences``, and ``sequences_scores`` / ``beam_indices`` for beam search, ``scores`` as a
  list of arrays with ``output_scores=True``)
- ``load(path)`` reads any folder (safetensors, sharded, ``pytorch_model.bin``) with no flag
- ``GENERATE_MODES``: name -> generate keyword arguments, every way the framework runs its loop
  (TensorFlow: XLA-compiled and eager); ``CHEAP_MODE`` names the one without a compile where there is one
- ``DRAWS_LIKE_REFERENCE``: sampling with ``seeded(n)`` draws the tokens the reference draws after
  ``torch.manual_seed(n)``
- ``seeded(n)``: the generate keyword arguments that seed sampling with ``n``, one dict per way the
  framework offers (all must draw the same tokens)
- ``encode(model, inputs)``: the encoder's output object, in the framework's arrays, for ``encoder_outputs=``
- ``forbid_encoder(model, monkeypatch)``: running the encoder from now on (until monkeypatch undoes it) raises
- ``quick_compiles()``: a context in which generate compiles faster on tiny models (same tokens)

Helpers for the behaviour tests: ``Built`` (one (framework, pair) model on the deterministic weights,
its results computed once), ``reference_model`` (the oracle's PyTorch model on a folder).
"""

import contextlib
import importlib
import importlib.util

import numpy as np
import pytest

from encdec.naming.schema import schema_for
from encdec.testing import deterministic_state_dict, tiny_config, tiny_inputs

FRAMEWORKS = ("pt", "tf", "flax")
# framework -> why ``Adapter.cache`` returns None (its values are still checked through cached decoding).
_FRAMEWORK_MODULES = {"pt": "torch", "tf": "tensorflow", "flax": "flax"}
CACHE_FORM = {"flax": "Flax's cache is the preallocated `cache` collection of init_cache, not per-layer tuples"}


def load_adapter(framework: str):
    """The adapter of ``framework``, or a skip naming the framework package that is missing."""
    pytest.importorskip(_FRAMEWORK_MODULES[framework])
    return importlib.import_module(f"adapters.{framework}").Adapter()


@contextlib.contextmanager
def quick_generate_compiles():
    """Every installed framework's ``Adapter.quick_compiles()`` at once (for a module-scoped fixture)."""
    with contextlib.ExitStack() as stack:
        for framework, module in _FRAMEWORK_MODULES.items():
            if importlib.util.find_spec(module) is not None:
                stack.enter_context(load_adapter(framework).quick_compiles())
        yield


def encoder_must_not_run(*args, **kwargs):
    raise AssertionError("the encoder ran although encoder_outputs were given")


def generate_output_arrays(out, to_numpy) -> dict:
    """A ``return_dict_in_generate=True`` result of any framework as numpy arrays: ``sequences``
    (int64), ``sequences_scores`` / ``beam_indices`` where present, and ``scores`` as a list of arrays."""
    result = {}
    for name in ("sequences", "sequences_scores", "beam_indices"):
        value = getattr(out, name, None)
        if value is not None:
            result[name] = to_numpy(value)
    if getattr(out, "scores", None) is not None:
        result["scores"] = [to_numpy(step) for step in out.scores]
    result["sequences"] = result["sequences"].astype(np.int64)
    return result


class Built:
    """One (framework, pair) model on the deterministic weights (seed 1) and the tiny inputs; each
    result is computed on first use. Test modules keep them in a module-scoped cache."""

    def __init__(self, framework, pair, seed=1):
        self.framework, self.pair = framework, pair
        self.config = tiny_config(pair)
        self.schema = schema_for(self.config)
        self.state = deterministic_state_dict(self.schema, seed=seed)
        self.inputs = tiny_inputs(self.config)
        self.adapter = load_adapter(framework)
        self.model = self.adapter.build(self.config, self.state)
        self._results = {}

    def get(self, key, compute):
        if key not in self._results:
            self._results[key] = compute()
        return self._results[key]

    @property
    def outputs(self):
        """Every output field (attentions and hidden states on)."""
        return self.get("outputs", lambda: self.adapter.forward(
            self.model, self.inputs, output_attentions=True, output_hidden_states=True))

    @property
    def plain_logits(self):
        """Logits of a forward without attentions or hidden states (what a loaded model is compared to)."""
        return self.get("plain", lambda: self.adapter.forward(self.model, self.inputs)["logits"])

    @property
    def step_logits(self):
        return self.get("steps", lambda: self.adapter.step_logits(self.model, self.inputs))

    @property
    def grads(self):
        return self.get("grads", lambda: self.adapter.grads(self.model, self.inputs))


def built_cache():
    """``get(framework, pair) -> Built``, each built once: the body of a module-scoped fixture."""
    cache = {}

    def get(framework, pair):
        if (framework, pair) not in cache:
            cache[(framework, pair)] = Built(framework, pair)
        return cache[(framework, pair)]

    return get


def reference_model(folder):
    """The oracle (transformers 4.57.6's PyTorch ``EncoderDecoderModel``, eager attention) reading ``folder``."""
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    return transformers.EncoderDecoderModel.from_pretrained(str(folder), attn_implementation="eager").eval()


def max_abs_diff(name, a, b) -> float:
    """Max abs difference of two arrays (or nested lists of arrays, torch tensors included), asserting
    equal lengths and shapes on the way."""
    if isinstance(b, (list, tuple)):
        assert isinstance(a, (list, tuple)) and len(a) == len(b), f"{name}: {len(a)} vs {len(b)} items"
        return max((max_abs_diff(f"{name}[{i}]", x, y) for i, (x, y) in enumerate(zip(a, b))), default=0.0)
    a, b = (x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x) for x in (a, b))
    assert a.shape == b.shape, f"{name}: shape {a.shape} vs {b.shape}"
    return float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))) if a.size else 0.0
