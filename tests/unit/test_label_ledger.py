"""The label ledger (``foundry.serving.ledger``) and the group commit of labels (``FeedbackWriter``):
labels only for answered ids, once, within the window; bounded memory; a restart remembers."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import numpy as np

from foundry.config import Task
from foundry.serving import ledger
from foundry.serving.feedback import FeedbackStore, FeedbackWriter, read_feedback
from foundry.serving.ledger import CORRECTION, OK, REPEAT, UNKNOWN, LabelLedger, digests
from foundry.storage.tables import HourlyTable


class Clock:
    def __init__(self, t: float = 1_800_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def _ids(n: int) -> list[str]:
    return [uuid.uuid4().hex for _ in range(n)]


def test_only_answered_ids_are_taken_once_and_a_refusal_takes_nothing():
    clock = Clock()
    led = LabelLedger(window_s=3600, max_ids=10**6, clock=clock)
    answered = _ids(5)
    led.answered(digests(answered))
    forged = _ids(1)
    assert led.claim(digests([answered[0], forged[0]])) == [OK, UNKNOWN]
    assert led.claim(digests(answered[:2])) == [OK, OK]  # the refusal above used nothing up
    assert led.claim(digests(answered[1:3])) == [REPEAT, OK]
    assert led.claim(digests(answered[2:3])) == [OK]  # again: the request with the repeat took nothing
    assert led.stats()["unknown"] == 1 and led.stats()["repeat"] == 1 and led.stats()["accepted"] == 3


def test_corrections_when_configured():
    led = LabelLedger(window_s=3600, max_ids=10**6, on_repeat="correct", clock=Clock())
    rid = _ids(1)
    led.answered(digests(rid))
    assert led.claim(digests(rid)) == [OK]
    assert led.claim(digests(rid)) == [CORRECTION]
    assert led.claim(digests(_ids(1))) == [UNKNOWN]  # a correction still needs an answered id


def test_answers_older_than_the_window_are_forgotten():
    clock = Clock()
    led = LabelLedger(window_s=600, max_ids=10**6, bucket_s=10, clock=clock)
    old, recent = _ids(3), _ids(3)
    led.answered(digests(old))
    clock.t += 400
    led.answered(digests(recent))
    clock.t += 300  # old is 700 s old, recent 300 s
    led.answered(digests(_ids(1)))  # any call expires
    assert led.check(digests(old)) == [UNKNOWN] * 3
    assert led.check(digests(recent)) == [OK] * 3


def test_memory_is_bounded_by_max_ids_oldest_first():
    clock = Clock()
    led = LabelLedger(window_s=10**6, max_ids=2000, bucket_s=1, clock=clock)
    batches = []
    for _ in range(10):
        batches.append(_ids(500))
        led.answered(digests(batches[-1]))
        clock.t += 1
    stats = led.stats()
    assert stats["answered_ids"] <= 2000 + 500 and stats["evicted"] >= 3000
    assert led.check(digests(batches[0][:5])) == [UNKNOWN] * 5
    assert led.check(digests(batches[-1][:5])) == [OK] * 5


def test_a_failed_write_releases_the_claim():
    led = LabelLedger(window_s=3600, max_ids=10**6, clock=Clock())
    rid = digests(_ids(2))
    led.answered(rid)
    assert led.claim(rid) == [OK, OK]
    led.release(rid)
    assert led.claim(rid) == [OK, OK]


def test_a_restarted_ledger_remembers_answers_and_labels(tmp_path):
    clock = Clock()
    store = HourlyTable(str(tmp_path / "ledger"), "answered_at")
    led = LabelLedger(window_s=3600, max_ids=10**6, bucket_s=10, store=store, clock=clock)
    first, labelled = _ids(50), _ids(2)
    led.answered(digests(first + labelled))
    clock.t += 11  # the next hand-over closes (and stores) the first bucket
    led.answered(digests(_ids(1)))
    again = LabelLedger(window_s=3600, max_ids=10**6, bucket_s=10, store=store, clock=clock)
    assert again.reload(labelled) == 52
    assert again.claim(digests(first[:3])) == [OK] * 3
    assert again.claim(digests(labelled)) == [REPEAT, REPEAT]


def test_many_requests_in_one_flush_make_one_file_and_each_returns_after_it(tmp_path):
    store = FeedbackStore(str(tmp_path), "m", Task.binary)
    writer = FeedbackWriter(store, flush_s=0.2)
    ids = _ids(40)

    async def go():
        async def one(rid):
            await writer.write([{"request_id": rid, "label": "1"}], "v1")
            return rid in set(read_feedback(str(tmp_path), "m")["request_id"])  # stored before the answer
        return await asyncio.gather(*(one(r) for r in ids))

    assert all(asyncio.run(go()))
    assert store.table.file_count() == 1 and writer.files == 1


def test_a_failed_write_fails_every_request_of_its_flush(tmp_path, monkeypatch):
    store = FeedbackStore(str(tmp_path), "m", Task.binary)
    writer = FeedbackWriter(store, flush_s=0.05)
    monkeypatch.setattr(store, "write_many", lambda batches: (_ for _ in ()).throw(OSError("disk full")))

    async def go():
        return await asyncio.gather(*(writer.write([{"request_id": r, "label": "1"}], "v1") for r in _ids(3)),
                                    return_exceptions=True)

    assert [type(e) for e in asyncio.run(go())] == [OSError] * 3


def test_digests_are_stable_and_distinct():
    a = digests(["x" * 32, "y" * 32])
    assert a.dtype == np.uint64 and a[0] != a[1] and (digests(["x" * 32]) == a[:1]).all()
    assert ledger.ledger_actor_name("m", "/a") != ledger.ledger_actor_name("m", "/b")


def test_window_is_checked_against_the_ledger_retention():
    import pytest

    from foundry import config
    from foundry.errors import ConfigError

    with pytest.raises(ConfigError, match="storage.retention.ledger_days"):
        config.load(["storage.root=/tmp/x", "storage.retention.ledger_days=1", "serve.feedback.window_s=172800"])
    assert timedelta(days=2).total_seconds() >= config.load(["storage.root=/tmp/x"]).serve.feedback.window_s
