"""Roll-outs decided by live model quality, end to end on the shared cluster: the real Serve app (two
replicas) under live traffic with labels, the real ``DriftMonitor`` deciding, the registry's aliases.

In order: a bad challenger under canary is rolled back at its first step with no failed request (each
answer checked against the hash split, retries meet the same version, both replicas agree); a good one
reaches 100% and is then guarded; in shadow mode no user response ever comes from the challenger; a
direct roll-out of a bad version is rolled back by the post-rollout guard. The monitor is restarted
between modes (``promotion.rollout`` is its config); retraining is off (the versions are built without
Ray, ``tests/versions.py``), so nothing here waits for a job.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from foundry.datasets import generate
from foundry.demo.traffic import LABEL_COLUMNS
from foundry.rollout import routing
from tests import replicas as serve_replicas
from tests.conftest import REPO_ROOT
from tests.healing import run_module, watched_model
from tests.versions import register_version

KEY = "rollout-key-" + "I5OelVIL84jDpl3oSOgR25-_"
MODEL = "rollout"
ROLLOUT = ["drift.retrain.enabled=false", "promotion.live.poll_s=0.5", "promotion.live.min_rows_per_step=100",
           "serve.autoscaling.min_replicas=2", "serve.autoscaling.initial_replicas=2",
           "serve.autoscaling.max_replicas=2", "serve.num_cpus=0.25"]


class Client:
    """Requests with the client's own request ids; every answer and failure recorded."""

    def __init__(self, url: str):
        self.http = httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=30)
        self.answers: list[tuple[str, str]] = []  # (request id, version that answered)
        self.failures: list[str] = []
        self.lock = threading.Lock()

    def predict(self, rows: list[dict], rid: str | None = None) -> dict | None:
        rid = rid or uuid.uuid4().hex
        r = self.http.post("/predict", json={"rows": rows, "request_id": rid})
        if r.status_code != 200:
            with self.lock:
                self.failures.append(f"{r.status_code}: {r.text[:200]}")
            return None
        body = r.json()
        with self.lock:
            self.answers.append((rid, body["model_version"]))
        return body

    def labelled(self, rows: list[dict], labels: list[str]) -> None:
        body = self.predict(rows)
        if body is not None:
            fb = [{"request_id": p["request_id"], "label": y} for p, y in zip(body["predictions"], labels, strict=True)]
            r = self.http.post("/feedback", json={"labels": fb})
            assert r.status_code == 200, r.text


def _rows(scenario: str, n: int, seed: int) -> tuple[list[dict], list[str]]:
    frame = generate("churn", scenario, n, seed=seed)
    return (json.loads(frame.drop(columns=list(LABEL_COLUMNS)).to_json(orient="records")),
            frame["churned"].astype(str).tolist())


def _traffic_until(w, client: Client, scenario: str, kinds: set[str], timeout_s: float = 240, seed: int = 0,
                   per_request: int = 20, rate: float = 200.0) -> list[dict]:
    """Labelled traffic (two clients at once, about ``rate`` rows/s) until one of ``kinds`` is a new event;
    returns the new events."""
    seen = len(w.events())
    deadline = time.monotonic() + timeout_s
    next_at = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        while time.monotonic() < deadline:
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at += 200 / rate
            rows, labels = _rows(scenario, 200, seed)
            seed += 1
            chunks = [(rows[i:i + per_request], labels[i:i + per_request]) for i in range(0, 200, per_request)]
            list(pool.map(lambda chunk: client.labelled(*chunk), chunks))
            new = w.events()[seen:]
            if kinds & {e["kind"] for e in new}:
                return new
    raise AssertionError(f"none of {kinds} within {timeout_s} s; events: {[e['kind'] for e in w.events()[seen:]]}")


def _ids_with(challenger: str, on_challenger: int, total: int) -> list[str]:
    """Request ids of which exactly ``on_challenger`` hash into a 5% canary of ``challenger`` (random ids
    would leave it without a single request once in a few hundred runs)."""
    mine, others = [], []
    while len(mine) < on_challenger or len(others) < total - on_challenger:
        rid = uuid.uuid4().hex
        (mine if routing.bucket(rid, challenger) < 0.05 else others).append(rid)
    return mine[:on_challenger] + others[:total - on_challenger]


def _restart_monitor(w, mode: str, *extra: str) -> None:
    subprocess.run([sys.executable, "-m", "jobs.monitor", *w.overrides, "--stop"], cwd=REPO_ROOT, env=w.env,
                   capture_output=True, timeout=120, check=True)
    w.overrides = [o for o in w.overrides if not o.startswith(("promotion.rollout=", "promotion.live.max_labelled"))]
    w.overrides += [f"promotion.rollout={mode}", *extra]
    run_module("jobs.monitor", w.overrides, w.env)


def _promote(w, version: str, mode: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "foundry.registry", "promote", MODEL, version, "--rollout", mode,
                           *w.overrides], cwd=REPO_ROOT, env=w.env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _wait_event(w, kind: str, after: int, timeout_s: float = 60) -> dict:
    """The first ``kind`` event among those after the first ``after`` events."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [e for e in w.events()[after:] if e["kind"] == kind]
        if found:
            return found[0]
        time.sleep(0.5)
    raise AssertionError(f"no {kind} event within {timeout_s} s: {[e['kind'] for e in w.events()][-10:]}")


@pytest.fixture(scope="module")
def rollout(ray_cluster, serve_port, tmp_path_factory):
    with watched_model(ray_cluster, serve_port, tmp_path_factory.mktemp("rollout-v1"), MODEL, KEY,
                       [*ROLLOUT, "promotion.rollout=canary"]) as w:
        cfg_versions = {}
        from foundry import config

        cfg = config.load(w.overrides)
        cfg_versions["bad"] = register_version(w.registry, cfg, tmp_path_factory.mktemp("rollout-bad"), alias=None,
                                               flip_labels=0.35)
        cfg_versions["good"] = register_version(w.registry, cfg, tmp_path_factory.mktemp("rollout-good"), alias=None,
                                                scenario="concept_shift", steps=200)
        cfg_versions["shadow"] = register_version(w.registry, cfg, tmp_path_factory.mktemp("rollout-shadow"),
                                                  alias=None, scenario="concept_shift", steps=120)
        cfg_versions["miscalibrated"] = register_version(w.registry, cfg, tmp_path_factory.mktemp("rollout-mis"),
                                                         alias=None, scenario="concept_shift", steps=200,
                                                         output_bias=3.0)
        client = Client(f"http://127.0.0.1:{serve_port}/{MODEL}")
        yield w, cfg_versions, client


def test_a_bad_challenger_is_rolled_back_under_canary_and_never_passes_its_first_step(rollout):
    w, versions, client = rollout
    bad = versions["bad"]
    events_before = len(w.events())
    assert "candidate" in _promote(w, bad, "canary")
    started = _wait_event(w, "rollout_started", events_before)
    assert started["challenger"] == bad and started["fraction"] == 0.05

    # The canary is stable while no label arrives: check the split request by request, with retries.
    rows, _ = _rows("baseline", 240, seed=1)
    before = len(client.answers)
    ids = _ids_with(bad, on_challenger=6, total=120)
    with ThreadPoolExecutor(2) as pool:
        first = list(pool.map(lambda i: client.predict(rows[2 * i:2 * i + 2], ids[i]), range(120)))
        retry = list(pool.map(lambda i: client.predict(rows[2 * i:2 * i + 2], ids[i]), range(120)))
    assert not client.failures
    assert [a["model_version"] for a in first] == [b["model_version"] for b in retry]  # a retry meets the same version
    for rid, version in client.answers[before:]:
        assert version == (bad if routing.bucket(rid, bad) < 0.05 else w.v1), rid
    seen = serve_replicas.answers(MODEL)  # both replicas hold the same split
    assert len(seen) == 2
    assert {(i["rollout"]["challenger"], i["rollout"]["fraction"]) for i in seen.values()} == {(bad, 0.05)}

    new = _traffic_until(w, client, "baseline", {"rolled_back", "rollout_step", "rollout_promoted"}, seed=10)
    kinds = [e["kind"] for e in new]
    assert "rolled_back" in kinds and "rollout_step" not in kinds and "rollout_promoted" not in kinds, kinds
    evidence = next(e for e in new if e["kind"] == "rolled_back")["evidence"]
    assert evidence["labelled_rows"] <= 1000 and evidence["loss_challenger"] > evidence["loss_champion"], evidence
    assert not client.failures, client.failures[:3]
    share = [v for rid, v in client.answers[before:] if v == bad]
    assert 0 < len(share) <= 0.1 * len(client.answers[before:])
    assert all(routing.bucket(rid, bad) < 0.05 for rid, v in client.answers if v == bad)
    assert w.registry.alias(MODEL, "production") == w.v1


def test_a_good_challenger_steps_up_to_all_traffic_and_is_guarded(rollout):
    w, versions, client = rollout
    good = versions["good"]
    events_before = len(w.events())
    _promote(w, good, "canary")
    _wait_event(w, "rollout_started", events_before)
    new = _traffic_until(w, client, "concept_shift", {"rollout_promoted", "rolled_back", "rollout_expired"}, seed=100)
    kinds = [e["kind"] for e in new]
    assert kinds.index("rollout_step") < kinds.index("rollout_promoted"), kinds
    promoted = next(e for e in new if e["kind"] == "rollout_promoted")
    assert promoted["evidence"]["shown_at_rows"]["better"] <= 1500, promoted["evidence"]
    assert w.registry.alias(MODEL, "production") == good
    _wait_event(w, "guard_started", events_before)
    body = client.predict(_rows("concept_shift", 1, 5)[0])
    assert body["model_version"] == good
    guarded = _traffic_until(w, client, "concept_shift", {"guard_passed", "rolled_back"}, seed=300)
    assert "guard_passed" in [e["kind"] for e in guarded] and "rolled_back" not in [e["kind"] for e in guarded]
    assert w.registry.alias(MODEL, "production") == good
    assert not client.failures, client.failures[:3]


def _twin(registry, version: str, where) -> str:
    """``version``'s files registered again: another version id, the very same model."""
    src = registry.fetch(MODEL, version)
    for f in src.iterdir():
        if f.is_file() and f.name != "manifest.json":
            shutil.copy(f, where / f.name)
    return registry.register(MODEL, where, {"variant_of": version}).version


def test_in_shadow_mode_no_user_response_comes_from_the_challenger(rollout, tmp_path):
    """The challenger is the champion's twin (same files, another version id): live labels can show it
    neither better nor worse, so the shadow runs until ``max_labelled_rows`` and expires."""
    w, versions, client = rollout
    _restart_monitor(w, "shadow", "promotion.live.max_labelled_rows=250")
    champion = versions["good"]
    challenger = _twin(w.registry, champion, tmp_path)
    events_before = len(w.events())
    _promote(w, challenger, "shadow")
    _wait_event(w, "rollout_started", events_before)
    before = len(client.answers)
    info = client.http.get("/model").json()
    assert info["rollout"]["mode"] == "shadow" and info["rollout"]["challenger"] == challenger
    assert info["rollout"]["fraction"] == 0.0 and "active" in info["rollout"]["evidence"]
    new = _traffic_until(w, client, "concept_shift", {"rollout_expired", "rollout_promoted", "rolled_back"}, seed=500)
    ended = next(e for e in new if e["kind"] in ("rollout_expired", "rollout_promoted", "rolled_back"))
    assert ended["kind"] == "rollout_expired", ended
    # The challenger answered every row in the background: the labels scored both versions.
    assert ended["evidence"]["labelled_rows"] >= 250
    assert ended["evidence"]["health"][challenger]["answered"] >= 250
    assert ended["evidence"]["health"][challenger]["served"] == 0
    answered = client.answers[before:]
    assert answered and all(v == champion for _, v in answered)  # every single response from the champion
    assert w.registry.alias(MODEL, "production") == champion
    assert not client.failures


def test_a_direct_roll_out_of_a_bad_version_is_rolled_back_by_the_guard(rollout):
    w, versions, client = rollout
    _restart_monitor(w, "direct")
    bad, champion = versions["miscalibrated"], w.registry.alias(MODEL, "production")
    events_before = len(w.events())
    _promote(w, bad, "canary")  # the candidate alias: a direct-mode monitor promotes it at once, then guards it
    _wait_event(w, "guard_started", events_before)
    assert w.registry.alias(MODEL, "production") == bad
    new = _traffic_until(w, client, "concept_shift", {"rolled_back", "guard_passed"}, seed=900)
    rolled = next(e for e in new if e["kind"] in ("rolled_back", "guard_passed"))
    assert rolled["kind"] == "rolled_back" and rolled["previous"] == champion, rolled
    assert w.registry.alias(MODEL, "production") == champion
    deadline = time.monotonic() + 30
    while client.predict(_rows("concept_shift", 1, 7)[0])["model_version"] != champion:
        assert time.monotonic() < deadline
        time.sleep(0.5)
    assert not client.failures, client.failures[:3]
