"""Where the time to heal went: one drift episode split into stages, from facts already recorded.

The monitor's events say when drift was confirmed, the job submitted, the challenger promoted and
rolled out; the Jobs API says when the retrain driver started and ended; the version's own
``timings_s`` say how long it spent preparing, training, evaluating and building detectors. The
demo and ``benchmarks/heal_bench.py`` both report this split, so it is computed once, here.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

# The episode ended one way or another: nothing more will happen without new drift. A rejection is not
# among them: the same episode tries again on more data (drift.retrain.rejection_wait_s) until it heals
# or gives up.
TERMINAL_KINDS = frozenset({"rebased", "rollout_failed", "retries_exhausted", "gave_up", "rolled_back",
                            "rollout_expired"})


@dataclass(frozen=True)
class JobTimes:
    start_s: float  # epoch seconds the retrain driver started (Jobs API start_time / 1000)
    end_s: float


def event_times(events: list[dict[str, Any]]) -> dict[str, float]:
    """Epoch seconds of the first event of each kind."""
    at: dict[str, float] = {}
    for e in events:
        at.setdefault(e["kind"], datetime.fromisoformat(e["at"]).timestamp())
    return at


def first(events: list[dict[str, Any]], kind: str) -> dict[str, Any] | None:
    return next((e for e in events if e["kind"] == kind), None)


def heal_stages(events: list[dict[str, Any]], onset_s: float, job: JobTimes | None,
                timings: dict[str, float]) -> dict[str, float] | None:
    """Seconds per stage from the drift onset to the new version serving; None if it was not rolled out."""
    at = event_times(events)
    gated = "promoted" if "promoted" in at else "candidate"  # candidate: a shadow/canary roll-out followed
    needed = ("drift_detected", "retrain_submitted", gated, "rolled_out")
    if job is None or any(k not in at for k in needed):
        return None
    inside = {
        "prepare data (Ray Data)": timings.get("prepare", 0.0),
        "train (Ray Train / Tune)": timings.get("train", 0.0),
        "evaluate challenger + champion": timings.get("evaluate", 0.0),
        "build drift detectors": timings.get("drift_detectors", 0.0),
    }
    # ``retrain_submitted`` is written once the Jobs API call returned, after the job started: the
    # call began ``submit_s`` earlier.
    submitting = at["retrain_submitted"] - float(first(events, "retrain_submitted").get("submit_s") or 0.0)
    stages = {
        "detect (onset -> drift_detected)": at["drift_detected"] - onset_s,
        "labels (detected -> job submitted)": submitting - at["drift_detected"],
        "job start (submit call -> job started)": job.start_s - submitting,
        **inside,
        "job other (imports, register, exit)": (job.end_s - job.start_s) - sum(inside.values()),
        "notice (job end -> monitor sees it)": at[gated] - job.end_s,
    }
    if gated == "promoted":
        stages["roll out (promoted -> serving, in place)"] = at["rolled_out"] - at["promoted"]
    else:  # the roll-out can start (from the candidate alias) a moment before the monitor reads the job's outcome
        stages["notice (job end -> monitor sees it)"] = min(at[gated], at.get("rollout_started", at[gated])) - job.end_s
        stages["live roll-out (candidate -> canary/shadow won -> serving)"] = \
            at["rolled_out"] - min(at["candidate"], at.get("rollout_started", at["candidate"]))
    return {k: round(v, 2) for k, v in stages.items()}


def rows_before(records, at_s: float, phase: str) -> int:
    """Rows of ``phase`` answered at or before ``at_s`` (e.g. drifted rows it took to detect the drift)."""
    return sum(r.rows for r in records if r.phase == phase and r.at <= at_s)
