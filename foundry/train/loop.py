"""The per-worker training loop that Ray Train runs on every worker (and Ray Tune reuses per trial).

Design points:
- a checkpoint holds the current weights, the optimizer, the loop state and the best weights so far,
  so a restarted worker group resumes from the last checkpointed epoch (each resume is listed in the
  state's ``resumes``) and the final model is the best one without ranking checkpoints. It is
  written at the end of an epoch when ``trainer.checkpoint_every_s`` seconds have passed since the
  last one (0: every epoch), and always after the last epoch (or the early stop): a failure loses at
  most that many seconds plus the epoch in progress, and short epochs do not pay for a checkpoint
  each (``checkpoint_due``);
- a split that fits in memory is pulled once into tensors and shuffled per epoch with a seeded
  ``torch.randperm`` (foundry/train/shards.py); a bigger one streams through Ray Data;
- validation loss is all-reduced, so every worker takes the same early-stopping decision (a
  worker that stops alone would leave the others blocked in a collective);
- rank 0 prints each epoch's line as it ends (``epoch_line``: live progress in the job's log);
- weights are written with safetensors and the optimizer is read back with
  ``torch.load(weights_only=True)``: a checkpoint can never execute code when loaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import sys
import tempfile
import time

import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file

from foundry.config import Task, TrainerConfig
from foundry.models import build_model
from foundry.models.tasks import loss_fn, loss_target
from foundry.train import sync
from foundry.train.shards import worker_shard
from foundry.train.torch_backend import worker_has_gpu

WEIGHTS_FILE = "model.safetensors"
BEST_WEIGHTS_FILE = "best_model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "state.json"


def _optimizer(params, t: TrainerConfig) -> torch.optim.Optimizer:
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, momentum=0.9, weight_decay=t.weight_decay)
    cls = torch.optim.AdamW if t.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=t.lr, weight_decay=t.weight_decay)


def _all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def state_digest(value) -> str:
    """A SHA-256 of a (nested) state dict: tensors by dtype, shape and bytes, everything else by value.

    Recorded when a worker group resumes, for the checkpoint's files and for what the model and the
    optimizer hold after loading them: equal digests prove the resume restored the checkpoint, not
    only its epoch number."""
    h = hashlib.sha256()

    def feed(v) -> None:
        if isinstance(v, torch.Tensor):
            t = v.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
        elif isinstance(v, dict):
            h.update(b"{")
            for k in sorted(v, key=str):
                h.update(repr(k).encode())
                feed(v[k])
            h.update(b"}")
        elif isinstance(v, (list, tuple)):
            h.update(b"[")
            for item in v:
                feed(item)
            h.update(b"]")
        else:
            h.update(repr(v).encode())

    feed(value)
    return h.hexdigest()


def checkpoint_due(now: float, last: float, every_s: float, final: bool) -> bool:
    """Whether this epoch ends with a checkpoint: the last epoch always does, others once ``every_s``
    seconds have passed since the last checkpoint (or the loop's start); ``every_s <= 0``: every epoch."""
    return final or every_s <= 0 or now - last >= every_s


def epoch_line(run_name: str, metrics: dict) -> str:
    """The live progress line rank 0 prints as each epoch ends. Printed in the worker because the driver
    only sees the history once ``fit()`` returns; Ray streams a worker's stdout to the job's driver log
    (prefixed with the worker's actor name and pid), so a job shows each epoch as it happens, and each
    Tune trial's epochs carry the trial's run name."""
    note = "  (best)" if metrics["best_epoch"] == metrics["epoch"] else ""
    stop = "  early stop" if metrics["early_stopped"] else ""
    return (f"[{run_name}] epoch {int(metrics['epoch']):>3}  train_loss {metrics['train_loss']:.4f}  "
            f"val_loss {metrics['val_loss']:.4f}  {metrics['rows_per_s']:,.0f} rows/s{note}{stop}")


def quiet_ray_train_report_lines() -> None:
    """Silence Ray Train's "Reporting training result N: TrainingReport(...)" INFO line on this worker.

    Ray logs it for every report call (every epoch, every rank) into the job's log between the epoch
    lines, and it says nothing they do not. Its logger is named by the module's FILE path
    (``logging.getLogger(__file__)`` in ray/train/v2/_internal/execution/context.py), not its dotted name,
    so that is the logger quieted; a Ray without that module is left as it is."""
    try:
        from ray.train.v2._internal.execution import context as ray_train_context
    except ImportError:
        return
    logging.getLogger(ray_train_context.__file__).setLevel(logging.WARNING)


def say_epoch(line: str) -> None:
    """Write one progress line to the worker's stdout, which Ray streams to the job's log.

    Why not ``print``: Ray Train patches ``print`` on its workers to log the message (to the console and
    Train's log files) and, because Ray wraps the worker's stdout, to tee it there too: each printed line
    showed twice in the job log. ``sys.stdout.write`` bypasses the patch: once."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _state_dict_cpu(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def _forward(model, batch: dict, task: Task, criterion, use_amp: bool, device: torch.device):
    with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
        out = model(batch.get("x_num"), batch.get("x_cat"))
        pred, target = loss_target(task, out.float(), batch["y"])
        return criterion(pred, target)


def _validation_loss(model, val_shard, t: TrainerConfig, task: Task, criterion, use_amp: bool,
                     device: torch.device) -> float:
    """Mean validation loss over every worker's shard (all-reduced: every worker gets the same value)."""
    model.eval()
    val_total, val_rows = 0.0, 0
    with torch.inference_mode():
        for batch in val_shard.iter_batches(4 * t.batch_size, device):
            n = len(batch["y"])
            val_total += float(_forward(model, batch, task, criterion, use_amp, device)) * n
            val_rows += n
    val_total, val_rows = _all_reduce_sum([val_total, val_rows], device)
    return val_total / max(val_rows, 1)


# The key of ``train_loop_config`` under which build_trainer hands the loop its settings (see loop_settings).
SETTINGS_REF = "settings_ref"


def loop_settings(train_loop_config: dict) -> dict:
    """The loop's settings (trainer section, task, model spec, warm-start weights, in-memory shards), which
    build_trainer puts in the object store. Ray Train copies ``train_loop_config`` into the run context
    that its controller unpickles; by value, the trainer dataclass, the shards and a warm start's tensors
    would make the controller import foundry's config and torch (1.5 s before it can start the workers)."""
    import ray

    return ray.get(train_loop_config[SETTINGS_REF])


def worker_device() -> torch.device:
    """Ray's device for this worker; the CPU, without importing ``ray.train.torch``, when it has no GPU
    (foundry/train/torch_backend.py says what that import costs)."""
    if not worker_has_gpu():
        return torch.device("cpu")
    import ray.train.torch

    return ray.train.torch.get_device()


def train_loop_per_worker(train_loop_config: dict) -> None:
    import ray.train

    loop_started, loop_started_at = time.perf_counter(), time.time()
    quiet_ray_train_report_lines()
    config = loop_settings(train_loop_config)
    t: TrainerConfig = config["trainer"]
    task = Task(config["task"])
    context = ray.train.get_context()
    rank, world, run_name = context.get_world_rank(), context.get_world_size(), context.get_experiment_name()
    torch.manual_seed(t.seed + rank)
    device = worker_device()
    use_amp = bool(t.amp and device.type == "cuda")

    net = build_model(config["spec"])
    best_weights = None
    state = {"epoch": 0, "best_val_loss": math.inf, "best_epoch": -1, "bad_epochs": 0, "history": [],
             "reports": 0}
    optimizer_state = None
    checkpoint = ray.train.get_checkpoint()
    resume = None
    if checkpoint:
        with checkpoint.as_directory() as d:
            weights = load_file(os.path.join(d, WEIGHTS_FILE))
            net.load_state_dict(weights)
            best_weights = load_file(os.path.join(d, BEST_WEIGHTS_FILE))
            optimizer_state = torch.load(os.path.join(d, OPTIMIZER_FILE), weights_only=True, map_location="cpu")
            with open(os.path.join(d, STATE_FILE)) as f:
                state = json.load(f)
        # A worker group restarted after a failure (FailureConfig): kept in the version's metadata so a
        # reader can tell a clean run from one that lost a partial epoch, and check what was restored.
        resume = {"at_epoch": state["epoch"], "at": time.time(),
                  "checkpoint": {"weights": state_digest(weights), "optimizer": state_digest(optimizer_state)}}
        state.setdefault("resumes", []).append(resume)
        state.setdefault("reports", 0)  # a checkpoint written before reports were counted
    init = config.get("init_weights") if checkpoint is None else None
    if init is not None:  # a warm start (foundry/train/warm_start.py): the starting weights are epoch -1
        net.load_state_dict(init)
        best_weights = {k: v.detach().cpu().contiguous() for k, v in init.items()}
    model, averager = sync.prepare_model(net, t, world, device)
    if resume is not None:
        sync.resume(averager, state)
    optimizer = _optimizer(model.parameters(), t)
    if optimizer_state is not None:
        optimizer.load_state_dict(optimizer_state)
    if resume is not None:
        resume["restored"] = {"weights": state_digest(net.state_dict()),
                              "optimizer": state_digest(optimizer.state_dict())}
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)
    criterion = loss_fn(task)
    in_memory = config.get("in_memory") or {}
    train_shard = worker_shard("train", in_memory, rank, world)
    val_shard = worker_shard("val", in_memory, rank, world)
    state["data_path"] = {"train": type(train_shard).__name__, "val": type(val_shard).__name__}
    # Where the epochs ran and whether mixed precision was on (trainer.amp applies on CUDA only): kept in the
    # version's metadata, so a `trainer=gpu` run that fell back to the CPU shows it (benchmarks/gpu_check.py).
    state["device"], state["amp"] = str(device), use_amp
    if init is not None:
        # The starting weights compete with every epoch: training that does not lower the validation loss
        # hands back the version it started from (which the promotion gate then does not promote).
        state["best_val_loss"] = _validation_loss(model, val_shard, t, task, criterion, use_amp, device)
        state["initial_val_loss"] = state["best_val_loss"]

    # Per start of the loop (a resume adds one): when it started (wall clock, to set against the caller's
    # fit() call) and its seconds to the first epoch (data pulled, model and optimizer built).
    state.setdefault("runs", []).append({"started_at": loop_started_at,
                                         "setup_s": round(time.perf_counter() - loop_started, 3)})
    last_checkpoint = time.perf_counter()
    for epoch in range(state["epoch"], t.epochs):
        started = time.perf_counter()
        model.train()
        total, rows = 0.0, 0
        for batch in train_shard.iter_batches(t.batch_size, device, shuffle_seed=t.seed + epoch):
            loss = _forward(model, batch, task, criterion, use_amp, device)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            sync.after_step(model, averager)
            n = len(batch["y"])
            total += float(loss.detach()) * n
            rows += n
        sync.end_of_epoch(model, averager)
        val_loss = _validation_loss(model, val_shard, t, task, criterion, use_amp, device)
        # Whether a checkpoint is due by the clock: every rank decides alike (any rank's clock), so that
        # ranks that skip a metrics-only report skip it together (report is a barrier).
        clock_due = checkpoint_due(time.perf_counter(), last_checkpoint, t.checkpoint_every_s, final=False)
        total, rows, ranks_due = _all_reduce_sum([total, rows, float(clock_due)], device)
        train_loss = total / max(rows, 1)
        current = _state_dict_cpu(getattr(model, "module", model))
        if val_loss < state["best_val_loss"] - t.early_stopping_min_delta:
            state.update(best_val_loss=val_loss, best_epoch=epoch, bad_epochs=0)
            best_weights = current
        else:
            state["bad_epochs"] += 1
        stop = state["bad_epochs"] >= t.early_stopping_patience
        state["epoch"] = epoch + 1
        metrics = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                   "best_val_loss": state["best_val_loss"], "best_epoch": state["best_epoch"],
                   "rows_per_s": rows / max(time.perf_counter() - started, 1e-9),
                   "early_stopped": bool(stop), "ended_at": time.time()}
        state["history"].append(metrics)
        state["sync"] = sync.describe(model, averager)
        if rank == 0:
            say_epoch(epoch_line(run_name, metrics))
        # An epoch without a checkpoint is reported only when a callback reads every epoch (a Tune trial,
        # MLflow): Ray Train takes one report per controller poll (trainer.controller_poll_s), so a report
        # per short epoch made a small retrain wait up to one poll per epoch (foundry/train/trainer.py).
        if not (ranks_due > 0 or stop or epoch + 1 >= t.epochs):
            if config["report_every_epoch"]:
                state["reports"] += 1
                ray.train.report(metrics)
            continue
        state["reports"] += 1
        with tempfile.TemporaryDirectory() as tmp:
            ckpt = None
            if rank == 0:
                save_file(current, os.path.join(tmp, WEIGHTS_FILE))
                save_file(best_weights, os.path.join(tmp, BEST_WEIGHTS_FILE))
                torch.save(optimizer.state_dict(), os.path.join(tmp, OPTIMIZER_FILE))
                with open(os.path.join(tmp, STATE_FILE), "w") as f:
                    json.dump(state, f)
                ckpt = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(metrics, checkpoint=ckpt)
        last_checkpoint = time.perf_counter()
        if stop:
            break
