"""``encdec train`` on each framework's own engine over virtual devices of the CPU, held to one device.

Every run starts ``--model`` from one composite folder of deterministic weights (``tiny_composite``:
the same initial weights in every framework), with ``--dropout 0``, 3 steps of one global batch of 8.
- TensorFlow on one device repeats PyTorch's losses (the three trainers share the data order, the
  token-mean loss, clipping and the AdamW update).
- Several devices repeat one device's losses and final parameters: PyTorch under ``torchrun`` with 2
  gloo processes (DDP, FSDP2), Flax over 8 XLA host devices on data x model meshes, TensorFlow's
  ``MirroredStrategy`` over 2 logical CPUs; the folder (and the checkpoint) such a run writes is the
  single-folder format and loads on one device with the one-device run's logits.
- ``--gradient-checkpointing`` repeats the losses of a run without it.
The learning rate is 1e-4: AdamW turns a gradient's rounding noise into an update of up to the
learning rate, so a larger one would measure Adam's amplification of float32 rounding, not the code.
"""

import os

import numpy as np
import pytest

from encdec.testing import TOLERANCE
from encdec_app.cli import main
from encdec_app.frameworks import model_class

from helpers import (ENCDEC, PYTHON, STEPS_ARGS, assert_repeats_one_device, device_setup, logits, losses, one_device,
                     run_subprocess, train_args)

TOL = TOLERANCE["float32"]

XLA8 = {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
# (framework, options, environment, launcher, devices); CI runs one per framework, --runslow all
LAYOUTS = [
    pytest.param("pt", ("--strategy", "ddp"), {}, "torchrun", 2, id="pt-ddp-2"),
    pytest.param("pt", ("--strategy", "fsdp"), {}, "torchrun", 2, id="pt-fsdp-2", marks=pytest.mark.slow),
    pytest.param("flax", ("--mesh", "data=8,model=1"), XLA8, "python", 8, id="flax-8x1", marks=pytest.mark.slow),
    pytest.param("flax", ("--mesh", "data=4,model=2"), XLA8, "python", 8, id="flax-4x2"),
    pytest.param("flax", ("--mesh", "data=2,model=4"), XLA8, "python", 8, id="flax-2x4", marks=pytest.mark.slow),
    pytest.param("tf", (), {"ENCDEC_TF_LOGICAL_CPUS": "2"}, "python", 2, id="tf-2"),
]


@pytest.fixture(scope="module")
def run_setup(tmp_path_factory):
    return device_setup(tmp_path_factory.mktemp("devices"))


def test_tf_repeats_pytorch_losses_on_one_device(run_setup):
    pt, tf = one_device(run_setup, "pt"), one_device(run_setup, "tf")
    np.testing.assert_allclose(losses(tf), losses(pt), rtol=0, atol=TOL["abs"])
    np.testing.assert_allclose(logits("tf", tf), logits("pt", pt), rtol=0, atol=TOL["abs"])


@pytest.mark.parametrize("framework, options, env, launcher, devices", LAYOUTS)
def test_several_devices_repeat_one_device(run_setup, tmp_path, framework, options, env, launcher, devices):
    reference = one_device(run_setup, framework)
    out = str(tmp_path / "run")
    argv = train_args({"model": run_setup["model"]}, run_setup["data"], out, framework, *STEPS_ARGS,
                      "--save-every", "3", *options)
    if launcher == "torchrun":
        command = [PYTHON, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--no-python", ENCDEC, *argv]
        env = dict(env, OMP_NUM_THREADS="1")
    else:
        command = [PYTHON, "-m", "encdec_app.cli", *argv]
    run_subprocess(command, env=env)
    assert_repeats_one_device(framework, out, reference, devices, TOL["abs"])


@pytest.mark.parametrize("framework", ["pt", pytest.param("flax", marks=pytest.mark.slow),
                                       pytest.param("tf", marks=pytest.mark.slow)])
def test_gradient_checkpointing_repeats_the_losses(run_setup, tmp_path, framework):
    """With dropout: the recomputed layers draw the masks the forward pass drew."""
    runs = {}
    for name, extra in (("plain", ()), ("checkpointing", ("--gradient-checkpointing",))):
        runs[name] = str(tmp_path / name)
        assert main(train_args({"model": run_setup["model"]}, run_setup["data"], runs[name], framework, *STEPS_ARGS,
                               "--dropout", "0.1", *extra)) == 0
    np.testing.assert_allclose(losses(runs["checkpointing"]), losses(runs["plain"]), rtol=0, atol=TOL["same_model"])
    # and dropout was on: the losses are not those of the run without it
    assert np.abs(np.subtract(losses(runs["plain"]), losses(one_device(run_setup, framework)))).max() > 1e-3


def test_tf_gradient_checkpointing_recomputes_each_layer(run_setup):
    """TensorFlow's remat is this package's (``recompute_layers``; PyTorch's and Flax's are the
    models' own): each layer of both sides runs twice in a gradient (forward, then recomputed)."""
    import tensorflow as tf
    import keras

    from encdec_app.train.tf import recompute_layers

    model = model_class("tf").from_pretrained(run_setup["model"])
    blocks = [model.encoder.encoder.layer[0], model.decoder.transformer.h[-1]]
    calls = []
    for block in blocks:
        original = block.call
        block.call = lambda *a, _call=original, _name=block.name, **k: (calls.append(_name), _call(*a, **k))[1]
    recompute_layers(tf, keras, model)
    ids = tf.constant([[101, 2023, 102]])
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(model(input_ids=ids, decoder_input_ids=ids, training=True).logits)
    assert sorted(calls) == sorted(b.name for b in blocks)  # the forward pass
    tape.gradient(loss, model.trainable_variables)
    assert sorted(calls) == sorted(b.name for b in blocks for _ in range(2))  # and each again for its gradient


def test_tf_gradient_checkpointing_draws_the_forward_pass_dropout_masks():
    """Keras's dropout advances its seed generator at each call: the recomputed layers put the
    states back first, so the gradients (and the states after them) equal those without recomputation."""
    import tensorflow as tf
    import keras

    from encdec.testing import tiny_pair_config
    from encdec_app.train.common import dropout_fields, set_dropout
    from encdec_app.train.tf import recompute_layers

    config = tiny_pair_config("bert", "gpt2")
    set_dropout(config.encoder, 0.3)
    set_dropout(config.decoder, 0.3)
    assert all(getattr(side, k) == 0.3 for side in (config.encoder, config.decoder) for k in dropout_fields(side))
    model = model_class("tf")(config)
    ids = tf.constant([[5, 6, 7, 8], [9, 10, 11, 12]])
    start = [v.numpy() for v in model.non_trainable_variables]

    def run():
        for variable, value in zip(model.non_trainable_variables, start):
            variable.assign(value)
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(model(input_ids=ids, decoder_input_ids=ids, training=True).logits ** 2)
        # (None for the encoder's pooler, which the loss does not reach)
        grads = tape.gradient(loss, model.trainable_variables)
        grads = [None if g is None else tf.convert_to_tensor(g).numpy() for g in grads]
        return grads, [v.numpy() for v in model.non_trainable_variables]

    plain, plain_states = run()
    recompute_layers(tf, keras, model)
    recomputed, recomputed_states = run()
    assert [g is None for g in recomputed] == [g is None for g in plain]
    for a, b in zip(recomputed, plain):
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=0, atol=TOL["same_model"])
    for a, b in zip(recomputed_states, plain_states):
        np.testing.assert_array_equal(a, b)
