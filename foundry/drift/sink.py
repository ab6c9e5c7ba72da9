"""The hand-off of live traffic from a Serve replica to the model's monitor actor.

The request path only appends to a bounded in-memory buffer (a lock and a list append); a daemon
thread sends the buffer to ``DriftMonitor.ingest`` every ``flush_interval_s``. Nothing here can
slow or fail a request:
- at most ``max_in_flight`` batches are unacknowledged; while the monitor is that far behind the
  buffer keeps filling, and once it holds ``buffer_rows`` new rows are *sampled* (a uniform random
  subset of each incoming batch fills what room is left) and the rest counted as dropped;
- no monitor running (not started yet, restarting) is the same as a slow one: rows wait in the
  buffer, then are sampled, and the actor is looked up again every ``lookup_interval_s``;
- a send that fails (the actor died mid-call and Ray could not retry) is counted, never raised;
- the monitor's answer says what it took: rows it had no room for (it samples, ``DriftMonitor.ingest``)
  are counted as dropped, and a monitor that says it is ``full`` gets nothing for ``backoff_s``
  (the buffer fills meanwhile, and then samples): an overloaded monitor is relieved, not flooded.
Labels from ``/feedback`` take the same road (``offer_labels``) in a buffer of their own, and so do a
roll-out's answers from both versions (``offer_answers``, for the live paired tests).

Rows travel as a dict of numpy columns (``foundry.serving.inference.live_columns``): buffering,
sampling and concatenating work column by column, and the dict pickles cheaply. The monitor checks
each batch at its boundary (``DriftMonitor.ingest`` -> ``foundry.drift.batch.LiveBatch.from_dict``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from foundry.config import DriftSinkConfig

log = logging.getLogger(__name__)

Columns = dict[str, Any]  # column name -> np.ndarray (2-D for the matrices), plus "raw": {feature: array}; see LiveBatch


def _rows(chunk: Columns) -> int:
    return len(chunk["request_id"])


def _take(chunk: Columns, idx: np.ndarray) -> Columns:
    out = {k: (v[idx] if isinstance(v, np.ndarray) else v) for k, v in chunk.items() if k != "raw"}
    if "raw" in chunk:
        out["raw"] = {k: v[idx] for k, v in chunk["raw"].items()}
    return out


def concat(chunks: list[Columns]) -> Columns:
    if len(chunks) == 1:
        return chunks[0]
    out = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0] if k != "raw"}
    if "raw" in chunks[0]:
        out["raw"] = {k: np.concatenate([c["raw"][k] for c in chunks]) for k in chunks[0]["raw"]}
    return out


class _Buffer:
    def __init__(self, capacity: int, rng: np.random.Generator):
        self.capacity = capacity
        self.chunks: list[Columns] = []
        self.rows = 0
        self.rng = rng

    def add(self, chunk: Columns) -> int:
        """Buffer what fits (a uniform sample when not all of it does); returns the rows dropped."""
        n = _rows(chunk)
        room = self.capacity - self.rows
        if room <= 0:
            return n
        if n > room:
            chunk = _take(chunk, np.sort(self.rng.choice(n, size=room, replace=False)))
        self.chunks.append(chunk)
        self.rows += _rows(chunk)
        return n - _rows(chunk)

    def drain(self) -> Columns | None:
        if not self.chunks:
            return None
        out = concat(self.chunks)
        self.chunks, self.rows = [], 0
        return out


class MonitorSink:
    def __init__(self, cfg: DriftSinkConfig, actor_name: str, namespace: str,
                 count: Callable[[str, int], None] = lambda outcome, n: None,
                 lookup: Callable[[], Any] | None = None, clock: Callable[[], float] = time.monotonic,
                 seed: int | None = None):
        self.cfg = cfg
        self.actor_name = actor_name
        self.namespace = namespace
        self._count = count
        self._lookup = lookup or self._ray_lookup
        self._clock = clock
        rng = np.random.default_rng(seed)
        self._rows = _Buffer(cfg.buffer_rows, rng)
        self._labels = _Buffer(cfg.buffer_rows, rng)
        self._answers = _Buffer(2 * cfg.buffer_rows, rng)  # a roll-out's answers: two versions per row
        self._lock = threading.Lock()
        self._in_flight: list[tuple[Any, int]] = []  # (ObjectRef, rows)
        self._actor = None
        self._next_lookup = 0.0
        self._paused_until = 0.0  # a full monitor gets nothing before this
        self.backoff_s = 4 * cfg.flush_interval_s
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.stats = {"offered": 0, "sent": 0, "dropped": 0, "failed": 0, "labels_sent": 0, "labels_dropped": 0,
                      "answers_sent": 0, "answers_dropped": 0, "dropped_by_monitor": 0, "backoffs": 0}

    # ---- request path: never blocks on the monitor ---------------------------------------------------
    def offer(self, chunk: Columns) -> None:
        with self._lock:
            dropped = self._rows.add(chunk)
            self.stats["offered"] += _rows(chunk)
            self.stats["dropped"] += dropped
        if dropped:
            self._count("dropped", dropped)

    def offer_labels(self, request_ids: list[str], labels: list[Any]) -> None:
        chunk = {"request_id": np.asarray(request_ids, dtype=object), "label": np.asarray(labels, dtype=object)}
        with self._lock:
            dropped = self._labels.add(chunk)
            self.stats["labels_dropped"] += dropped

    def offer_answers(self, chunk: Columns) -> None:
        """One version's answers to a batch during a roll-out (``inference.answer_columns``); thread-safe:
        the background thread that runs the second opinion offers them too."""
        with self._lock:
            self.stats["answers_dropped"] += self._answers.add(chunk)

    # ---- background ---------------------------------------------------------------------------------
    def start(self) -> MonitorSink:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="foundry-monitor-sink", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.cfg.flush_interval_s):
            try:
                self.flush_once()
            except Exception as exc:  # the sink must never take the replica down
                log.warning("monitor sink: flush failed: %s", exc)

    def _ray_lookup(self):
        import ray

        try:
            return ray.get_actor(self.actor_name, namespace=self.namespace)
        except ValueError:
            return None

    def _ready(self, refs: list[Any]) -> tuple[list[Any], list[Any]]:
        """(finished, still pending) among ``refs``, without waiting (tests replace this and ``_result``)."""
        import ray

        return ray.wait(refs, num_returns=len(refs), timeout=0)

    def _result(self, ref: Any) -> Any:
        """The result of a finished send; raises what the call raised."""
        import ray

        return ray.get(ref, timeout=0)

    def _settle(self) -> None:
        """Forget acknowledged sends; count the ones that failed."""
        if not self._in_flight:
            return
        rows_of = dict(self._in_flight)
        done, pending = self._ready(list(rows_of))
        self._in_flight = [(ref, rows_of[ref]) for ref in pending]
        for ref in done:
            try:
                ack = self._result(ref)
            except Exception as exc:  # the actor died and the call could not be retried
                rows = rows_of[ref]
                self.stats["failed"] += rows
                self._count("failed", rows)
                self._actor = None
                log.warning("monitor sink: a batch was lost: %s", exc)
                continue
            if isinstance(ack, dict) and ack.get("dropped"):
                self.stats["dropped_by_monitor"] += ack["dropped"]
                self._count("dropped", ack["dropped"])
            if isinstance(ack, dict) and ack.get("full"):
                self._paused_until = self._clock() + self.backoff_s
                self.stats["backoffs"] += 1

    def flush_once(self) -> int:
        """Send what is buffered if the monitor is there and not too far behind; returns rows sent."""
        self._settle()
        if self._actor is None:
            now = self._clock()
            if now < self._next_lookup:
                return 0
            self._next_lookup = now + self.cfg.lookup_interval_s
            self._actor = self._lookup()
            if self._actor is None:
                return 0
        if len(self._in_flight) >= self.cfg.max_in_flight or self._clock() < self._paused_until:
            return 0
        with self._lock:
            rows = self._rows.drain()
            labels = self._labels.drain()
            answers = self._answers.drain()
        sent = 0
        if rows is not None:
            ref = self._actor.ingest.remote(rows)
            n = _rows(rows)
            self._in_flight.append((ref, n))
            self.stats["sent"] += n
            self._count("sent", n)
            sent = n
        if answers is not None:  # before the labels: a label that finds both answers is scored at once
            self._actor.ingest_answers.remote(answers)
            self.stats["answers_sent"] += _rows(answers)
        if labels is not None:
            self._actor.ingest_labels.remote(list(labels["request_id"]), list(labels["label"]))
            self.stats["labels_sent"] += _rows(labels)
        return sent
