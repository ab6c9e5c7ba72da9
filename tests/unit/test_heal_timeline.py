"""The time-to-heal split (demo and heal benchmark): stages add up to the whole, from recorded facts."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from foundry.demo.traffic import RequestRecord
from foundry.drift.timeline import JobTimes, event_times, heal_stages, rows_before

T0 = 1_800_000_000.0  # the drift onset


def _event(kind: str, after_s: float) -> dict:
    return {"kind": kind, "at": datetime.fromtimestamp(T0 + after_s, timezone.utc).isoformat(timespec="milliseconds")}


EVENTS = [_event("monitor_started", -60), _event("drift_detected", 4.0), _event("retrain_submitted", 10.0),
          _event("retrain_finished", 95.0), _event("promoted", 95.5), _event("rolled_out", 96.5),
          _event("rebased", 96.7), _event("drift_detected", 500.0)]
JOB = JobTimes(T0 + 12.0, T0 + 94.0)
TIMINGS = {"prepare": 20.0, "train": 30.0, "evaluate": 15.0, "drift_detectors": 5.0}


def test_first_event_of_each_kind_wins():
    at = event_times(EVENTS)
    assert at["drift_detected"] == pytest.approx(T0 + 4.0, abs=1e-3)  # not the later episode's


def test_stages_cover_onset_to_rollout_exactly():
    stages = heal_stages(EVENTS, T0, JOB, TIMINGS)
    assert stages["detect (onset -> drift_detected)"] == pytest.approx(4.0, abs=0.01)
    assert stages["labels (detected -> job submitted)"] == pytest.approx(6.0, abs=0.01)
    assert stages["job start (submit call -> job started)"] == pytest.approx(2.0, abs=0.01)
    assert stages["train (Ray Train / Tune)"] == 30.0
    assert stages["job other (imports, register, exit)"] == pytest.approx(82.0 - 70.0, abs=0.01)
    assert stages["notice (job end -> monitor sees it)"] == pytest.approx(1.5, abs=0.01)
    assert stages["roll out (promoted -> serving, in place)"] == pytest.approx(1.0, abs=0.01)
    assert sum(stages.values()) == pytest.approx(96.5, abs=0.05)


def test_the_job_start_counts_from_the_start_of_the_submit_call():
    """The monitor writes ``retrain_submitted`` after the Jobs API call returned, when the job has already
    started; the event's ``submit_s`` (how long the call took) moves the boundary back to the call."""
    events = [{**e, "submit_s": 2.5} if e["kind"] == "retrain_submitted" else e for e in EVENTS]
    stages = heal_stages(events, T0, JobTimes(T0 + 9.0, T0 + 94.0), TIMINGS)
    assert stages["labels (detected -> job submitted)"] == pytest.approx(3.5, abs=0.01)
    assert stages["job start (submit call -> job started)"] == pytest.approx(1.5, abs=0.01)
    assert sum(stages.values()) == pytest.approx(96.5, abs=0.05)


@pytest.mark.parametrize("missing", ["drift_detected", "retrain_submitted", "promoted", "rolled_out"])
def test_no_split_unless_the_episode_was_rolled_out(missing):
    assert heal_stages([e for e in EVENTS if e["kind"] != missing], T0, JOB, TIMINGS) is None


def test_no_split_without_the_job():
    assert heal_stages(EVENTS, T0, None, TIMINGS) is None


def test_rows_before_counts_only_that_phase_up_to_the_moment():
    records = [RequestRecord(T0 - 5, "baseline", 200, 0.01, 20), RequestRecord(T0 + 1, "drift", 200, 0.01, 20),
               RequestRecord(T0 + 3, "drift", 200, 0.01, 25), RequestRecord(T0 + 5, "drift", 200, 0.01, 20)]
    assert rows_before(records, T0 + 4.0, "drift") == 45
    assert rows_before(records, T0 + 4.0, "baseline") == 20


def test_a_canary_roll_out_is_its_own_stage_and_the_summary_lists_its_steps():
    """promotion.rollout=canary: the job's gate makes a candidate, the live roll-out decides; its time is
    one stage (candidate -> serving) and the demo's summary lists the steps with their evidence."""
    from foundry.demo.summary import outcome_of, rollout_steps

    canary = [e for e in EVENTS if e["kind"] not in ("promoted", "rolled_out", "rebased")]
    canary[4:4] = [_event("candidate", 95.5), {**_event("rollout_started", 96.0), "fraction": 0.05},
                   {**_event("rollout_step", 110.0), "fraction": 0.25, "evidence": {"labelled_rows": 300}},
                   {**_event("rollout_promoted", 120.0), "evidence": {"labelled_rows": 420,
                                                                       "relative_loss_reduction": 0.2}},
                   _event("rolled_out", 121.0)]
    canary = [{**e, "message": e["kind"], "version": "v2"} for e in canary]
    stages = heal_stages(canary, T0, JOB, TIMINGS)
    assert stages["live roll-out (candidate -> canary/shadow won -> serving)"] == pytest.approx(25.5, abs=0.01)
    assert sum(stages.values()) == pytest.approx(121.0, abs=0.05)
    steps = rollout_steps(canary)
    assert [(s["kind"], s["fraction"], s["labelled_rows"]) for s in steps] == [
        ("rollout_started", 0.05, None), ("rollout_step", 0.25, 300), ("rollout_promoted", None, 420)]
    assert outcome_of(canary)[0] == "healed"
    rolled_back = [e for e in canary if e["kind"] not in ("rollout_promoted", "rolled_out")] + [
        {**_event("rolled_back", 130.0), "message": "worse", "version": "v2"}]
    assert outcome_of(rolled_back)[0] == "rolled_back"


def test_a_canary_that_starts_from_the_alias_before_the_monitor_reads_the_job_still_adds_up():
    events = [_event("drift_detected", 4.0), _event("retrain_submitted", 10.0), _event("rollout_started", 95.0),
              _event("candidate", 96.0), _event("rolled_out", 120.0)]
    stages = heal_stages(events, T0, JOB, TIMINGS)
    assert stages["notice (job end -> monitor sees it)"] == pytest.approx(1.0, abs=0.01)
    assert stages["live roll-out (candidate -> canary/shadow won -> serving)"] == pytest.approx(25.0, abs=0.01)
    assert sum(stages.values()) == pytest.approx(120.0, abs=0.05)
