"""Local SGD's mechanics on a real 2-process gloo group (no Ray): rank 0's weights reach every worker,
the weights are averaged on every ``period``-th step and not between, and at the end of an epoch
whatever the step count (foundry/train/sync.py)."""

from __future__ import annotations

import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from foundry.train import sync


def _worker(rank: int, port: int, results) -> None:
    from torch.distributed.algorithms.model_averaging.averagers import PeriodicModelAverager

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        torch.manual_seed(rank)  # each rank starts elsewhere, as the loop seeds them
        model = torch.nn.Linear(3, 2)
        sync.broadcast_from_rank0(model)
        start = model.weight.detach().clone()
        for param in model.parameters():  # the averager averages parameters that have a gradient, as after a step
            param.grad = torch.zeros_like(param)
        averager = PeriodicModelAverager(period=3, warmup_steps=0)
        seen = []
        for _ in range(4):
            with torch.no_grad():
                model.weight.add_(float(rank + 1))  # the ranks' "updates" differ
            sync.after_step(model, averager)
            seen.append(model.weight.detach().clone())
        with torch.no_grad():
            model.weight.add_(float(rank + 1))
        sync.end_of_epoch(model, averager)
        # Plain lists: a tensor sent through a queue is shared by a file descriptor that this process, gone by
        # the time the parent reads it, could no longer hand over.
        results.put((rank, start.tolist(), [w.tolist() for w in seen], model.weight.detach().tolist(),
                     sync.describe(model, averager)))
    finally:
        dist.destroy_process_group()


def test_broadcast_periodic_and_end_of_epoch_averaging_across_two_processes():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(rank, port, results)) for rank in range(2)]
    for p in procs:
        p.start()
    got = dict((r[0], r[1:]) for r in (results.get(timeout=120) for _ in procs))
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    (start0, seen0, end0, desc0), (start1, seen1, end1, _) = (
        (torch.tensor(start), [torch.tensor(w) for w in seen], torch.tensor(end), desc)
        for start, seen, end, desc in (got[0], got[1]))
    assert torch.equal(start0, start1)  # rank 0's weights everywhere
    # PeriodicModelAverager counts from step 0: steps 0 and 3 average (equal), steps 1 and 2 do not.
    assert torch.equal(seen0[0], seen1[0]) and torch.equal(seen0[3], seen1[3])
    assert not torch.equal(seen0[1], seen1[1]) and not torch.equal(seen0[2], seen1[2])
    # The average of rank 0's +1 and rank 1's +2 after the first step: start + 1.5.
    assert torch.allclose(seen0[0], start0 + 1.5)
    assert torch.equal(end0, end1)  # averaged at the end of the epoch although step 4 is not a period's
    assert desc0 == {"strategy": "local_sgd", "average_every_steps": 3, "steps": 4}


def test_one_worker_or_ddp_need_no_averager():
    model = torch.nn.Linear(2, 1)
    before = model.weight.detach().clone()
    sync.after_step(model, None)
    sync.end_of_epoch(model, None)
    assert torch.equal(model.weight, before)
    assert sync.describe(model, None) == {"strategy": "single_worker"}
    assert not sync.distributed(1)


def test_a_resumed_averager_goes_on_counting_from_the_checkpoint():
    """One rank in this process is enough: the step count is the averager's own."""
    from torch.distributed.algorithms.model_averaging.averagers import PeriodicModelAverager

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        model = torch.nn.Linear(2, 1)
        averager = PeriodicModelAverager(period=32, warmup_steps=0)
        sync.resume(averager, {"sync": {"strategy": "local_sgd", "average_every_steps": 32, "steps": 70}})
        sync.after_step(model, averager)
        assert sync.describe(model, averager)["steps"] == 71
        sync.resume(averager, {"epoch": 0})  # a checkpoint from before any step: from 0
        assert averager.step == 0
        sync.resume(None, {"sync": {"steps": 5}})  # one worker, or DDP: nothing to resume
    finally:
        dist.destroy_process_group()
