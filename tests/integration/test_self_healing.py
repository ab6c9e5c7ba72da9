"""The self-healing loop end to end on the shared cluster, over real HTTP and the real Jobs API.

A model is served and watched by its ``DriftMonitor`` (started with ``python -m jobs.monitor``):
in-distribution traffic raises no drift event; then the world changes (``concept_shift``: same
customers, a new churn behaviour, labels sent to /feedback), the monitor detects it, submits one
retrain job through the Jobs API, the challenger beats production on the same recent held-out rows,
is promoted and rolled out in place, and Serve answers with it. Traffic keeps flowing through
detection, retraining and the swap: no request may fail.

The first version is built without Ray (``tests/versions.py``); the retrain is a real
``jobs.train`` run. A challenger that is *not* better is kept out of production by the same
promotion rule the training job applies (``test_pipeline``'s worse-model test) and the monitor's
handling of a rejection is covered in ``tests/unit/test_drift_monitor.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import httpx
import pytest

from foundry import config, storage
from foundry.drift.events import read_events
from foundry.registry import Registry
from foundry.traffic import TrafficGenerator, accuracy
from tests.conftest import REPO_ROOT
from tests.versions import register_version

KEY = "self-healing-key-" + "0123456789abcdef"
MODEL = "heal"
MONITOR = ["drift.window.size=500", "drift.window.test_every_rows=250", "drift.window.consecutive=2",
           "drift.detectors.concept.window_rows=300", "drift.retrain.min_labelled_rows=1500",
           "drift.retrain.max_rows=4000", "drift.retrain.cooldown_s=3600", "drift.monitor.poll_interval_s=0.5",
           "drift.monitor.num_cpus=0.25",
           'drift.retrain.overrides=["+experiment=quick","trainer.num_workers=1","trainer.epochs=2"]']
SERVE = ["serve.autoscaling.min_replicas=1", "serve.autoscaling.max_replicas=1", "serve.num_cpus=0.5",
         "serve.access_log=false"]
HEAL_TIMEOUT_S = 600


def _run(module: str, args: list[str], env: dict, timeout: float = 300) -> str:
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"{module} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _kinds(root: str) -> list[str]:
    return [e["kind"] for e in read_events(root, MODEL)]


@pytest.fixture(scope="module")
def loop(ray_cluster, serve_port, tmp_path_factory):
    overrides = [*ray_cluster.overrides, f"ray.address={ray_cluster.address}", f"serve.http.port={serve_port}",
                 *SERVE, f"model_name={MODEL}", f"serve.app_name={MODEL}", f"serve.route_prefix=/{MODEL}", *MONITOR]
    cfg = config.load(overrides)
    registry = Registry(storage.normalize(cfg.storage.registry))
    v1 = register_version(registry, cfg, tmp_path_factory.mktemp("heal-v1"))
    env = {**os.environ, "FOUNDRY_API_KEY": KEY}
    _run("serve_apps.deploy", overrides, env)
    assert f"foundry-monitor-{MODEL}" in _run("jobs.monitor", overrides, env)
    generator = TrafficGenerator(f"http://127.0.0.1:{serve_port}/{MODEL}", KEY, rows_per_request=25, concurrency=2)
    try:
        yield {"root": ray_cluster.storage_root, "registry": registry, "v1": v1, "traffic": generator,
               "overrides": overrides, "env": env}
    finally:
        generator.close()
        subprocess.run([sys.executable, "-m", "jobs.monitor", *overrides, "--stop"], cwd=REPO_ROOT, env=env,
                       capture_output=True, timeout=120)
        from foundry.serving import control

        control.delete_app(MODEL, wait=False)


def _monitor_status() -> dict:
    import ray

    return ray.get(ray.get_actor(f"foundry-monitor-{MODEL}", namespace="foundry").status.remote(), timeout=60)


def _wait_rounds(rounds: int, rows: int, timeout_s: float = 60) -> dict:
    """Until the monitor has taken ``rows`` live rows (the sink flushes in the background) and tested them."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = _monitor_status()
        c = status["counters"]
        if c["rows"] >= rows and c["labels_matched"] >= rows and c["rounds"] >= rounds \
                and status["queued_batches"] == 0:
            return status
        time.sleep(0.5)
    raise AssertionError(f"not {rows} rows in {rounds} test rounds after {timeout_s} s: {status}")


def test_in_distribution_traffic_raises_no_drift(loop):
    loop["traffic"].send("baseline", 2000, seed=100, phase="baseline")
    status = _wait_rounds(rounds=2, rows=2000)
    assert status["controller"]["phase"] == "idle" and status["controller"]["episode"] == 0
    kinds = _kinds(loop["root"])
    assert "drift_detected" not in kinds and "retrain_submitted" not in kinds, kinds
    assert not loop["traffic"].log.failed()


def _drift_traffic(gen: TrafficGenerator, stop: threading.Event, slow: threading.Event, seed: int) -> None:
    """Enough traffic to detect the drift and label a retrain set quickly, then a trickle (the 2-core
    CI box needs its CPUs for the retrain job) that still spans the swap."""
    while not stop.is_set():
        gen.send("concept_shift", 200, seed=seed, phase="drift", rate_rows_per_s=40 if slow.is_set() else 250)
        seed += 1


def test_drift_is_detected_retrained_promoted_and_rolled_out_without_a_failed_request(loop, job_client):
    root, traffic, v1 = loop["root"], loop["traffic"], loop["v1"]
    stop, slow = threading.Event(), threading.Event()
    thread = threading.Thread(target=_drift_traffic, args=(traffic, stop, slow, 200), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + HEAL_TIMEOUT_S
        while time.monotonic() < deadline:
            kinds = _kinds(root)
            if "retrain_submitted" in kinds:
                slow.set()
            if {"rebased", "rollout_failed", "retries_exhausted", "rejected"} & set(kinds):
                break
            time.sleep(2)
        time.sleep(3)  # traffic keeps flowing across the swap
    finally:
        stop.set()
        thread.join(timeout=120)

    registry = loop["registry"]
    events = read_events(root, MODEL)
    kinds = [e["kind"] for e in events]
    # The whole story, in order, once.
    story = ["drift_detected", "retrain_submitted", "retrain_finished", "promoted", "rolled_out", "rebased"]
    assert [k for k in kinds if k in story] == story, [(e["kind"], e["message"]) for e in events]
    detected = next(e for e in events if e["kind"] == "drift_detected")
    assert "concept" in detected["votes"], detected
    new = next(e for e in events if e["kind"] == "promoted")["version"]
    assert new != v1 and registry.alias(MODEL, "production") == new
    meta = registry.get(MODEL, new).metadata
    assert meta["lineage"]["trigger"] == "drift" and meta["lineage"]["parent_version"] == v1
    assert meta["lineage"]["drift_episode"] == detected["episode"]
    assert meta["metrics"]["roc_auc"] >= meta["champion_at_training"]["metrics_on_same_test_split"]["roc_auc"] + 0.01
    # The retrain went through the Jobs API, tagged with its episode; one run succeeded (an attempt lost to
    # infrastructure may have been retried under the next attempt number, never run twice in parallel).
    jobs = [j for j in job_client.list_jobs() if (j.metadata or {}).get("model") == MODEL]
    assert [j.status.value for j in jobs].count("SUCCEEDED") == 1, [(j.submission_id, j.status) for j in jobs]
    submitted = [e["submission_id"] for e in events if e["kind"] == "retrain_submitted"]
    assert sorted(j.submission_id for j in jobs) == sorted(submitted)
    assert all(j.metadata["trigger"] == "drift" and j.metadata["episode"] == detected["episode"] for j in jobs)
    # Serve answers with the new version, in place.
    r = httpx.post(f"{traffic.url}/predict", json={"rows": _rows()}, headers={"X-API-Key": KEY}, timeout=30)
    assert r.status_code == 200 and r.json()["model_version"] == new
    log = traffic.log.records
    assert {r.version for r in log if r.phase == "drift"} >= {v1, new}
    after = [r for r in log if r.version == new]
    before = [r for r in log if r.phase == "drift" and r.version == v1]
    assert accuracy(after) > accuracy(before), (accuracy(after), accuracy(before))
    # No request failed at any point.
    assert not traffic.log.failed(), traffic.log.failed()[:3]
    assert len(log) > 100


def test_events_cli_prints_the_history(loop):
    proc = subprocess.run([sys.executable, "-m", "foundry.events", *loop["overrides"], "--kind", "promoted"],
                          cwd=REPO_ROOT, env=loop["env"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and "promoted" in lines[0] and "is the new production" in lines[0]


def test_a_killed_monitor_restarts_from_its_state_without_a_second_retrain(loop, job_client):
    """The monitor's process dies after the episode: Ray restarts the actor (max_restarts=-1), it reloads
    its persisted state (same reference, cooldown after the promotion, counters), every event written
    before is still there, and no retrain job is submitted again for the handled episode."""
    import ray

    before = _monitor_status()
    events_before = read_events(loop["root"], MODEL)
    jobs_before = sorted(j.submission_id for j in job_client.list_jobs() if (j.metadata or {}).get("model") == MODEL)
    actor = ray.get_actor(f"foundry-monitor-{MODEL}", namespace="foundry")
    ray.kill(actor, no_restart=False)
    deadline = time.monotonic() + 120
    after = None
    while time.monotonic() < deadline:
        try:
            after = _monitor_status()
            break
        except Exception:  # restarting
            time.sleep(1)
    assert after is not None, "the monitor did not come back within 120 s"
    assert after["reference_version"] == before["reference_version"]
    assert after["controller"]["phase"] == before["controller"]["phase"] == "cooldown"
    assert after["controller"]["episode"] == before["controller"]["episode"]
    # More drifted traffic: the restarted monitor keeps watching, in cooldown, and submits nothing new.
    loop["traffic"].send("concept_shift", 1000, seed=900, phase="after-restart")
    deadline = time.monotonic() + 60
    status = _monitor_status()
    while time.monotonic() < deadline and not (
            status["counters"]["labels_matched"] >= after["counters"]["labels_matched"] + 1000
            and status["counters"]["rounds"] > after["counters"]["rounds"] and status["queued_batches"] == 0):
        time.sleep(0.5)
        status = _monitor_status()
    assert status["counters"]["rounds"] > after["counters"]["rounds"], status  # it tests the new rows
    assert status["controller"]["phase"] == "cooldown", status
    events_after = read_events(loop["root"], MODEL)
    assert events_after[: len(events_before)] == events_before  # nothing persisted was lost
    restarted = [e for e in events_after[len(events_before):] if e["kind"] == "monitor_started"]
    assert len(restarted) == 1 and restarted[0]["restored"] is True, events_after[len(events_before):]
    assert "retrain_submitted" not in [e["kind"] for e in events_after[len(events_before):]]
    jobs_after = sorted(j.submission_id for j in job_client.list_jobs() if (j.metadata or {}).get("model") == MODEL)
    assert jobs_after == jobs_before
    assert not loop["traffic"].log.failed()


def _rows() -> list[dict]:
    from foundry.traffic import scenario_rows

    features, _ = next(scenario_rows("concept_shift", 3, seed=999))
    return features
