"""What the drift monitor is built from: ``MonitorConfig``, the sections it reads and nothing else.

The monitor actor used to receive the whole config tree and re-validate all of it (``demo``, ``tune``,
``trainer``, ``tracking``...), none of which it reads. It gets:

- ``drift`` (windows, detectors, alarm, retrain policy), ``data`` (the schema of the rows it tests and
  the retrain sets it writes) and ``storage`` (where its live rows, labels, events and state live);
- ``promotion`` (the alias it watches and moves, the roll-out mode) and ``serve`` (the application it
  re-points after a promotion, and a canary's routing), because it rolls the new model out itself;
- ``cluster`` (the Jobs API address and token), because it submits the retrain job itself.

Sections share their names with ``FoundryConfig``'s, so code that an offline command also runs (replay,
maintenance) takes either. ``monitor_config`` builds it; the actor rebuilds it with ``from_container``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from foundry.config import (
    ClusterConfig,
    DataConfig,
    DriftConfig,
    FoundryConfig,
    PromotionConfig,
    ServeConfig,
    StorageConfig,
)
from foundry.config.common import check_model_name
from foundry.config.loading import part_from_container, to_container


@dataclass
class MonitorConfig:
    model_name: str = MISSING
    data: DataConfig = field(default_factory=DataConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    promotion: PromotionConfig = field(default_factory=PromotionConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)

    def validate(self) -> MonitorConfig:
        """Check what this holds (and only that); raises ConfigError naming the key in the full config."""
        check_model_name(self.model_name)
        self.storage.validate()
        self.data.validate()
        self.serve.validate()
        self.cluster.validate()
        self.promotion.validate()
        self.drift.validate(self.data.task)
        return self

    def to_container(self) -> dict[str, Any]:
        """Plain JSON-able data (enums as strings): what travels to the actor."""
        return to_container(self)

    @classmethod
    def from_container(cls, data: dict[str, Any]) -> MonitorConfig:
        """The inverse of ``to_container``, type-checked (an unknown key names itself) and validated."""
        return part_from_container(cls, data)


def monitor_config(cfg: FoundryConfig) -> MonitorConfig:
    """The sections of the whole config that the monitor reads (see the module doc)."""
    return MonitorConfig(model_name=cfg.model_name, data=cfg.data, storage=cfg.storage, drift=cfg.drift,
                         promotion=cfg.promotion, serve=cfg.serve, cluster=cfg.cluster)


# What code shared by the monitor and the offline commands (replay, maintenance, the pipeline's preflight)
# takes: either object has every section it reads, under the same names.
MonitorSections = MonitorConfig | FoundryConfig
