"""Labels with provenance: a label is taken only for a request id this model answered, and only once.

Without it, ``POST /feedback`` takes any well-formed id and the last label wins, so whoever holds a
key can choose both the retrain data and the promotion gate's test rows. The ledger remembers:

- **answered**: the 64-bit digests of the request ids the replicas answered in the last
  ``serve.feedback.window_s`` (replicas hand them over in bulk, ``AnsweredBuffer``, every
  ``serve.feedback.handover_s``, never per request);
- **labelled**: the digests that already have a label.

``claim`` is all or nothing for one /feedback request: any id unknown (404) or already labelled
(409; or, with ``serve.feedback.on_repeat=correct``, taken and stored as a correction) refuses the
whole request, so a refused request stores nothing. An id not yet known is given ``grace_s`` for the
replica that answered it to hand it over (a client that labels right after the answer).

Memory is bounded: digests live in time buckets (``bucket_s``) of sorted ``uint64`` arrays (8 bytes
an id; a day at 300 requests a second is about 200 MiB), buckets older than the window are dropped,
and beyond ``max_ids`` the oldest go first (counted in ``evicted``). Each closed bucket is written to
storage (``<storage.monitoring>/<model>/ledger``, an ``HourlyTable``), and a restarted ledger reloads
the window from there and the labelled ids from the feedback store: a crash forgets at most the
answers of the open bucket.

One per model: the Serve deployment gets or creates the detached actor ``foundry-ledger-<model>``
(``actor_handle``); the standalone server and tests hold a ``LabelLedger`` in process.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
import pyarrow as pa

from foundry.storage.layout import StorageLayout
from foundry.storage.tables import HourlyTable

log = logging.getLogger(__name__)

OK, UNKNOWN, REPEAT, CORRECTION = "ok", "unknown", "repeat", "correction"


def digests(request_ids: Iterable[str]) -> np.ndarray:
    """64-bit BLAKE2b digests of request ids (collisions: about 1 in 10^19 per pair)."""
    return np.fromiter((int.from_bytes(hashlib.blake2b(r.encode(), digest_size=8).digest(), "little")
                        for r in request_ids), dtype=np.uint64)


def ledger_uri(storage_root: str, model: str) -> str:
    return StorageLayout(storage_root).ledger(model)


def ledger_actor_name(model: str, storage_root: str) -> str:
    """One ledger per model and storage root (two test runs of one model name never share one)."""
    root = hashlib.sha256(StorageLayout(storage_root).root.encode()).hexdigest()[:8]
    return f"foundry-ledger-{model}-{root}"


class _Buckets:
    """Digests by time bucket: the open one a set, closed ones sorted arrays; expiring and bounded."""

    def __init__(self, bucket_s: float, window_s: float, max_ids: int):
        self.bucket_s, self.window_s, self.max_ids = bucket_s, window_s, max_ids
        self.closed: OrderedDict[int, np.ndarray] = OrderedDict()  # bucket number -> sorted digests
        self.open_key: int | None = None
        self.open: set[int] = set()
        self.size = 0
        self.evicted = 0

    def add(self, ds: np.ndarray, now: float) -> np.ndarray | None:
        """Add digests at ``now``; returns the bucket it closed (to persist), if any."""
        key = int(now // self.bucket_s)
        closed = None
        if self.open_key is not None and key != self.open_key:
            closed = self.close()
        self.open_key = key
        before = len(self.open)
        self.open.update(int(d) for d in ds)
        self.size += len(self.open) - before
        self.expire(now)
        return closed

    def close(self) -> np.ndarray | None:
        if self.open_key is None or not self.open:
            self.open_key = None
            return None
        arr = np.sort(np.fromiter(self.open, dtype=np.uint64, count=len(self.open)))
        self.closed[self.open_key] = arr
        self.open, self.open_key = set(), None
        return arr

    def load(self, buckets: dict[int, np.ndarray]) -> None:
        """Closed buckets read back from storage (a restart), merged with what is held, in time order once."""
        for key, ds in buckets.items():
            merged = np.union1d(self.closed.get(key, np.empty(0, np.uint64)), ds.astype(np.uint64))
            self.size += len(merged) - len(self.closed.get(key, ()))
            self.closed[key] = merged
        self.closed = OrderedDict(sorted(self.closed.items()))

    def expire(self, now: float) -> None:
        oldest = int((now - self.window_s) // self.bucket_s)
        while self.closed and (next(iter(self.closed)) < oldest or self.size > self.max_ids):
            key, arr = self.closed.popitem(last=False)
            self.size -= len(arr)
            if key >= oldest:
                self.evicted += len(arr)

    def contains(self, ds: np.ndarray) -> np.ndarray:
        found = np.fromiter((int(d) in self.open for d in ds), dtype=bool, count=len(ds))
        for arr in self.closed.values():
            if len(arr):
                idx = np.minimum(np.searchsorted(arr, ds), len(arr) - 1)
                found |= arr[idx] == ds
        return found


class LabelLedger:
    def __init__(self, window_s: float, max_ids: int, on_repeat: str = "refuse", bucket_s: float = 10.0,
                 store: HourlyTable | None = None, clock=time.time):
        self.on_repeat = on_repeat
        self.clock = clock
        self.store = store
        self.answered_ids = _Buckets(bucket_s, window_s, max_ids)
        self.labelled_ids = _Buckets(bucket_s, window_s, max_ids)
        self.counts = {"answered": 0, "accepted": 0, "unknown": 0, "repeat": 0, "corrections": 0}

    # ---- what replicas hand over ---------------------------------------------------------------------
    def answered(self, ds: np.ndarray) -> int:
        now = self.clock()
        closed_key = self.answered_ids.open_key
        closed = self.answered_ids.add(np.asarray(ds, dtype=np.uint64), now)
        self.counts["answered"] += len(ds)
        if closed is not None and self.store is not None:
            self._persist(closed_key, closed)
        return len(ds)

    def _persist(self, key: int, ds: np.ndarray) -> None:
        at = datetime.fromtimestamp(key * self.answered_ids.bucket_s, timezone.utc)
        try:
            self.store.append(pa.table({"digest": pa.array(ds, pa.uint64()),
                                        "answered_at": pa.array([at] * len(ds), pa.timestamp("ms", tz="UTC"))}), at)
        except Exception as exc:  # the ledger answers from memory; a restart would forget this bucket
            log.warning("label ledger: cannot persist %d answered ids: %s", len(ds), exc)

    # ---- what /feedback asks ----------------------------------------------------------------------------
    def check(self, ds: np.ndarray) -> list[str]:
        ds = np.asarray(ds, dtype=np.uint64)
        known = self.answered_ids.contains(ds)
        labelled = self.labelled_ids.contains(ds)
        repeat = CORRECTION if self.on_repeat == "correct" else REPEAT
        return [UNKNOWN if not k else repeat if lab else OK for k, lab in zip(known, labelled, strict=True)]

    def claim(self, ds: np.ndarray) -> list[str]:
        """Statuses per id; all are recorded as labelled only if none is refused (all or nothing)."""
        ds = np.asarray(ds, dtype=np.uint64)
        statuses = self.check(ds)
        if UNKNOWN in statuses or REPEAT in statuses:
            self.counts["unknown"] += statuses.count(UNKNOWN)
            self.counts["repeat"] += statuses.count(REPEAT)
            return statuses
        self.labelled_ids.add(ds, self.clock())
        self.counts["accepted"] += len(ds)
        self.counts["corrections"] += statuses.count(CORRECTION)
        return statuses

    def release(self, ds: np.ndarray) -> None:
        """Forget claims whose labels could not be stored (the client's retry must not be a repeat)."""
        drop = {int(d) for d in np.asarray(ds, dtype=np.uint64)}
        b = self.labelled_ids
        before = len(b.open)
        b.open -= drop
        b.size -= before - len(b.open)
        for key, arr in list(b.closed.items()):
            keep = arr[~np.isin(arr, np.fromiter(drop, np.uint64))]
            b.size -= len(arr) - len(keep)
            b.closed[key] = keep

    # ---- restart ---------------------------------------------------------------------------------------
    def reload(self, labelled_request_ids: Sequence[str]) -> int:
        """Rebuild from storage: the answered buckets of the window, and the labels already stored."""
        since = datetime.fromtimestamp(self.clock() - self.answered_ids.window_s, timezone.utc)
        n = 0
        if self.store is not None:
            table = self.store.read_range(since=since)
            if table is not None and table.num_rows:
                keys = (table["answered_at"].cast(pa.int64()).to_numpy() // 1000
                        // int(self.answered_ids.bucket_s)).astype(np.int64)
                ds = table["digest"].to_numpy().astype(np.uint64)
                self.answered_ids.load({int(key): ds[keys == key] for key in np.unique(keys)})
                n = len(ds)
        if len(labelled_request_ids):
            self.labelled_ids.add(digests(labelled_request_ids), self.clock())
        self.answered_ids.expire(self.clock())
        return n

    def stats(self) -> dict[str, Any]:
        return {**self.counts, "answered_ids": self.answered_ids.size, "labelled_ids": self.labelled_ids.size,
                "evicted": self.answered_ids.evicted}


class LedgerActor:
    """The ledger as one async Ray actor per model: calls never block each other, and an unknown id
    waits ``grace_s`` (without blocking anyone) for the replica that answered it to hand it over."""

    def __init__(self, storage_root: str, model: str, window_s: float, max_ids: int, on_repeat: str,
                 grace_s: float):
        from foundry.serving.feedback import read_feedback

        self.grace_s = grace_s
        self.ledger = LabelLedger(window_s, max_ids, on_repeat, store=HourlyTable(ledger_uri(storage_root, model),
                                                                                  "answered_at"))
        since = datetime.now(timezone.utc) - timedelta(seconds=window_s)
        labels = read_feedback(storage_root, model, since=since)
        reloaded = self.ledger.reload(labels["request_id"].tolist() if not labels.empty else [])
        log.info("label ledger for %s: %d answered and %d labelled ids reloaded", model, reloaded, len(labels))

    async def answered(self, ds: np.ndarray) -> int:
        return self.ledger.answered(ds)

    async def claim(self, ds: np.ndarray) -> list[str]:
        deadline = time.monotonic() + self.grace_s
        statuses = self.ledger.check(ds)
        while UNKNOWN in statuses and REPEAT not in statuses and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # the answering replica hands its ids over every serve.feedback.handover_s
            statuses = self.ledger.check(ds)
        return self.ledger.claim(ds)

    async def release(self, ds: np.ndarray) -> None:
        self.ledger.release(ds)

    async def stats(self) -> dict[str, Any]:
        return self.ledger.stats()


class AnsweredBuffer:
    """The replica's side: answered ids gather here (a list append on the request path) and a daemon
    thread hands their digests to the ledger every ``flush_s``; bounded (``max_ids``, then counted)."""

    def __init__(self, send, flush_s: float, max_ids: int = 200_000):
        self._send, self._flush_s, self._max = send, flush_s, max_ids
        self._ids: list[str] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.dropped = 0

    def add(self, ids: list[str]) -> None:
        with self._lock:
            if len(self._ids) + len(ids) > self._max:
                self.dropped += len(ids)
                return
            self._ids.extend(ids)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="foundry-answered-ids", daemon=True)
                self._thread.start()

    def flush(self) -> int:
        with self._lock:
            ids, self._ids = self._ids, []
        if ids:
            self._send(digests(ids))
        return len(ids)

    def _run(self) -> None:
        while True:
            time.sleep(self._flush_s)
            try:
                self.flush()
            except Exception as exc:  # the ledger restarting: those labels will be refused as unknown
                log.warning("answered ids not handed to the label ledger: %s", exc)


__all__ = ["CORRECTION", "OK", "REPEAT", "UNKNOWN", "AnsweredBuffer", "LabelLedger", "LedgerActor", "digests",
           "ledger_actor_name", "ledger_uri"]
