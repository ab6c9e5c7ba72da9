"""The demo's story in numbers, from what it recorded: requests, the monitor's events, the retrain job.

Pure: no cluster, no HTTP, so it is tested with hand-made records. Accuracy is split by who
answered: rows before the onset (the first model on the world it was trained on), drifted rows the
first model answered, drifted rows the healed model answered.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from foundry.demo.traffic import RequestRecord, accuracy
from foundry.drift.timeline import JobTimes, event_times, first, heal_stages, rows_before

BASELINE, DRIFT = "baseline", "drift"


def outcome_of(events: list[dict[str, Any]]) -> tuple[str, str]:
    """(healed | rejected | failed | timed_out, a sentence) from the episode's events."""
    kinds = {e["kind"]: e for e in events}
    if "rolled_out" in kinds:
        return "healed", (f"The monitor detected the drift, a retrain job produced {kinds['rolled_out'].get('version')}, "
                          "it beat production on recent data and now serves every request.")
    if "rejected" in kinds:
        return "rejected", f"The challenger was not better, production was kept: {kinds['rejected']['message']}"
    for kind in ("rolled_back", "rollout_expired"):
        if kind in kinds:
            return "rolled_back", f"The challenger passed the gate but not its live roll-out: {kinds[kind]['message']}"
    for kind in ("rollout_failed", "retries_exhausted", "retrain_failed"):
        if kind in kinds:
            return "failed", f"{kind}: {kinds[kind]['message']}"
    if "drift_detected" in kinds:
        return "timed_out", "drift was detected but the episode did not finish within demo.heal_timeout_s"
    return "timed_out", "no drift was detected within demo.heal_timeout_s"


def summarize(model: str, scenario: str, records: list[RequestRecord], events: list[dict[str, Any]],
              onset_s: float, initial_version: str, job: JobTimes | None, timings: dict[str, float],
              started_s: float) -> dict[str, Any]:
    """Everything the demo prints at the end and writes to summary.json."""
    at = event_times(events)
    rolled_out = first(events, "rolled_out")
    healed = rolled_out["version"] if rolled_out else None
    drifted = [r for r in records if r.phase == DRIFT]
    outcome, detail = outcome_of(events)
    detected = at.get("drift_detected")
    total = at["rolled_out"] - onset_s if "rolled_out" in at else None
    submitted = first(events, "retrain_submitted")
    return {
        "model": model,
        "scenario": scenario,
        "outcome": outcome,
        "outcome_detail": detail,
        "versions": {"initial": initial_version, "healed": healed},
        "accuracy": {
            "before_drift": accuracy([r for r in records if r.phase == BASELINE]),
            "during_drift": accuracy([r for r in drifted if r.version == initial_version]),
            "after_heal": accuracy([r for r in drifted if healed and r.version == healed]),
        },
        "detection": {"rows": rows_before(records, detected, DRIFT) if detected else None,
                      "seconds": round(detected - onset_s, 2) if detected else None},
        "retrain": {"submission_id": submitted.get("submission_id") if submitted else None,
                    "rows": submitted.get("rows") if submitted else None},
        "time_to_heal_s": round(total, 2) if total is not None else None,
        "stages_s": heal_stages(events, onset_s, job, timings),
        "rollout": rollout_steps(events),
        "requests": {"sent": len(records), "failed": sum(1 for r in records if r.status != 200),
                     "rows": sum(r.rows for r in records)},
        "wall_s": round(time.time() - started_s, 1),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def rollout_steps(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The live roll-out's steps (promotion.rollout=shadow|canary): when, what share, on how much evidence."""
    out = []
    for e in events:
        if e["kind"] in ("rollout_started", "rollout_step", "rollout_promoted", "rolled_back", "rollout_expired",
                         "guard_started", "guard_passed"):
            evidence = e.get("evidence") or {}
            out.append({"at": e["at"], "kind": e["kind"], "fraction": e.get("fraction"),
                        "labelled_rows": evidence.get("labelled_rows"),
                        "relative_loss_reduction": evidence.get("relative_loss_reduction"), "message": e["message"]})
    return out


def milestones(events: list[dict[str, Any]], onset_s: float) -> dict[str, float]:
    """Epoch seconds of the onset and the episode's milestones (for the plots)."""
    return {"onset": onset_s, **{k: v for k, v in event_times(events).items()
                                 if k in ("drift_detected", "retrain_submitted", "promoted", "candidate",
                                          "rollout_started", "rolled_out")}}
