"""The Serve-side hand-off to the drift monitor: bounded, sampled when full, never blocking a request.

No Ray: the monitor actor is a fake whose ``.ingest.remote`` / ``.ingest_labels.remote`` record the
calls and return fake refs, and a ``MonitorSink`` subclass answers ``_ready``/``_result`` (the
``ray.wait``/``ray.get`` of a real sink) from those refs. The clock is injected.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from foundry.config import DriftSinkConfig
from foundry.drift.sink import MonitorSink, concat

ACTOR = "foundry-monitor-churn"
NAMESPACE = "foundry"


# ---- fakes -----------------------------------------------------------------------------------------------


class FakeRef:
    """An unacknowledged send until ``ack()`` or ``fail()``."""

    def __init__(self, batch):
        self.batch = batch
        self.done = False
        self.error: Exception | None = None

    def ack(self) -> None:
        self.done = True

    def fail(self, error: Exception | None = None) -> None:
        self.done, self.error = True, error or RuntimeError("actor died")


class _Method:
    def __init__(self, record, block: threading.Event | None = None, entered: threading.Event | None = None):
        self._record = record
        self._block = block
        self._entered = entered

    def remote(self, *args):
        if self._entered is not None:
            self._entered.set()
        if self._block is not None:
            assert self._block.wait(10), "the test never released the blocked actor call"
        return self._record(*args)


class FakeActor:
    def __init__(self, block: threading.Event | None = None, entered: threading.Event | None = None):
        self.batches: list[dict] = []
        self.refs: list[FakeRef] = []
        self.labels: list[tuple[list, list]] = []
        self.ingest = _Method(self._ingest, block, entered)
        self.ingest_labels = _Method(self._ingest_labels)

    def _ingest(self, batch):
        self.batches.append(batch)
        self.refs.append(FakeRef(batch))
        return self.refs[-1]

    def _ingest_labels(self, ids, labels):
        self.labels.append((ids, labels))
        return FakeRef(None)


class Lookup:
    """``lookup()`` for the sink: returns ``actor`` (None: no monitor running) and counts the calls."""

    def __init__(self, actor=None):
        self.actor = actor
        self.calls = 0

    def __call__(self):
        self.calls += 1
        return self.actor


class Clock:
    def __init__(self, now: float = 0.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeSink(MonitorSink):
    def _ready(self, refs):
        return [r for r in refs if r.done], [r for r in refs if not r.done]

    def _result(self, ref):
        if ref.error is not None:
            raise ref.error
        return getattr(ref, "answer", None)


def make_sink(lookup: Lookup, clock: Clock | None = None, counts: list | None = None, **cfg) -> FakeSink:
    values = {"buffer_rows": 1000, "flush_interval_s": 0.01, "max_in_flight": 2, "lookup_interval_s": 5.0}
    record = counts.append if counts is not None else (lambda item: None)
    return FakeSink(DriftSinkConfig(**{**values, **cfg}), ACTOR, NAMESPACE,
                    count=lambda outcome, n: record((outcome, n)), lookup=lookup, clock=clock or Clock(), seed=0)


def chunk(start: int, n: int) -> dict:
    """``n`` live rows shaped like ``foundry.serving.inference.live_columns``; row i carries i everywhere."""
    ids = np.arange(start, start + n)
    scores = np.stack([1 - ids / 1e6, ids / 1e6], axis=1).astype(np.float32)
    return {"request_id": np.asarray([f"r{i}" for i in ids], dtype=object),
            "received_at": 1.7e9 + ids.astype(np.float64),
            "model_version": np.full(n, "v1", dtype=object),
            "prediction": np.asarray([str(i % 2) for i in ids], dtype=object),
            "scores": scores,
            "x_num": np.stack([ids, -ids, ids * 2], axis=1).astype(np.float32),
            "x_cat": np.stack([ids % 5, ids % 7], axis=1).astype(np.int64),
            "raw": {"age": ids.astype(object), "plan": np.asarray([f"p{i}" for i in ids], dtype=object)}}


def ids_of(batch: dict) -> list[int]:
    return [int(r[1:]) for r in batch["request_id"]]


def assert_rows_consistent(batch: dict) -> None:
    """Sampling kept whole rows: every column of a row still describes the same request."""
    ids = np.asarray(ids_of(batch))
    n = len(ids)
    for key in ("received_at", "model_version", "prediction", "scores", "x_num", "x_cat"):
        assert len(batch[key]) == n, key
    assert np.array_equal(batch["x_num"][:, 0], ids) and np.array_equal(batch["x_num"][:, 1], -ids)
    assert np.array_equal(batch["x_cat"][:, 1], ids % 7)
    assert np.array_equal(batch["received_at"], 1.7e9 + ids)
    assert np.allclose(batch["scores"][:, 1], ids / 1e6)
    assert [str(x) for x in batch["prediction"]] == [str(i % 2) for i in ids]
    assert list(batch["raw"]["age"]) == list(ids) and list(batch["raw"]["plan"]) == [f"p{i}" for i in ids]


# ---- no monitor yet --------------------------------------------------------------------------------------


def test_rows_wait_while_no_monitor_is_found_and_lookups_are_rate_limited():
    lookup, clock = Lookup(), Clock(100.0)
    sink = make_sink(lookup, clock, lookup_interval_s=5.0)
    sink.offer(chunk(0, 10))
    assert sink.flush_once() == 0 and lookup.calls == 1
    sink.offer(chunk(10, 5))
    for now in (100.5, 102.0, 104.999):
        clock.now = now
        assert sink.flush_once() == 0
    assert lookup.calls == 1  # not again before lookup_interval_s has passed
    clock.now = 105.0
    assert sink.flush_once() == 0 and lookup.calls == 2

    actor = FakeActor()
    lookup.actor = actor
    clock.now = 107.0
    assert sink.flush_once() == 0 and lookup.calls == 2 and actor.batches == []
    clock.now = 110.0
    assert sink.flush_once() == 15 and lookup.calls == 3
    assert len(actor.batches) == 1 and ids_of(actor.batches[0]) == list(range(15))
    assert_rows_consistent(actor.batches[0])
    assert sink.stats["sent"] == 15 and sink.stats["dropped"] == 0 and sink.stats["offered"] == 15

    clock.now = 200.0  # once found, the actor is kept: no more lookups
    sink.offer(chunk(15, 3))
    actor.refs[0].ack()
    assert sink.flush_once() == 3 and lookup.calls == 3
    assert sink.flush_once() == 0 and len(actor.batches) == 2  # an empty buffer sends nothing


# ---- a full buffer ---------------------------------------------------------------------------------------


def test_a_full_buffer_samples_incoming_rows_and_counts_the_rest():
    counts: list = []
    lookup = Lookup()
    sink = make_sink(lookup, counts=counts, buffer_rows=100)
    sink.offer(chunk(0, 60))
    sink.offer(chunk(60, 60))  # 40 of these fit: a sample of them is kept
    sink.offer(chunk(120, 50))  # no room at all
    assert sink.stats == {**sink.stats, "offered": 170, "dropped": 70, "sent": 0}
    assert counts == [("dropped", 20), ("dropped", 50)]

    lookup.actor = actor = FakeActor()
    sink._next_lookup = 0.0
    assert sink.flush_once() == 100
    batch = actor.batches[0]
    ids = ids_of(batch)
    assert ids[:60] == list(range(60))
    kept = ids[60:]
    assert len(kept) == 40 and len(set(kept)) == 40 and set(kept) <= set(range(60, 120))
    assert kept == sorted(kept)
    assert_rows_consistent(batch)
    assert sink.stats["offered"] == sink.stats["sent"] + sink.stats["dropped"]


def test_the_buffer_never_exceeds_its_capacity_and_every_row_is_accounted_for():
    counts: list = []
    sink = make_sink(Lookup(), counts=counts, buffer_rows=250)
    rng = np.random.default_rng(7)
    offered: set[int] = set()
    start = 0
    for _ in range(40):
        n = int(rng.integers(0, 90))
        sink.offer(chunk(start, n))
        offered |= set(range(start, start + n))
        start += n
        assert sink._rows.rows <= 250
        assert sink.stats["offered"] == start == sink._rows.rows + sink.stats["dropped"]
    assert sum(n for outcome, n in counts if outcome == "dropped") == sink.stats["dropped"] > 0
    buffered = sink._rows.drain()
    assert len(buffered["request_id"]) == 250
    assert set(ids_of(buffered)) <= offered and len(set(ids_of(buffered))) == 250
    assert_rows_consistent(buffered)


def test_sampling_is_uniform_over_the_incoming_batch():
    kept = np.zeros(100)
    for seed in range(200):
        sink = FakeSink(DriftSinkConfig(buffer_rows=10), ACTOR, NAMESPACE, lookup=Lookup(), seed=seed)
        sink.offer(chunk(0, 100))
        kept[ids_of(sink._rows.drain())] += 1
    assert kept.sum() == 200 * 10
    # each row is kept with probability 0.1: 20 times in 200 draws on average, never systematically skipped
    assert kept.min() >= 5 and kept.max() <= 40
    assert kept[:50].sum() == pytest.approx(kept[50:].sum(), rel=0.2)


# ---- back-pressure and failures -------------------------------------------------------------------------


def test_at_most_max_in_flight_unacknowledged_sends():
    actor = FakeActor()
    sink = make_sink(Lookup(actor), max_in_flight=2)
    for i in range(2):
        sink.offer(chunk(10 * i, 10))
        assert sink.flush_once() == 10
    sink.offer(chunk(20, 10))
    sink.offer(chunk(30, 10))
    for _ in range(3):
        assert sink.flush_once() == 0  # the monitor is behind: rows wait in the buffer
    assert len(actor.batches) == 2 and len(sink._in_flight) == 2 and sink._rows.rows == 20

    actor.refs[0].ack()
    assert sink.flush_once() == 20
    assert ids_of(actor.batches[2]) == list(range(20, 40))
    assert len(sink._in_flight) == 2
    assert sink.stats["sent"] == 40 and sink.stats["failed"] == 0

    for ref in actor.refs:
        ref.ack()
    sink.flush_once()
    assert sink._in_flight == []


def test_a_failed_send_is_counted_and_the_actor_is_looked_up_again():
    counts: list = []
    clock = Clock(0.0)
    first, second = FakeActor(), FakeActor()
    lookup = Lookup(first)
    sink = make_sink(lookup, clock, counts=counts, lookup_interval_s=5.0)
    sink.offer(chunk(0, 7))
    assert sink.flush_once() == 7 and lookup.calls == 1

    first.refs[0].fail()
    lookup.actor = second  # the monitor restarted under the same name
    clock.now = 1.0
    sink.offer(chunk(7, 3))
    assert sink.flush_once() == 0  # the failure is counted; the next lookup waits for lookup_interval_s
    assert sink.stats["failed"] == 7 and ("failed", 7) in counts
    assert sink._actor is None and sink._in_flight == []

    clock.now = 5.0
    assert sink.flush_once() == 3 and lookup.calls == 2
    assert ids_of(second.batches[0]) == [7, 8, 9] and len(first.batches) == 1
    assert sink.stats == {**sink.stats, "offered": 10, "sent": 10, "failed": 7, "dropped": 0}


def test_an_acknowledged_send_is_not_a_failure():
    actor = FakeActor()
    sink = make_sink(Lookup(actor))
    sink.offer(chunk(0, 4))
    sink.flush_once()
    actor.refs[0].ack()
    sink.flush_once()
    assert sink.stats["failed"] == 0 and sink._actor is actor and sink._in_flight == []


# ---- labels ----------------------------------------------------------------------------------------------


def test_labels_go_to_ingest_labels():
    actor = FakeActor()
    sink = make_sink(Lookup(actor), buffer_rows=3)
    sink.offer_labels(["r1", "r2"], [1, 0])
    sink.offer_labels(["r3"], ["yes"])
    sink.offer_labels(["r4", "r5"], [0, 1])  # the label buffer is full too: counted, not kept
    assert sink.flush_once() == 0  # no live rows, but the labels go
    assert actor.batches == []
    assert actor.labels == [(["r1", "r2", "r3"], [1, 0, "yes"])]
    assert sink.stats["labels_sent"] == 3 and sink.stats["labels_dropped"] == 2

    sink.offer(chunk(0, 2))
    sink.offer_labels(["r0"], [1])
    assert sink.flush_once() == 2
    assert actor.labels[-1] == (["r0"], [1]) and len(actor.batches) == 1


# ---- the request path ------------------------------------------------------------------------------------


def test_offer_never_calls_the_monitor():
    class Untouchable:
        def __getattr__(self, name):
            raise AssertionError(f"offer touched the actor ({name})")

    def lookup():
        raise AssertionError("offer looked the actor up")

    sink = make_sink(lookup, buffer_rows=50)
    sink._actor = Untouchable()
    for i in range(10):
        sink.offer(chunk(10 * i, 10))
        sink.offer_labels([f"r{i}"], [1])
    assert sink.stats["offered"] == 100 and sink.stats["dropped"] == 50


def test_offer_does_not_wait_for_a_send_in_progress():
    release, entered = threading.Event(), threading.Event()
    actor = FakeActor(block=release, entered=entered)
    sink = make_sink(Lookup(actor))
    sink.offer(chunk(0, 5))
    flusher = threading.Thread(target=sink.flush_once, daemon=True)
    flusher.start()
    try:
        assert entered.wait(5), "the flush never reached the actor"
        offered = threading.Thread(target=lambda: [sink.offer(chunk(5 + i, 1)) for i in range(100)], daemon=True)
        started = time.monotonic()
        offered.start()
        offered.join(5)
        assert not offered.is_alive(), "offer blocked while a send was in progress"
        assert time.monotonic() - started < 5
        assert sink._rows.rows == 100
    finally:
        release.set()
        flusher.join(5)
    assert ids_of(actor.batches[0]) == list(range(5))


def test_the_background_thread_flushes_and_survives_errors():
    actor = FakeActor()
    calls = {"n": 0}

    def flaky_lookup():
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("GCS unavailable")
        return actor

    sink = make_sink(flaky_lookup, lookup_interval_s=0.0, flush_interval_s=0.01)
    sink.offer(chunk(0, 3))
    sink.start()
    try:
        deadline = time.monotonic() + 5
        while not actor.batches and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        sink.stop()
        sink._thread.join(5)
    assert calls["n"] >= 2 and ids_of(actor.batches[0]) == [0, 1, 2]
    assert not sink._thread.is_alive()


def test_concat_keeps_row_order_and_raw_columns():
    batch = concat([chunk(0, 3), chunk(3, 2)])
    assert ids_of(batch) == [0, 1, 2, 3, 4]
    assert_rows_consistent(batch)


def test_a_full_monitor_is_counted_and_left_alone_for_the_backoff():
    """The monitor's answer reaches the sink: rows it sampled out are counted as dropped, and after
    ``full`` nothing is sent for ``backoff_s`` (the buffer fills and samples instead)."""
    actor, clock, counts = FakeActor(), Clock(), []
    sink = make_sink(Lookup(actor), clock, counts, max_in_flight=4)
    sink.offer(chunk(0, 100))
    assert sink.flush_once() == 100
    actor.refs[-1].answer = {"taken": 30, "dropped": 70, "full": True}
    actor.refs[-1].ack()
    sink.offer(chunk(100, 100))
    assert sink.flush_once() == 0 and len(actor.batches) == 1  # backing off
    assert sink.stats["dropped_by_monitor"] == 70 and ("dropped", 70) in counts and sink.stats["backoffs"] == 1
    clock.now += sink.backoff_s - 0.001
    assert sink.flush_once() == 0
    clock.now += 0.002
    assert sink.flush_once() == 100 and len(actor.batches) == 2
