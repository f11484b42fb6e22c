"""``pipeline("summarization" | "translation[_xx_to_yy]" | "text2text-generation", model=...)``:
text in, text out, in any of the three frameworks, as the reference's
``transformers.pipeline`` (4.57 ``Text2TextGenerationPipeline`` and its two subclasses) does it.

What is the reference's, on purpose (so the same folder gives the same text):

- generation settings: ``max_new_tokens=256, num_beams=4`` unless the model's generation config
  sets a value (``prepare_generation_config(..., use_model_defaults=True)``); a model
  ``max_length`` other than 20 wins over the default ``max_new_tokens``; then the config's
  ``task_specific_params[task]`` (its ``prefix`` too); the tokenizer's pad id when none is set.
  Keywords of ``pipeline(...)`` update that config, keywords of a call win over it.
- ``config.prefix`` (or the task's) is put before every input.
- a list is run one input at a time unless ``batch_size`` is given, then padded per batch.
- outputs ``[{"summary_text": ...}]`` / ``translation_text`` / ``generated_text``
  (``*_token_ids`` with ``return_tensors=True``); one string in gives a list of one dict per
  returned sequence; a list in gives a list (of dicts, or of lists with ``num_return_sequences>1``).
- decoding skips special tokens, ``clean_up_tokenization_spaces=False`` unless asked.
- the length checks of summarization and translation log the reference's warnings.

What differs: an input longer than the encoder's positions is truncated, with one warning per
call, instead of failing inside the model (the reference does not truncate by default). The
reference's TF pipeline skips the pipeline defaults (it has no ``_prepare_generation_config``);
here every framework uses them, so TF and Flax give PyTorch's text.
"""

from __future__ import annotations

import copy
import logging
import re
import warnings
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from encdec.generation_config import GENERATION_DEFAULTS, GenerationConfig
from encdec.generation_utils import prepare_generation_config
from encdec_app.frameworks import FRAMEWORKS, model_class

logger = logging.getLogger(__name__)

# task -> the prefix of the output keys ("summary" -> "summary_text" / "summary_token_ids").
RETURN_NAMES = {"summarization": "summary", "translation": "translation", "text2text-generation": "generated"}
_TRANSLATION_XX_TO_YY = re.compile(r"^translation_([A-Za-z-]+)_to_([A-Za-z-]+)$")
# The reference's `Text2TextGenerationPipeline._default_generation_config`.
DEFAULT_GENERATION = {"max_new_tokens": 256, "num_beams": 4}
# Keywords of a call (or of `pipeline(...)`) that are the pipeline's, not generate's.
_CALL_PARAMS = ("return_tensors", "return_text", "clean_up_tokenization_spaces", "truncation", "src_lang", "tgt_lang")
# Root package of a model class -> framework (the frameworks' classes live in these packages).
_PACKAGES = {"encdec_pt": "pt", "encdec_tf": "tf", "encdec_flax": "flax"}


def _framework_of(model: Any) -> Optional[str]:
    for cls in type(model).__mro__:
        framework = _PACKAGES.get(cls.__module__.split(".")[0])
        if framework is not None:
            return framework
    return None


def _task_kind(task: str) -> str:
    if task in RETURN_NAMES:
        return task
    if _TRANSLATION_XX_TO_YY.match(task):
        return "translation"
    raise ValueError(f"unknown task {task!r}: this pipeline runs 'summarization', 'translation', "
                     "'translation_xx_to_yy' (e.g. 'translation_en_to_de') and 'text2text-generation'")


class Device:
    """Where a pipeline runs, from the reference's forms of ``device=``: ``None`` (the model stays
    where it is), ``-1`` / ``"cpu"`` (CPU), an int ``n >= 0`` / ``"cuda"`` / ``"cuda:n"`` /
    ``"gpu:n"`` (GPU ``n``), or a ``torch.device``."""

    def __init__(self, device: Any):
        self.requested = device
        self.kind: Optional[str] = None  # None | "cpu" | "gpu"
        self.index = 0
        if device is None:
            return
        if isinstance(device, bool):
            raise TypeError(f"device must be an int, a string or a torch.device, got {device!r}")
        if isinstance(device, int):
            self.kind, self.index = ("cpu", 0) if device < 0 else ("gpu", device)
            return
        text = str(device).lower()  # a torch.device prints as "cpu" / "cuda:0"
        match = re.fullmatch(r"(cpu|cuda|gpu)(?::(\d+))?", text)
        if match is None:
            raise ValueError(f"device={device!r} is not a device this pipeline knows: use -1 or 'cpu', "
                             "an int n >= 0, 'cuda', 'cuda:n' or a torch.device")
        self.kind = "cpu" if match.group(1) == "cpu" else "gpu"
        self.index = int(match.group(2) or 0)

    def no_gpu(self, found: str) -> ValueError:
        return ValueError(f"device={self.requested!r} asks for GPU {self.index}, but {found}; "
                          "use device='cpu' (or -1)")


class Text2TextGenerationPipeline:
    """The pipeline object ``pipeline(...)`` returns; call it with a string or a list of strings.

    Args:
        task: ``summarization``, ``translation`` / ``translation_xx_to_yy`` or ``text2text-generation``.
        model: a loaded encoder-decoder model of ``framework``.
        tokenizer: its tokenizer.
        framework: ``pt``, ``tf`` or ``flax``.
        device: see ``Device``.
        batch_size: inputs per ``generate`` call for a list (default: one at a time, as the reference).
        **kwargs: generation settings for every call, and the call keywords ``return_tensors``,
            ``return_text``, ``clean_up_tokenization_spaces``, ``truncation`` as defaults.
    """

    def __init__(self, task: str, model: Any, tokenizer: Any, framework: str, device: Any = None,
                 batch_size: Optional[int] = None, **kwargs: Any):
        self.task = task
        self.return_name = RETURN_NAMES[_task_kind(task)]
        self.model = model
        self.tokenizer = tokenizer
        self.framework = framework
        self.device = Device(device)
        if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.batch_size = batch_size
        self._place_model()

        config = model.config
        self.prefix = getattr(config, "prefix", None)
        self.generation_config = prepare_generation_config(
            config, getattr(model, "generation_config", None), GenerationConfig(**DEFAULT_GENERATION),
            use_model_defaults=True)
        self._call_defaults = {k: kwargs.pop(k) for k in _CALL_PARAMS if k in kwargs}
        self._generate_defaults = self.generation_config.update(**kwargs)
        # A model `max_length` other than the global default wins over the pipeline's max_new_tokens.
        if (self.generation_config.max_new_tokens == DEFAULT_GENERATION["max_new_tokens"]
                and self.generation_config.max_length is not None
                and self.generation_config.max_length != GENERATION_DEFAULTS["max_length"]):
            self.generation_config.max_new_tokens = None
        # The legacy `task_specific_params` (copied: the reference pops `prefix` out of the model's config).
        task_params = copy.deepcopy((getattr(config, "task_specific_params", None) or {}).get(task))
        if task_params:
            if "prefix" in task_params:
                self.prefix = task_params.pop("prefix")
            self.generation_config.update(**task_params)
        if tokenizer.pad_token_id is not None and self.generation_config.pad_token_id is None:
            self.generation_config.pad_token_id = tokenizer.pad_token_id

    # --- placement -----------------------------------------------------------------------------
    def _place_model(self) -> None:
        device = self.device
        if device.kind is None:
            self._tf_device = self._jax_device = None
            return
        if self.framework == "pt":
            import torch

            if device.kind == "gpu" and not (torch.cuda.is_available() and device.index < torch.cuda.device_count()):
                raise device.no_gpu(f"torch sees {torch.cuda.device_count()} CUDA device(s)")
            self.model.to(torch.device("cpu") if device.kind == "cpu" else torch.device("cuda", device.index))
        elif self.framework == "tf":
            import tensorflow as tf

            gpus = tf.config.list_logical_devices("GPU")
            if device.kind == "gpu" and device.index >= len(gpus):
                raise device.no_gpu(f"TensorFlow sees {len(gpus)} GPU(s)")
            # Keras variables stay where they were made; the generation ops run on this device.
            self._tf_device = "/CPU:0" if device.kind == "cpu" else f"/GPU:{device.index}"
        else:
            import jax

            try:
                devices = jax.devices("cpu" if device.kind == "cpu" else "gpu")
            except RuntimeError:
                devices = []
            if device.index >= len(devices):
                raise device.no_gpu(f"JAX sees {len(devices)} GPU(s)")
            self._jax_device = devices[device.index]
            self.model.params = jax.device_put(self.model.params, self._jax_device)

    # --- the call ------------------------------------------------------------------------------
    def __call__(self, inputs: Union[str, Sequence[str]], **kwargs: Any) -> List[Any]:
        """Generate for one text (a list of dicts, one per returned sequence) or a list of texts
        (a list of dicts, or of lists of dicts with ``num_return_sequences > 1``).

        Keywords: ``return_tensors`` (token ids as ``<name>_token_ids``), ``return_text``,
        ``clean_up_tokenization_spaces`` (default False), ``truncation`` (``None``: truncate to the
        encoder's positions with a warning; ``True``: truncate silently; ``False``: never), and any
        generation setting (``max_new_tokens``, ``num_beams``, ``min_length``, ...).
        """
        options = {**self._call_defaults, **{k: kwargs.pop(k) for k in _CALL_PARAMS if k in kwargs}}
        generate_kwargs = {**self._generate_defaults, **kwargs}
        single = isinstance(inputs, str)
        if not single and not (isinstance(inputs, (list, tuple)) and all(isinstance(t, str) for t in inputs)):
            raise TypeError(f"the input must be a string or a list of strings, got {type(inputs).__name__}")
        texts = [inputs] if single else list(inputs)
        if not single and self.tokenizer.pad_token_id is None:
            raise ValueError("a list of inputs needs a tokenizer with a pad token (set tokenizer.pad_token)")
        prefix = self.prefix or ""
        texts = [prefix + text for text in texts]
        size = self.batch_size or 1
        self._warned_truncation = False
        results: List[List[Dict[str, Any]]] = []
        for start in range(0, len(texts), size):
            results.extend(self._run_batch(texts[start:start + size], options, generate_kwargs))
        if single:
            return results[0]
        return [r[0] for r in results] if all(len(r) == 1 for r in results) else results

    def _encoder_positions(self) -> Optional[int]:
        return getattr(self.model.config.encoder, "max_position_embeddings", None)

    def _tokenize(self, texts: List[str], truncation: Any) -> Dict[str, np.ndarray]:
        limit = self._encoder_positions()
        model_max = getattr(self.tokenizer, "model_max_length", None)
        if model_max is not None and model_max < 10 ** 9:
            limit = model_max if limit is None else min(limit, model_max)
        batch = self.tokenizer(texts, padding=len(texts) > 1, return_tensors="np")
        too_long = limit is not None and batch["input_ids"].shape[1] > limit
        if too_long and truncation is None and not self._warned_truncation:
            warnings.warn(
                f"an input is {batch['input_ids'].shape[1]} tokens long, longer than the {limit} positions the "
                f"model's encoder has; inputs are truncated to {limit} tokens (pass truncation=True to do so "
                "without this warning, or shorten the text)", UserWarning, stacklevel=4)
            self._warned_truncation = True
        if too_long and truncation is not False or truncation not in (None, False) and limit is not None:
            batch = self.tokenizer(texts, padding=len(texts) > 1, truncation=True, max_length=limit,
                                   return_tensors="np")
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}

    def _check_inputs(self, input_length: int, generate_kwargs: Dict[str, Any]) -> None:
        """The reference's ``check_inputs`` warnings (the config's ``max_length``, as the reference reads it)."""
        min_length = generate_kwargs.get("min_length", self.generation_config.min_length)
        max_length = generate_kwargs.get("max_length", self.generation_config.max_length)
        if self.return_name == "summary":
            if max_length < min_length:
                logger.warning(f"Your min_length={min_length} must be inferior than your max_length={max_length}.")
            if input_length < max_length:
                logger.warning(
                    f"Your max_length is set to {max_length}, but your input_length is only {input_length}. Since "
                    "this is a summarization task, where outputs shorter than the input are typically wanted, you "
                    f"might consider decreasing max_length manually, e.g. summarizer('...', max_length={input_length // 2})")
        elif self.return_name == "translation" and input_length > 0.9 * max_length:
            logger.warning(
                f"Your input_length: {input_length} is bigger than 0.9 * max_length: {max_length}. You might "
                "consider increasing your max_length manually, e.g. translator('...', max_length=400)")

    def _generate(self, batch: Dict[str, np.ndarray], generate_kwargs: Dict[str, Any]) -> Any:
        kwargs = {"generation_config": self.generation_config, **generate_kwargs}
        if self.framework == "pt":
            import torch

            device = next(self.model.parameters()).device
            tensors = {k: torch.from_numpy(v).to(device) for k, v in batch.items()}
            with torch.no_grad():
                out = self.model.generate(**tensors, **kwargs)
        elif self.framework == "tf" and self._tf_device is not None:
            import tensorflow as tf

            with tf.device(self._tf_device):
                out = self.model.generate(**batch, **kwargs)
        elif self.framework == "flax" and self._jax_device is not None:
            import jax

            out = self.model.generate(**{k: jax.device_put(v, self._jax_device) for k, v in batch.items()}, **kwargs)
        else:
            out = self.model.generate(**batch, **kwargs)
        return getattr(out, "sequences", out)

    def _run_batch(self, texts: List[str], options: Dict[str, Any],
                   generate_kwargs: Dict[str, Any]) -> List[List[Dict[str, Any]]]:
        batch = self._tokenize(texts, options.get("truncation"))
        self._check_inputs(batch["input_ids"].shape[1], generate_kwargs)
        sequences = self._generate(batch, generate_kwargs)
        per_input = sequences.shape[0] // len(texts)
        return_tensors = options.get("return_tensors")
        clean = options.get("clean_up_tokenization_spaces", False)
        out = []
        for i in range(len(texts)):
            records = []
            for row in range(i * per_input, (i + 1) * per_input):
                if return_tensors:
                    records.append({f"{self.return_name}_token_ids": sequences[row]})
                else:
                    text = self.tokenizer.decode(np.asarray(sequences[row]), skip_special_tokens=True,
                                                 clean_up_tokenization_spaces=clean)
                    records.append({f"{self.return_name}_text": text})
            out.append(records)
        return out


def pipeline(task: str, model: Any = None, tokenizer: Any = None, framework: Optional[str] = None,
             device: Any = None, **kwargs: Any) -> Text2TextGenerationPipeline:
    """A text-to-text pipeline, as ``transformers.pipeline`` for these three tasks.

    Args:
        task: ``"summarization"``, ``"translation"``, ``"translation_xx_to_yy"`` or ``"text2text-generation"``.
        model: a folder or hub id (loaded with ``framework``'s class), or a loaded model of any framework.
        tokenizer: a tokenizer, or a folder / hub id; default: the model's folder.
        framework: ``"pt"``, ``"tf"`` or ``"flax"``; default: the model object's, else ``"pt"``.
        device: ``-1`` / ``"cpu"``, an int GPU index, ``"cuda:n"`` or a ``torch.device`` (see ``Device``).
        **kwargs: ``batch_size``, generation settings for every call (``max_new_tokens``,
            ``num_beams``, ...), and the call keywords ``return_tensors``, ``clean_up_tokenization_spaces``,
            ``truncation`` as defaults.
    """
    from encdec.tokenizer import AutoTokenizer

    _task_kind(task)
    if model is None:
        raise ValueError("pipeline needs model=: a folder, a hub id or a loaded encoder-decoder model "
                         "(this library ships no default model per task)")
    if framework is not None and framework not in FRAMEWORKS:
        raise ValueError(f"framework must be one of {FRAMEWORKS}, got {framework!r}")
    source = None
    if isinstance(model, str) or hasattr(model, "__fspath__"):
        source = str(model)
        framework = framework or "pt"
        model = model_class(framework).from_pretrained(source)
    else:
        found = _framework_of(model)
        if found is None:
            raise TypeError(f"model must be a folder, a hub id or an encdec model, got {type(model).__name__}")
        if framework is not None and framework != found:
            raise ValueError(f"framework={framework!r}, but the model is a {found!r} model")
        framework = found
    if tokenizer is None:
        source = source or getattr(model.config, "_name_or_path", None) or getattr(model.config, "name_or_path", None)
        if not source:
            raise ValueError("pipeline needs tokenizer= when model is an object (its config names no folder)")
        tokenizer = source
    if isinstance(tokenizer, str) or hasattr(tokenizer, "__fspath__"):
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer))

    if task == "translation":
        for key in getattr(model.config, "task_specific_params", None) or {}:
            if key.startswith("translation"):
                warnings.warn(f'"translation" task was used, instead of "translation_XX_to_YY", defaulting to '
                              f'"{key}"', UserWarning, stacklevel=2)
                task = key
                break
    return Text2TextGenerationPipeline(task, model, tokenizer, framework, device=device, **kwargs)
