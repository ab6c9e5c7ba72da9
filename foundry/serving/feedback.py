"""Ground-truth labels sent to POST /feedback, stored where the drift monitor and retraining read them.

An ``HourlyTable`` (``foundry.storage.tables``; ``storage.feedback`` is ``<storage.root>/feedback``)::

    <storage.feedback>/<model>/date=YYYY-MM-DD/hour=HH/...

Columns: ``request_id`` (from /predict), ``label`` (a class label as a string, or a float for
regression), ``received_at`` (UTC), ``served_version`` (the version the replica served when the
label arrived; the version that made the prediction is joined via ``request_id`` later) and
``correction`` (true for a label that replaces an earlier one, ``serve.feedback.on_repeat=correct``).

Group commit (``FeedbackWriter``): a replica gathers the labels of every /feedback request of
``serve.feedback.flush_s`` and writes them as ONE file, and each request is answered only after the
file holding its labels is on storage. So a 200 still means "stored" (a replica that is restarted,
scaled down or swapped loses nothing), writers never share a file (no locks; object stores cannot
append), and the number of files follows the clock, not the traffic. The monitor's maintenance
merges them into one file per hour.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import pandas as pd
import pyarrow as pa

from foundry.config import Task
from foundry.storage.layout import StorageLayout
from foundry.storage.tables import HourlyTable

COLUMNS = ["request_id", "label", "received_at", "served_version", "correction"]


def feedback_uri(storage_root: str, model: str) -> str:
    return StorageLayout(storage_root).model_feedback(model)


def feedback_table(storage_root: str, model: str) -> HourlyTable:
    return HourlyTable(feedback_uri(storage_root, model), "received_at")


class FeedbackStore:
    def __init__(self, storage_root: str, model: str, task: Task):
        self.uri = feedback_uri(storage_root, model)
        self.table = feedback_table(storage_root, model)
        self._label_type = pa.float64() if task is Task.regression else pa.string()

    def write(self, labels: Sequence[Mapping[str, Any]], served_version: str | None,
              now: datetime | None = None, corrections: Sequence[bool] | None = None) -> str:
        """Store labels as one file; returns its path. Blocking: call it off the event loop."""
        return self.write_many([(labels, served_version, corrections)], now)

    def write_many(self, batches: Sequence[tuple[Sequence[Mapping[str, Any]], str | None, Sequence[bool] | None]],
                   now: datetime | None = None) -> str:
        """Several requests' labels (``(labels, served_version, corrections)``) as one file."""
        now = now or datetime.now(timezone.utc)
        ids, values, versions, fixes = [], [], [], []
        for labels, version, corrections in batches:
            ids += [item["request_id"] for item in labels]
            values += [item["label"] for item in labels]
            versions += [version] * len(labels)
            fixes += list(corrections) if corrections is not None else [False] * len(labels)
        table = pa.table({
            "request_id": pa.array(ids, pa.string()),
            "label": pa.array(values, self._label_type),
            "received_at": pa.array([now] * len(ids), pa.timestamp("ms", tz="UTC")),
            "served_version": pa.array(versions, pa.string()),
            "correction": pa.array(fixes, pa.bool_()),
        })
        return self.table.append(table, now)


class FeedbackWriter:
    """Group commit on the replica's event loop: ``write`` returns once the labels are on storage."""

    def __init__(self, store: FeedbackStore, flush_s: float):
        self.store = store
        self.flush_s = flush_s
        self._batches: list = []
        self._done: asyncio.Future | None = None
        self.files = 0

    async def write(self, labels: Sequence[Mapping[str, Any]], served_version: str | None,
                    corrections: Sequence[bool] | None = None) -> None:
        if self._done is None:
            self._done = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().create_task(self._flush_later())
        done = self._done
        self._batches.append((labels, served_version, corrections))
        await asyncio.shield(done)

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.flush_s)
        batches, done = self._batches, self._done
        self._batches, self._done = [], None
        try:
            await asyncio.to_thread(self.store.write_many, batches)
            self.files += 1
            done.set_result(len(batches))
        except Exception as exc:  # every request of this flush fails with it (and its labels are released)
            done.set_exception(exc)
            done.exception()  # retrieved: no "never retrieved" warning when every waiter was cancelled


def read_feedback(storage_root: str, model: str, since: datetime | None = None,
                  until: datetime | None = None) -> pd.DataFrame:
    """The labels of ``model`` received in [since, until) (all that are kept without bounds), oldest first.

    Reads only the hours of the range, so its cost follows the range, not the length of the history."""
    table = feedback_table(storage_root, model).read_range(since, until)
    if table is None:
        return pd.DataFrame(columns=COLUMNS)
    frame = table.to_pandas()
    if "correction" not in frame:
        frame["correction"] = False
    return frame.sort_values("received_at", kind="stable").reset_index(drop=True)
