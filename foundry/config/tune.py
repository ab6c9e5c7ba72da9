"""The ``tune`` section (``conf/tune/``): the Ray Tune search over ``model`` and ``trainer`` keys, and ASHA."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from foundry.config.common import MISSING, bounded, check_bounds, require
from foundry.config.model import ModelConfig
from foundry.config.trainer import TrainerConfig

TUNABLE_SECTIONS = {"model": ModelConfig, "trainer": TrainerConfig}
# Trainer keys that are not hyperparameters of the search.
_UNTUNABLE_TRAINER_KEYS = {"num_workers", "use_gpu", "cpus_per_worker", "gpus_per_worker", "max_failures",
                           "checkpoints_to_keep", "checkpoint_every_s", "in_memory_max_mb", "controller_poll_s",
                           "placement_group_cleaner", "preemption_watcher"}
_TUNE_METRICS = ("best_val_loss", "val_loss", "train_loss")


class SearchKind(str, Enum):
    choice = "choice"  # one of ``values``, sampled
    grid = "grid"  # every one of ``values`` (multiplies num_samples)
    uniform = "uniform"  # a float in [low, high]
    loguniform = "loguniform"  # a float in [low, high], uniform in log space (learning rates)
    randint = "randint"  # an int in [low, high)


@dataclass
class SearchDimension:
    kind: SearchKind = MISSING
    values: list[Any] | None = None  # choice/grid: the candidates (lists allowed, e.g. hidden_sizes)
    low: float | None = None
    high: float | None = None

    def validate(self, name: str) -> None:
        if self.kind in (SearchKind.choice, SearchKind.grid):
            require(bool(self.values), name, f"{self.kind.value} needs a non-empty values list")
        else:
            require(self.low is not None and self.high is not None and self.low < self.high, name,
                    f"{self.kind.value} needs low < high, got low={self.low} high={self.high}")
            require(self.kind is not SearchKind.loguniform or self.low > 0, name, "loguniform needs low > 0")


@dataclass
class AshaSchedulerConfig:
    max_t: int | None = bounded(None, ge=1)  # epochs a trial may reach (null: trainer.epochs)
    grace_period: int = 1  # epochs every trial gets before it can be stopped
    reduction_factor: float = bounded(2.0, gt=1)  # 1/reduction_factor of the trials go on at each rung


@dataclass
class TuneSpaceConfig:
    """What a trial may change: the model and the optimiser, never the data, storage or cluster."""

    model: dict[str, SearchDimension] = field(default_factory=dict)  # key of ModelConfig -> dimension
    trainer: dict[str, SearchDimension] = field(default_factory=dict)  # key of TrainerConfig -> dimension


@dataclass
class TuneConfig:
    enabled: bool = False
    num_samples: int = bounded(4, ge=1)  # trials (times every grid value)
    max_concurrent_trials: int = bounded(2, ge=1)  # Train runs in flight at once (each takes trial_num_workers workers)
    trial_num_workers: int | None = bounded(None, ge=1)  # Ray Train workers per trial (null: trainer.num_workers)
    trial_driver_cpus: float = 0.01  # CPUs of each trial's driver (it only launches and watches the Train run)
    metric: str = "best_val_loss"  # reported by the training loop every epoch
    mode: str = "min"
    seed: int = 0
    scheduler: AshaSchedulerConfig = field(default_factory=AshaSchedulerConfig)
    space: TuneSpaceConfig = field(default_factory=TuneSpaceConfig)

    def validate(self, trainer: TrainerConfig) -> None:
        """``trainer``: ``scheduler.max_t`` falls back to ``trainer.epochs``."""
        if not self.enabled:
            return
        check_bounds(self, "tune")
        check_bounds(self.scheduler, "tune.scheduler")
        require(self.trial_driver_cpus > 0, "tune.trial_driver_cpus",
                "must be > 0 (Ray Tune cannot place a trial that asks for nothing; a token 0.01 is enough)")
        require(self.metric in _TUNE_METRICS, "tune.metric", f"unknown metric {self.metric!r} (known: {', '.join(_TUNE_METRICS)})")
        require(self.mode in ("min", "max"), "tune.mode", f"must be min or max, got {self.mode!r}")
        a = self.scheduler
        max_t = a.max_t if a.max_t is not None else trainer.epochs  # trainer.epochs >= 1 (checked by trainer)
        require(1 <= a.grace_period <= max_t, "tune.scheduler.grace_period", f"must be in [1, max_t={max_t}]")
        require(bool(self.space.model or self.space.trainer), "tune.space",
                "is empty: name at least one model.* or trainer.* key to search")
        for section in TUNABLE_SECTIONS:
            dims = getattr(self.space, section)
            known = set(TUNABLE_SECTIONS[section].__dataclass_fields__)
            for key, dim in dims.items():
                name = f"tune.space.{section}.{key}"
                require(key in known, name, f"{section} has no key {key!r}")
                require(not (section == "trainer" and key in _UNTUNABLE_TRAINER_KEYS), name,
                        "is a resource/fault-tolerance setting, not a hyperparameter (set tune.trial_num_workers instead)")
                dim.validate(name)
