"""The demo's summary and report folder, from hand-made records (no cluster): the numbers are the
ones the records imply, and every promised file is written and readable."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pandas as pd
import pytest

from foundry.demo.report import FIGURES, latency_bins, markdown, rolling_accuracy, rounds_frame, write_report
from foundry.demo.summary import milestones, outcome_of, summarize
from foundry.demo.traffic import RequestRecord, TrafficLog
from foundry.drift.timeline import JobTimes

# The figures are ours: a matplotlib warning while drawing them (a legend with nothing in it) is a defect.
pytestmark = pytest.mark.filterwarnings("error::UserWarning")

T0 = 1_800_000_000.0
ONSET = T0 + 20.0
V1, V2 = "v20261125-000000-000-aaaaaa", "v20261125-000500-000-bbbbbb"


def _event(kind: str, at: float, **fields) -> dict:
    return {"kind": kind, "at": datetime.fromtimestamp(at, timezone.utc).isoformat(timespec="milliseconds"),
            "message": f"{kind} message", **fields}


def _records() -> list[RequestRecord]:
    out = []
    for i in range(10):  # baseline, 16/20 right
        out.append(RequestRecord(T0 + 2 * i, "baseline", 200, 0.010, 20, V1, 16))
    for i in range(10):  # drifted, old model: 10/20 right
        out.append(RequestRecord(ONSET + 2 * i, "drift", 200, 0.012, 20, V1, 10))
    out.append(RequestRecord(ONSET + 21, "drift", 503, 0.5, 20, None, 0, "overloaded"))
    for i in range(10):  # drifted, healed model: 18/20 right
        out.append(RequestRecord(ONSET + 60 + 2 * i, "drift", 200, 0.011, 20, V2, 18))
    return out


EVENTS = [_event("monitor_started", T0 - 30), _event("drift_detected", ONSET + 5.0, episode="e1"),
          _event("retrain_submitted", ONSET + 9.0, submission_id="foundry-retrain-x-e1-a1", rows=2400),
          _event("retrain_finished", ONSET + 50.0), _event("promoted", ONSET + 51.0, version=V2),
          _event("rolled_out", ONSET + 52.0, version=V2), _event("rebased", ONSET + 52.5, version=V2)]
JOB = JobTimes(ONSET + 10.0, ONSET + 49.0)
TIMINGS = {"prepare": 10.0, "train": 15.0, "evaluate": 6.0, "drift_detectors": 2.0}
ROUNDS = [{"round": n, "at": T0 + 5 * n, "rows": 500 * n, "drifted": n >= 6, "votes": ["concept"] if n >= 6 else [],
           "phase": "idle", "reference_version": V1,
           "results": [{"detector": "tabular", "drift": False, "p_value": 0.4, "statistic": 0.1, "threshold": 0.05,
                        "vote": True, "rows": 500},
                       {"detector": "concept", "drift": n >= 6, "p_value": 1e-6 if n >= 6 else 0.5, "statistic": 0.3,
                        "threshold": 0.01, "vote": True, "rows": 300},
                       {"detector": "online", "drift": False, "p_value": None, "statistic": 1.0, "threshold": 3.0,
                        "vote": True, "rows": 500}]}
          for n in range(1, 12)]


@pytest.fixture()
def summary():
    return summarize("churn-demo", "concept_shift", _records(), EVENTS, ONSET, V1, JOB, TIMINGS, started_s=T0 - 60)


def test_summary_splits_accuracy_by_phase_and_by_the_model_that_answered(summary):
    assert summary["outcome"] == "healed"
    assert summary["versions"] == {"initial": V1, "healed": V2}
    assert summary["accuracy"]["before_drift"] == pytest.approx(0.8)
    assert summary["accuracy"]["during_drift"] == pytest.approx(0.5)
    assert summary["accuracy"]["after_heal"] == pytest.approx(0.9)


def test_summary_detection_delay_time_to_heal_and_requests(summary):
    # Drifted rows answered up to the drift_detected event (ONSET+5): requests at +0, +2, +4.
    assert summary["detection"] == {"rows": 60, "seconds": 5.0}
    assert summary["time_to_heal_s"] == pytest.approx(52.0, abs=0.01)
    assert sum(summary["stages_s"].values()) == pytest.approx(52.0, abs=0.05)
    assert summary["requests"] == {"sent": 31, "failed": 1, "rows": 620}
    assert summary["retrain"] == {"submission_id": "foundry-retrain-x-e1-a1", "rows": 2400}


@pytest.mark.parametrize("kinds, outcome", [
    (["drift_detected", "retrain_submitted", "rejected"], "rejected"),
    (["drift_detected", "retrain_submitted", "retries_exhausted"], "failed"),
    (["drift_detected"], "timed_out"),
    ([], "timed_out"),
])
def test_outcomes_other_than_healed(kinds, outcome):
    assert outcome_of([_event(k, ONSET + i) for i, k in enumerate(kinds)])[0] == outcome


def test_a_rejected_episode_has_no_healed_version_and_no_stage_split():
    events = [e for e in EVENTS if e["kind"] not in ("promoted", "rolled_out", "rebased")] + \
        [_event("rejected", ONSET + 51.0)]
    s = summarize("m", "concept_shift", _records(), events, ONSET, V1, JOB, TIMINGS, started_s=T0)
    assert s["outcome"] == "rejected" and s["versions"]["healed"] is None
    assert s["stages_s"] is None and s["time_to_heal_s"] is None
    assert s["accuracy"]["after_heal"] != s["accuracy"]["after_heal"]  # NaN: nobody answered with a new model


def test_milestones_are_the_onset_and_the_episode_events():
    marks = milestones(EVENTS, ONSET)
    assert set(marks) == {"onset", "drift_detected", "retrain_submitted", "promoted", "rolled_out"}
    assert marks["rolled_out"] - marks["onset"] == pytest.approx(52.0, abs=0.01)


def test_rolling_accuracy_and_latency_bins():
    frame = pd.DataFrame([r.__dict__ for r in _records()])
    curve = rolling_accuracy(frame, window_rows=40)  # 2 requests per point
    assert len(curve) == 30  # the failed request is not a point
    assert curve["accuracy"].iloc[0] == pytest.approx(0.8) and curve["accuracy"].iloc[-1] == pytest.approx(0.9)
    bins = latency_bins(frame, T0, bin_s=10.0)
    assert bins["requests"].sum() == 31 and bins["failed"].sum() == 1
    assert bins["p50_ms"].min() == pytest.approx(10.0)


def test_rounds_frame_has_one_row_per_detector_and_round():
    frame = rounds_frame(ROUNDS)
    assert len(frame) == 3 * len(ROUNDS)
    assert frame[frame["detector"] == "concept"]["drift"].sum() == 6


def test_write_report_writes_every_file(tmp_path, summary):
    log = TrafficLog()
    for r in _records():
        log.add(r)
    paths = write_report(tmp_path / "run", summary, log.frame(), ROUNDS, EVENTS, milestones(EVENTS, ONSET), T0)
    for name in FIGURES:
        data = paths[name].read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name
    text = paths["report"].read_text()
    for figure in FIGURES.values():
        assert f"]({figure})" in text
    assert "| accuracy during drift (old model) | 0.500 |" in text and "| requests sent / failed | 31 / 1 |" in text
    assert json.loads(paths["summary"].read_text())["versions"]["healed"] == V2
    assert len(pd.read_csv(paths["traffic"])) == 31
    assert len(json.loads(paths["rounds"].read_text())) == len(ROUNDS)


def test_markdown_survives_missing_figures():
    text = markdown({"outcome": "timed_out", "accuracy": {}, "requests": {}})
    assert "timed_out" in text and "n/a" in text


def test_the_drift_figure_shows_the_sequential_alarm_when_the_rounds_carry_it(tmp_path):
    """Rounds of the sequential alarm have a log statistic per family and no p-value: the figure plots
    those against the budget instead of coming out empty. Catches: a p-value-only plot (blank figure)."""
    from foundry.demo.report import plot_drift

    rounds = [{"round": i, "at": T0 + i, "results": [
        {"detector": f"alarm.{family}", "p_value": None, "statistic": -1.4 + 0.5 * i * (family == "labelled"),
         "threshold": 13.8, "drift": i == 9 and family == "labelled", "vote": True}
        for family in ("input", "estimated", "labelled")]} for i in range(10)]
    path = tmp_path / "drift.png"
    plot_drift(path, rounds, {}, T0)
    blank = tmp_path / "blank.png"
    plot_drift(blank, [{"round": 0, "at": T0, "results": []}], {}, T0)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > blank.stat().st_size + 5_000
