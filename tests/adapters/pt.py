"""PyTorch adapter for the shared parity tests (interface in tests/adapters/__init__.py)."""

from __future__ import annotations

import contextlib
from typing import Dict

import numpy as np
import torch

from adapters import encoder_must_not_run, generate_output_arrays
from encdec_pt import EncoderDecoderModel

OUTPUT_FIELDS = (
    "loss",
    "logits",
    "encoder_last_hidden_state",
    "encoder_hidden_states",
    "encoder_attentions",
    "decoder_hidden_states",
    "decoder_attentions",
    "cross_attentions",
)


def _to_torch(inputs: Dict[str, np.ndarray]) -> Dict[str, torch.Tensor]:
    return {k: torch.from_numpy(np.asarray(v)) for k, v in inputs.items() if v is not None}


def _to_numpy(value):
    if isinstance(value, (tuple, list)):
        return [_to_numpy(v) for v in value]
    return value.detach().cpu().numpy()


class Adapter:
    name = "pt"
    GENERATE_MODES = {"default": {}}
    CHEAP_MODE = "default"
    # seed= draws from a torch.Generator seeded alike, in the reference's order of draws.
    DRAWS_LIKE_REFERENCE = True

    def seeded(self, seed):
        return [dict(seed=seed), dict(generator=torch.Generator().manual_seed(seed))]

    def encode(self, model, inputs):
        t = _to_torch(inputs)
        with torch.no_grad():
            return model.get_encoder()(input_ids=t["input_ids"], attention_mask=t["attention_mask"])

    def forbid_encoder(self, model, monkeypatch):
        monkeypatch.setattr(model.encoder, "forward", encoder_must_not_run)

    def quick_compiles(self):
        return contextlib.nullcontext()

    def build(self, config, state):
        model = EncoderDecoderModel(config)
        model.load_canonical(state)
        return model.eval()

    def forward(self, model, inputs, **kw):
        with torch.no_grad():
            out = model(**_to_torch(inputs), use_cache=False, return_dict=True, **kw)
        return {k: _to_numpy(getattr(out, k)) for k in OUTPUT_FIELDS if getattr(out, k) is not None}

    def step_logits(self, model, inputs):
        t = _to_torch(inputs)
        decoder_input_ids = t["decoder_input_ids"]
        decoder_mask = t.get("decoder_attention_mask", torch.ones_like(decoder_input_ids))
        steps = []
        with torch.no_grad():
            encoder_outputs = model.get_encoder()(input_ids=t["input_ids"], attention_mask=t["attention_mask"])
            past = None
            for i in range(decoder_input_ids.shape[1]):
                out = model(
                    attention_mask=t["attention_mask"],
                    encoder_outputs=encoder_outputs,
                    decoder_input_ids=decoder_input_ids[:, i:i + 1],
                    decoder_attention_mask=decoder_mask[:, :i + 1],
                    past_key_values=past,
                    use_cache=True,
                )
                past = out.past_key_values
                steps.append(out.logits)
        return torch.cat(steps, dim=1).numpy()  # (B, T, V)

    def cache(self, model, inputs):
        with torch.no_grad():
            out = model(**_to_torch(inputs), use_cache=True)
        return _to_numpy(out.past_key_values)

    def grads(self, model, inputs):
        model.zero_grad(set_to_none=True)
        out = model(**_to_torch(inputs), use_cache=False)
        out.loss.backward()
        params = model._all_parameters()
        grads = {}
        for spec in model.schema().owned():
            grad = params[spec.name].grad
            grads[spec.name] = np.zeros(spec.shape, np.float32) if grad is None else grad.detach().numpy().copy()
        model.zero_grad(set_to_none=True)
        return grads

    def generate_output(self, model, inputs, **kwargs):
        """``model.generate(..., return_dict_in_generate=True)`` -> dict of numpy arrays."""
        out = model.generate(**_to_torch(inputs), **kwargs)
        return generate_output_arrays(out, lambda v: v.detach().cpu().numpy())

    def state_dict(self, model):
        return model.canonical_state_dict()

    def save(self, model, path, **kwargs):
        model.save_pretrained(str(path), **kwargs)

    def load(self, path):
        return EncoderDecoderModel.from_pretrained(str(path))

    def generate(self, model, inputs, **kwargs):
        """``model.generate`` on numpy inputs (input_ids, attention_mask, ...) -> sequences as int64 numpy."""
        out = model.generate(**_to_torch(inputs), **kwargs)
        sequences = out.sequences if hasattr(out, "sequences") else out
        return sequences.detach().cpu().numpy().astype(np.int64)
