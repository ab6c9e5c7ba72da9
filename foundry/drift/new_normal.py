"""Accepting a drift as the new normal: the detectors re-based on recent live rows, same model.

Why: when retraining cannot heal a drift (every challenger lost, or drift keeps starting episodes),
testing live traffic against the old reference would flag the same drift forever, and an alarm that
nothing answers hides the next, different one. So the monitor keeps the production model and makes
what it now sees the reference: the detector suite is rebuilt (``build_suite``) on the production
version's model files plus recent labelled live rows as ``reference.parquet``. The rows carry their
label, so the concept detector's reference error rate is the model's error on the new normal.

Storage: the reference rows only, under ``<storage.monitoring>/<model>/new_normal/``, never in the
registry (the production version is unchanged). The suite is rebuilt from them (seconds) when a
monitor restarts rather than stored. The version's own stored detectors (``DETECTOR_FILES``, see
``foundry.drift.detectors``) are not copied into the rebuild's directory: they belong to the old reference.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd

from foundry import storage
from foundry.config import DriftConfig
from foundry.drift import retrain
from foundry.drift.detectors import DETECTOR_FILES, DetectorSuite, build_suite
from foundry.drift.monitor_config import MonitorSections
from foundry.registry import MANIFEST
from foundry.storage.layout import StorageLayout


def reference_uri(storage_root: str, model: str, name: str) -> str:
    return StorageLayout(storage_root).new_normal(model, name)


def min_rows(drift: DriftConfig) -> int:
    """Rows a new-normal reference needs: a window's worth (capped by what a retrain needs)."""
    return max(50, min(drift.window.size, drift.retrain.min_labelled_rows))


def recent_rows(cfg: MonitorSections, since: float | None) -> pd.DataFrame:
    """The newest labelled live rows since the drift's onset: features and the label column."""
    rows = retrain.labelled_live_rows(cfg, since)
    if rows.empty:
        return rows
    return rows[[f.name for f in cfg.data.features] + [cfg.data.label]].reset_index(drop=True)


def write_reference(cfg: MonitorSections, name: str, frame: pd.DataFrame) -> str:
    uri = reference_uri(cfg.storage.root, cfg.model_name, name)
    fs, path = storage.resolve(uri)
    storage.write_table_atomic(fs, path, frame)
    return uri


def read_reference(uri: str) -> pd.DataFrame:
    fs, path = storage.resolve(uri)
    return pd.read_parquet(io.BytesIO(storage.read_bytes(fs, path)))


def build(drift: DriftConfig, version_dir: str | Path, version: str, uri: str, say) -> DetectorSuite:
    """The detector suite of ``version``'s model (``version_dir``, verified by the registry) on the
    new-normal reference at ``uri``."""
    from foundry.models.predictor import REFERENCE_FILE  # torch: only where a suite is built

    reference = read_reference(uri)
    with tempfile.TemporaryDirectory(prefix="foundry-new-normal-") as tmp:
        for f in Path(version_dir).iterdir():
            if f.is_file() and f.name not in (REFERENCE_FILE, *DETECTOR_FILES, MANIFEST):
                try:
                    os.symlink(f.resolve(), Path(tmp) / f.name)
                except OSError:
                    shutil.copy2(f, Path(tmp) / f.name)
        reference.to_parquet(Path(tmp) / REFERENCE_FILE, index=False)
        return build_suite(drift.detectors, tmp, version, say)


__all__ = ["build", "min_rows", "read_reference", "recent_rows", "reference_uri", "write_reference"]
