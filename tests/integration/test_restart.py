"""The whole cluster stops in the middle of a self-healing episode and is started again: everything
comes back from storage, with the same commands that started it the first time and no repair.

The monitor had submitted a retrain job when the cluster went down (the job died with it). After
``python -m cluster up``, ``python -m serve_apps.deploy`` serves the registry's production version and
``python -m jobs.monitor`` restores the persisted state: it finds its in-flight job unknown to the new
cluster, counts it as a failed attempt, retries the same episode (same data set) after the backoff,
and the retrain is promoted and rolled out. No job runs twice for one attempt.

This module stops and restarts the session's shared cluster (same ports, token and storage), so
later modules find it up again.
"""

from __future__ import annotations

import httpx
import pytest

from foundry.demo.traffic import scenario_rows
from foundry.drift.monitor import state_uri
from foundry.runtime import connection
from tests.conftest import TEST_HEAD_CPUS, run_cluster_cli
from tests.healing import QUICK_RETRAIN, drift_until, run_module, watched_model

KEY = "restart-key-" + "ljKKoxiLpDXKdGplOJODhpOT"
MODEL = "heal-restart"


@pytest.fixture(scope="module")
def watched(ray_cluster, serve_port, tmp_path_factory):
    with watched_model(ray_cluster, serve_port, tmp_path_factory.mktemp("restart-v1"), MODEL, KEY,
                       [QUICK_RETRAIN, "drift.retrain.backoff_s=1"]) as w:
        yield w


def _saved_state(root: str) -> dict:
    import json

    from foundry import storage

    fs, path = storage.resolve(state_uri(root, MODEL))
    return json.loads(storage.read_bytes(fs, path))


def _served_version(w) -> str:
    features, _ = next(scenario_rows("baseline", 3, seed=5))
    r = httpx.post(f"{w.traffic.url}/predict", json={"rows": features}, headers={"X-API-Key": KEY}, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["model_version"]


def test_a_cluster_restart_mid_episode_heals_from_storage(watched, ray_cluster, job_client):
    import ray

    # 1. Drift until the monitor has a retrain job in flight, then stop the whole cluster.
    events = drift_until(watched, end_kinds=frozenset({"retrain_submitted"}), timeout_s=300)
    lost = next(e for e in events if e["kind"] == "retrain_submitted")
    ray.shutdown()
    # Serve caches its controller handle per driver job id, and the reconnected test process gets the
    # same job id from the new cluster as it had from the old one: forget the dead controller's handle.
    from ray.serve import context as serve_context

    serve_context._disconnect()
    down = run_cluster_cli("down", *ray_cluster.overrides, timeout=180)
    assert down.returncode == 0, down.stdout + down.stderr
    saved = _saved_state(watched.root)
    assert saved["controller"]["phase"] == "running", saved["controller"]
    assert saved["controller"]["submission_id"] == lost["submission_id"]
    assert watched.registry.alias(MODEL, "production") == watched.v1

    # 2. Start it again and run the same commands as the first time.
    up = run_cluster_cli("up", *ray_cluster.overrides, f"cluster.head_num_cpus={TEST_HEAD_CPUS}")
    assert up.returncode == 0, up.stdout + up.stderr
    connection.connect(ray_cluster.address)
    assert lost["submission_id"] not in {j.submission_id for j in job_client.list_jobs()}  # a new cluster
    run_module("serve_apps.deploy", watched.overrides, watched.env)
    run_module("jobs.monitor", watched.overrides, watched.env)
    assert _served_version(watched) == watched.v1  # production, from the registry
    started = [e for e in watched.events() if e["kind"] == "monitor_started"][-1]
    assert started["restored"] is True and started["phase"] == "running", started
    assert started["submission_id"] == lost["submission_id"]

    # 3. The lost attempt counts as failed, the episode is retried and heals.
    events = drift_until(watched, timeout_s=600, seed=700)
    after = events[events.index(started) + 1:]
    kinds = [e["kind"] for e in after]
    story = ["retrain_failed", "retrain_retry_scheduled", "retrain_submitted", "retrain_finished", "promoted",
             "rolled_out", "rebased"]
    assert [k for k in kinds if k in story] == story, [(e["kind"], e["message"]) for e in after]
    failed = next(e for e in after if e["kind"] == "retrain_failed")
    retried = next(e for e in after if e["kind"] == "retrain_submitted")
    assert failed["submission_id"] == lost["submission_id"]
    assert retried["episode"] == lost["episode"] and retried["attempt"] == lost["attempt"] + 1
    assert retried["data"] == lost["data"]  # the same rows as the lost attempt
    new = next(e for e in after if e["kind"] == "promoted")["version"]
    assert watched.registry.alias(MODEL, "production") == new != watched.v1
    assert _served_version(watched) == new
    jobs = [j for j in job_client.list_jobs() if (j.metadata or {}).get("model") == MODEL]
    assert [(j.submission_id, j.status.value) for j in jobs] == [(retried["submission_id"], "SUCCEEDED")]
