"""The ``trainer`` section (``conf/trainer/``): Ray Train's workers, the optimiser, checkpoints, AMP."""

from __future__ import annotations

from dataclasses import dataclass

from foundry.config.common import require


@dataclass
class TrainerConfig:
    # 1: on CPU a second worker pays only past a crossover (benchmarks/README.md, "Training"); set it per job.
    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 1.0
    epochs: int = 20
    batch_size: int = 512
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    early_stopping_patience: int = 3
    early_stopping_min_delta: float = 1e-4
    max_failures: int = 2
    checkpoints_to_keep: int = 2
    # A checkpoint at the end of an epoch once this many seconds have passed since the last one, and always
    # after the last epoch (0: every epoch). What a worker failure can cost; see foundry/train/loop.py.
    checkpoint_every_s: float = 10.0
    # A split whose share per worker is at most this many MiB (of the object store's bytes) is held by each
    # worker as tensors, not streamed through Ray Data (0: always stream); see foundry/train/shards.py.
    in_memory_max_mb: float = 512.0
    # How often Ray Train's controller polls its workers (RAY_TRAIN_HEALTH_CHECK_INTERVAL_S, Ray's default 2 s):
    # it takes each report then, and notices the end of the run then; see foundry/train/trainer.py.
    controller_poll_s: float = 0.2
    amp: bool = True
    seed: int = 0
    # Start from a registered version's preprocessor and weights ("MODEL@VERSION" or "MODEL@ALIAS"):
    # a retrain then refines what the champion knows instead of relearning it from the recent rows alone.
    warm_start_from: str | None = None

    def validate(self) -> None:
        require(self.num_workers >= 1, "trainer.num_workers", f"must be >= 1, got {self.num_workers}")
        require(self.cpus_per_worker > 0, "trainer.cpus_per_worker", f"must be > 0, got {self.cpus_per_worker}")
        require(self.gpus_per_worker > 0, "trainer.gpus_per_worker", f"must be > 0, got {self.gpus_per_worker}")
        require(self.epochs >= 1, "trainer.epochs", f"must be >= 1, got {self.epochs}")
        require(self.batch_size >= 1, "trainer.batch_size", f"must be >= 1, got {self.batch_size}")
        require(self.optimizer in ("adam", "adamw", "sgd"), "trainer.optimizer",
                f"unknown optimizer {self.optimizer!r} (known: adam, adamw, sgd)")
        require(self.lr > 0, "trainer.lr", f"must be > 0, got {self.lr}")
        require(self.weight_decay >= 0, "trainer.weight_decay", f"must be >= 0, got {self.weight_decay}")
        require(self.early_stopping_patience >= 1, "trainer.early_stopping_patience", "must be >= 1")
        require(self.max_failures >= -1, "trainer.max_failures", "must be >= 0 (or -1 for unlimited)")
        require(self.checkpoints_to_keep >= 1, "trainer.checkpoints_to_keep", "must be >= 1")
        require(self.checkpoint_every_s >= 0, "trainer.checkpoint_every_s", f"must be >= 0, got {self.checkpoint_every_s}")
        require(self.in_memory_max_mb >= 0, "trainer.in_memory_max_mb", f"must be >= 0, got {self.in_memory_max_mb}")
        require(self.controller_poll_s > 0, "trainer.controller_poll_s", f"must be > 0, got {self.controller_poll_s}")
