"""Where everything lives under ``storage.root``: the one place that turns the root into paths.

Why one object: the registry, the training run folders, the monitor's live rows, labels, events,
state and retrain sets are written by different processes (jobs, Serve replicas, the monitor actor,
cron maintenance) that each get only ``storage.root``. When each rebuilt its own paths, a layout
change in one place silently split the data between two folders. Every path below is exactly what
the platform has always written, so existing data stays readable::

    <root>/registry/                                   model versions and aliases (foundry.registry)
    <root>/checkpoints/<run>/                          Ray Train / Tune run folders
    <root>/datasets/                                   generated demo data sets
    <root>/feedback/<model>/date=.../hour=.../         labels from POST /feedback (an HourlyTable)
    <root>/monitoring/<model>/live/...                 live rows the drift monitor saw (an HourlyTable)
    <root>/monitoring/<model>/events/...               the monitor's event log (an HourlyTable)
    <root>/monitoring/<model>/ledger/...               the label ledger (an HourlyTable)
    <root>/monitoring/<model>/state.json               the monitor's state (atomically rewritten)
    <root>/monitoring/<model>/retrain/<episode>-d<n>.parquet    a drift episode's training set
    <root>/monitoring/<model>/new_normal/<name>.parquet         a new-normal reference

Every path is normalized (``foundry.storage.normalize``: local paths absolute, URIs without a
trailing slash), because Ray workers and jobs run in other working directories. Paths are computed
when asked, not when the layout is built, exactly as the per-module helpers did.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from foundry import storage

if TYPE_CHECKING:
    from foundry.registry import Registry

MONITOR_STATE_FILE = "state.json"


@dataclass(frozen=True)
class StorageLayout:
    """The paths under one storage root (``storage.root`` as configured: a local path or a URI)."""

    configured_root: str

    @classmethod
    def of(cls, storage_section) -> StorageLayout:
        """From the config's ``storage`` section (anything with a ``root``)."""
        return cls(storage_section.root)

    def _area(self, name: str) -> str:
        # Normalized as a whole (not root, then joined) so a symlinked area folder resolves as before.
        return storage.normalize(f"{self.configured_root.rstrip('/')}/{name}")

    # ---- the root and its areas --------------------------------------------------------------------
    @property
    def root(self) -> str:
        return storage.normalize(self.configured_root)

    @property
    def registry(self) -> str:
        return self._area("registry")

    @property
    def checkpoints(self) -> str:
        return self._area("checkpoints")

    @property
    def datasets(self) -> str:
        return self._area("datasets")

    @property
    def feedback(self) -> str:
        return self._area("feedback")

    @property
    def monitoring(self) -> str:
        return self._area("monitoring")

    # ---- one model's data --------------------------------------------------------------------------
    def model_feedback(self, model: str) -> str:
        """Labels from ``POST /feedback`` (an ``HourlyTable``)."""
        return storage.join(self.feedback, model)

    def model_monitoring(self, model: str) -> str:
        """Everything the drift monitor keeps for ``model``."""
        return storage.join(self.monitoring, model)

    def live_rows(self, model: str) -> str:
        return storage.join(self.monitoring, model, "live")

    def events(self, model: str) -> str:
        return storage.join(self.monitoring, model, "events")

    def ledger(self, model: str) -> str:
        return storage.join(self.monitoring, model, "ledger")

    def monitor_state(self, model: str) -> str:
        return storage.join(self.monitoring, model, MONITOR_STATE_FILE)

    def retrain_sets(self, model: str) -> str:
        """The folder of a model's retrain data sets (collected by ``foundry.ops.maintenance``)."""
        return storage.join(self.monitoring, model, "retrain")

    def retrain_set(self, model: str, episode: str, generation: int = 1) -> str:
        return storage.join(self.monitoring, model, "retrain", f"{episode}-d{generation}.parquet")

    def new_normal(self, model: str, name: str) -> str:
        return storage.join(self.monitoring, model, "new_normal", f"{name}.parquet")

    # ---- the registry ------------------------------------------------------------------------------
    def open_registry(self) -> Registry:
        """The one way to open the model registry of this root (jobs, replicas, monitor, CLIs)."""
        from foundry.registry import Registry

        return Registry(self.registry)


__all__ = ["MONITOR_STATE_FILE", "StorageLayout"]
