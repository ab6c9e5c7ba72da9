"""What a Serve replica is built from: ``ReplicaConfig``, the few settings it reads and nothing else.

Serve restarts every replica when an application's ``args`` change, so the args hold only what a
replica uses: the ``data`` schema, the ``serve`` section (without ``serve.model_ref``: the model travels
in ``user_config``, which Serve applies by ``reconfigure()``), the model's name, the storage root (the
label ledger's), where the model's drift monitor lives (the sink, the ledger and /model's roll-out
evidence) and the sink's settings, or None with ``drift.enabled=false``. An edit to any other section
(``demo``, ``trainer``, ``tune``, most of ``drift``...) leaves the args, and so the replicas, alone.
``foundry.serving.deploy_config.replica_config`` builds it from the whole config; ``serve_apps.app``
rebuilds it on every replica with ``from_container``, checked by ``validate`` (only what it holds).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from foundry.config import DataConfig, DriftSinkConfig, ServeConfig
from foundry.config.common import check_model_name, require
from foundry.config.loading import part_from_container, to_container


@dataclass
class ReplicaConfig:
    model_name: str = MISSING
    storage_root: str = MISSING  # as configured (``storage.root``): the label ledger's actor name is derived from it
    monitor_name: str = MISSING  # the model's drift monitor actor (``foundry.drift.monitor_name``)
    monitor_namespace: str = MISSING  # the monitor's and the label ledger's Ray namespace (``drift.monitor.namespace``)
    sink: DriftSinkConfig | None = None  # ``drift.sink``; None: drift is off, replicas send no live rows
    data: DataConfig = field(default_factory=DataConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)

    def validate(self) -> ReplicaConfig:
        """Check what this holds (and only that); raises ConfigError naming the key in the full config."""
        check_model_name(self.model_name)
        require(bool(self.storage_root), "storage.root", "must not be empty")
        require(bool(self.monitor_name), "drift.monitor.name_prefix", "the monitor's name must not be empty")
        require(bool(self.monitor_namespace), "drift.monitor.namespace", "must not be empty")
        if self.sink is not None:
            self.sink.validate()
        self.data.validate()
        self.serve.validate()
        return self

    def to_container(self) -> dict[str, Any]:
        """Plain JSON-able data (enums as strings) for the application's ``args``, without
        ``serve.model_ref`` (see the module doc)."""
        data = to_container(self)
        data["serve"].pop("model_ref", None)
        return data

    @classmethod
    def from_container(cls, data: dict[str, Any]) -> ReplicaConfig:
        """The inverse of ``to_container``, type-checked (an unknown key names itself) and validated."""
        return part_from_container(cls, data)
