"""The ``DriftMonitor``'s decision wiring, without Ray: live traffic and labels in, events, Jobs API calls
and registry aliases out.

The monitor runs as a plain object (``start=False``; each test calls ``step()`` for a round) on a
real model version in a real registry under ``tmp_path``, with a fake clock (cooldown and backoff
are checked exactly) and a fake Jobs API client that records submissions, returns scripted job
statuses and, when a job "succeeds", registers the challenger the way ``jobs.train`` would.
Serve is never running here: the monitor must fall back to the promotion alias.
"""

from __future__ import annotations

import io
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from foundry import config, datasets, storage
from foundry.config import Task
from foundry.drift.controller import Phase, submission_id
from foundry.drift.events import read_events
from foundry.drift.monitor import MAX_STATUS_ERRORS, DriftMonitor, state_uri
from foundry.drift.monitor_config import MonitorConfig, monitor_config
from foundry.models.predictor import Predictor
from foundry.registry import MANIFEST, Registry
from foundry.serving.feedback import FeedbackStore
from foundry.serving.inference import live_columns
from tests.versions import build_version_dir

MODEL = "churn"
ALIAS = "production"
T0 = 1_000_000.0
COOLDOWN_S = 100.0
BACKOFF_S = 10.0
REJECTION_WAIT_S = 10.0
MORE_ROWS = 300  # new labelled rows an attempt after a rejection needs: two rounds' labels, not one
MIN_IMPROVEMENT = 0.02
ROWS = 200  # rows per round (the window size): each round is one test round on fresh rows
UNLABELLED = 10  # rows per round that never get a label (a retrain set must leave them out)

DRIFT = [
    # These tests drive the episode mechanics (shared by both alarm methods) with the windowed tests, whose
    # rounds are easy to script; the sequential alarm's own wiring is tested at the end of this module.
    "drift.alarm.method=windows",
    "drift=light",  # tabular + prediction + concept: no multivariate test, keeps every round cheap
    f"drift.window.size={ROWS}", "drift.window.test_every_rows=100", "drift.window.consecutive=2",
    # The served model errs on ~34% of concept_shift rows against ~22% on its reference sample: 200
    # labelled rows at p=0.05 tell the two apart every time (100 rows at 0.01 would be a coin toss).
    "drift.detectors.concept.window_rows=200", "drift.detectors.concept.p_val=0.05",
    "drift.retrain.min_labelled_rows=150", "drift.retrain.max_rows=1000", "drift.retrain.rollout=false",
    f"drift.retrain.cooldown_s={COOLDOWN_S:g}", f"drift.retrain.backoff_s={BACKOFF_S:g}",
    "drift.retrain.backoff_factor=1", "drift.retrain.max_retries=1",
    f"drift.retrain.rejection_wait_s={REJECTION_WAIT_S:g}", f"drift.retrain.more_rows_after_rejection={MORE_ROWS}",
    "drift.retrain.max_attempts=3", "drift.retrain.max_episodes=3",
    f"drift.retrain.min_improvement={MIN_IMPROVEMENT}",
]


# ---- fakes --------------------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self, now: float = T0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class Status:
    """What ``JobSubmissionClient.get_job_status`` returns, as far as the monitor reads it."""

    value: str


@dataclass
class FakeJob:
    entrypoint: str
    metadata: dict
    status: str = "PENDING"
    exit_code: int | None = None  # the driver's, once it ended (Ray's JobDetails.driver_exit_code)

    @property
    def episode(self) -> str:
        return re.search(r"(?:^| )drift_episode=(\S+)", self.entrypoint).group(1)


class FakeJobClient:
    """The Jobs API as the monitor uses it. ``jobs`` may be shared with a predecessor's client (a
    restarted monitor talks to the same cluster, which already knows the jobs)."""

    def __init__(self, registry: Registry, scratch: Path, jobs: dict[str, FakeJob] | None = None):
        self.registry = registry
        self.scratch = scratch
        self.jobs: dict[str, FakeJob] = jobs if jobs is not None else {}
        self.calls: list[dict] = []  # every submit_job call, duplicates included
        self.stopped: list[str] = []
        self.unreachable = False  # the dashboard is restarting: every call raises ConnectionError
        self.logs: dict[str, str] = {}

    def submit_job(self, *, entrypoint: str, runtime_env: dict | None = None, metadata: dict | None = None,
                   submission_id: str | None = None) -> str:
        self.calls.append({"entrypoint": entrypoint, "runtime_env": runtime_env, "metadata": metadata,
                           "submission_id": submission_id})
        if submission_id in self.jobs:  # what Ray answers
            raise RuntimeError(f"Job with submission_id {submission_id} already exists. "
                               "Please use a different submission_id.")
        self.jobs[submission_id] = FakeJob(entrypoint, dict(metadata or {}))
        return submission_id

    def list_jobs(self) -> list:
        if self.unreachable:
            raise ConnectionError("Failed to connect to Ray at address: http://127.0.0.1:8265.")
        return [SimpleNamespace(submission_id=sid) for sid in self.jobs]

    def get_job_status(self, sid: str) -> Status:
        if self.unreachable:
            raise ConnectionError("Failed to connect to Ray at address: http://127.0.0.1:8265.")
        if sid not in self.jobs:  # what Ray 2.60's SDK raises for an HTTP 404
            raise RuntimeError(f"Request failed with status code 404: Job {sid} does not exist.")
        return Status(self.jobs[sid].status)

    def get_job_logs(self, sid: str) -> str:
        return self.logs.get(sid, "")

    def get_job_info(self, sid: str) -> SimpleNamespace:
        return SimpleNamespace(status=self.jobs[sid].status, driver_exit_code=self.jobs[sid].exit_code)

    def stop_job(self, sid: str) -> bool:
        self.stopped.append(sid)
        self.jobs[sid].status = "STOPPED"
        return True

    @property
    def submission_ids(self) -> list[str]:
        return [c["submission_id"] for c in self.calls]

    def set_status(self, sid: str, status: str) -> None:
        self.jobs[sid].status = status

    def succeed(self, sid: str, promoted: bool) -> str:
        """The job trained and registered a challenger for its episode (and moved the alias if it won),
        recording what ``foundry.train.workflow`` records; returns the new version."""
        job = self.jobs[sid]
        champion = self.registry.alias(MODEL, ALIAS)
        src = self.registry.fetch(MODEL, champion)
        out = self.scratch / f"challenger-{sid}"
        out.mkdir(parents=True)
        for f in src.iterdir():
            if f.is_file() and f.name != MANIFEST:
                shutil.copy2(f, out / f.name)
        decision = (f"better by {MIN_IMPROVEMENT + 0.01:.3f}" if promoted
                    else f"not better by promotion.min_improvement={MIN_IMPROVEMENT}")
        mv = self.registry.register(MODEL, out, {
            "lineage": {"drift_episode": job.episode, "trigger": "drift", "parent_version": champion,
                        "submission_id": sid},
            "promotion": {"promoted": promoted, "decision": decision},
            "metrics": {"roc_auc": 0.80 if promoted else 0.70},
            "champion_at_training": {"version": champion, "metrics_on_same_test_split": {"roc_auc": 0.75}},
        })
        if promoted:
            self.registry.set_alias(MODEL, ALIAS, mv.version, reason=decision)
        job.status = "SUCCEEDED"
        return mv.version


# ---- the setup ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def version_dir(tmp_path_factory, cfg) -> Path:
    return build_version_dir(cfg, tmp_path_factory.mktemp("version"))


@pytest.fixture(autouse=True)
def no_serve(monkeypatch) -> list[str]:
    """Serve is not running: asking for its user_config fails (as it does without a deployed app), and
    nothing may start or join a Ray cluster (Serve's lookup would ``ray.init()`` otherwise)."""
    import ray

    from foundry.serving import control

    asked: list[str] = []

    def current_user_config(app_name: str) -> dict:
        asked.append(app_name)
        raise control.ServeControlError(f"no Serve application {app_name!r} (unit test)")

    def no_ray(*args, **kwargs):
        raise AssertionError("a unit test tried to start or join a Ray cluster")

    monkeypatch.setattr(control, "current_user_config", current_user_config)
    monkeypatch.setattr(ray, "init", no_ray)
    return asked


@dataclass
class Env:
    root: Path
    registry: Registry
    v1: str
    clock: FakeClock
    config_data: dict
    predictor: Predictor
    feedback: FeedbackStore
    features: list[str]
    seed: int = 100
    truth: dict[str, str] = field(default_factory=dict)  # request_id -> true label, of every row sent
    labelled: dict[str, str] = field(default_factory=dict)  # request_id -> label, as stored by /feedback
    batches: list[dict] = field(default_factory=list)  # {"ids", "scenario", "version"} per ingested batch

    def client(self, jobs: dict[str, FakeJob] | None = None) -> FakeJobClient:
        return FakeJobClient(self.registry, self.root / "scratch", jobs)

    def monitor(self, client: FakeJobClient) -> DriftMonitor:
        m = DriftMonitor(self.config_data, clock=self.clock, start=False)
        m._client = client
        return m

    def send(self, monitor: DriftMonitor, scenario: str, version: str | None = None, rows: int = ROWS,
             unlabelled: int = UNLABELLED) -> list[str]:
        """One batch of live traffic as a Serve replica hands it over, then its labels (all but the last
        ``unlabelled`` rows) stored and forwarded as ``POST /feedback`` does; returns the request ids."""
        self.seed += 1
        df = datasets.generate("churn", scenario, rows, seed=self.seed)
        frame = df[self.features]  # what the request carried
        version = version or self.v1
        ids = [f"{scenario}-{self.seed}-{i:04d}" for i in range(rows)]
        result = self.predictor.predict(frame)
        monitor.ingest(live_columns(frame, result, ids, version))
        self.batches.append({"ids": ids, "scenario": scenario, "version": version})
        self.truth.update(zip(ids, df["churned"].astype(str), strict=True))
        if rows > unlabelled:
            self.label(monitor, ids[:rows - unlabelled], version)
        return ids

    def label(self, monitor: DriftMonitor, ids: list[str], version: str | None = None) -> None:
        """The true labels of ``ids`` arrive: stored first (``POST /feedback``), then sent to the monitor."""
        labels = [self.truth[i] for i in ids]
        self.feedback.write([{"request_id": i, "label": y} for i, y in zip(ids, labels, strict=True)],
                            version or self.v1)
        monitor.ingest_labels(ids, labels)
        self.labelled.update(zip(ids, labels, strict=True))

    def round(self, monitor: DriftMonitor, scenario: str, **kwargs) -> list[str]:
        ids = self.send(monitor, scenario, **kwargs)
        monitor.step()
        return ids

    def events(self, *kinds: str) -> list[dict]:
        return read_events(str(self.root), MODEL, set(kinds) if kinds else None)


@pytest.fixture
def env(tmp_path, version_dir) -> Env:
    return make_env(tmp_path, version_dir, DRIFT)


def make_env(tmp_path: Path, version_dir: Path, overrides: list[str]) -> Env:
    root = tmp_path / "storage"
    cfg = config.load([f"storage.root={root}", f"model_name={MODEL}", *overrides])
    registry = Registry(root / "registry")
    v1 = registry.register(MODEL, version_dir, {"lineage": {"trigger": "manual"}}).version
    registry.set_alias(MODEL, ALIAS, v1)
    return Env(root, registry, v1, FakeClock(), monitor_config(cfg).to_container(), Predictor.from_dir(version_dir),
               FeedbackStore(str(root), MODEL, Task.binary), [f.name for f in cfg.data.features])


def start_episode(env: Env, monitor: DriftMonitor, client: FakeJobClient) -> str:
    """Baseline traffic, then concept drift until the monitor submits a retrain; returns its id."""
    for _ in range(2):
        env.round(monitor, "baseline")
    for _ in range(4):
        env.round(monitor, "concept_shift")
        if client.calls:
            break
    assert len(client.calls) == 1, client.calls
    return client.calls[0]["submission_id"]


def overrides_of(entrypoint: str) -> dict[str, str]:
    """The retrain's key=value overrides, and the version it starts from under ``--from-version``."""
    words = entrypoint.split()
    assert words[:5] == ["python", "-m", "jobs.train", "--from-version", words[4]], entrypoint
    keys = [w.split("=", 1)[0] for w in words[5:]]
    assert len(keys) == len(set(keys)), f"an override is given twice: {entrypoint}"
    return {"--from-version": words[4], **dict(w.split("=", 1) for w in words[5:])}


def read_parquet(uri: str) -> pd.DataFrame:
    fs, path = storage.resolve(uri)
    return pq.read_table(io.BytesIO(storage.read_bytes(fs, path))).to_pandas()


def kinds(events: list[dict]) -> list[str]:
    return [e["kind"] for e in events]


# ---- tests ----------------------------------------------------------------------------------------------------


def test_baseline_traffic_starts_nothing_and_the_reference_is_the_production_alias(env, no_serve):
    client = env.client()
    monitor = env.monitor(client)
    assert no_serve == [MonitorConfig.from_container(env.config_data).serve.app_name]  # asked Serve first
    assert monitor.status()["reference_version"] == env.v1 == env.registry.alias(MODEL, ALIAS)
    started = env.events("monitor_started")
    assert len(started) == 1 and started[0]["reference_version"] == env.v1 and not started[0]["restored"]

    for _ in range(4):
        env.round(monitor, "baseline")

    status = monitor.status()
    assert status["counters"]["rounds"] == 4 and status["counters"]["rows"] == 4 * ROWS
    assert status["counters"]["labels_matched"] == 4 * (ROWS - UNLABELLED)
    assert status["last_results"] and not any(r["drift"] for r in status["last_results"])
    assert {r["detector"] for r in status["last_results"]} >= {"tabular", "concept"}
    assert status["controller"]["phase"] == "idle" and status["controller"]["consecutive"] == 0
    assert status["onset_at"] is None
    assert env.events("drift_detected", "retrain_submitted", "retrain_waiting") == []
    assert client.calls == []

    # Every round is remembered for plots: numbered, with each detector's statistic.
    rounds = monitor.rounds()
    assert [r["round"] for r in rounds] == [1, 2, 3, 4] and not any(r["drifted"] for r in rounds)
    assert all({x["detector"] for x in r["results"]} >= {"tabular"} for r in rounds)
    assert rounds[-1]["rows"] == 4 * ROWS and rounds[-1]["reference_version"] == env.v1
    assert [r["round"] for r in monitor.rounds(after=3)] == [4] and monitor.rounds(after=4) == []


def test_concept_drift_submits_exactly_one_retrain_on_the_rows_since_the_onset(env):
    client = env.client()
    monitor = env.monitor(client)
    sid = start_episode(env, monitor, client)
    for _ in range(3):  # the job runs; the drift goes on
        client.set_status(sid, "RUNNING")
        env.round(monitor, "concept_shift")
    assert [r["detector"] for r in monitor.status()["last_results"] if r["drift"]] == ["concept"]
    assert len(client.calls) == 1

    detected = env.events("drift_detected")
    assert len(detected) == 1
    episode = detected[0]["episode"]
    assert episode == f"{MODEL}-{env.v1}-e1" and "concept" in detected[0]["votes"]
    assert sid == submission_id(MODEL, env.v1, 1, 1)
    status = monitor.status()
    assert status["controller"]["phase"] == "running" and status["controller"]["submission_id"] == sid

    call = client.calls[0]
    assert call["metadata"] == {"job_name": "retrain", "model": MODEL, "trigger": "drift", "episode": episode}
    assert ".venv" in call["runtime_env"]["excludes"]
    ov = overrides_of(call["entrypoint"])
    assert ov["trigger"] == "drift" and ov["drift_episode"] == episode
    assert ov["promotion.min_improvement"] == str(MIN_IMPROVEMENT) and ov["promotion.policy"] == "if_better"
    assert ov["model_name"] == MODEL and ov["data.split.key"] == "request_id"
    # The job rebuilds the reference version from its own stored config, not from conf/ and the
    # monitor's overrides: a user's config folder never has to reach the cluster.
    assert ov["--from-version"] == f"{MODEL}@{env.v1}" and "trainer.num_workers" not in ov
    # The challenger starts from the version it would replace (foundry/train/warm_start.py).
    assert ov["trainer.warm_start_from"] == f"{MODEL}@{env.v1}"
    assert not any(k.startswith("drift.") for k in ov)

    # The data set (the episode's first): every labelled row received since the drift began, nothing else.
    assert ov["data.source.path"].endswith(f"{episode}-d1.parquet")
    data = read_parquet(ov["data.source.path"])
    drifted_before_submission = [b for b in env.batches[:4] if b["scenario"] == "concept_shift"]
    expected = {i for b in drifted_before_submission for i in b["ids"] if i in env.labelled}
    assert set(data["request_id"]) == expected and len(data) == len(expected) == 2 * (ROWS - UNLABELLED)
    assert (data["churned"] == data["request_id"].map(env.labelled)).all()
    submitted = env.events("retrain_submitted")
    assert len(submitted) == 1 and submitted[0]["submission_id"] == sid and submitted[0]["rows"] == len(data)


def test_a_promoted_challenger_rebases_the_monitor_then_cooldown_then_a_new_episode(env):
    client = env.client()
    monitor = env.monitor(client)
    sid = start_episode(env, monitor, client)
    v2 = client.succeed(sid, promoted=True)
    monitor.step()

    # drift.retrain.rollout=false: no Serve call, and Serve still answers with v1, so the monitor
    # keeps testing v1's traffic against v1's reference.
    assert kinds(env.events("retrain_finished", "promoted", "rebased", "rolled_out")) == \
        ["retrain_finished", "promoted"]
    finished = env.events("retrain_finished")[0]
    assert finished["version"] == v2 and finished["metrics"] == {"roc_auc": 0.80}
    assert finished["champion_metrics"] == {"roc_auc": 0.75}
    assert env.registry.alias(MODEL, ALIAS) == v2
    assert monitor.status()["reference_version"] == env.v1

    # An operator rolls v2 out: once Serve answers with it for test_every_rows rows, the monitor re-bases.
    env.round(monitor, "concept_shift", version=v2)
    rebased = env.events("rebased")
    assert [(e["previous"], e["version"], e["reason"]) for e in rebased] == [(env.v1, v2, "served_version_changed")]
    status = monitor.status()
    assert status["reference_version"] == v2 and status["controller"]["episode"] == 1  # never restarts
    assert status["controller"]["phase"] == "cooldown"
    assert status["controller"]["wait_until"] == T0 + COOLDOWN_S
    assert status["window_rows"] == ROWS  # v2's rows only, reloaded from storage: v1's belong to the old world

    # Cooling down: the drift goes on (v2 is the same model) but nothing is submitted.
    for _ in range(3):
        env.clock.advance(10)
        env.round(monitor, "concept_shift", version=v2)
    assert any(r["detector"] == "concept" and r["drift"] for r in monitor.status()["last_results"])
    assert monitor.status()["controller"]["phase"] == "cooldown"
    assert len(client.calls) == 1 and len(env.events("drift_detected")) == 1

    env.clock.advance(COOLDOWN_S)
    monitor.step()
    assert monitor.status()["controller"]["phase"] == "idle"
    for _ in range(3):
        env.round(monitor, "concept_shift", version=v2)
        if len(client.calls) > 1:
            break
    assert len(client.calls) == 2
    new_sid = client.calls[1]["submission_id"]
    assert new_sid == submission_id(MODEL, v2, 2, 1) != sid
    assert overrides_of(client.calls[1]["entrypoint"])["drift_episode"] == f"{MODEL}-{v2}-e2"
    assert [e["episode"] for e in env.events("drift_detected")] == [f"{MODEL}-{env.v1}-e1", f"{MODEL}-{v2}-e2"]


def test_a_rejected_challenger_leaves_production_and_the_reference_alone(env):
    client = env.client()
    monitor = env.monitor(client)
    sid = start_episode(env, monitor, client)
    v2 = client.succeed(sid, promoted=False)
    monitor.step()

    assert kinds(env.events("retrain_finished", "promoted", "rejected", "rebased")) == \
        ["retrain_finished", "rejected"]
    assert env.events("rejected")[0]["version"] == v2
    assert env.registry.alias(MODEL, ALIAS) == env.v1
    assert [mv.version for mv in env.registry.versions(MODEL)] == [env.v1, v2]
    status = monitor.status()
    assert status["reference_version"] == env.v1 and status["controller"]["phase"] == "more_data"
    assert status["controller"]["submission_id"] is None and status["window_rows"] > 0


def test_a_failed_job_is_retried_once_after_the_backoff_then_given_up(env):
    client = env.client()
    monitor = env.monitor(client)
    sid = start_episode(env, monitor, client)
    episode = env.events("drift_detected")[0]["episode"]
    data_path = overrides_of(client.calls[0]["entrypoint"])["data.source.path"]

    client.set_status(sid, "FAILED")
    monitor.step()
    assert kinds(env.events("retrain_failed", "retrain_retry_scheduled")) == \
        ["retrain_failed", "retrain_retry_scheduled"]
    assert env.events("retrain_retry_scheduled")[0]["retry_in_s"] == BACKOFF_S
    assert monitor.status()["controller"]["phase"] == "backoff"

    env.clock.advance(BACKOFF_S - 1)
    monitor.step()
    assert len(client.calls) == 1  # still backing off

    env.clock.advance(1)
    monitor.step()
    assert len(client.calls) == 2
    retry = client.calls[1]
    assert retry["submission_id"] == submission_id(MODEL, env.v1, 1, 2) == sid[:-1] + "2"
    assert retry["metadata"]["episode"] == episode
    assert overrides_of(retry["entrypoint"])["data.source.path"] == data_path  # same rows as attempt 1
    assert monitor.status()["controller"]["attempt"] == 2
    monitor.step()
    assert len(client.calls) == 2  # a pending job is polled, not resubmitted

    client.set_status(retry["submission_id"], "FAILED")
    monitor.step()
    assert kinds(env.events("retrain_failed", "retrain_retry_scheduled", "retries_exhausted")) == \
        ["retrain_failed", "retrain_retry_scheduled", "retrain_failed", "retries_exhausted"]
    assert env.events("retries_exhausted")[0]["episode"] == episode
    status = monitor.status()
    assert status["controller"]["phase"] == "cooldown" and status["controller"]["submission_id"] is None
    env.clock.advance(BACKOFF_S)
    monitor.step()
    assert len(client.calls) == 2 and env.registry.alias(MODEL, ALIAS) == env.v1


def test_a_restarted_monitor_resumes_the_running_job_without_resubmitting(env, no_serve):
    first_client = env.client()
    first = env.monitor(first_client)
    sid = start_episode(env, first, first_client)
    first_client.set_status(sid, "RUNNING")
    onset = first.onset_at
    asked = len(no_serve)

    # The actor restarts: a new object on the same storage, talking to the same cluster.
    client = env.client(jobs=first_client.jobs)
    monitor = env.monitor(client)
    assert len(no_serve) == asked  # the reference version comes from state.json
    assert monitor.controller.state.phase is Phase.running and monitor.controller.state.submission_id == sid
    status = monitor.status()
    assert status["reference_version"] == env.v1 and monitor.onset_at == onset
    assert status["window_rows"] == sum(len(b["ids"]) for b in env.batches)
    assert status["labelled_window_rows"] > 0
    restarted = env.events("monitor_started")[-1]
    assert restarted["restored"] and restarted["phase"] == "running" and restarted["submission_id"] == sid

    monitor.step()
    env.round(monitor, "concept_shift")  # still drifting while the job runs
    assert client.calls == []

    v2 = client.succeed(sid, promoted=True)
    monitor.step()
    assert client.calls == []
    assert kinds(env.events("retrain_finished", "promoted", "rebased")) == ["retrain_finished", "promoted"]
    env.round(monitor, "concept_shift", version=v2)  # rolled out by hand (rollout=false here)
    assert kinds(env.events("retrain_finished", "promoted", "rebased")) == ["retrain_finished", "promoted", "rebased"]
    assert monitor.status()["reference_version"] == v2
    assert monitor.status()["controller"]["phase"] == "cooldown"
    assert len(env.events("retrain_submitted")) == 1


def test_a_duplicate_submission_counts_as_submitted(env):
    # The cluster has the job this episode is about to submit, created after the monitor read the Jobs API's
    # history at start (a submit call that timed out on the client but reached the cluster): Ray refuses the
    # duplicate id, and that is not a failure. (A job the history already named raises the episode floor
    # instead: test_a_wiped_monitoring_folder_never_reuses_an_episode_id.)
    client = env.client()
    expected = submission_id(MODEL, env.v1, 1, 1)
    monitor = env.monitor(client)
    env.round(monitor, "baseline")  # the first round reads the history: nothing yet
    client.jobs[expected] = FakeJob(f"python -m jobs.train drift_episode={MODEL}-{env.v1}-e1", {}, "RUNNING")
    sid = start_episode(env, monitor, client)

    assert sid == expected
    assert env.events("retrain_failed", "retrain_retry_scheduled") == []
    submitted = env.events("retrain_submitted")
    assert len(submitted) == 1 and submitted[0]["submission_id"] == sid
    assert "already existed" in submitted[0]["message"]
    status = monitor.status()
    assert status["controller"]["phase"] == "running" and status["controller"]["submission_id"] == sid
    monitor.step()
    assert len(client.calls) == 1

    client.succeed(sid, promoted=False)
    monitor.step()
    assert kinds(env.events("rejected")) == ["rejected"]


def test_drift_without_enough_labels_waits_once_then_submits_when_they_arrive(env):
    client = env.client()
    monitor = env.monitor(client)
    drifted: list[list[str]] = []
    for _ in range(4):  # a covariate shift needs no labels to be seen; none arrive
        drifted.append(env.round(monitor, "covariate_shift", unlabelled=ROWS))
    assert any(r["detector"] == "tabular" and r["drift"] for r in monitor.status()["last_results"])
    assert len(env.events("drift_detected")) == 1
    waiting = env.events("retrain_waiting")
    assert len(waiting) == 1 and waiting[0]["episode"] == f"{MODEL}-{env.v1}-e1"
    assert client.calls == []
    status = monitor.status()
    assert status["controller"]["phase"] == "idle" and status["controller"]["episode"] == 0

    # Some labels, still too few (the minimum is 150): it keeps waiting, quietly.
    env.label(monitor, drifted[0][:100])
    env.round(monitor, "covariate_shift", unlabelled=ROWS)
    assert client.calls == [] and len(env.events("retrain_waiting")) == 1

    env.label(monitor, drifted[1] + drifted[2])
    env.round(monitor, "covariate_shift", unlabelled=ROWS)
    assert len(client.calls) == 1
    assert client.calls[0]["submission_id"] == submission_id(MODEL, env.v1, 1, 1)
    assert len(env.events("drift_detected")) == 1 and len(env.events("retrain_waiting")) == 1
    data = read_parquet(overrides_of(client.calls[0]["entrypoint"])["data.source.path"])
    assert set(data["request_id"]) == set(drifted[0][:100] + drifted[1] + drifted[2])


def test_labels_stored_without_passing_through_the_monitor_are_read_after_label_recheck_s(env, monkeypatch):
    """An episode short of labels used to read the stored labels again only once its label counter moved:
    labels stored without reaching ``ingest_labels`` (a replica's sink dropped them, or they were stored
    while the monitor restarted) were never seen, and the episode waited forever for labels already in storage."""
    from foundry.drift import retrain

    recheck_s = 30.0
    env.config_data["drift"]["retrain"]["label_recheck_s"] = recheck_s
    reads: list[str] = []  # every read of the stored labels for a retrain set
    read_feedback = retrain.read_feedback
    monkeypatch.setattr(retrain, "read_feedback", lambda *a, **k: reads.append("read") or read_feedback(*a, **k))
    client = env.client()
    monitor = env.monitor(client)
    drifted = [env.round(monitor, "covariate_shift", unlabelled=ROWS) for _ in range(4)]
    assert len(env.events("drift_detected")) == 1 and len(env.events("retrain_waiting")) == 1
    assert client.calls == [] and reads == ["read"]  # one look came up short; the next drifted rounds did not read

    # Labels for two rounds reach storage, and never the monitor.
    stored = drifted[0] + drifted[1]
    env.feedback.write([{"request_id": i, "label": env.truth[i]} for i in stored], env.v1)
    env.clock.advance(recheck_s - 1)
    env.round(monitor, "covariate_shift", unlabelled=ROWS)
    assert client.calls == [] and reads == ["read"]  # not read again before label_recheck_s

    env.clock.advance(1)
    env.round(monitor, "covariate_shift", unlabelled=ROWS)
    assert len(reads) == 2 and len(client.calls) == 1
    assert client.calls[0]["submission_id"] == submission_id(MODEL, env.v1, 1, 1)
    assert len(env.events("drift_detected")) == 1 and len(env.events("retrain_waiting")) == 1
    data = read_parquet(overrides_of(client.calls[0]["entrypoint"])["data.source.path"])
    assert set(data["request_id"]) == set(stored)


def test_a_version_swapped_outside_the_monitor_is_followed_unless_a_retrain_is_in_flight(env, version_dir):
    """A hand-made roll-out or rollback: the windows hold only the reference version's rows, and a run of
    ``test_every_rows`` rows from one other version re-bases the monitor (if that version loads)."""
    client = env.client()
    monitor = env.monitor(client)
    v2 = env.registry.register(MODEL, version_dir, {"lineage": {"trigger": "manual"}}).version
    test_every = MonitorConfig.from_container(env.config_data).drift.window.test_every_rows
    for _ in range(2):
        env.round(monitor, "baseline")

    # A run broken by a row of the reference version is no swap (a roll-out mixes versions briefly).
    env.send(monitor, "baseline", version=v2, rows=test_every - 1)
    env.round(monitor, "baseline", rows=1, unlabelled=0)
    env.round(monitor, "baseline", version=v2, rows=test_every - 1)
    status = monitor.status()
    assert status["reference_version"] == env.v1 and not env.events("rebased")
    assert status["counters"]["other_version_rows"] == 2 * (test_every - 1)
    assert status["window_rows"] == 2 * ROWS + 1  # v2's rows are stored, not tested against v1

    # One more v2 row completes the run across batches.
    env.round(monitor, "baseline", version=v2, rows=1, unlabelled=0)
    status = monitor.status()
    assert status["reference_version"] == v2
    assert status["window_rows"] == 2 * (test_every - 1) + 1  # every row v2 served, reloaded from storage
    assert [(e["previous"], e["version"]) for e in env.events("rebased")] == [(env.v1, v2)]

    # v1 rows answered before the re-base (a roll-out's last old answers, flushed late) are no rollback.
    late = _batch(env, [f"late-{i}" for i in range(test_every)], env.v1, answered_at=monitor.versions.rebased_at - 1)
    monitor.ingest(late)
    monitor.step()
    assert monitor.status()["reference_version"] == v2 and len(env.events("rebased")) == 1
    # A batch that was on storage when the windows were reloaded and arrives again (Ray re-sends a call
    # a restarted actor did not finish) is not tested twice.
    rows = monitor.status()["window_rows"]
    resent = [i for b in env.batches if b["version"] == v2 for i in b["ids"]][:50]
    monitor.ingest(_batch(env, resent, v2))
    monitor.step()
    assert monitor.status()["window_rows"] == rows

    # A version this registry cannot load: said once, the reference stays.
    for _ in range(2):
        env.round(monitor, "baseline", version="churn-v-unknown")
    failed = env.events("rebase_failed")
    assert len(failed) == 1 and failed[0]["version"] == "churn-v-unknown" and failed[0]["previous"] == v2
    assert monitor.status()["reference_version"] == v2

    # While a retrain is in flight the monitor does not follow (the job's promotion decides).
    for _ in range(4):
        env.round(monitor, "concept_shift", version=v2)
        if client.calls:
            break
    assert len(client.calls) == 1 and monitor.status()["controller"]["phase"] == "running"
    env.round(monitor, "baseline", version=env.v1)
    assert monitor.status()["reference_version"] == v2 and len(env.events("rebased")) == 1


def _batch(env: Env, ids: list[str], version: str, answered_at: float | None = None) -> dict:
    """Baseline rows with these request ids, as a replica hands them over (answered at ``answered_at``)."""
    df = datasets.generate("churn", "baseline", len(ids), seed=7)[env.features]
    batch = live_columns(df, env.predictor.predict(df), ids, version)
    if answered_at is not None:
        batch["received_at"] = np.full(len(ids), answered_at)
    return batch


def test_following_served_versions_can_be_turned_off(env, version_dir):
    env.config_data["drift"]["monitor"]["follow_served_version"] = False
    monitor = env.monitor(env.client())
    v2 = env.registry.register(MODEL, version_dir, {"lineage": {"trigger": "manual"}}).version
    for _ in range(3):
        env.round(monitor, "baseline", version=v2)
    status = monitor.status()
    assert status["reference_version"] == env.v1 and status["window_rows"] == 0
    assert status["counters"]["other_version_rows"] == 3 * ROWS and not env.events("rebased", "rebase_failed")


def test_a_rollback_by_hand_then_drift_is_a_new_episode_with_a_real_retrain(env):
    """Episode numbers used to restart at zero on every re-base: after v1 -> v2 (healed) -> a rollback to
    v1 -> new drift, the new episode reused v1's first id, the Jobs API answered "already exists", the old
    outcome (v2) was read back, and v2 was promoted and rolled out again with no training."""
    client = env.client()
    monitor = env.monitor(client)
    first = start_episode(env, monitor, client)
    v2 = client.succeed(first, promoted=True)
    monitor.step()
    env.round(monitor, "concept_shift", version=v2)  # v2 rolled out: the monitor follows it
    assert monitor.status()["reference_version"] == v2
    env.clock.advance(COOLDOWN_S)
    monitor.step()

    env.registry.set_alias(MODEL, ALIAS, env.v1, reason="rollback by hand")  # the operator rolls back
    env.round(monitor, "baseline", version=env.v1)
    assert monitor.status()["reference_version"] == env.v1
    for _ in range(6):
        env.round(monitor, "concept_shift", version=env.v1)
        if len(client.calls) > 1:
            break
    assert len(client.calls) == 2
    second = client.calls[1]["submission_id"]
    assert second == submission_id(MODEL, env.v1, 2, 1) and second != first
    assert len(client.jobs) == 2  # a new job, not the old one "already existing"
    assert overrides_of(client.calls[1]["entrypoint"])["drift_episode"] == f"{MODEL}-{env.v1}-e2"
    client.set_status(second, "RUNNING")
    monitor.step()
    assert len(env.events("promoted")) == 1 and env.registry.alias(MODEL, ALIAS) == env.v1  # nothing replayed


def test_episode_numbers_survive_a_lost_state_file(env):
    client = env.client()
    monitor = env.monitor(client)
    first = start_episode(env, monitor, client)
    client.set_status(first, "FAILED")
    monitor.step()
    monitor.stop()
    fs, path = storage.resolve(state_uri(str(env.root), MODEL))
    fs.delete_file(path)  # the monitor's state is gone; its events are not

    again = env.monitor(env.client(jobs=client.jobs))
    assert again.controller.state.episode == 1 and again.controller.state.phase is Phase.idle
    env.clock.advance(COOLDOWN_S)
    for _ in range(6):
        env.round(again, "concept_shift")
        if again._client.calls:
            break
    assert again._client.calls[0]["submission_id"] == submission_id(MODEL, env.v1, 2, 1)


@pytest.mark.parametrize("remembered_by", ["jobs_api", "registry"])
def test_a_wiped_monitoring_folder_never_reuses_an_episode_id(env, remembered_by):
    """state.json and every event gone (the folder deleted, or the bench's clean-up): the Jobs API's history
    (a failed attempt registers nothing) or the registry's lineage (the cluster was restarted since) still
    name episode 1, so the next drift is episode 2, not a replay of episode 1's job and outcome."""
    import shutil

    client = env.client()
    monitor = env.monitor(client)
    first = start_episode(env, monitor, client)
    if remembered_by == "jobs_api":
        client.set_status(first, "FAILED")
    else:
        client.succeed(first, promoted=False)
    monitor.step()
    monitor.stop()
    shutil.rmtree(env.root / "monitoring")
    jobs = client.jobs if remembered_by == "jobs_api" else {}

    again = env.monitor(env.client(jobs=jobs))
    for _ in range(8):
        env.round(again, "concept_shift")
        if again._client.calls:
            break
    assert again._client.calls[0]["submission_id"] == submission_id(MODEL, env.v1, 2, 1)
    assert len(again._client.calls) == 1  # no "already exists" replay


def test_a_jobs_api_that_does_not_answer_is_waited_for_never_counted_as_a_failure(env):
    """Five failed polls in a row (a dashboard restart) used to turn a running retrain into "failed";
    after the backoff attempt 2 ran beside attempt 1 and both could promote."""
    client = env.client()
    monitor = env.monitor(client)
    sid = start_episode(env, monitor, client)
    client.set_status(sid, "RUNNING")
    client.unreachable = True
    for _ in range(4 * MAX_STATUS_ERRORS):
        env.clock.advance(BACKOFF_S)
        monitor.step()
    status = monitor.status()
    assert status["controller"]["phase"] == "running" and status["controller"]["submission_id"] == sid
    assert len(client.calls) == 1 and not env.events("retrain_failed", "retrain_retry_scheduled")
    assert len(env.events("retrain_status_unknown")) == 1  # said once per outage

    client.unreachable = False
    v2 = client.succeed(sid, promoted=True)  # it finished while nobody could see it: the result is used
    monitor.step()
    assert [e["version"] for e in env.events("promoted")] == [v2] and len(client.calls) == 1


def test_a_job_the_cluster_does_not_know_fails_with_its_cause_and_a_timed_out_one_is_stopped_first(env):
    client = env.client()
    monitor = env.monitor(client)
    sid = start_episode(env, monitor, client)
    client.logs[sid] = "Traceback ...\nerror: data.source.path: no files match /x/*.csv\n"
    client.set_status(sid, "FAILED")
    monitor.step()
    failed = env.events("retrain_failed")[0]
    assert failed["cause"] == "error: data.source.path: no files match /x/*.csv"
    assert "no files match" in failed["message"]

    env.clock.advance(BACKOFF_S)
    monitor.step()
    retry = client.calls[1]["submission_id"]
    client.set_status(retry, "RUNNING")
    timeout = MonitorConfig.from_container(env.config_data).drift.retrain.job_timeout_s
    env.clock.advance(timeout + 1)
    client.stop_job = lambda s: client.stopped.append(s) or True  # the stop is sent; the job is still RUNNING
    monitor.step()
    assert client.stopped == [retry] and monitor.status()["controller"]["phase"] == "running"
    monitor.step()
    assert client.stopped == [retry]  # sent once
    client.set_status(retry, "STOPPED")  # confirmed terminal: only now does the attempt count as failed
    monitor.step()
    assert "TIMEOUT" in env.events("retrain_failed")[-1]["message"]
    assert len(client.calls) == 2


def test_outcomes_come_from_the_registry_for_the_exact_attempt_whatever_the_job_status(env, version_dir):
    from foundry.drift import retrain

    cfg = MonitorConfig.from_container(env.config_data)

    def register(sid: str, promoted: bool, move: bool) -> str:
        v = env.registry.register(MODEL, version_dir, {
            "lineage": {"drift_episode": "ep-1", "submission_id": sid},
            "promotion": {"promoted": promoted, "decision": "better"}}).version
        if move:
            env.registry.set_alias(MODEL, ALIAS, v)
        return v

    lost_race = register("ep-1-a1", promoted=True, move=False)  # decided "promote", its compare-and-set lost
    out = retrain.read_outcome(cfg, "ep-1", "SUCCEEDED", "ep-1-a1")
    assert (out.outcome, out.version) == ("rejected", lost_race) and "moved by another writer" in out.detail
    # A job that failed after registering and moving the alias did what the registry shows.
    promoted = register("ep-1-a2", promoted=True, move=True)
    out = retrain.read_outcome(cfg, "ep-1", "FAILED", "ep-1-a2")
    assert (out.outcome, out.version) == ("promoted", promoted)
    # An attempt that registered nothing failed, even when a sibling attempt of the episode registered.
    assert retrain.read_outcome(cfg, "ep-1", "FAILED", "ep-1-a3").outcome == "failed"


class FakeMetrics:
    """``MonitorMetrics`` as the monitor calls it (outside Ray there are none): records retrain outcomes."""

    def __init__(self):
        self.retrains: list[str] = []
        self.loop_errors: list[str] = []
        counter = type("Counter", (), {"inc": lambda self, *a, **k: None})()
        self.episodes = self.rows = counter

    def result(self, *args) -> None:
        pass

    def retrain(self, outcome: str) -> None:
        self.retrains.append(outcome)

    def loop_error(self, error_type: str) -> None:
        self.loop_errors.append(error_type)


def test_the_retrain_set_starts_at_the_estimated_onset_not_at_the_oldest_row_of_the_flagged_window(env):
    """The first flagged window holds 60 rows from before the drift: the old rule (its oldest row) put
    them into the retrain set; the change-point estimate leaves them out."""
    client = env.client()
    monitor = env.monitor(client)
    for _ in range(2):
        env.round(monitor, "baseline")
    before = env.send(monitor, "baseline", rows=60, unlabelled=0)
    time.sleep(0.01)  # a later Serve batch (the retrain set's cutoff has 1 ms of slack)
    drifted = env.send(monitor, "covariate_shift", rows=ROWS - 60, unlabelled=0)
    monitor.step()
    assert any(r["detector"] == "tabular" and r["drift"] for r in monitor.status()["last_results"])
    for _ in range(3):
        drifted += env.round(monitor, "covariate_shift", unlabelled=0)
        if client.calls:
            break
    assert len(client.calls) == 1
    detected = env.events("drift_detected")[0]
    detail = detected["onset_detail"]
    assert detail["estimated"] and "numeric[2]" in detail["blocks"] and detail["rows_searched"] >= 2 * ROWS
    assert monitor.onset_at > detail["first_flagged_window_from"]  # not the flagged window's oldest row
    data = read_parquet(overrides_of(client.calls[0]["entrypoint"])["data.source.path"])
    assert not set(before) & set(data["request_id"])
    assert set(data["request_id"]) == set(drifted)


def test_persistent_unfixable_drift_bounded_attempts_then_gave_up_the_new_normal_and_no_further_retrains(env):
    client = env.client()
    monitor = env.monitor(client)
    metrics = monitor._metrics = FakeMetrics()
    start_episode(env, monitor, client)
    episode = env.events("drift_detected")[0]["episode"]
    sets = []
    for attempt in (1, 2, 3):
        sid = client.calls[-1]["submission_id"]
        assert sid == submission_id(MODEL, env.v1, 1, attempt)
        sets.append(read_parquet(overrides_of(client.calls[-1]["entrypoint"])["data.source.path"]))
        assert overrides_of(client.calls[-1]["entrypoint"])["data.source.path"].endswith(f"{episode}-d{attempt}.parquet")
        client.succeed(sid, promoted=False)  # every challenger loses: retraining cannot fix this drift
        monitor.step()
        if attempt == 3:
            break
        assert monitor.status()["controller"]["phase"] == "more_data"
        env.clock.advance(REJECTION_WAIT_S)  # the wait is over, but no new labelled rows yet
        monitor.step()
        assert len(client.calls) == attempt
        env.round(monitor, "concept_shift")  # new rows, not MORE_ROWS of them
        assert len(client.calls) == attempt
        env.round(monitor, "concept_shift")
        assert len(client.calls) == attempt + 1  # long before the cooldown would have ended
        assert env.clock.now - T0 < COOLDOWN_S
    assert len(sets[1]) > len(sets[0]) and len(sets[2]) > len(sets[1])
    for old, new in zip(sets, sets[1:], strict=False):
        assert len(set(new["request_id"]) - set(old["request_id"])) >= MORE_ROWS
    assert len(env.events("retrain_waiting")) >= 2

    assert len(client.calls) == 3  # max_attempts
    gave_up = env.events("gave_up")
    assert len(gave_up) == 1 and gave_up[0]["episode"] == episode and gave_up[0]["attempts"] == 3
    assert gave_up[0]["why"] == "max_attempts" and gave_up[0]["outcomes"] == ["rejected"] * 3
    assert "3 attempts" in gave_up[0]["message"] and "new normal" in gave_up[0]["message"]
    assert metrics.retrains.count("gave_up") == 1 and metrics.retrains.count("rejected") == 3
    rebased = env.events("rebased")
    assert [(e["reason"], e["version"], e["previous"]) for e in rebased] == [("new_normal", env.v1, env.v1)]
    status = monitor.status()
    assert status["new_normal"]["uri"] == rebased[0]["reference"] and status["reference_version"] == env.v1
    assert status["controller"]["phase"] == "cooldown" and env.registry.alias(MODEL, ALIAS) == env.v1
    assert "/new_normal/" in status["new_normal"]["uri"] and "/registry/" not in status["new_normal"]["uri"]

    # The drift goes on, past the cooldown: the detectors compare it with itself now; nothing flags.
    env.clock.advance(COOLDOWN_S)
    for _ in range(4):
        env.round(monitor, "concept_shift")
    rounds = [r for r in monitor.rounds() if r["at"] > T0 + COOLDOWN_S]
    assert len(rounds) >= 3 and not any(r["drifted"] for r in rounds)
    assert len(client.calls) == 3 and len(env.events("drift_detected")) == 1

    # A restarted monitor keeps the new normal and does not resume retraining.
    monitor.stop()
    again = env.monitor(env.client(jobs=client.jobs))
    assert again.status()["new_normal"] == status["new_normal"]
    for _ in range(4):
        env.round(again, "concept_shift")
        env.clock.advance(COOLDOWN_S)
    assert again._client.calls == [] and not any(r["drifted"] for r in again.rounds())


def _wait_for(predicate, timeout_s: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_round_that_raises_is_counted_shown_in_status_and_the_loop_goes_on(env, monkeypatch):
    """Loop exceptions used to be logged only: status() looked healthy while every round failed."""
    env.config_data["drift"]["monitor"]["poll_interval_s"] = 0.02  # for the loop started below
    client = env.client()
    monitor = env.monitor(client)
    metrics = monitor._metrics = FakeMetrics()
    sid = start_episode(env, monitor, client)
    real_versions = Registry.versions
    broken = threading.Event()
    broken.set()

    def versions(self, *args, **kwargs):  # the registry the job's outcome is read from is unreachable
        if broken.is_set():
            raise OSError("registry unreachable (unit test)")
        return real_versions(self, *args, **kwargs)

    monkeypatch.setattr(Registry, "versions", versions)
    client.set_status(sid, "FAILED")
    with pytest.raises(OSError, match="registry unreachable"):  # a round run by hand raises to its caller
        monitor.step()
    status = monitor.status()
    assert status["counters"]["loop_errors"] == 1 and metrics.loop_errors == ["OSError"]
    error = status["last_error"]
    assert error["type"] == "OSError" and "registry unreachable" in error["message"]
    assert error["at"].startswith("1970-01-12T13:46:40") and error["round"] == status["counters"]["rounds"]

    # The background loop: every round fails the same way, is counted, and the next one still runs.
    loop = threading.Thread(target=monitor._run, daemon=True)
    loop.start()
    try:
        _wait_for(lambda: monitor.status()["counters"]["loop_errors"] >= 4, what="failing rounds")
        assert monitor.status()["controller"]["phase"] == "running"  # nothing applied from a failed round
        assert not env.events("retrain_failed")
        broken.clear()  # the registry answers again: the next round reads the outcome
        _wait_for(lambda: monitor.status()["controller"]["phase"] == "backoff", what="the outcome")
    finally:
        monitor.stop()
        loop.join(10)
    assert not loop.is_alive()
    failed = env.events("retrain_failed")
    assert len(failed) == 1 and failed[0]["submission_id"] == sid
    status = monitor.status()
    assert status["last_error"]["type"] == "OSError" and set(metrics.loop_errors) == {"OSError"}
    assert status["counters"]["loop_errors"] == len(metrics.loop_errors) >= 4
    assert monitor.state_file.read()["counters"]["loop_errors"] == status["counters"]["loop_errors"]


class BlockingJobClient(FakeJobClient):
    """A Jobs API whose submit hangs (a slow dashboard) until the test releases it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.entered = threading.Event()
        self.release = threading.Event()

    def submit_job(self, **kwargs) -> str:
        self.entered.set()
        self.release.wait(120)
        return super().submit_job(**kwargs)


def test_status_answers_at_once_while_a_job_submission_hangs(env):
    """``step()`` used to hold the monitor's lock through the Jobs API call (and a roll-out's wait of up
    to 180 s): status() and rounds() waited as long."""
    client = BlockingJobClient(env.registry, env.root / "scratch")
    monitor = env.monitor(client)
    for _ in range(2):
        env.round(monitor, "baseline")
    failures: list[BaseException] = []

    def drift() -> None:
        try:
            for _ in range(4):
                env.round(monitor, "concept_shift")
                if client.calls:
                    break
        except BaseException as exc:
            failures.append(exc)

    worker = threading.Thread(target=drift, daemon=True)
    worker.start()
    answers: list = []
    try:
        assert client.entered.wait(120), "no retrain was submitted"
        reader = threading.Thread(target=lambda: answers.append((monitor.status(), monitor.rounds())), daemon=True)
        started = time.perf_counter()
        reader.start()
        reader.join(1.0)
        assert answers, "status() waited for the Jobs API"
        assert time.perf_counter() - started < 1.0
    finally:
        client.release.set()
        worker.join(120)
    status, rounds = answers[0]
    assert status["controller"]["phase"] == "running"
    assert status["controller"]["submission_id"] == submission_id(MODEL, env.v1, 1, 1)
    assert rounds and rounds[-1]["drifted"]
    assert not failures and len(client.calls) == 1 and len(env.events("retrain_submitted")) == 1


# ---- the sequential alarm (drift.alarm.method=sequential, the default) ----------------------------------------

# The same mechanics, detection by the sequential alarm. The test version's reference sample is small, so
# its bounds are wide: a budget of one false alarm per 10,000 rows keeps the rounds few (the budget's own
# calibration is tested in test_drift_alarm.py on a large reference).
SEQUENTIAL = [o for o in DRIFT if not o.startswith("drift.alarm.method")] + [
    "drift.alarm.method=sequential", "drift.alarm.expected_rows_between_false_episodes=10000",
    "drift.alarm.benign_after_rows=400"]


@pytest.fixture
def seq_env(tmp_path, version_dir) -> Env:
    return make_env(tmp_path, version_dir, SEQUENTIAL)


def rounds_until_submitted(env: Env, monitor: DriftMonitor, client: FakeJobClient, baseline: int, drifted: int,
                           scenario: str = "concept_shift") -> None:
    """``baseline`` rounds of clean traffic, then up to ``drifted`` rounds of ``scenario`` until a retrain is
    submitted."""
    for _ in range(baseline):
        env.round(monitor, "baseline")
    for _ in range(drifted):
        env.round(monitor, scenario)
        if client.calls:
            break


def test_sequential_alarm_is_quiet_on_baseline_then_concept_drift_starts_one_episode_on_the_drifted_rows(seq_env):
    """Catches: the alarm not wired to the controller (no submission), labels not fed to it (concept drift
    changes no input: only the labelled error signal sees it), alarms on clean traffic, or an onset that
    puts the clean rows before the drift into the retrain set."""
    env = seq_env
    client = env.client()
    monitor = env.monitor(client)
    rounds_until_submitted(env, monitor, client, baseline=5, drifted=0)
    status = monitor.status()
    assert {r["detector"] for r in status["last_results"]} == {"alarm.input", "alarm.estimated", "alarm.labelled"}
    assert not client.calls and not env.events("input_drift", "benign_shift", "drift_detected")
    rounds_until_submitted(env, monitor, client, baseline=0, drifted=10)
    assert len(client.calls) == 1, "concept drift never started an episode"
    detected = env.events("drift_detected")
    assert len(detected) == 1 and detected[0]["votes"] == ["labelled"]
    assert detected[0]["alarms"][0]["kind"] == "harm" and detected[0]["alarms"][0]["family"] == "labelled"
    data = read_parquet(overrides_of(client.calls[0]["entrypoint"])["data.source.path"])
    scenario_of = {i: b["scenario"] for b in env.batches for i in b["ids"]}
    baseline_share = float(np.mean([scenario_of[i] == "baseline" for i in data["request_id"]]))
    assert len(data) >= 150 and baseline_share <= 0.1, (len(data), baseline_share)


def test_sequential_alarm_reports_a_benign_shift_and_retrains_nothing(seq_env):
    """Catches: input drift starting episodes under the harm policy, a watch that never ends (no
    benign_shift), or input signals not re-based afterwards (the same shift reported again and again)."""
    env = seq_env
    client = env.client()
    monitor = env.monitor(client)
    for _ in range(2):
        env.round(monitor, "baseline")
    for _ in range(8):
        env.round(monitor, "benign_shift")
    assert not client.calls
    assert kinds(env.events("input_drift", "benign_shift")) == ["input_drift", "benign_shift"]
    benign = env.events("benign_shift")[0]
    assert benign["alarm"]["kind"] == "benign" and benign["alarm"]["watched_rows"] == 400
    assert abs(benign["alarm"]["expected_error"] - benign["alarm"]["reference_expected_error"]) < 0.05
    assert monitor.status()["controller"]["phase"] == "idle"


def test_sequential_alarm_keeps_the_onset_while_an_episode_waits_for_labels(tmp_path, version_dir):
    """The first alarm comes before enough labelled rows exist; the alarm's evidence restarts after each
    alarm, so the rounds in between raise nothing. Catches: taking such a quiet round for the end of the
    drift (the onset forgotten, then set again at a later alarm): the retrain set would lose the drift's
    first rows and the episode would wait far longer for "enough rows since the onset"."""
    env = make_env(tmp_path, version_dir, [*SEQUENTIAL, "drift.retrain.min_labelled_rows=1200",
                                           "drift.retrain.max_rows=5000"])
    client = env.client()
    monitor = env.monitor(client)
    rounds_until_submitted(env, monitor, client, baseline=3, drifted=14)
    assert len(client.calls) == 1, [(e["kind"], e["message"][:150]) for e in env.events()]
    data = read_parquet(overrides_of(client.calls[0]["entrypoint"])["data.source.path"])
    concept = {i for b in env.batches if b["scenario"] == "concept_shift" for i in b["ids"] if i in env.labelled}
    kept = len(concept & set(data["request_id"])) / len(concept)
    assert kept >= 0.9, f"the retrain set holds {kept:.0%} of the drifted labelled rows"
    assert len(env.batches) - 3 <= 8, "submitted long after 1,200 labelled drifted rows existed"


def test_input_alarms_after_a_harm_alarm_are_counted_not_written_as_events(tmp_path, version_dir):
    """The inputs of a harmful covariate shift stay shifted: after the harm alarm, the alarm's evidence
    restarts and input alarms keep coming. Catches: an input_drift event every few hundred rows for as long
    as the episode runs (what a heal_bench run showed: dozens per episode)."""
    # A watch long enough for the harm to show within it (no benign re-base of the inputs first).
    env = make_env(tmp_path, version_dir, [*SEQUENTIAL, "drift.alarm.benign_after_rows=3000"])
    client = env.client()
    monitor = env.monitor(client)
    rounds_until_submitted(env, monitor, client, baseline=2, drifted=15, scenario="harmful_covariate")
    assert len(client.calls) == 1, [(e["kind"], e["message"][:120]) for e in env.events()]
    client.set_status(client.calls[0]["submission_id"], "RUNNING")
    before = len(env.events())
    for _ in range(15):
        env.round(monitor, "harmful_covariate")
    later = [e["kind"] for e in env.events()[before:]]
    assert "input_drift" not in later and "benign_shift" not in later, later
    assert monitor.status()["controller"]["phase"] == "running"


def test_a_flooded_monitor_stays_bounded_counts_what_it_dropped_and_tells_the_sink(tmp_path, version_dir):
    """Offered far more rows than a round absorbs: the queue never holds more than max_queued_rows, the
    excess is sampled out and counted, every acknowledgement says so, and a round drains it."""
    env = make_env(tmp_path, version_dir, [*DRIFT, "drift.monitor.max_queued_rows=500"])
    monitor = env.monitor(env.client())
    acks = []
    for _ in range(12):  # 2,400 rows offered, no round in between
        df = datasets.generate("churn", "baseline", ROWS, seed=env.seed)
        env.seed += 1
        ids = [f"flood-{env.seed}-{i}" for i in range(ROWS)]
        acks.append(monitor.ingest(live_columns(df[env.features], env.predictor.predict(df[env.features]), ids,
                                                env.v1)))
        assert monitor._queue.rows <= 500
    taken = sum(a["taken"] for a in acks)
    assert taken == 500 and acks[2]["taken"] == 100 and acks[2]["full"] and acks[-1] == {
        "taken": 0, "dropped": ROWS, "full": True, "queued_rows": 500, "capacity": 500}
    assert monitor.status()["counters"]["rows_dropped"] == 12 * ROWS - 500
    monitor.step()
    status = monitor.flush()
    assert status["queued_rows"] == 0 and status["counters"]["rows"] == 500
    assert monitor.ingest(live_columns(df[env.features], env.predictor.predict(df[env.features]),
                                       [f"after-{i}" for i in range(ROWS)], env.v1))["taken"] == ROWS
    stored = monitor.live.read_recent(10_000)
    assert len(stored) == 500  # what was taken is stored once; what was dropped is not


@pytest.mark.parametrize(("retrain", "warm_start_from", "tune_enabled"), [
    ([], f"{MODEL}@v1", "false"),  # refine production with its stored hyperparameters; a stored search is off
    (['drift.retrain.overrides=["tune=quick"]'], "null", None),  # asked to search: trials from scratch
    (['drift.retrain.overrides=["tune.num_samples=2"]'], "null", None),
    (["drift.retrain.warm_start=false"], "null", None),  # from scratch: the stored config decides on a search
    (['drift.retrain.overrides=["trainer.warm_start_from=null"]'], "null", None),  # the user's, once
])
def test_a_retrain_never_combines_a_warm_start_with_a_search(retrain, warm_start_from, tune_enabled):
    """A version trained with ``tune=...`` stores ``tune.enabled: true``; its warm-started retrain failed at
    once ("trainer.warm_start_from does not combine with tune"), attempt after attempt. Catches: a warm start
    sent beside a search, a search the user asked for dropped, or an override given twice."""
    from foundry.drift.monitor_config import monitor_config
    from foundry.drift.retrain import RetrainData, job_arguments

    cfg = monitor_config(config.load([f"model_name={MODEL}", *retrain]))
    args = job_arguments(cfg, "v1", RetrainData("file:///tmp/rows.parquet", 10, 10, 0), f"{MODEL}-v1-e1")
    ov = overrides_of(" ".join(["python", "-m", "jobs.train", *args]))
    assert ov["trainer.warm_start_from"] == warm_start_from
    assert ov.get("tune.enabled") == tune_enabled


@pytest.mark.parametrize(("exit_code", "retried"), [(2, False), (1, True), (None, True)])
def test_a_retrain_that_fails_on_its_configuration_is_not_retried(env, exit_code, retried):
    """A job that exits 2 (a configuration error: the same command repeats it) ends the episode's retries at
    once, saying why, instead of failing again after each backoff; any other failure is retried. Catches:
    a config error retried (it cost 3 jobs and 90 s of backoff), or every failure treated as one."""
    client = env.client()
    monitor = env.monitor(client)
    sid = start_episode(env, monitor, client)
    client.logs[sid] = "error: trainer.warm_start_from does not combine with tune (trials start from scratch)"
    client.jobs[sid].exit_code = exit_code
    client.set_status(sid, "FAILED")
    monitor.step()
    if retried:
        assert kinds(env.events("retrain_failed", "retrain_retry_scheduled", "retries_exhausted")) == \
            ["retrain_failed", "retrain_retry_scheduled"]
        return
    assert kinds(env.events("retrain_failed", "retrain_retry_scheduled", "retries_exhausted")) == \
        ["retrain_failed", "retries_exhausted"]
    assert "configuration error" in env.events("retries_exhausted")[0]["message"]
    assert "does not combine with tune" in env.events("retrain_failed")[0]["message"]
    env.clock.advance(BACKOFF_S * 10)
    monitor.step()
    assert len(client.calls) == 1 and monitor.status()["controller"]["phase"] in ("cooldown", "idle")
