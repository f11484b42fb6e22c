"""A jitted training step for ``FlaxEncoderDecoderModel`` with optax.

Example::

    import jax, optax
    from encdec_flax import FlaxEncoderDecoderModel
    from encdec_flax.training import make_train_step

    model = FlaxEncoderDecoderModel.from_encoder_decoder_pretrained("bert-dir", "bert-dir",
                                                                    decoder_start_token_id=101, pad_token_id=0)
    tx = optax.adamw(1e-4)
    params, opt_state = model.params, tx.init(model.params)
    train_step = make_train_step(model, tx)
    rng = jax.random.PRNGKey(0)
    for batch in batches:  # {"input_ids", "attention_mask", "labels"} numpy arrays
        rng, dropout_rng = jax.random.split(rng)
        params, opt_state, loss = train_step(params, opt_state, batch, dropout_rng)
"""

from __future__ import annotations

from typing import Any, Callable, Dict

import jax

try:
    import optax
except ImportError:  # pragma: no cover - optax is part of the flax extra
    optax = None


def make_train_step(model: Any, optimizer: Any) -> Callable:
    """``step(params, opt_state, batch, dropout_rng) -> (params, opt_state, loss)``.

    The loss is the model's (mean cross-entropy over labels != -100, decoder inputs shifted from
    the labels), with dropout on. The update is one ``jax.jit`` function, compiled once per batch
    shape; token ids are checked on the host before each call, because JAX clamps out-of-range
    gathers silently.
    """
    if optax is None:
        raise ImportError("make_train_step needs optax: pip install 'encdec[flax]'")

    def loss_fn(params, batch, dropout_rng):
        return model(**batch, params=params, train=True, dropout_rng=dropout_rng).loss

    @jax.jit
    def _step(params, opt_state, batch, dropout_rng):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch, dropout_rng)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    def step(params, opt_state, batch: Dict[str, Any], dropout_rng):
        model.check_inputs(**batch)
        return _step(params, opt_state, batch, dropout_rng)

    return step
