"""The history of a model's self-healing: one JSON file per decision, partitioned by day.

Layout: ``<storage.monitoring>/<model>/events/date=YYYY-MM-DD/<UTC time>-<seq>-<kind>.json``. One
file per event (written atomically) because object stores cannot append and two writers (a
restarted monitor and its predecessor's late call) must never corrupt a shared file. Names sort by
time, so reading the history back is a listing plus one read per file.

Kinds: monitor_started, drift_detected, retrain_submitted, retrain_waiting, retrain_skipped,
retrain_finished, retrain_failed, retrain_retry_scheduled, retrain_status_unknown, retries_exhausted,
promoted, rejected, gave_up, rolled_out, rollout_failed, rebased (reason: served_version_changed or
new_normal), rebase_failed.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
from datetime import datetime, timezone
from typing import Any

import pyarrow.fs as pafs

from foundry import storage
from foundry.config import StorageConfig

log = logging.getLogger(__name__)
_SEQ = itertools.count()
_EPISODE_NUMBER = re.compile(r"-e(\d+)$")


def events_uri(storage_root: str, model: str) -> str:
    return storage.join(storage.normalize(StorageConfig(root=storage_root).monitoring), model, "events")


def iso(ts: float) -> str:
    """Epoch seconds as events write times (UTC, milliseconds)."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


class EventLog:
    def __init__(self, storage_root: str, model: str, clock=lambda: datetime.now(timezone.utc)):
        self.model = model
        self.fs, self.base = storage.resolve(events_uri(storage_root, model))
        self.clock = clock

    def write(self, kind: str, message: str, **fields: Any) -> dict[str, Any]:
        """Persist one event (and log it); returns the record. Secrets never go in here."""
        at = self.clock()
        record = {"at": at.isoformat(timespec="milliseconds"), "model": self.model, "kind": kind,
                  "message": message, **fields}
        name = f"{at:%H%M%S%f}-{next(_SEQ):06d}-{kind}.json"
        path = storage.join(self.base, f"date={at:%Y-%m-%d}", name)
        storage.write_bytes_atomic(self.fs, path, json.dumps(record, default=str).encode())
        log.info("event %s %s: %s", self.model, kind, message)
        return record


def read_events(storage_root: str, model: str, kinds: set[str] | None = None,
                since: datetime | None = None) -> list[dict[str, Any]]:
    """Every stored event of ``model`` in time order (optionally only ``kinds``, at or after ``since``)."""
    fs, base = storage.resolve(events_uri(storage_root, model))
    if fs.get_file_info(base).type == pafs.FileType.NotFound:
        return []
    files = [f for f in fs.get_file_info(pafs.FileSelector(base, recursive=True))
             if f.type == pafs.FileType.File and f.base_name.endswith(".json") and not f.base_name.startswith(".")]
    if kinds:
        files = [f for f in files if f.base_name[:-5].split("-", 2)[-1] in kinds]
    out = []
    # By name (UTC time to the microsecond, then a sequence number): "at" has only milliseconds, and a
    # listing comes in no particular order, so events written within one millisecond need this order.
    for f in sorted(files, key=lambda f: f.path):
        try:
            record = json.loads(storage.read_bytes(fs, f.path))
        except (OSError, ValueError) as exc:
            log.warning("skipping unreadable event file %s: %s", f.path, exc)
            continue
        if since is not None and datetime.fromisoformat(record["at"]) < since:
            continue
        out.append(record)
    return sorted(out, key=lambda r: r["at"])


def last_episode_number(storage_root: str, model: str) -> int:
    """The highest episode number (``...-e<n>``) any stored event names: episode numbers never go back,
    even when the monitor's state file was lost."""
    episodes = (e.get("episode") or "" for e in read_events(storage_root, model))
    return max((episode_number(ep) for ep in episodes), default=0)


def episode_number(episode: str | None) -> int:
    """The ``n`` of an episode id ``<model>-<version>-e<n>`` (0 for anything else)."""
    m = _EPISODE_NUMBER.search(episode or "")
    return int(m.group(1)) if m else 0
