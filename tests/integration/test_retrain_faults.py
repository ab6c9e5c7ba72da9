"""When the retrain does not help, production must not move: a failing retrain job, and a retrain
that produces a model no better than production, on the shared cluster over real HTTP and the Jobs API.

- **Failing job**: the monitor's retrain overrides ask for more rows than an episode's data set has
  (``data.validation.min_rows=10000000``), so every attempt exits non-zero (3, bad data) at start. The
  monitor must retry the same episode with exponential backoff up to ``max_retries``, then give up
  with a ``retries_exhausted`` event; the failures are events and a Prometheus metric; production, the
  registry and Serve stay on v1 and no request fails. (A configuration error, exit 2, is not retried:
  the same command would repeat it; that is test_drift_monitor's subject. This test used an invalid
  ``trainer.num_workers=0`` until then.)
- **Worse challenger**: the retrain runs for real but must beat production by an impossible margin
  (``min_improvement=1``: a 100% lower loss), so the registered challenger is rejected: the alias and
  Serve stay on v1, the rejection is an event and a metric. (``stop_on_no_gain`` is off: such a margin
  makes every rejection conclusive, and the give-up that follows is test_drift_monitor's subject.)
"""

from __future__ import annotations

from datetime import datetime

import httpx
import pytest

from foundry.demo.traffic import scenario_rows
from tests.healing import (
    QUICK_RETRAIN,
    drift_until,
    exported_metrics,
    metric_value,
    wait_for_metric,
    watched_model,
)

KEY = "retrain-faults-key-" + "qNO-23s8x5kyO-5bSAkNG3aS"
FAILING = "heal-fail"
REJECTED = "heal-reject"
BACKOFF_S, BACKOFF_FACTOR, MAX_RETRIES = 2, 2, 2
RETRAINS_METRIC = "ray_foundry_retrains_total"  # a Counter: Ray exports it with _total


@pytest.fixture(scope="module")
def failing(ray_cluster, serve_port, tmp_path_factory):
    overrides = ['drift.retrain.overrides=["+experiment=quick","data.validation.min_rows=10000000"]',
                 f"drift.retrain.backoff_s={BACKOFF_S}", f"drift.retrain.backoff_factor={BACKOFF_FACTOR}",
                 f"drift.retrain.max_retries={MAX_RETRIES}"]
    with watched_model(ray_cluster, serve_port, tmp_path_factory.mktemp("fail-v1"), FAILING, KEY,
                       overrides) as watched:
        yield watched


@pytest.fixture(scope="module")
def rejecting(ray_cluster, serve_port, tmp_path_factory):
    with watched_model(ray_cluster, serve_port, tmp_path_factory.mktemp("reject-v1"), REJECTED, KEY,
                       [QUICK_RETRAIN, "drift.retrain.min_improvement=1", "drift.retrain.stop_on_no_gain=false"]
                       ) as watched:
        yield watched


def _served_version(w) -> str:
    features, _ = next(scenario_rows("concept_shift", 3, seed=999))
    r = httpx.post(f"{w.traffic.url}/predict", json={"rows": features}, headers={"X-API-Key": KEY}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["model_version"]


def _at(event: dict) -> float:
    return datetime.fromisoformat(event["at"]).timestamp()


def test_a_failing_retrain_is_retried_with_backoff_then_given_up_and_production_is_unchanged(failing, job_client):
    events = drift_until(failing, end_kinds=frozenset({"retries_exhausted"}), timeout_s=420)
    kinds = [e["kind"] for e in events]
    assert "retries_exhausted" in kinds, [(e["kind"], e["message"]) for e in events]
    attempts = MAX_RETRIES + 1
    submitted = [e for e in events if e["kind"] == "retrain_submitted"]
    failed = [e for e in events if e["kind"] == "retrain_failed"]
    retries = [e for e in events if e["kind"] == "retrain_retry_scheduled"]
    assert [e["attempt"] for e in submitted] == list(range(1, attempts + 1)), submitted
    assert len(failed) == attempts and len({e["episode"] for e in submitted + failed}) == 1
    # Exponential backoff: the k-th retry waits backoff_s * factor**(k-1) after the k-th failure.
    waits = [BACKOFF_S * BACKOFF_FACTOR ** k for k in range(MAX_RETRIES)]
    assert [e["retry_in_s"] for e in retries] == waits
    for k, wait in enumerate(waits):
        assert _at(submitted[k + 1]) - _at(failed[k]) >= wait - 0.05, (failed[k], submitted[k + 1])
    assert kinds.count("retries_exhausted") == 1 and kinds[-1] in ("retries_exhausted", "retrain_failed")
    assert not {"retrain_finished", "promoted", "rejected", "rolled_out"} & set(kinds)
    # Each attempt was a real job under its own submission id, and each failed naming what it refused.
    jobs = {j.submission_id: j for j in job_client.list_jobs() if (j.metadata or {}).get("model") == FAILING}
    assert sorted(jobs) == sorted(e["submission_id"] for e in submitted)
    assert {j.status.value for j in jobs.values()} == {"FAILED"}
    assert "data.validation.min_rows=10000000" in job_client.get_job_logs(submitted[-1]["submission_id"])
    # ... and each failure event says why, from the job's log (it used to say only "job FAILED").
    assert all((e.get("cause") or "").startswith("error: ") for e in failed), failed
    # Production, the registry and Serve are untouched; no request failed.
    assert failing.registry.alias(FAILING, "production") == failing.v1
    assert [mv.version for mv in failing.registry.versions(FAILING)] == [failing.v1]
    assert _served_version(failing) == failing.v1
    assert not failing.traffic.log.failed(), failing.traffic.log.failed()[:3]
    status = failing.status()
    assert status["controller"]["phase"] == "cooldown" and status["controller"]["attempt"] == attempts
    # The failures are a metric on the dashboard's Prometheus endpoint too.
    for outcome, count in (("failed", attempts), ("exhausted", 1), ("submitted", attempts)):
        assert wait_for_metric(RETRAINS_METRIC, count, model=FAILING, outcome=outcome) == count, outcome


def test_a_worse_challenger_is_registered_but_production_and_serve_stay(rejecting):
    events = drift_until(rejecting, timeout_s=600)
    kinds = [e["kind"] for e in events]
    story = ["drift_detected", "retrain_submitted", "retrain_finished", "rejected"]
    assert [k for k in kinds if k in story] == story, [(e["kind"], e["message"]) for e in events]
    assert not {"promoted", "rolled_out", "rebased", "retrain_failed"} & set(kinds)
    rejected = next(e for e in events if e["kind"] == "rejected")
    challenger = rejected["version"]
    meta = rejecting.registry.get(REJECTED, challenger).metadata
    assert meta["promotion"]["promoted"] is False and meta["lineage"]["trigger"] == "drift"
    assert rejecting.registry.alias(REJECTED, "production") == rejecting.v1
    assert _served_version(rejecting) == rejecting.v1
    status = rejecting.status()
    # Not the cooldown: the same episode tries again after rejection_wait_s, on more labelled rows.
    assert status["reference_version"] == rejecting.v1 and status["controller"]["phase"] == "more_data"
    assert not rejecting.traffic.log.failed(), rejecting.traffic.log.failed()[:3]
    assert wait_for_metric(RETRAINS_METRIC, 1, model=REJECTED, outcome="rejected") == 1
    assert metric_value(exported_metrics(), RETRAINS_METRIC, model=REJECTED, outcome="promoted") == 0
