"""The history of a model's self-healing: one record per decision, in an ``HourlyTable``.

Layout: ``<storage.monitoring>/<model>/events/date=YYYY-MM-DD/hour=HH/...`` (``foundry.storage.tables``):
one small Parquet file per event when it is written (events are rare: a few per episode; object
stores cannot append, and two writers, a restarted monitor and its predecessor's late call, must
never share a file), merged into one file per hour by the monitor's maintenance and dropped after
``storage.retention.events_days``. Columns: ``at`` (UTC, microseconds), ``seq`` (orders events of
one microsecond), ``kind`` and ``record`` (the event as JSON text: data, never code).

Kinds: monitor_started, drift_detected, retrain_submitted, retrain_waiting, retrain_skipped,
retrain_finished, retrain_failed, retrain_retry_scheduled, retrain_status_unknown, retries_exhausted,
promoted, rejected, gave_up, rolled_out, rollout_failed, rebased (reason: served_version_changed or
new_normal), rebase_failed, maintained.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from foundry.storage.layout import StorageLayout
from foundry.storage.tables import HourlyTable

log = logging.getLogger(__name__)
_SEQ = itertools.count()
_EPISODE_NUMBER = re.compile(r"-e(\d+)$")


def events_uri(storage_root: str, model: str) -> str:
    return StorageLayout(storage_root).events(model)


def events_table(storage_root: str, model: str) -> HourlyTable:
    return HourlyTable(events_uri(storage_root, model), "at")


def iso(ts: float) -> str:
    """Epoch seconds as events write times (UTC, milliseconds)."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds")


class EventLog:
    def __init__(self, storage_root: str, model: str, clock=lambda: datetime.now(timezone.utc)):
        self.model = model
        self.table = events_table(storage_root, model)
        self.clock = clock

    def write(self, kind: str, message: str, **fields: Any) -> dict[str, Any]:
        """Persist one event (and log it); returns the record. Secrets never go in here."""
        at = self.clock()
        record = {"at": at.isoformat(timespec="milliseconds"), "model": self.model, "kind": kind,
                  "message": message, **fields}
        self.table.append(pa.table({
            "at": pa.array([at], pa.timestamp("us", tz="UTC")), "seq": pa.array([next(_SEQ)], pa.int64()),
            "kind": pa.array([kind], pa.string()), "record": pa.array([json.dumps(record, default=str)], pa.string()),
        }), at)
        log.info("event %s %s: %s", self.model, kind, message)
        return record


def read_events(storage_root: str, model: str, kinds: set[str] | None = None,
                since: datetime | None = None, until: datetime | None = None) -> list[dict[str, Any]]:
    """The stored events of ``model`` in time order (optionally only ``kinds``, in [since, until)).

    Reads only the hours of the range: the cost follows the range, not the length of the history."""
    table = events_table(storage_root, model).read_range(since, until)
    if table is None:
        return []
    if kinds:
        table = table.filter(pc.is_in(table["kind"], pa.array(sorted(kinds), pa.string())))
    # "at" and then the sequence number: records carry only milliseconds, and events written within
    # one millisecond keep the order they were written in.
    table = table.sort_by([("at", "ascending"), ("seq", "ascending")])
    out = []
    for text in table["record"].to_pylist():
        try:
            out.append(json.loads(text))
        except ValueError as exc:
            log.warning("skipping an unreadable event: %s", exc)
    return out


def last_episode_number(storage_root: str, model: str) -> int:
    """The highest episode number (``...-e<n>``) any stored event names: episode numbers never go back,
    even when the monitor's state file was lost."""
    episodes = (e.get("episode") or "" for e in read_events(storage_root, model))
    return max((episode_number(ep) for ep in episodes), default=0)


def episode_number(episode: str | None) -> int:
    """The ``n`` of an episode id ``<model>-<version>-e<n>`` (0 for anything else)."""
    m = _EPISODE_NUMBER.search(episode or "")
    return int(m.group(1)) if m else 0
