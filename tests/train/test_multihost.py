"""``encdec train`` across several hosts, resumed on several devices, and in bfloat16.

- Several hosts, simulated on this machine: two processes started together on localhost, each
  framework's own multi-host path — two ``torchrun`` nodes (c10d rendezvous, gloo; DDP and
  FSDP2), two JAX
  processes joined by ``jax.distributed.initialize`` (gloo CPU collectives) with 2 virtual CPU
  devices each, two TensorFlow workers of ``MultiWorkerMirroredStrategy`` from ``TF_CONFIG``. Each
  repeats the one-device run's losses and final parameters, and the run folder holds what the
  one-device run's does plus its checkpoint: one process wrote it, nothing is left by the others.
- Resume on several devices (2 gloo processes, a data=4,model=2 mesh, 2 logical CPUs) and on
  several hosts (the two-process layouts above): a run left
  as a kill after ``checkpoint-1`` leaves it, resumed with ``--resume``, logs the uninterrupted
  run's losses (dropout on, gradient accumulation).
- ``--bf16``: 3 steps in bfloat16, on one device and on the several-device layouts, give the
  one-device float32 run's losses within bfloat16's precision (and not float32's: the flag
  computes in bfloat16), and a float32 folder that loads.
"""

import json
import os
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file

from encdec.testing import TOLERANCE
from encdec_app.cli import main

from helpers import (ENCDEC, PYTHON, STEPS_ARGS, assert_repeats_one_device, device_setup, free_port, logits, losses,
                     one_device, run_together, train_args)

TOL = TOLERANCE["float32"]
# bfloat16 keeps 8 significant bits: one unit in the last place at 1 is 2^-8 (a relative error a
# bfloat16 forward pass reaches in its logits); the tolerance of a bfloat16 run against float32
BF16_RTOL = 2.0 ** -8


@pytest.fixture(scope="module")
def run_setup(tmp_path_factory):
    return device_setup(tmp_path_factory.mktemp("multihost"))


def host_commands(hosts: str, argv):
    """``(argv, env)`` of each of two processes on localhost, each a host of one run."""
    if hosts == "pt":
        rendezvous = f"127.0.0.1:{free_port()}"
        return [([PYTHON, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(rank), "--nproc-per-node",
                  "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", rendezvous, "--no-python", ENCDEC, *argv],
                 {"OMP_NUM_THREADS": "1"}) for rank in range(2)]
    if hosts.startswith("flax"):
        coordinator = f"127.0.0.1:{free_port()}"
        mesh = {"flax-2x2": "data=2,model=2", "flax-1x4": "data=1,model=4"}[hosts]
        return [([PYTHON, "-m", "encdec_app.cli", *argv, "--mesh", mesh, "--coordinator-address", coordinator,
                  "--num-processes", "2", "--process-id", str(i)],
                 {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}) for i in range(2)]
    workers = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    return [([PYTHON, "-m", "encdec_app.cli", *argv],
             {"TF_CONFIG": json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": i}})})
            for i in range(2)]


# (hosts, framework, devices of the run, options); flax-1x4: each process's devices span the model
# axis only, so both processes feed every row of the batch
HOSTS = [
    pytest.param("pt", "pt", 2, (), id="pt-2-nodes", marks=pytest.mark.slow),
    pytest.param("pt", "pt", 2, ("--strategy", "fsdp"), id="pt-2-nodes-fsdp", marks=pytest.mark.slow),
    pytest.param("flax-2x2", "flax", 4, (), id="flax-2-processes-data2-model2", marks=pytest.mark.slow),
    pytest.param("flax-1x4", "flax", 4, (), id="flax-2-processes-data1-model4", marks=pytest.mark.slow),
    pytest.param("tf", "tf", 2, (), id="tf-2-workers", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("hosts, framework, devices, options", HOSTS)
def test_several_hosts_repeat_one_device(run_setup, tmp_path, hosts, framework, devices, options):
    reference = one_device(run_setup, framework)
    out = str(tmp_path / "run")
    argv = train_args({"model": run_setup["model"]}, run_setup["data"], out, framework, *STEPS_ARGS,
                      "--save-every", "3", *options)
    run_together(host_commands(hosts, argv))
    assert_repeats_one_device(framework, out, reference, devices, TOL["abs"])
    assert sorted(os.listdir(out)) == sorted(os.listdir(reference) + ["checkpoint-3"])


# (framework, options, environment, launcher): the several-device layouts of test_devices.py
LAYOUTS = [
    pytest.param("pt", ("--strategy", "ddp"), {"OMP_NUM_THREADS": "1"}, "torchrun", id="pt-ddp-2",
                 marks=pytest.mark.slow),
    pytest.param("flax", ("--mesh", "data=4,model=2"), {"XLA_FLAGS": "--xla_force_host_platform_device_count=8"},
                 "python", id="flax-4x2", marks=pytest.mark.slow),
    pytest.param("tf", (), {"ENCDEC_TF_LOGICAL_CPUS": "2"}, "python", id="tf-2", marks=pytest.mark.slow),
]


def run_on_devices(launcher, argv, env):
    """One run of ``encdec train`` with ``argv`` on the layout's devices (``hosts:NAME``: the two
    processes of ``host_commands(NAME)``), to its end."""
    if launcher.startswith("hosts:"):
        run_together(host_commands(launcher[len("hosts:"):], argv))
        return
    if launcher == "torchrun":
        command = [PYTHON, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--no-python", ENCDEC, *argv]
    else:
        command = [PYTHON, "-m", "encdec_app.cli", *argv]
    run_together([(command, env)])


# the same on several hosts (two processes on localhost, as test_several_hosts_repeat_one_device's)
HOST_LAYOUTS = [
    pytest.param("pt", (), {}, "hosts:pt", id="pt-2-nodes", marks=pytest.mark.slow),
    pytest.param("flax", (), {}, "hosts:flax-2x2", id="flax-2-processes-data2-model2", marks=pytest.mark.slow),
    pytest.param("tf", (), {}, "hosts:tf", id="tf-2-workers", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("framework, options, env, launcher", LAYOUTS + HOST_LAYOUTS)
def test_resume_on_several_devices_repeats_the_losses(run_setup, tmp_path, framework, options, env, launcher):
    def train(out, *extra):
        argv = train_args({"model": run_setup["model"]}, run_setup["data"], out, framework, "--batch-size", "8",
                          "--save-every", "1", "--dropout", "0.1", "--grad-accum", "2", *options, *extra)
        run_on_devices(launcher, argv, env)

    out = str(tmp_path / "run")
    train(out)
    uninterrupted = losses(out)
    # the run as a kill during step 2 leaves it: checkpoint-1 and the log of steps 1 and 2
    resumed = str(tmp_path / "resumed")
    os.makedirs(resumed)
    shutil.copytree(os.path.join(out, "checkpoint-1"), os.path.join(resumed, "checkpoint-1"))
    shutil.copy(os.path.join(out, "metrics.jsonl"), resumed)
    train(resumed, "--resume")
    np.testing.assert_allclose(losses(resumed), uninterrupted, rtol=0, atol=1e-5)


BF16_LAYOUTS = [pytest.param("pt", None, id="pt"), pytest.param("flax", None, id="flax", marks=pytest.mark.slow),
                pytest.param("tf", None, id="tf", marks=pytest.mark.slow)]
BF16_LAYOUTS += [pytest.param(p.values[0], p.values[1:], id=f"{p.id}", marks=p.marks) for p in LAYOUTS]
BF16_LAYOUTS.append(pytest.param("pt", (("--strategy", "fsdp"), {"OMP_NUM_THREADS": "1"}, "torchrun"), id="pt-fsdp-2",
                                 marks=pytest.mark.slow))


@pytest.mark.parametrize("framework, layout", BF16_LAYOUTS)
def test_bf16_repeats_float32_within_bfloat16_precision(run_setup, tmp_path, framework, layout):
    """On one device, and on the several-device layouts (against one device in float32)."""
    reference = one_device(run_setup, framework)
    out = str(tmp_path / "run")
    argv = train_args({"model": run_setup["model"]}, run_setup["data"], out, framework, *STEPS_ARGS, "--bf16")
    if layout is None:
        assert main(argv) == 0
    else:
        options, env, launcher = layout
        run_on_devices(launcher, [*argv, *options], env)
    bf16, fp32 = np.array(losses(out)), np.array(losses(reference))
    np.testing.assert_allclose(bf16, fp32, rtol=BF16_RTOL)
    assert np.abs(bf16 - fp32).max() > TOL["abs"], "--bf16 gave float32's losses: it did not compute in bfloat16"
    # the folder holds float32 parameters and loads, with the float32 run's logits within bfloat16's precision
    assert {str(v.dtype) for v in load_file(os.path.join(out, "model.safetensors")).values()} == {"float32"}
    expected = logits(framework, reference)
    np.testing.assert_allclose(logits(framework, out), expected, rtol=0, atol=BF16_RTOL * np.abs(expected).max())
