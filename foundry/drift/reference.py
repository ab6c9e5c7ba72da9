"""What the monitor tests live traffic against: one version's detectors, predictor and reference sample.

``load`` does the slow part of every re-base (a registry fetch with its checksums, loading (as data) or
building the detector suite, reading the reference sample) and returns it whole, so the monitor can
run it without its lock and swap the result in at once: a failed load leaves the old reference as it
was. ``baseline`` is the new-normal reference in use after giving up (``foundry.drift.new_normal``):
the same model files, detectors rebuilt on recent labelled live rows. ``stored_rows`` reads back the
live rows a reference tests (after a restart or a re-base), also without the lock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import pandas as pd

from foundry.config import AlarmMethod, StorageConfig
from foundry.drift import new_normal, retrain
from foundry.drift.detectors import DetectorSuite, load_or_build
from foundry.drift.live_store import LiveStore
from foundry.drift.monitor_config import MonitorSections
from foundry.drift.windows import Encoded, encode

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reference:
    version: str
    suite: DetectorSuite
    predictor: Any  # foundry.models.predictor.Predictor: encodes stored rows (restore) like Serve did
    sample: pd.DataFrame | None  # the version's reference rows (a retrain may train on them too)
    baseline: dict[str, Any] | None = None  # the new normal the suite was built on, if any
    alarm: Any = None  # foundry.drift.alarm.SequentialAlarm (drift.alarm.method=sequential), fitted on the same rows


def registry(storage: StorageConfig):
    return storage.layout.open_registry()


def served_version(cfg: MonitorSections) -> str:
    """What Serve serves now (its pinned user_config), else the promotion alias's version."""
    try:
        from foundry.serving.control import current_user_config

        version = current_user_config(cfg.serve.app_name).get("version")
        if version:
            return version
    except Exception as exc:  # Serve not running, or the app not deployed yet
        log.info("no deployed Serve application %s (%s); using the %s alias", cfg.serve.app_name, exc,
                 cfg.promotion.alias)
    return registry(cfg.storage).get(cfg.model_name, cfg.promotion.alias).version


def load(cfg: MonitorSections, version: str, baseline: dict[str, Any] | None = None) -> Reference:
    """``version`` against its registry reference, or (``baseline``) against a new normal; raises on
    anything missing or failing its checksum."""
    from foundry.models.predictor import Predictor

    path = registry(cfg.storage).fetch(cfg.model_name, version)  # every file checked against the manifest
    if baseline is not None:
        suite = new_normal.build(cfg.drift, path, version, baseline["uri"], say=log.info)
    else:
        suite = load_or_build(cfg.drift.detectors, path, version, say=log.info)
    predictor = Predictor.from_dir(path)
    sample = retrain.reference_frame(path)
    alarm = None
    if cfg.drift.alarm.method is AlarmMethod.sequential:
        from foundry.drift.alarm import SequentialAlarm

        rows = new_normal.read_reference(baseline["uri"]) if baseline is not None else sample
        alarm = SequentialAlarm.fit(cfg.drift.alarm, predictor, rows)
    return Reference(version, suite, predictor, sample, baseline, alarm)


def stored_rows(cfg: MonitorSections, live: LiveStore, version: str, baseline: dict[str, Any] | None, predictor
                ) -> tuple[pd.DataFrame, Encoded | None, pd.DataFrame | None]:
    """The newest stored live rows ``version`` served (at most ``retain_rows``), encoded by its
    ``predictor`` for the windows, and the labels stored since the oldest of them (None, None without rows)."""
    after = pd.Timestamp(baseline["at"], unit="s", tz="UTC") if baseline else None

    def keep(f: pd.DataFrame) -> pd.DataFrame:
        # Only rows the reference version served (older ones belong to the world before the last
        # re-base), and after a new normal only rows received since (the earlier ones are its reference).
        mask = f["model_version"] == version
        if after is not None:
            mask &= f["received_at"] >= after
        return f[mask]

    recent = live.read_recent(cfg.drift.monitor.retain_rows, where=keep)
    if recent.empty:
        return recent, None, None
    from foundry.serving.feedback import read_feedback

    # Labels come after their rows: those received since the oldest row read are all that can match.
    since = pd.Timestamp(recent["received_at"].min()).floor("ms").to_pydatetime()
    return recent, encode(recent, predictor), read_feedback(cfg.storage.root, cfg.model_name, since=since)


__all__ = ["Reference", "load", "registry", "served_version", "stored_rows"]
