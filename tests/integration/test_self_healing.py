"""The self-healing loop end to end on the shared cluster, over real HTTP and the real Jobs API.

Two models are served side by side, each watched by its own ``DriftMonitor`` started with
``python -m jobs.monitor``:
- ``heal-pos`` must heal: in-distribution traffic raises no drift event; then the world changes
  (``concept_shift``: same customers, a new churn behaviour, labels sent to /feedback), the monitor
  detects it, submits exactly one retrain job, the challenger beats production on the same recent
  held-out rows, is promoted and rolled out in place, and Serve answers with it;
- ``heal-neg`` sees the same drift but its retrain must clear an impossible margin
  (``drift.retrain.min_improvement=1``), so the challenger is rejected and production stays.
Traffic keeps flowing through detection, retraining and the swap: no request may fail.

Both retrains run at once, so the module costs about one training job of wall time.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from omegaconf import OmegaConf

from foundry import config, storage
from foundry.drift.events import read_events
from foundry.registry import Registry
from foundry.traffic import TrafficGenerator, accuracy
from tests.conftest import REPO_ROOT

KEY = "self-healing-key-" + "0123456789abcdef"
POS, NEG = "heal-pos", "heal-neg"
QUICK = ["+experiment=quick", "data.source.synthetic.rows=6000", "trainer.epochs=2", "trainer.num_workers=1"]
MONITOR = ["drift.window.size=500", "drift.window.test_every_rows=250", "drift.window.consecutive=2",
           "drift.detectors.concept.window_rows=300", "drift.retrain.min_labelled_rows=1500",
           "drift.retrain.max_rows=4000", "drift.retrain.cooldown_s=3600", "drift.monitor.poll_interval_s=0.5",
           "drift.monitor.num_cpus=0.25",
           'drift.retrain.overrides=["+experiment=quick","trainer.num_workers=1","trainer.epochs=2"]']
SERVE = ["serve.autoscaling.min_replicas=1", "serve.autoscaling.max_replicas=1", "serve.num_cpus=0.5",
         "serve.access_log=false"]
HEAL_TIMEOUT_S = 600


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(module: str, args: list[str], env: dict, timeout: float = 300) -> str:
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"{module} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _kinds(root: str, model: str) -> list[str]:
    return [e["kind"] for e in read_events(root, model)]


@pytest.fixture(scope="module")
def loop(ray_cluster, tmp_path_factory):
    from foundry.train.workflow import train_and_register

    port = _free_port()
    base = [*ray_cluster.overrides, f"ray.address={ray_cluster.address}", f"serve.http.port={port}", *SERVE]
    per_model = {
        POS: [*base, f"model_name={POS}", f"serve.app_name={POS}", f"serve.route_prefix=/{POS}", *MONITOR],
        NEG: [*base, f"model_name={NEG}", f"serve.app_name={NEG}", f"serve.route_prefix=/{NEG}", *MONITOR,
              "drift.retrain.min_improvement=1.0"],
    }
    raw = config.compose([*per_model[POS], *QUICK])
    cfg = config.to_typed(raw)
    v1 = train_and_register(cfg, OmegaConf.to_yaml(raw, resolve=True), say=lambda _: None).version
    registry = Registry(storage.normalize(cfg.storage.registry))
    # The negative model is the same trained version under another name (detectors included).
    copy = tmp_path_factory.mktemp("neg-v1")
    for f in registry.fetch(POS, v1).iterdir():
        if f.name != "manifest.json":
            (copy / f.name).write_bytes(f.read_bytes())
    neg_v1 = registry.register(NEG, copy, {**registry.get(POS, v1).metadata}).version
    registry.set_alias(NEG, "production", neg_v1, reason="test setup")

    env = {**os.environ, "FOUNDRY_API_KEY": KEY}
    # One deploy at a time: each applies the cluster's whole Serve config (the other apps included),
    # so two concurrent deploys could each drop the other's app. The monitors may start side by side.
    for overrides in per_model.values():
        _run("serve_apps.deploy", overrides, env)
    with ThreadPoolExecutor(2) as pool:
        outs = list(pool.map(lambda m: _run("jobs.monitor", per_model[m], env), per_model))
    for model, out in zip(per_model, outs, strict=True):
        assert f"foundry-monitor-{model}" in out, out
    generators = {m: TrafficGenerator(f"http://127.0.0.1:{port}/{m}", KEY, rows_per_request=25, concurrency=2)
                  for m in per_model}
    try:
        yield {"root": ray_cluster.storage_root, "registry": registry, "v1": {POS: v1, NEG: neg_v1},
               "traffic": generators, "overrides": per_model, "env": env}
    finally:
        for g in generators.values():
            g.close()
        for overrides in per_model.values():
            subprocess.run([sys.executable, "-m", "jobs.monitor", *overrides, "--stop"], cwd=REPO_ROOT, env=env,
                           capture_output=True, timeout=120)
        from ray import serve

        serve.shutdown()


def _monitor_status(model: str) -> dict:
    import ray

    return ray.get(ray.get_actor(f"foundry-monitor-{model}", namespace="foundry").status.remote(), timeout=60)


def _wait_rounds(model: str, rounds: int, rows: int, timeout_s: float = 60) -> dict:
    """Until the monitor has taken ``rows`` live rows (the sink flushes in the background) and tested them."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = _monitor_status(model)
        c = status["counters"]
        if c["rows"] >= rows and c["labels_matched"] >= rows and c["rounds"] >= rounds \
                and status["queued_batches"] == 0:
            return status
        time.sleep(0.5)
    raise AssertionError(f"{model}: not {rows} rows in {rounds} test rounds after {timeout_s} s: {status}")


def test_in_distribution_traffic_raises_no_drift(loop):
    for seed, gen in enumerate(loop["traffic"].values()):
        gen.send("baseline", 2000, seed=100 + seed, phase="baseline")
    for model in (POS, NEG):
        status = _wait_rounds(model, rounds=2, rows=2000)
        assert status["controller"]["phase"] == "idle" and status["controller"]["episode"] == 0
        kinds = _kinds(loop["root"], model)
        assert "drift_detected" not in kinds and "retrain_submitted" not in kinds, kinds
    for gen in loop["traffic"].values():
        assert not gen.log.failed()


def _drift_traffic(gen: TrafficGenerator, stop: threading.Event, slow: threading.Event, seed: int) -> None:
    """Enough traffic to detect the drift and label a retrain set quickly, then a trickle (the 2-core
    CI box needs its CPUs for the retrain jobs) that still spans the swap."""
    while not stop.is_set():
        gen.send("concept_shift", 200, seed=seed, phase="drift", rate_rows_per_s=40 if slow.is_set() else 250)
        seed += 1


def test_drift_is_detected_retrained_promoted_and_rolled_out_without_a_failed_request(loop, job_client):
    root, traffic = loop["root"], loop["traffic"]
    stop, slow = threading.Event(), threading.Event()
    threads = [threading.Thread(target=_drift_traffic, args=(traffic[m], stop, slow, 200 + 50 * i), daemon=True)
               for i, m in enumerate((POS, NEG))]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + HEAL_TIMEOUT_S
        while time.monotonic() < deadline:
            pos, neg = _kinds(root, POS), _kinds(root, NEG)
            if "retrain_submitted" in pos and "retrain_submitted" in neg:
                slow.set()
            done_pos = "rebased" in pos or "rollout_failed" in pos or "retrain_failed" in pos
            done_neg = "rejected" in neg or "promoted" in neg or "retrain_failed" in neg
            if done_pos and done_neg:
                break
            time.sleep(2)
        time.sleep(3)  # traffic keeps flowing across the swap
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)

    registry = loop["registry"]
    events = {m: read_events(root, m) for m in (POS, NEG)}
    kinds = {m: [e["kind"] for e in evs] for m, evs in events.items()}
    # heal-pos: the whole story, in order, once.
    story = ["drift_detected", "retrain_submitted", "retrain_finished", "promoted", "rolled_out", "rebased"]
    assert [k for k in kinds[POS] if k in story] == story, [(e["kind"], e["message"]) for e in events[POS]]
    detected = next(e for e in events[POS] if e["kind"] == "drift_detected")
    assert "concept" in detected["votes"], detected
    new = next(e for e in events[POS] if e["kind"] == "promoted")["version"]
    assert new != loop["v1"][POS] and registry.alias(POS, "production") == new
    meta = registry.get(POS, new).metadata
    assert meta["lineage"]["trigger"] == "drift" and meta["lineage"]["parent_version"] == loop["v1"][POS]
    assert meta["lineage"]["drift_episode"] == detected["episode"]
    assert meta["metrics"]["roc_auc"] >= meta["champion_at_training"]["metrics_on_same_test_split"]["roc_auc"] + 0.01
    # Exactly one retrain job per model went through the Jobs API, tagged with its episode.
    for model in (POS, NEG):
        jobs = [j for j in job_client.list_jobs() if (j.metadata or {}).get("model") == model]
        assert len(jobs) == 1, [(j.submission_id, j.status) for j in jobs]
        assert jobs[0].metadata["trigger"] == "drift" and jobs[0].status.value == "SUCCEEDED"
        assert jobs[0].submission_id == next(e for e in events[model]
                                             if e["kind"] == "retrain_submitted")["submission_id"]
    # Serve answers with the new version, in place.
    r = httpx.post(f"{traffic[POS].url}/predict", json={"rows": _rows()}, headers={"X-API-Key": KEY}, timeout=30)
    assert r.status_code == 200 and r.json()["model_version"] == new
    log = traffic[POS].log.records
    assert {r.version for r in log if r.phase == "drift"} >= {loop["v1"][POS], new}
    after = [r for r in log if r.version == new]
    before = [r for r in log if r.phase == "drift" and r.version == loop["v1"][POS]]
    assert accuracy(after) > accuracy(before), (accuracy(after), accuracy(before))
    # heal-neg: drift detected, a challenger trained, rejected by the margin; production unchanged.
    assert "drift_detected" in kinds[NEG] and "rejected" in kinds[NEG], kinds[NEG]
    assert "promoted" not in kinds[NEG] and "rolled_out" not in kinds[NEG]
    assert registry.alias(NEG, "production") == loop["v1"][NEG]
    assert len(registry.versions(NEG)) == 2  # the rejected challenger is kept, for the record
    r = httpx.post(f"{traffic[NEG].url}/predict", json={"rows": _rows()}, headers={"X-API-Key": KEY}, timeout=30)
    assert r.status_code == 200 and r.json()["model_version"] == loop["v1"][NEG]
    # No request failed, on either model, at any point.
    for model, gen in traffic.items():
        assert not gen.log.failed(), (model, gen.log.failed()[:3])
        assert len(gen.log.records) > 100


def test_events_cli_prints_the_history(loop):
    proc = subprocess.run([sys.executable, "-m", "foundry.events", *loop["overrides"][POS], "--kind", "promoted"],
                          cwd=REPO_ROOT, env=loop["env"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1 and "promoted" in lines[0] and "is the new production" in lines[0]


def _rows() -> list[dict]:
    from foundry.traffic import scenario_rows

    features, _ = next(scenario_rows("concept_shift", 3, seed=999))
    return features
