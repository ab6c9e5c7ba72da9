"""The ``trainer`` section (``conf/trainer/``): Ray Train's workers, the optimiser, checkpoints, AMP."""

from __future__ import annotations

from dataclasses import dataclass

from foundry.config.common import bounded, check_bounds, require


@dataclass
class TrainerConfig:
    # 1: on CPU a second worker pays only past a crossover (benchmarks/README.md, "Training"); set it per job.
    num_workers: int = bounded(1, ge=1)
    use_gpu: bool = False
    cpus_per_worker: float = bounded(1.0, gt=0)
    gpus_per_worker: float = bounded(1.0, gt=0)
    epochs: int = bounded(20, ge=1)
    batch_size: int = bounded(512, ge=1)
    optimizer: str = "adamw"
    lr: float = bounded(1e-3, gt=0)
    weight_decay: float = bounded(1e-4, ge=0)
    early_stopping_patience: int = bounded(3, ge=1)
    early_stopping_min_delta: float = 1e-4
    max_failures: int = 2
    checkpoints_to_keep: int = bounded(2, ge=1)
    # Multi-worker runs: 1 = DDP (gradients all-reduced every step); k > 1 = local SGD, each worker steps on
    # its own gradients and the weights are averaged every k steps and at each epoch's end
    # (foundry/train/sync.py). Ignored with one worker.
    average_every_steps: int = bounded(1, ge=1)
    # A checkpoint at the end of an epoch once this many seconds have passed since the last one, and always
    # after the last epoch (0: every epoch). What a worker failure can cost; see foundry/train/loop.py.
    checkpoint_every_s: float = bounded(10.0, ge=0)
    # A split whose share per worker is at most this many MiB (of the object store's bytes) is held by each
    # worker as tensors, not streamed through Ray Data (0: always stream); see foundry/train/shards.py.
    in_memory_max_mb: float = bounded(512.0, ge=0)
    # How often Ray Train's controller polls its workers (RAY_TRAIN_HEALTH_CHECK_INTERVAL_S, Ray's default 2 s):
    # it takes each report then, and notices the end of the run then; see foundry/train/trainer.py.
    controller_poll_s: float = bounded(0.2, gt=0)
    # Ray Train's PlacementGroupCleaner: one more detached process per fit() that removes the run's placement
    # group if the controller dies while its job lives on. A Tune trial always gets it (a sweep's job outlives
    # a failed trial); a single fit() ends its job, which frees the group. See foundry/train/torch_trainer.py.
    placement_group_cleaner: bool = False
    # Ray Train's PreemptionWatcher: one more process per fit() that polls for node drains so the workers
    # hear of a spot node's preemption before it goes. Nothing in the training loop acts on that notice;
    # a preempted worker is retried either way. Worth it on spot GPU nodes (conf/trainer/gpu.yaml).
    preemption_watcher: bool = False
    amp: bool = True
    seed: int = 0
    # Start from a registered version's preprocessor and weights ("MODEL@VERSION" or "MODEL@ALIAS"):
    # a retrain then refines what the champion knows instead of relearning it from the recent rows alone.
    warm_start_from: str | None = None

    def validate(self) -> None:
        check_bounds(self, "trainer")
        require(self.optimizer in ("adam", "adamw", "sgd"), "trainer.optimizer",
                f"unknown optimizer {self.optimizer!r} (known: adam, adamw, sgd)")
        require(self.max_failures >= -1, "trainer.max_failures", "must be >= 0 (or -1 for unlimited)")
