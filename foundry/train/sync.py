"""How a multi-worker run keeps its workers' models in step: gradients every step, or weights every k steps.

``trainer.average_every_steps: 1`` is DistributedDataParallel (DDP): every step's gradients are
all-reduced before the optimizer steps, so the workers never differ. On CPU that all-reduce (gloo,
~1.3 ms here whatever the batch) costs as much as a 256-row step, so a second worker gained nothing at
the shipped batch size (benchmarks/results/train.json ``scaling``).

``k > 1`` is local SGD with periodic model averaging (Lin et al., "Don't use large mini-batches, use
local SGD", https://arxiv.org/abs/1808.07217), with PyTorch's own ``PeriodicModelAverager``: every
worker starts from rank 0's weights, steps its optimizer on its own batches, and every ``k`` steps the
workers' weights are averaged (one all-reduce of the flattened parameters). The weights are also
averaged at the end of every epoch, before validation and the checkpoint, so what is validated, saved
and registered is one model that every worker holds. Each worker's optimizer state (Adam's moments)
stays its own. The benchmark records the validation loss of every run next to its speed, so the
trade is visible: see docs/benchmarks.md, "Training".

A single worker has nothing to keep in step: no DDP wrapper, no averaging.
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from foundry.config import TrainerConfig


def distributed(world: int) -> bool:
    return world > 1 and dist.is_available() and dist.is_initialized()


def prepare_model(net: torch.nn.Module, t: TrainerConfig, world: int, device: torch.device):
    """The model to train and its averager (None when DDP, or nothing, keeps the workers in step).

    A lone CPU worker's model is used as built (Ray's ``prepare_model`` would only move it to the CPU)."""
    if world == 1 and device.type == "cpu":
        return net, None
    import ray.train.torch

    if not distributed(world) or t.average_every_steps <= 1:
        return ray.train.torch.prepare_model(net), None
    from torch.distributed.algorithms.model_averaging.averagers import PeriodicModelAverager

    model = ray.train.torch.prepare_model(net, parallel_strategy=None)
    broadcast_from_rank0(model)
    return model, PeriodicModelAverager(period=t.average_every_steps, warmup_steps=0)


def resume(averager, state: dict) -> None:
    """A worker group restarted from a checkpoint: the averager goes on from the checkpoint's step count, so it
    keeps averaging on every ``period``-th step of the whole run and ``training.sync.steps`` counts the whole
    run (it counted only the steps since the restart)."""
    if averager is not None:
        averager.step = int((state.get("sync") or {}).get("steps", 0))


def broadcast_from_rank0(model: torch.nn.Module) -> None:
    """Every worker starts from rank 0's weights (what DDP's wrapper does; each rank seeds differently)."""
    with torch.no_grad():
        for tensor in model.state_dict().values():
            dist.broadcast(tensor, src=0)


def after_step(model: torch.nn.Module, averager) -> None:
    """Count the step; every ``period``-th one averages the workers' weights."""
    if averager is not None:
        averager.average_parameters(model.parameters())


def end_of_epoch(model: torch.nn.Module, averager) -> None:
    """Average now, whatever the step count, so the epoch's validation and checkpoint see one model."""
    if averager is None:
        return
    from torch.distributed.algorithms.model_averaging.utils import average_parameters

    with torch.no_grad():
        average_parameters(iter(model.parameters()), averager.process_group)


def describe(model: torch.nn.Module, averager) -> dict:
    """What kept the workers in step, for the run's state (and so for the registered version's metadata)."""
    if averager is not None:
        return {"strategy": "local_sgd", "average_every_steps": averager.period, "steps": int(averager.step)}
    wrapped = type(model).__name__ == "DistributedDataParallel"
    return {"strategy": "ddp" if wrapped else "single_worker"}
