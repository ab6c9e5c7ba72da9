"""Your own data, end to end, through the public commands only: a data set that is not churn (a
multi-class CSV with an integer id key, an integer-coded and a string categorical, a nullable numeric,
exact duplicate rows, more than 10,000 held-out rows), described by a data yaml in a folder outside
the repository, trains, serves, drifts, retrains and heals.

The user's config folder is named once, at the first training (``jobs.train --config-dir``); Serve and
the monitor are started from the registered version (``--from-version parcels``), and the retrain job
the monitor submits rebuilds the model from the version's stored config: it never sees the folder.
Before, the retrain recomposed the repository's conf/ and failed at once (``Available options in
'data': churn, ...``), three times, and the model never healed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from foundry.demo.traffic import TrafficGenerator, accuracy
from foundry.drift.events import read_events
from foundry.storage.layout import StorageLayout
from tests.healing import MONITOR, SERVE
from tests.own_data import DATA_YAML, KEY, LABEL, parcels

API_KEY = "own-data-key-" + "aVQVTycECsFOA5yZCWFLIetg"
MODEL = "parcels"
HEAL_TIMEOUT_S = 600
# A retrain learns from a few thousand labelled live rows: small batches and a higher rate give it enough
# steps (at batch 256 it saw 4 batches an epoch and lost to the champion).
RETRAIN = ['drift.retrain.overrides=["trainer.num_workers=1","trainer.epochs=10","trainer.batch_size=32",'
           '"trainer.lr=0.01"]', "drift.retrain.min_labelled_rows=2500"]


def run(module: str, *args: str, cwd: Path, env: dict, timeout: float = 600) -> str:
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{module} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def own(ray_cluster, serve_port, tmp_path_factory):
    home = tmp_path_factory.mktemp("user-home")  # the user's own folder, outside the repository
    (home / "myconf" / "data").mkdir(parents=True)
    (home / "myconf" / "data" / "parcels.yaml").write_text(DATA_YAML.format(path=home / "parcels.csv"))
    frame = parcels(22_000, seed=0, duplicates=0.2)
    frame.to_csv(home / "parcels.csv", index=False)
    workdir = home / "work"  # where the user types the commands
    workdir.mkdir()
    env = {**os.environ, "FOUNDRY_API_KEY": API_KEY}
    root = [f"storage.root={ray_cluster.storage_root}"]
    started = time.monotonic()
    trained = run("jobs.train", "--config-dir", str(home / "myconf"), "data=parcels", *ray_cluster.overrides,
                  f"ray.address={ray_cluster.address}", "model=mlp_small", "trainer.num_workers=1", "trainer.epochs=6",
                  f"serve.http.port={serve_port}", f"serve.app_name={MODEL}", f"serve.route_prefix=/{MODEL}", *SERVE,
                  *MONITOR, *RETRAIN, cwd=workdir, env=env)
    run("serve_apps.deploy", "--from-version", MODEL, *root, cwd=workdir, env=env)
    run("jobs.monitor", "--from-version", MODEL, *root, cwd=workdir, env=env)
    registry = StorageLayout(ray_cluster.storage_root).open_registry()
    traffic = TrafficGenerator(f"http://127.0.0.1:{serve_port}/{MODEL}", API_KEY, rows_per_request=25, concurrency=2)
    try:
        yield {"home": home, "workdir": workdir, "env": env, "root": root, "registry": registry, "traffic": traffic,
               "v1": registry.alias(MODEL, "production"), "trained": trained, "started": started, "frame": frame}
    finally:
        traffic.close()
        subprocess.run([sys.executable, "-m", "jobs.monitor", "--from-version", MODEL, *root, "--stop"],
                       cwd=workdir, env=env, capture_output=True, timeout=120)
        from foundry.serving import control

        control.delete_app(MODEL, wait=False)


def _events(own) -> list[dict]:
    return read_events(own["root"][0].split("=", 1)[1], MODEL)


def _send_shifted(own, stop: threading.Event, slow: threading.Event) -> None:
    seed = 100
    while not stop.is_set():
        rows = parcels(200, seed=seed, shifted=True, first_id=10_000_000 + seed * 1000)
        own["traffic"].send_frame(rows.drop(columns=[KEY]), LABEL, phase="drift",
                                  rate_rows_per_s=40 if slow.is_set() else 250)
        seed += 1


def test_the_first_version_trained_from_the_users_folder(own):
    v1 = own["v1"]
    assert v1 and f"registered {MODEL} version {v1}" in own["trained"]
    meta = own["registry"].get(MODEL, v1).metadata
    held_out = meta["data"]["split_rows"]["val"] + meta["data"]["split_rows"]["test"]
    assert held_out > 10_000 and meta["data"]["name"] == MODEL
    # An integer key used to give the reference draw the split's own hash: 0 rows once held-out > ~7,500.
    reference = pd.read_parquet(own["registry"].fetch(MODEL, v1) / "reference.parquet")
    assert len(reference) == 2000
    assert meta["drift_detectors"]["built"]


def test_in_distribution_traffic_is_served_and_raises_no_drift(own):
    baseline = parcels(1500, seed=50, first_id=20_000_000).drop(columns=[KEY])
    own["traffic"].send_frame(baseline, LABEL, phase="baseline")
    assert not own["traffic"].log.failed(), own["traffic"].log.failed()[:3]
    assert accuracy(own["traffic"].log.records) > 0.6
    assert "drift_detected" not in [e["kind"] for e in _events(own)]


def test_drift_retrains_from_the_stored_config_and_heals(own, job_client):
    stop, slow = threading.Event(), threading.Event()
    thread = threading.Thread(target=_send_shifted, args=(own, stop, slow), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + HEAL_TIMEOUT_S
        while time.monotonic() < deadline:
            kinds = {e["kind"] for e in _events(own)}
            if "retrain_submitted" in kinds:
                slow.set()
            if kinds & {"rebased", "rollout_failed", "retries_exhausted", "rejected"}:
                break
            time.sleep(2)
        healed_s = time.monotonic() - own["started"]
        time.sleep(3)
    finally:
        stop.set()
        thread.join(timeout=120)
    events = _events(own)
    kinds = [e["kind"] for e in events]
    story = ["drift_detected", "retrain_submitted", "retrain_finished", "promoted", "rolled_out", "rebased"]
    assert [k for k in kinds if k in story] == story, [(e["kind"], e["message"]) for e in events]
    assert "retrain_failed" not in kinds
    # One retrain job, through the Jobs API, rebuilt from the version's stored config.
    jobs = [j for j in job_client.list_jobs() if (j.metadata or {}).get("model") == MODEL]
    assert [j.status.value for j in jobs] == ["SUCCEEDED"], [(j.submission_id, j.status, j.message) for j in jobs]
    assert f"--from-version {MODEL}@{own['v1']}" in jobs[0].entrypoint and "--config-dir" not in jobs[0].entrypoint
    # A quiet job log: Ray Data's redrawn progress bars wrote 0.7-2.3 MB of it on a data set this size.
    logs = job_client.get_job_logs(jobs[0].submission_id)
    print(f"\nretrain job log: {len(logs):,} characters, 'Found multiple active Ray instances' x "
          f"{logs.count('Found multiple active Ray instances')}")
    assert "%|" not in logs and len(logs) < 300_000, logs[-3000:]
    new = next(e for e in events if e["kind"] == "promoted")["version"]
    assert own["registry"].alias(MODEL, "production") == new != own["v1"]
    assert own["registry"].get(MODEL, new).metadata["lineage"]["parent_version"] == own["v1"]
    r = httpx.post(f"{own['traffic'].url}/predict", headers={"X-API-Key": API_KEY}, timeout=30,
                   json={"rows": [{"distance_km": 120.0, "weight_kg": None, "items": 3, "hub": 5, "carrier": "swift"}]})
    assert r.status_code == 200 and r.json()["model_version"] == new
    log = own["traffic"].log.records
    after = [x for x in log if x.version == new]
    before = [x for x in log if x.phase == "drift" and x.version == own["v1"]]
    assert accuracy(after) > accuracy(before) + 0.1, (accuracy(after), accuracy(before))
    assert not own["traffic"].log.failed(), own["traffic"].log.failed()[:3]
    print(f"\nown data: from a new data yaml to a healed model in {healed_s:.0f} s "
          f"(accuracy {accuracy(before):.3f} -> {accuracy(after):.3f})")


def test_nothing_was_left_in_the_users_working_directory(own):
    """Hydra's run directory used to appear there as a literal ./~/.foundry/runs/... folder."""
    assert list(own["workdir"].iterdir()) == []
