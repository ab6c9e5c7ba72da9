"""The monitor's live windows, without a model: label matching in either order, bounded memory, the
restored-rows guard, the test-round cadence, and tracking which version served each row."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from foundry.drift.batch import LiveBatch
from foundry.drift.windows import LiveWindows, VersionTracker


class FakeSuite:
    """A detector suite as the windows use it: errors are 0/1 mismatches; no online detectors."""

    cfg = SimpleNamespace(concept=SimpleNamespace(method=SimpleNamespace(value="fet")))

    def errors(self, predictions, labels):
        return (np.asarray(predictions) != np.asarray(labels)).astype(np.float64)

    def update_online(self, x_num, x_cat):
        return None

    def test_window(self, x_num, x_cat, scores):
        return [SimpleNamespace(detector="tabular", rows=len(x_num))]

    def test_concept(self, errors):
        return SimpleNamespace(detector="concept", rows=len(errors))


def windows(retain_rows: int = 10) -> LiveWindows:
    drift = SimpleNamespace(monitor=SimpleNamespace(retain_rows=retain_rows),
                            detectors=SimpleNamespace(concept=SimpleNamespace(window_rows=4)),
                            alarm=SimpleNamespace(diagnose=True))
    return LiveWindows(drift, FakeSuite())


def batch(ids: list[str], version: str = "v1", at: float = 100.0) -> tuple[LiveBatch, pd.DataFrame]:
    n = len(ids)
    rows = LiveBatch.from_dict({"request_id": ids, "received_at": np.full(n, at), "model_version": [version] * n,
                                "prediction": ["1"] * n, "scores": np.full(n, 0.5), "x_num": np.zeros((n, 2)),
                                "x_cat": np.zeros((n, 1), np.int64)})
    return rows, rows.frame([], regression=False)


def test_labels_match_their_rows_whichever_arrives_first():
    w = windows()
    assert w.match_labels(["a", "b"], ["1", "0"]) == 0  # labels overtook their rows
    assert list(w.early) == ["a", "b"] and not w.errors
    rows, frame = batch(["a", "b", "c"])
    assert w.absorb_batch(rows, frame, np.ones(3, bool)) == 2  # matched as the rows arrive
    assert list(w.errors) == [0.0, 1.0] and not w.early and list(w.pending) == ["c"]
    assert w.match_labels(["c"], ["1"]) == 1 and list(w.errors) == [0.0, 1.0, 0.0]
    assert [e[0] for e in w.labelled_errors] == [100.0] * 3 and w.labels_since_test == 3


def test_memory_is_bounded_and_rows_another_version_served_or_already_restored_are_skipped():
    w = windows(retain_rows=10)
    rows, frame = batch([f"r{i}" for i in range(8)])
    w.absorb_batch(rows, frame, np.ones(8, bool))
    rows, frame = batch([f"s{i}" for i in range(8)])
    mine = np.array([True] * 6 + [False] * 2)  # two rows another version answered
    w.restored_ids = {"s0", "s1"}  # on storage when the windows were reloaded: in them already
    w.absorb_batch(rows, frame, mine)
    assert len(w.window) == 10 and list(w.pending)[-4:] == ["s2", "s3", "s4", "s5"] and len(w.pending) == 10
    w.match_labels([f"x{i}" for i in range(12)], ["1"] * 12)
    assert len(w.early) == 10  # labels whose rows never come do not pile up


def test_a_round_is_due_every_test_every_rows_and_starts_the_count_again():
    w = windows()
    rows, frame = batch([f"r{i}" for i in range(6)])
    w.absorb_batch(rows, frame, np.ones(6, bool))
    assert not w.due(test_every_rows=8, size=4) and w.due(test_every_rows=6, size=4)
    assert [r.detector for r in w.test(size=4, concept_rows=4)] == ["tabular"]  # no labels: no concept test
    w.match_labels([f"r{i}" for i in range(5)], ["1"] * 5)
    results = w.test(size=4, concept_rows=4)
    assert [(r.detector, r.rows) for r in results] == [("tabular", 4), ("concept", 4)]
    assert w.rows_since_test == 0 and w.labels_since_test == 0 and not w.due(test_every_rows=1, size=1)
    w.reset(FakeSuite())
    assert len(w.window) == 0 and not w.pending and not w.errors


def test_a_run_of_another_versions_rows_is_tracked_across_batches_and_broken_by_the_reference():
    t = VersionTracker()
    versions = np.array(["v2", "v2", "v1", "v2", "v2"], dtype=object)
    mine = t.track("v1", versions, np.full(5, 10.0))
    assert mine.tolist() == [False, False, True, False, False] and t.other_run == ("v2", 2)
    t.track("v1", np.array(["v2"] * 3, dtype=object), np.full(3, 11.0))
    assert t.other_run == ("v2", 5) and t.to_follow(5) == "v2" and t.to_follow(6) is None
    t.unloadable.add("v2")
    assert t.to_follow(5) is None
    t.rebased(at=20.0)
    assert t.other_run == (None, 0)
    t.track("v2", np.array(["v1"] * 4, dtype=object), np.full(4, 19.0))  # a roll-out's late stragglers
    assert t.other_run == (None, 0)
