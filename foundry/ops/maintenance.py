"""Keep a model's storage bounded for weeks: compact the append-heavy tables, expire old data.

What ``maintain`` does for one model (``storage.tables`` and ``storage.retention`` say how much):
- **compacts** live rows, labels, events and the label ledger (``HourlyTable.compact``: the files of
  each hour partition older than ``compact_after_s`` become one);
- **expires** their hour partitions older than ``*_days``;
- **collects** retrain data sets, checkpoint folders of this model's training runs, and registry
  versions that lost the promotion gate, once older than their setting. A version is never collected
  while an alias points at it, if any alias ever pointed at it in the retained alias history, or if it
  is the model's newest version.

The drift monitor runs it every ``storage.tables.maintain_every_s`` in a thread of its own (a round
never waits for it); ``python -m foundry.ops.maintenance`` runs it once, e.g. from a cron job when no
monitor runs.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pyarrow.fs as pafs

from foundry import storage
from foundry.config import StorageConfig
from foundry.drift.monitor_config import MonitorSections

log = logging.getLogger(__name__)
DAY_S = 86_400.0


def _tables(storage_root: str, model: str) -> dict[str, tuple[Any, str]]:
    """name -> (table, retention key)."""
    from foundry.drift.events import events_table
    from foundry.drift.live_store import LiveStore
    from foundry.serving.feedback import feedback_table
    from foundry.serving.ledger import ledger_uri
    from foundry.storage.tables import HourlyTable

    return {"live": (LiveStore(storage_root, model).table, "live_days"),
            "feedback": (feedback_table(storage_root, model), "feedback_days"),
            "events": (events_table(storage_root, model), "events_days"),
            "ledger": (HourlyTable(ledger_uri(storage_root, model), "answered_at"), "ledger_days")}


def _older(fs: pafs.FileSystem, path: str, cutoff_s: float) -> bool:
    """True when the newest file under ``path`` (or ``path`` itself) is older than ``cutoff_s``."""
    infos = [fs.get_file_info(path)]
    if infos[0].type == pafs.FileType.Directory:
        infos += fs.get_file_info(pafs.FileSelector(path, recursive=True))
    stamps = [i.mtime.timestamp() for i in infos if i.mtime is not None]
    return bool(stamps) and max(stamps) < cutoff_s


def _collect(fs: pafs.FileSystem, base: str, prefix: str, cutoff_s: float) -> list[str]:
    """Delete entries of ``base`` named ``prefix...`` whose newest file is older than ``cutoff_s``."""
    if not storage.exists(fs, base):
        return []
    removed = []
    for info in fs.get_file_info(pafs.FileSelector(base)):
        if not info.base_name.startswith(prefix) or not _older(fs, info.path, cutoff_s):
            continue
        if info.type == pafs.FileType.Directory:
            fs.delete_dir(info.path)
        else:
            fs.delete_file(info.path)
        removed.append(info.base_name)
    return removed


def collect_rejected_versions(storage_cfg: StorageConfig, model: str, now: float) -> list[str]:
    """Versions that lost the gate, older than ``rejected_versions_days``, that no alias points or pointed at."""
    days = storage_cfg.retention.rejected_versions_days
    if not days:
        return []
    registry = storage_cfg.layout.open_registry()
    if model not in registry.models():
        return []
    versions = registry.versions(model)
    named = {r.get("version") for r in registry.aliases(model).values()}
    named |= {e.get("version") for e in registry.alias_history(model)} | {e.get("previous")
                                                                        for e in registry.alias_history(model)}
    newest = max((v.version for v in versions), default=None)
    cutoff = datetime.fromtimestamp(now - days * DAY_S, timezone.utc)
    removed = []
    for v in versions:
        promoted = (v.metadata.get("promotion") or {}).get("promoted", True)
        if promoted or v.version in named or v.version == newest:
            continue
        if datetime.fromisoformat(v.created_at) >= cutoff:
            continue
        registry.delete_version(model, v.version)
        removed.append(v.version)
    return removed


RECENT = timedelta(days=2)  # what a routine pass compacts: older hours were merged by an earlier pass


def maintain(cfg: MonitorSections, now: float | None = None, full: bool = True) -> dict[str, Any]:
    """One pass for ``cfg.model_name``; returns what it did (per table: files merged, hours expired).

    ``full=False`` (the monitor's routine passes after its first) compacts only the last ``RECENT`` hours,
    so a pass does not list every hour folder of the retention each time."""
    now = time.time() if now is None else now
    at = datetime.fromtimestamp(now, timezone.utc)
    st, model = cfg.storage, cfg.model_name
    report: dict[str, Any] = {"at": at.isoformat(timespec="seconds")}
    min_age = timedelta(seconds=st.tables.compact_after_s)
    for name, (table, retention_key) in _tables(st.root, model).items():
        days = getattr(st.retention, retention_key)
        expired = table.expire(timedelta(days=days), at) if days else 0
        compacted = table.compact(min_age, at, since=None if full else at - RECENT)
        report[name] = {"files_merged": compacted.files_merged, "partitions_compacted": compacted.partitions,
                        "hours_expired": expired}
    if st.retention.retrain_sets_days:
        fs, retrain_sets = storage.resolve(st.layout.retrain_sets(model))
        report["retrain_sets"] = _collect(fs, retrain_sets, "", now - st.retention.retrain_sets_days * DAY_S)
    if st.retention.checkpoints_days:
        cfs, checkpoints = storage.resolve(st.layout.checkpoints)
        report["checkpoints"] = _collect(cfs, checkpoints, f"{model}-", now - st.retention.checkpoints_days * DAY_S)
    report["versions"] = collect_rejected_versions(st, model, now)
    return report


def removed_anything(report: dict[str, Any]) -> bool:
    return any(isinstance(v, dict) and v.get("hours_expired") for v in report.values()) or any(
        report.get(k) for k in ("retrain_sets", "checkpoints", "versions"))


class Maintenance:
    """The monitor's timer: ``maybe_run`` starts a pass in a daemon thread when one is due and none runs."""

    def __init__(self, cfg: MonitorSections, say):
        self.cfg = cfg
        self.say = say
        self.every_s = cfg.storage.tables.maintain_every_s
        self.last: dict[str, Any] | None = None
        self._next = 0.0
        self._thread: threading.Thread | None = None
        self._full = True  # the first pass after a (re)start looks at every hour

    def maybe_run(self, now: float) -> bool:
        if not self.every_s or now < self._next or (self._thread and self._thread.is_alive()):
            return False
        self._next = now + self.every_s
        self._thread = threading.Thread(target=self._run, name="foundry-maintenance", daemon=True)
        self._thread.start()
        return True

    def _run(self) -> None:
        try:
            report = maintain(self.cfg, full=self._full)
            self._full = False
        except Exception as exc:  # storage trouble: tried again at the next interval
            log.warning("storage maintenance failed: %s: %s", type(exc).__name__, exc)
            self.last = {"error": f"{type(exc).__name__}: {exc}"[:500]}
            return
        self.last = report
        if removed_anything(report):
            self.say("maintained", "storage retention applied: " + ", ".join(
                f"{k}: {v['hours_expired']} hours" if isinstance(v, dict) else f"{k}: {len(v)}"
                for k, v in report.items() if (isinstance(v, dict) and v.get("hours_expired"))
                or (isinstance(v, list) and v)), report=report)

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)


def main(argv: list[str] | None = None) -> int:
    """``python -m foundry.ops.maintenance [overrides]``: one maintenance pass for ``model_name``."""
    import json

    from foundry.config import sources as config_sources
    from foundry.console.entry import run_or_exit

    args = config_sources.parser("python -m foundry.ops.maintenance",
                                 "Compact and expire one model's stores (storage.tables, storage.retention).").parse_args(argv)
    cfg = run_or_exit(lambda: config_sources.load(config_sources.from_args(args)))
    print(json.dumps(run_or_exit(lambda: maintain(cfg)), indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
