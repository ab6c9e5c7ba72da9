"""The ``storage`` section (``conf/storage/``): the root every store lives under, table flushes, retention."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from foundry.config.common import MISSING, bounded, check_bounds, require

if TYPE_CHECKING:
    from foundry.storage.layout import StorageLayout


@dataclass
class StorageTablesConfig:
    """The append-heavy tables (live rows, labels, events; foundry/storage/tables.py): how often they are written
    and merged."""

    live_flush_s: float = bounded(10.0, gt=0, le=600)  # the monitor writes the live rows it took in one file this often
    compact_after_s: float = bounded(300.0, ge=10)  # files older than this are merged, one file per hour partition
    maintain_every_s: float = bounded(300.0, ge=0)  # how often the monitor compacts and expires (0: never; see `foundry.maintain`)

    def validate(self) -> None:
        check_bounds(self, "storage.tables")


@dataclass
class StorageRetentionConfig:
    """How long each store keeps data, in days (0: forever). Enforced by the monitor's maintenance."""

    live_days: float = 30.0
    feedback_days: float = 180.0
    events_days: float = 365.0
    ledger_days: float = 2.0  # answered request ids (the label ledger needs serve.feedback.window_s of them)
    rejected_versions_days: float = 30.0  # versions that lost the gate and no alias ever pointed at
    checkpoints_days: float = 30.0  # training checkpoints of runs that ended
    retrain_sets_days: float = 90.0  # the data sets retrain episodes trained on

    def validate(self) -> None:
        for key, days in vars(self).items():
            require(days >= 0, f"storage.retention.{key}", f"must be >= 0 days (0 keeps forever), got {days}")


@dataclass
class StorageConfig:
    root: str = MISSING
    tables: StorageTablesConfig = field(default_factory=StorageTablesConfig)
    retention: StorageRetentionConfig = field(default_factory=StorageRetentionConfig)

    @property
    def layout(self) -> StorageLayout:
        """Every path under ``root`` (``foundry.storage.layout.StorageLayout``, normalized)."""
        from foundry.storage.layout import StorageLayout

        return StorageLayout(self.root)

    def validate(self) -> None:
        require(bool(self.root), "storage.root", "must not be empty")
        self.tables.validate()
        self.retention.validate()
