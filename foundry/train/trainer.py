"""Assemble a Ray Train ``TorchTrainer`` from the typed config.

The start-up and tail costs decided here, not in the loop:
- splits that fit a worker's memory budget travel as block references in the loop's config
  (foundry/train/shards.py) and are not handed to Ray Train as datasets, so no streaming split
  coordinator is started for them;
- the controller's poll interval (``trainer.controller_poll_s``): Ray Train's controller takes each
  worker report, and notices that the workers finished, only when it polls them (2 s by default); a
  worker's second report within one interval blocks until then, and every run ends up to one interval
  late. Ray reads it from the driver's environment when ``fit()`` starts the controller. So the loop
  reports an epoch without a checkpoint only when a callback reads every epoch (``report_every_epoch``:
  a Tune trial, MLflow); a small retrain's short epochs no longer wait for a poll each;
- the processes Ray Train starts per run that a run here does not use (the placement-group cleaner,
  kept for Tune trials; the dataset manager when no split streams; the preemption watcher, set by
  ``trainer.preemption_watcher``: foundry/train/torch_trainer.py), and torch in the controller
  (foundry/train/torch_backend.py, and the loop's settings passed by reference: loop.loop_settings).
"""

from __future__ import annotations

import os

from foundry.config import FoundryConfig, TrainerConfig
from foundry.train import shards
from foundry.train.loop import SETTINGS_REF, train_loop_per_worker

POLL_ENV = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"
PREEMPTION_WATCHER_ENV = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"


def scaling_config(trainer: TrainerConfig):
    from ray.train import ScalingConfig

    resources = {"CPU": trainer.cpus_per_worker}
    if trainer.use_gpu:
        resources["GPU"] = trainer.gpus_per_worker
    return ScalingConfig(num_workers=trainer.num_workers, use_gpu=trainer.use_gpu, resources_per_worker=resources)


def build_trainer(cfg: FoundryConfig, datasets: dict, spec: dict, run_name: str, callbacks: list | None = None,
                  init_weights: dict | None = None, placement_group_cleaner: bool | None = None):
    """``init_weights``: the starting weights of a warm start (foundry/train/warm_start.py), else None.
    ``placement_group_cleaner``: None follows ``trainer.placement_group_cleaner``; a Tune trial passes True
    (foundry/train/torch_trainer.py)."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig

    from foundry.train.torch_backend import LazyTorchConfig
    from foundry.train.torch_trainer import trainer_class

    t = cfg.trainer
    # Ray reads both from the driver's environment when fit() starts the controller.
    os.environ[POLL_ENV] = str(t.controller_poll_s)
    os.environ[PREEMPTION_WATCHER_ENV] = "1" if t.preemption_watcher else "0"
    in_memory = shards.plan(datasets, t.num_workers, t.in_memory_max_mb)
    run_config = RunConfig(
        name=run_name,
        storage_path=cfg.storage.layout.checkpoints,
        # The newest checkpoint holds the best weights too (see loop.py), so keep by recency.
        checkpoint_config=CheckpointConfig(num_to_keep=t.checkpoints_to_keep),
        failure_config=FailureConfig(max_failures=t.max_failures),
        callbacks=callbacks,
    )
    if placement_group_cleaner is None:
        placement_group_cleaner = t.placement_group_cleaner
    return trainer_class(placement_group_cleaner)(
        train_loop_per_worker,
        # By reference: the controller unpickles train_loop_config and need not import torch (loop.py).
        train_loop_config={SETTINGS_REF: ray.put({"trainer": t, "task": cfg.data.task.value, "spec": spec,
                                                  "init_weights": init_weights, "in_memory": in_memory,
                                                  "report_every_epoch": bool(callbacks)})},
        scaling_config=scaling_config(cfg.trainer),
        torch_config=LazyTorchConfig(),
        run_config=run_config,
        datasets={name: ds for name, ds in datasets.items() if name not in in_memory},
    )
