"""Assemble a Ray Train ``TorchTrainer`` from the typed config."""

from __future__ import annotations

from foundry import storage
from foundry.config import FoundryConfig
from foundry.train.loop import train_loop_per_worker


def scaling_config(cfg: FoundryConfig):
    from ray.train import ScalingConfig

    t = cfg.trainer
    resources = {"CPU": t.cpus_per_worker}
    if t.use_gpu:
        resources["GPU"] = t.gpus_per_worker
    return ScalingConfig(num_workers=t.num_workers, use_gpu=t.use_gpu, resources_per_worker=resources)


def build_trainer(cfg: FoundryConfig, datasets: dict, spec: dict, run_name: str, callbacks: list | None = None,
                  init_weights: dict | None = None):
    """``init_weights``: the starting weights of a warm start (foundry/train/warm_start.py), else None."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig
    from ray.train.torch import TorchTrainer

    run_config = RunConfig(
        name=run_name,
        storage_path=storage.normalize(cfg.storage.checkpoints),
        # The newest checkpoint holds the best weights too (see loop.py), so keep by recency.
        checkpoint_config=CheckpointConfig(num_to_keep=cfg.trainer.checkpoints_to_keep),
        failure_config=FailureConfig(max_failures=cfg.trainer.max_failures),
        callbacks=callbacks,
    )
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"trainer": cfg.trainer, "task": cfg.data.task.value, "spec": spec,
                           "init_weights": init_weights},
        scaling_config=scaling_config(cfg),
        run_config=run_config,
        datasets=datasets,
    )
