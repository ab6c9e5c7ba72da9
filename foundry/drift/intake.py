"""The monitor's intake: live rows, labels and a roll-out's answers, from Serve into bounded queues and
from the queues into the windows.

Two halves on two sides of the queues. ``ingest``, ``ingest_labels`` and ``ingest_answers`` are actor
methods that every Serve replica calls concurrently: each checks what it is handed, takes what the
row-bounded queue (``RowQueue``, ``drift.monitor.max_queued_rows``) has room for (a uniform sample of a
batch that does not fit; the rest is counted as dropped), and returns at once: they never take the state
lock for longer than a counter update and never wait. ``_drain`` runs in the round's thread: it absorbs
the queued items into the windows, the version tracker and the roll-out's judge, one item per hold of the
state lock so ``status()`` never waits behind a flood. Live rows also go to the live store's write buffer
(``LiveWriter``), written once every ``storage.tables.live_flush_s`` by the round (``_write_live``).

A mixin of ``DriftMonitor`` (``foundry.drift.monitor``): it uses the monitor's queues (``_queue``,
``_labels``, ``_answers``), ``_rng``, ``_features``, ``live_writer``, ``windows``, ``versions``,
``rollouts``, ``controller``, ``counters``, its locks and ``_count_rows``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from foundry.config import Task
from foundry.drift.batch import LiveBatch

log = logging.getLogger("foundry.drift.monitor")  # the monitor's log, wherever its code lives


class Intake:
    """Queueing what Serve hands over (actor methods) and absorbing it each round."""

    def ingest(self, batch: LiveBatch | dict[str, Any]) -> dict[str, Any]:
        """Check one batch of live rows (``LiveBatch.from_dict``: Serve's sink sends the dict), queue what
        fits for the detectors and the live store's writer, and say what was taken. Never takes the state
        lock and never waits: beyond ``max_queued_rows`` a uniform sample of the batch is taken, the rest
        counted (``rows_dropped``), and ``full`` tells the sink to back off (``MonitorSink``)."""
        rows = LiveBatch.from_dict(batch)
        n = len(rows)
        take = self._queue.reserve(n)
        if take < n:
            self._dropped("rows_dropped", n - take)
            rows = rows.select(np.sort(self._rng.choice(n, size=take, replace=False))) if take else None
        if rows is not None and take:
            try:
                frame = rows.frame(self._features, self.cfg.data.task is Task.regression)
            except BaseException:
                self._queue.done(take)
                raise
            self.live_writer.add(frame)
            self._queue.put((rows, frame))
        return {"taken": take, "dropped": n - take, "full": take < n, "queued_rows": self._queue.rows,
                "capacity": self._queue.capacity}

    def ingest_labels(self, request_ids: list[str], labels: list[Any]) -> int:
        """Labels are already on storage (``POST /feedback`` wrote them); here they feed the error stream.
        Beyond the bound the newest are counted and dropped (a retrain still reads them from storage)."""
        take = self._labels.reserve(len(request_ids))
        if take < len(request_ids):
            self._dropped("labels_dropped", len(request_ids) - take)
        if take:
            self._labels.put((list(request_ids)[:take], list(labels)[:take]))
        return take

    def ingest_answers(self, chunk: dict[str, Any]) -> int:
        """A roll-out's answers (``foundry.serving.inference.answer_columns``), for its live paired tests."""
        n = len(chunk["request_id"])
        take = self._answers.reserve(n)
        if take < n:
            self._dropped("answers_dropped", n - take)
            if not take:
                return 0
            chunk = {k: (v[:take] if isinstance(v, np.ndarray) else v) for k, v in chunk.items()}
        self._answers.put(chunk)
        return take

    def _dropped(self, counter: str, n: int) -> None:
        with self._lock:
            self.counters[counter] += n
        self._count_rows(counter.removesuffix("_dropped") + "_dropped", n)

    def _drain(self) -> int:
        """Absorb what is queued, one item per hold of the lock (``status()`` never waits behind a flood)."""
        n = 0
        while (chunk := self._answers.get()) is not None:  # answers first: a label that finds both answers is scored
            with self._locked():
                self.rollouts.add_answers(chunk)
            self._answers.done(len(chunk["request_id"]))
        while (item := self._queue.get()) is not None:
            batch, frame = item
            with self._locked():
                reference_version = self.controller.state.reference_version
                mine = self.versions.track(reference_version, batch.model_version, batch.received_at)
                self.rollouts.observe_served(batch.model_version, batch.received_at)
                self.counters["labels_matched"] += self.windows.absorb_batch(batch, frame, mine)
                self.counters["rows"] += len(frame)
                others = int((~mine).sum())
                if others:
                    self.counters["other_version_rows"] += others
            self._queue.done(len(frame))
            if others:
                self._count_rows("other_version", others)
            self._count_rows("live", len(frame))
            n += len(frame)
        while (item := self._labels.get()) is not None:
            ids, labels = item
            with self._locked():
                self.counters["labels"] += len(ids)
                self.counters["labels_matched"] += self.windows.match_labels(ids, labels)
                self.rollouts.add_labels(ids, labels)
            self._labels.done(len(ids))
            self._count_rows("label", len(ids))
            n += len(ids)
        return n

    def _write_live(self, force: bool = False) -> None:
        """The live rows taken since the last write, as one file every ``storage.tables.live_flush_s``."""
        try:
            self.live_writer.flush(force)
        except Exception as exc:  # kept (bounded) and retried next round; the windows have the rows already
            log.warning("cannot write %d live rows (retried next round): %s", self.live_writer.buffered, exc)
