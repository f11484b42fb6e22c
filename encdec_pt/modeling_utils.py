"""What every PyTorch model here shares: canonical weights in and out, files, masks, checks.

A model's attribute tree *is* its canonical (Hugging Face PyTorch) state-dict layout, so loading
is one loop over ``named_parameters`` against ``encdec.naming.schema`` with no renaming. The files
themselves are read by ``encdec.checkpoint`` and written by ``encdec.formats`` (numpy), shared
with TF and Flax.
"""

from __future__ import annotations

import bisect
import contextlib
import os
from typing import Any, Dict, Iterable, List, Optional, Tuple, Type

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from encdec.configuration import PretrainedConfig
from encdec.formats.safetensors import save_state_dict
from encdec.formats.torch_bin import save_torch_bin
from encdec.generation_config import GenerationConfig
from encdec.loading import load_pretrained
from encdec.modeling_utils import padded_vocab_size
from encdec.naming.schema import Schema, schema_for


# --------------------------------------------------------------------------------------------
# Masks and input checks


def attention_bias(keep: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean ``keep`` -> additive bias: 0 where kept, ``finfo(dtype).min`` where masked.

    Built once from the combined boolean mask, so causal and padding masks never add two minima
    (which would overflow to -inf).
    """
    zero = torch.zeros((), dtype=dtype, device=keep.device)
    return torch.where(keep, zero, torch.finfo(dtype).min)


def self_attention_bias(
    attention_mask: Optional[torch.Tensor],
    batch_size: int,
    query_length: int,
    past_length: int,
    causal: bool,
    dtype: torch.dtype,
    device: torch.device,
) -> Optional[torch.Tensor]:
    """Additive self-attention bias ``(B|1, 1, Q, past+Q)`` from a 2-D or 3-D 0/1 mask.

    Query ``i`` sits at absolute position ``past_length + i``; with ``causal`` it sees keys up to
    that position.
    """
    key_length = past_length + query_length
    keep = None
    if attention_mask is not None:
        if attention_mask.dim() == 2:
            if attention_mask.shape != (batch_size, key_length):
                raise ValueError(
                    f"attention_mask has shape {tuple(attention_mask.shape)}; expected (batch, past + length) = "
                    f"{(batch_size, key_length)}"
                )
            keep = attention_mask[:, None, None, :].bool()  # (B, 1, 1, K)
        elif attention_mask.dim() == 3:
            keep = attention_mask[:, None, :, :].bool()  # (B, 1, Q, K)
        else:
            raise ValueError(
                f"attention_mask must have 2 (batch, length) or 3 (batch, query, key) dimensions, got shape "
                f"{tuple(attention_mask.shape)}"
            )
    if causal:
        query_pos = torch.arange(past_length, key_length, device=device)[:, None]  # (Q, 1)
        key_pos = torch.arange(key_length, device=device)[None, :]  # (1, K)
        causal_keep = (key_pos <= query_pos)[None, None]  # (1, 1, Q, K)
        keep = causal_keep if keep is None else keep & causal_keep
    if keep is None:
        return None
    return attention_bias(keep, dtype)


def cross_attention_bias(
    encoder_attention_mask: Optional[torch.Tensor], dtype: torch.dtype
) -> Optional[torch.Tensor]:
    """Additive cross-attention bias ``(B, 1, 1, S)`` from a 2-D mask (or ``(B, 1, Q, S)`` from 3-D)."""
    if encoder_attention_mask is None:
        return None
    if encoder_attention_mask.dim() == 2:
        return attention_bias(encoder_attention_mask[:, None, None, :].bool(), dtype)
    if encoder_attention_mask.dim() == 3:
        return attention_bias(encoder_attention_mask[:, None, :, :].bool(), dtype)
    raise ValueError(
        f"encoder_attention_mask must have 2 or 3 dimensions, got shape {tuple(encoder_attention_mask.shape)}"
    )


def layer_head_masks(head_mask: Optional[torch.Tensor], num_layers: int) -> List[Optional[torch.Tensor]]:
    """``head_mask`` of shape (H,) or (L, H) -> one ``(1, H, 1, 1)`` multiplier per layer (1 keeps a head)."""
    if head_mask is None:
        return [None] * num_layers
    if head_mask.dim() == 1:
        return [head_mask.view(1, -1, 1, 1)] * num_layers
    if head_mask.dim() == 2 and head_mask.shape[0] == num_layers:
        return [m.view(1, -1, 1, 1) for m in head_mask]
    raise ValueError(f"head_mask must have shape (heads,) or ({num_layers}, heads), got {tuple(head_mask.shape)}")


def check_token_ids(ids: Optional[torch.Tensor], vocab_size: int, name: str) -> None:
    """``ValueError`` naming the id, the input and the vocabulary size (not torch's IndexError)."""
    if ids is None or ids.numel() == 0:
        return
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise ValueError(f"{name} must hold integer token ids, got dtype {ids.dtype}")
    bad = (ids < 0) | (ids >= vocab_size)
    if bool(bad.any()):
        pos = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"{name} holds token id {int(ids[pos])} at position {pos}, outside the vocabulary "
            f"[0, {vocab_size}) (vocab_size={vocab_size})"
        )


def check_rank(tensor: Optional[torch.Tensor], rank: int, name: str, what: str = "(batch, length)") -> None:
    if tensor is not None and tensor.dim() != rank:
        raise ValueError(f"{name} must have {rank} dimensions {what}, got shape {tuple(tensor.shape)}")


def check_same_batch(**tensors: Optional[torch.Tensor]) -> None:
    """``ValueError`` naming every shape when the given inputs disagree on the batch size."""
    given = {k: tuple(v.shape) for k, v in tensors.items() if v is not None}
    if len({s[0] for s in given.values() if s}) > 1:
        raise ValueError("inputs disagree on the batch size: " + ", ".join(f"{k} {s}" for k, s in given.items()))


def append_key_value(key: torch.Tensor, value: torch.Tensor, past_key_value: Any) -> Tuple[torch.Tensor, torch.Tensor]:
    """This call's keys and values (B, H, Q, D) after the cached ones: a preallocated (static) cache
    writes them in place and returns its full length (B, H, L, D); a ``(key, value)`` pair is
    concatenated to (B, H, past + Q, D); without a cache they come back as they are."""
    if hasattr(past_key_value, "update"):
        return past_key_value.update(key, value)
    if past_key_value is not None:
        return torch.cat([past_key_value[0], key], dim=2), torch.cat([past_key_value[1], value], dim=2)
    return key, value


def split_heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, T, H*D) -> (B, T, H, D), the queries' layout."""
    return x.view(x.shape[0], x.shape[1], num_heads, x.shape[2] // num_heads)


def heads_first(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, T, H*D) -> (B, H, T, D), the keys' and values' layout (and the cache's)."""
    return split_heads(x, num_heads).transpose(1, 2)


def keys_and_values(key_proj: nn.Module, value_proj: nn.Module, num_heads: int, hidden_states: torch.Tensor,
                    encoder_hidden_states: Optional[torch.Tensor], past_key_value: Any,
                    is_cross_attention: bool) -> Tuple[torch.Tensor, torch.Tensor]:
    """What an attention with separate key and value projections attends to, (B, H, K, D) each:
    self-attention's keys and values projected from ``hidden_states`` and put after the cached ones
    (``append_key_value``); cross-attention's projected from ``encoder_hidden_states``, or the cached
    ones once there are (the encoder's keys and values do not change while decoding)."""
    if is_cross_attention and past_key_value is not None:
        return past_key_value[0], past_key_value[1]  # (B, H, S, D)
    source = encoder_hidden_states if is_cross_attention else hidden_states
    # (B, K, E) -> (B, H, K, D)
    key = heads_first(key_proj(source), num_heads)
    value = heads_first(value_proj(source), num_heads)
    return append_key_value(key, value, past_key_value)  # (B, H, past + Q | L, D)


def attend(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Optional[torch.Tensor],
    head_mask: Optional[torch.Tensor],
    scale: float,
    dropout_p: float,
    output_attentions: bool,
    probs_after_dropout: bool = True,
) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Scaled dot-product attention of every architecture: query (B, Q, H, D), key and value
    (B, H, K, D) -> (context (B, Q, E), probs (B, H, Q, K) or None).

    ``attention_mask`` is an additive bias broadcastable to (B, H, Q, K); ``dropout_p`` is 0 outside
    training. Without returned probabilities or a head mask it is one fused kernel. The returned
    probabilities are those the context was made of (BERT's and GPT-2's, ``probs_after_dropout``) or
    those before dropout (BART's), as in the reference.
    """
    if not output_attentions and head_mask is None:
        # (B, H, Q, D) x (B, H, K, D) -> (B, H, Q, D), one fused kernel
        context = F.scaled_dot_product_attention(
            query.transpose(1, 2), key, value, attn_mask=attention_mask, dropout_p=dropout_p, scale=scale,
        )
        context = context.transpose(1, 2)  # (B, Q, H, D)
        probs = None
    else:
        # (B, Q, H, D) x (B, H, K, D) -> (B, H, Q, K)
        scores = torch.einsum("bqhd,bhkd->bhqk", query, key) * scale
        if attention_mask is not None:
            scores = scores + attention_mask
        probs = torch.softmax(scores, dim=-1)
        if head_mask is not None:
            probs = probs * head_mask
        weights = F.dropout(probs, p=dropout_p, training=dropout_p > 0)
        # (B, H, Q, K) x (B, H, K, D) -> (B, Q, H, D)
        context = torch.einsum("bhqk,bhkd->bqhd", weights, value)
        if probs_after_dropout:
            probs = weights
    return context.reshape(context.shape[0], context.shape[1], -1), probs  # (B, Q, E)


def past_length(past_key_values: Optional[Tuple[Tuple[torch.Tensor, ...], ...]]) -> int:
    """Number of positions already in the self-attention cache (keys are (B, H, T, Dh))."""
    if past_key_values is None:
        return 0
    return past_key_values[0][0].shape[2]


def as_legacy_cache(past_key_values: Any) -> Optional[Tuple[Tuple[torch.Tensor, ...], ...]]:
    """Accept the per-layer tuple cache, or any object with ``to_legacy_cache()`` (the reference's)."""
    if past_key_values is None:
        return None
    if hasattr(past_key_values, "to_legacy_cache"):
        past_key_values = past_key_values.to_legacy_cache()
    if len(past_key_values) == 0 or past_key_values[0] is None or len(past_key_values[0]) == 0:
        return None
    return tuple(tuple(layer) for layer in past_key_values)


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token loss of a stand-alone causal LM: logits[:, :-1] predict labels[:, 1:]."""
    return token_cross_entropy(logits[:, :-1, :], labels[:, 1:])


def token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over tokens whose label is not -100; scalar shape ``()``.

    Summed and divided by the count (at least 1), so a batch with every label ignored gives 0
    instead of the NaN of a plain mean.
    """
    vocab_size = logits.shape[-1]
    flat_labels = labels.reshape(-1)
    losses = nn.functional.cross_entropy(
        logits.reshape(-1, vocab_size).float(), flat_labels, ignore_index=-100, reduction="none"
    )
    count = (flat_labels != -100).sum().clamp(min=1)
    return losses.sum() / count


# --------------------------------------------------------------------------------------------
# dtype


def resolve_dtype(value: Any, config: Optional[PretrainedConfig] = None,
                  state: Optional[Dict[str, np.ndarray]] = None) -> Optional[torch.dtype]:
    """``torch_dtype`` / ``dtype`` argument -> torch dtype (None keeps float32).

    ``"auto"`` takes ``config.dtype`` when set, else the first floating tensor of the checkpoint.
    """
    if value is None:
        return None
    if isinstance(value, torch.dtype):
        return value
    if value == "auto":
        name = getattr(config, "dtype", None) if config is not None else None
        if name:
            return resolve_dtype(name)
        for array in (state or {}).values():
            if np.issubdtype(array.dtype, np.floating):
                return resolve_dtype(str(array.dtype))
        return None
    if isinstance(value, str):
        name = value.replace("torch.", "")
        dtype = getattr(torch, name, None)
        if isinstance(dtype, torch.dtype) and dtype.is_floating_point:
            return dtype
    raise ValueError(f"unknown dtype {value!r}; use a torch floating dtype, its name (e.g. 'bfloat16') or 'auto'")


def _tensor_to_numpy(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16; float32 holds every bf16 value exactly
        tensor = tensor.float()
    return tensor.numpy().copy()


# --------------------------------------------------------------------------------------------
# Base class


def init_module(module: nn.Module, std: float, linear_types: Tuple[type, ...] = (nn.Linear,),
                zero_bias_types: Tuple[type, ...] = ()) -> None:
    """The reference's initialisation of one module (``_init_weights``): weights of ``linear_types``
    and embeddings from N(0, std), their biases and padding rows zero, layer norms to (1, 0), and the
    ``bias`` of ``zero_bias_types`` (the LM heads that own one) zero."""
    with torch.no_grad():
        if isinstance(module, linear_types):
            module.weight.normal_(mean=0.0, std=std)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.normal_(mean=0.0, std=std)
            if module.padding_idx is not None:
                module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            module.weight.fill_(1.0)
            module.bias.zero_()
        elif isinstance(module, zero_bias_types):
            module.bias.zero_()


class RuntimeCache:
    """Base of the per-model caches of things made at run time (compiled steps, packed weights):
    ``copy.deepcopy`` and pickling give an empty one, so a model that used them still copies and
    saves with ``torch.save``; the copy fills its own on use."""

    def __deepcopy__(self, memo):
        return type(self)()

    def __reduce__(self):
        return (type(self), ())


class PreTrainedModel(nn.Module):
    """Base of every PyTorch model here: canonical weights, ``from_pretrained``, ``save_pretrained``.

    Subclasses set ``config_class``, ``base_model_prefix`` (the attribute that holds the base model
    in a model with a head, used to load a base checkpoint into a head model and back) and
    ``schema_head`` (``"base"`` or ``"causal_lm"``, see ``encdec.naming.schema.schema_for``), and
    implement ``_init_weights``.

    Args:
        config: the model's config.
    """

    config_class: Type[PretrainedConfig] = PretrainedConfig
    base_model_prefix: str = ""
    schema_head: str = "base"
    main_input_name: str = "input_ids"
    supports_gradient_checkpointing: bool = True
    # Constructor arguments that `from_pretrained` passes to the class instead of the config.
    _init_kwargs: Tuple[str, ...] = ()

    def __init__(self, config: PretrainedConfig):
        super().__init__()
        self.config = config

    # --- what other libraries read (the reference's PreTrainedModel / ModuleUtilsMixin) ------------
    @property
    def device(self) -> torch.device:
        """The device of the parameters (the first one's; a model here lives on one device)."""
        for param in self.parameters():
            return param.device
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the first floating-point parameter (float32 unless converted)."""
        for param in self.parameters():
            if param.is_floating_point():
                return param.dtype
        return torch.get_default_dtype()

    @classmethod
    def can_generate(cls) -> bool:
        """Whether ``generate`` is available (the composite models; their halves are not generated alone)."""
        return callable(getattr(cls, "generate", None))

    @property
    def generation_config(self) -> Optional[GenerationConfig]:
        """The model's decoding defaults: the one loaded with it, else derived from its config on first
        read (as the reference does at construction); None for a model that cannot generate."""
        config = self.__dict__.get("_generation_config")
        if config is None and self.can_generate():
            config = self.__dict__["_generation_config"] = GenerationConfig.from_model_config(self.config)
        return config

    @generation_config.setter
    def generation_config(self, value: Optional[GenerationConfig]) -> None:
        if value is not None and not isinstance(value, GenerationConfig):
            raise TypeError(f"generation_config must be a GenerationConfig, got {type(value).__name__}")
        self.__dict__["_generation_config"] = value

    # --- initialisation and ties -------------------------------------------------------------
    def post_init(self) -> None:
        """Initialise every parameter, then restore ties (called last in every constructor).

        A model built on the meta device (``TorchLoader.build``) has no values to initialise:
        ``_materialise`` later initialises, by these same rules, what its checkpoint lacks."""
        if any(param.device.type != "meta" for param in self.parameters()):
            self.apply(self._init_weights)
        self.tie_weights()

    def _init_weights(self, module: nn.Module) -> None:
        raise NotImplementedError

    def tie_weights(self) -> None:
        """Re-establish shared Parameters after loading or resizing (subclasses override)."""

    def get_input_embeddings(self) -> Optional[nn.Module]:
        return None

    def set_input_embeddings(self, value: nn.Module) -> None:
        raise NotImplementedError(f"{type(self).__name__} has no input embeddings to set")

    def get_output_embeddings(self) -> Optional[nn.Module]:
        return None

    # --- schema and canonical weights ---------------------------------------------------------
    def schema(self) -> Schema:
        return schema_for(self.config, head=self.schema_head)

    def _all_parameters(self) -> Dict[str, nn.Parameter]:
        """Every parameter under every name, shared ones included (tied names are aliases)."""
        return dict(self.named_parameters(remove_duplicate=False))

    def canonical_state_dict(self) -> Dict[str, np.ndarray]:
        """Owned canonical tensors (what ``model.safetensors`` holds), as numpy arrays."""
        params = self._all_parameters()
        out = {}
        for spec in self.schema().owned():
            if spec.name not in params:
                raise KeyError(f"{type(self).__name__} has no parameter {spec.name!r} that its schema lists")
            out[spec.name] = _tensor_to_numpy(params[spec.name])
        return out

    @torch.no_grad()
    def _materialise(self, missing: Iterable[str]) -> None:
        """Give every parameter left on the meta device (a model built under ``torch.device("meta")``)
        CPU memory, and initialise those of the canonical names ``missing`` (what loading will not fill).

        The initialisation is the one construction gives: for every module above such a parameter,
        bottom-up as ``post_init``'s ``apply``, the module's ``reset_parameters`` (torch's default),
        then the ``_init_weights`` of the nearest ``PreTrainedModel`` it belongs to (so an encoder
        keeps its rules and ``enc_to_dec_proj`` gets the composite's). Tensors that will be loaded
        are left uninitialised; an ancestor's rule may write them, and loading overwrites them."""
        for module in self.modules():
            for name, param in list(module.named_parameters(recurse=False)):
                if param.device.type == "meta":
                    fresh = nn.Parameter(torch.empty(param.shape, dtype=param.dtype, device="cpu"),
                                         requires_grad=param.requires_grad)
                    setattr(module, name, fresh)
            for name, buffer in list(module.named_buffers(recurse=False)):
                if buffer.device.type == "meta":
                    raise NotImplementedError(
                        f"{type(module).__name__}.{name}: a buffer built on the meta device cannot be restored"
                    )
        self.tie_weights()
        params = self._all_parameters()
        pending = {id(params[name]) for name in missing if name in params}
        if not pending:
            return

        def initialise(owner: "PreTrainedModel", module: nn.Module) -> bool:
            """Post-order over ``module``'s subtree within ``owner``; True if it holds a pending tensor."""
            below = False
            for child in module.children():
                child_owner = child if isinstance(child, PreTrainedModel) else owner
                below |= initialise(child_owner, child)
            if below or any(id(p) in pending for p in module.parameters(recurse=False)):
                reset = getattr(module, "reset_parameters", None)
                if callable(reset) and not isinstance(module, PreTrainedModel):
                    reset()
                owner._init_weights(module)
                return True
            return False

        initialise(self, self)  # in place: the ties made above still hold

    @torch.no_grad()
    def load_canonical(self, state: Dict[str, np.ndarray], strict: bool = True, assign: bool = False) -> List[str]:
        """Copy canonical numpy tensors into the model; return the owned names ``state`` lacked.

        Tied names need not be present: their owner fills them. With ``strict``, a missing owned
        name, an unknown name or a wrong shape raises ``ValueError`` naming the key. With
        ``assign`` (a freshly loaded model), a tensor of the parameter's dtype becomes the parameter
        without a copy (it shares the numpy array's memory, e.g. a view of a mapped safetensors
        file; of arrays whose bytes overlap only the first is taken, so no two parameters alias;
        tied names are copied as without ``assign``).
        """
        schema = self.schema()
        params = self._all_parameters()
        ties = schema.ties()
        taken = []  # sorted (start, end) byte ranges of the arrays that became parameters

        def can_take(array: Any, value: torch.Tensor, param: nn.Parameter) -> bool:
            if not (assign and isinstance(array, np.ndarray) and array.flags.c_contiguous and array.flags.writeable
                    and array.nbytes and value.dtype == param.dtype and param.device.type == "cpu"):
                return False
            # Views of one mapped file share a buffer but not bytes: compare address ranges.
            start = array.__array_interface__["data"][0]
            end = start + array.nbytes
            at = bisect.bisect_left(taken, (start, end))
            if (at and taken[at - 1][1] > start) or (at < len(taken) and taken[at][0] < end):
                return False
            taken.insert(at, (start, end))
            return True

        unknown = [k for k in state if k not in params]
        if unknown and strict:
            raise ValueError(f"{type(self).__name__} has no parameters named {unknown[:8]}")
        for name, array in state.items():
            if name not in params:
                continue
            param = params[name]
            value = torch.as_tensor(np.asarray(array))
            if tuple(value.shape) != tuple(param.shape):
                raise ValueError(f"{name}: checkpoint shape {tuple(value.shape)} vs model shape {tuple(param.shape)}")
            if name in ties and ties[name] in state:
                continue  # the owner writes the shared storage
            if name not in ties and can_take(array, value, param):
                set_parameter(self, name, nn.Parameter(value, requires_grad=param.requires_grad))
            else:
                param.copy_(value.to(dtype=param.dtype, device=param.device))
        missing = [p.name for p in schema.owned() if p.name not in state]
        if missing and strict:
            raise ValueError(f"{type(self).__name__}: no tensor given for {missing[:8]} ({len(missing)} in all)")
        self.tie_weights()
        return missing

    # --- files ---------------------------------------------------------------------------------
    def save_pretrained(
        self, save_directory: str, max_shard_size: Any = "5GB", safe_serialization: bool = True
    ) -> None:
        """Write ``config.json``, ``generation_config.json`` and ``model.safetensors`` (canonical
        names, owned tensors only, sharded past ``max_shard_size``), each atomically.
        ``safe_serialization=False`` writes ``pytorch_model.bin`` instead."""
        if os.path.isfile(save_directory):
            raise ValueError(f"save_pretrained needs a directory, but {save_directory!r} is a file")
        os.makedirs(save_directory, exist_ok=True)
        config = self.config.copy()
        if not config.architectures or config.architectures == [None]:
            config.architectures = [type(self).__name__]
        config.save_pretrained(save_directory)
        generation_config = getattr(self, "generation_config", None) or GenerationConfig.from_model_config(self.config)
        generation_config.save_pretrained(save_directory)
        state = self.canonical_state_dict()
        if safe_serialization:
            save_state_dict(state, save_directory, max_shard_size=max_shard_size)
        else:
            save_torch_bin(state, save_directory)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str, *model_args: Any, **kwargs: Any):
        """Build from ``config.json`` and load any checkpoint format of the folder or hub repo
        (the one loading path, ``encdec.loading.load_pretrained``).

        Args:
            pretrained_model_name_or_path: a folder or a hub id.
            config: a config to use instead of the folder's ``config.json``.
            torch_dtype / dtype: parameter dtype (a torch dtype, its name, or ``"auto"``).
            from_pt / from_tf / from_flax: prefer that file when several are present (never needed;
                at most one may be set).
            output_loading_info: also return ``{"missing_keys", "unexpected_keys", "mismatched_keys",
                "ignored_keys"}``.
            **kwargs: hub arguments (``revision``, ``cache_dir``, ...), constructor arguments
                (``add_pooling_layer``), the rest override config fields.

        Weights the checkpoint lacks are initialised by the model's rules and reported; a shape
        mismatch raises a ``CheckpointError``. Returns the model in eval mode.
        """
        dtype = kwargs.pop("torch_dtype", None)
        dtype = kwargs.pop("dtype", dtype)
        loaded, args = load_pretrained(TorchLoader(dtype), cls, pretrained_model_name_or_path, model_args, kwargs,
                                       cls._init_kwargs)
        model = loaded.model
        model.generation_config = GenerationConfig.for_model(pretrained_model_name_or_path, model.config, **args.hub)
        model.eval()
        return (model, loaded.info) if args.output_loading_info else model

    # --- training helpers --------------------------------------------------------------------
    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: Optional[Dict[str, Any]] = None) -> None:
        """Recompute each layer in the backward pass (modules with a ``gradient_checkpointing`` flag).

        ``gradient_checkpointing_kwargs`` as in the reference; the only key is ``use_reentrant``.
        Layers are always checkpointed without re-entry (``torch.utils.checkpoint(use_reentrant=False)``,
        what PyTorch recommends): the gradients are those of re-entrant checkpointing, and they reach
        the parameters even when no input requires grad, which re-entrant checkpointing needs
        ``enable_input_require_grads`` for. So both values of ``use_reentrant`` are accepted."""
        if not self.supports_gradient_checkpointing:
            raise ValueError(f"{type(self).__name__} does not support gradient checkpointing.")
        unknown = sorted(set(gradient_checkpointing_kwargs or {}) - {"use_reentrant"})
        if unknown:
            raise ValueError(f"gradient_checkpointing_kwargs supports only 'use_reentrant', got {unknown}")
        for module in self.modules():
            if hasattr(module, "gradient_checkpointing"):
                module.gradient_checkpointing = True

    def enable_input_require_grads(self) -> None:
        """Make the output of the input embeddings require grad (a forward hook), so that adapters
        trained over frozen embeddings (PEFT) get gradients; undone by ``disable_input_require_grads``."""
        def make_inputs_require_grads(module, inputs, output):
            output.requires_grad_(True)

        self.disable_input_require_grads()
        self.__dict__["_require_grads_hook"] = self.get_input_embeddings().register_forward_hook(
            make_inputs_require_grads)

    def disable_input_require_grads(self) -> None:
        hook = self.__dict__.pop("_require_grads_hook", None)
        if hook is not None:
            hook.remove()

    def gradient_checkpointing_disable(self) -> None:
        for module in self.modules():
            if hasattr(module, "gradient_checkpointing"):
                module.gradient_checkpointing = False

    @property
    def is_gradient_checkpointing(self) -> bool:
        return any(getattr(m, "gradient_checkpointing", False) for m in self.modules())

    def resize_token_embeddings(self, new_num_tokens: Optional[int] = None,
                                pad_to_multiple_of: Optional[int] = None) -> nn.Embedding:
        """Grow or shrink the vocabulary: old rows kept, new rows initialised like the model,
        the output layer (and its bias) resized with it and ties restored.

        ``new_num_tokens=None`` keeps the size; ``pad_to_multiple_of`` rounds the size up to a multiple
        of it (the reference's arguments; its new rows are drawn around the old rows' mean instead)."""
        old = self.get_input_embeddings()
        if old is None:
            raise NotImplementedError(f"{type(self).__name__} has no input embeddings to resize")
        new_num_tokens = padded_vocab_size(old.num_embeddings, new_num_tokens, pad_to_multiple_of)
        if new_num_tokens == old.num_embeddings:
            return old
        new = self._resized_embedding(old, new_num_tokens)
        self.set_input_embeddings(new)
        output = self.get_output_embeddings()
        if output is not None and not getattr(self.config, "tie_word_embeddings", True):
            self._set_resized_output(self._resized_linear(output, new_num_tokens))
        self._resize_output_bias(new_num_tokens)
        self.config.vocab_size = new_num_tokens
        self.tie_weights()
        return self.get_input_embeddings()

    def _resized_embedding(self, old: nn.Embedding, n: int) -> nn.Embedding:
        new = nn.Embedding(n, old.embedding_dim, padding_idx=old.padding_idx if (old.padding_idx or 0) < n else None)
        new.to(device=old.weight.device, dtype=old.weight.dtype)
        self._init_weights(new)
        keep = min(n, old.num_embeddings)
        with torch.no_grad():
            new.weight[:keep] = old.weight[:keep]
        return new

    def _resized_linear(self, old: nn.Linear, n: int) -> nn.Linear:
        new = nn.Linear(old.in_features, n, bias=old.bias is not None)
        new.to(device=old.weight.device, dtype=old.weight.dtype)
        self._init_weights(new)
        keep = min(n, old.out_features)
        with torch.no_grad():
            new.weight[:keep] = old.weight[:keep]
            if old.bias is not None:
                new.bias[:keep] = old.bias[:keep]
        return new

    def _set_resized_output(self, new: nn.Linear) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot replace its output layer")

    def _resize_output_bias(self, n: int) -> None:
        """Models with a separate output bias (BERT) resize it here."""

    def num_parameters(self, only_trainable: bool = False, exclude_embeddings: bool = False) -> int:
        """Distinct parameters (a tied weight counts once), as the reference counts them:
        ``only_trainable`` those that require grad, ``exclude_embeddings`` without the weights of
        ``nn.Embedding`` modules (word, position and token-type embeddings; a tied output layer with them)."""
        params = dict(self.named_parameters())  # deduplicated: a shared Parameter under its first name
        if exclude_embeddings:
            embeddings = {f"{name}.weight" for name, module in self.named_modules() if isinstance(module, nn.Embedding)}
            params = {name: p for name, p in params.items() if name not in embeddings}
        return sum(p.numel() for p in params.values() if p.requires_grad or not only_trainable)


# The initialisers of ``torch.nn.init`` that constructors (``nn.Linear.reset_parameters``, GPT-2's
# ``Conv1D``) call. On the meta device they compute nothing yet cost as much as on real tensors
# (torch runs their Python decompositions).
_INITIALISERS = ("uniform_", "normal_", "trunc_normal_", "constant_", "zeros_", "ones_", "xavier_uniform_",
                 "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_")


@contextlib.contextmanager
def _no_initialisers():
    """``torch.nn.init``'s initialisers as no-ops on meta tensors, for building a model on the meta
    device. The patch is process-wide: a model another thread builds meanwhile on a real device
    still gets its initial values."""
    saved = {name: getattr(nn.init, name) for name in _INITIALISERS}

    def skip_meta(initialiser):
        return lambda tensor, *args, **kwargs: \
            tensor if tensor.device.type == "meta" else initialiser(tensor, *args, **kwargs)

    for name, initialiser in saved.items():
        setattr(nn.init, name, skip_meta(initialiser))
    try:
        yield
    finally:
        for name, function in saved.items():
            setattr(nn.init, name, function)


class TorchLoader:
    """PyTorch's part of the loading path (``encdec.loading``): build on the meta device (no
    memory, no random numbers for the tensors the checkpoint replaces), initialise only what the
    checkpoint lacks by the model's own rules, take the checkpoint's arrays as parameters without a
    copy where dtype and layout allow, then cast to ``dtype`` (``torch_dtype`` / ``dtype``)."""

    def __init__(self, dtype: Any = None):
        self.dtype = dtype

    def build(self, model_class: Type["PreTrainedModel"], config: PretrainedConfig, *model_args: Any,
              **init_kwargs: Any) -> "PreTrainedModel":
        with torch.device("meta"), _no_initialisers():
            return model_class(config, *model_args, **init_kwargs)

    def initialise_missing(self, model: "PreTrainedModel", names: List[str]) -> None:
        model._materialise(missing=names)

    def assign(self, model: "PreTrainedModel", tensors: Dict[str, np.ndarray]) -> None:
        model.load_canonical(tensors, strict=False, assign=True)
        dtype = resolve_dtype(self.dtype, model.config, tensors)
        if dtype is not None:
            model.to(dtype)
            model.config.dtype = str(dtype).replace("torch.", "")


def set_parameter(module: nn.Module, dotted_name: str, param: nn.Parameter) -> None:
    """Make ``module.<dotted_name>`` the given Parameter object (used to tie weights)."""
    *path, leaf = dotted_name.split(".")
    owner = module
    for part in path:
        owner = getattr(owner, part)
    setattr(owner, leaf, param)
