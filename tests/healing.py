"""A served and watched model on the shared cluster, for the self-healing and retrain-fault tests.

Each module gets its own model, Serve application and ``DriftMonitor`` (started with the same
commands a user runs: ``python -m serve_apps.deploy`` and ``python -m jobs.monitor``), fed by the
traffic generator over real HTTP. What differs between modules is the monitor's settings (what the
retrain job is told, the margin it must beat, the backoff), passed as Hydra overrides.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from foundry import config
from foundry.demo.traffic import TrafficGenerator
from foundry.drift.events import read_events
from foundry.registry import Registry
from tests.conftest import REPO_ROOT
from tests.versions import register_version

# Small windows and a small labelled set keep detection and the retrain quick on 2 cores.
MONITOR = ["drift.window.size=500", "drift.window.test_every_rows=250", "drift.window.consecutive=2",
           "drift.detectors.concept.window_rows=300", "drift.retrain.min_labelled_rows=1500",
           "drift.retrain.max_rows=4000", "drift.retrain.cooldown_s=3600", "drift.monitor.poll_interval_s=0.5",
           "drift.monitor.num_cpus=0.25"]
QUICK_RETRAIN = 'drift.retrain.overrides=["+experiment=quick","trainer.num_workers=1","trainer.epochs=2"]'
SERVE = ["serve.autoscaling.min_replicas=1", "serve.autoscaling.max_replicas=1", "serve.num_cpus=0.5",
         "serve.access_log=false"]
# Events after which an episode needs nothing more from the traffic.
EPISODE_ENDS = frozenset({"rebased", "rollout_failed", "retries_exhausted", "rejected"})


def run_module(module: str, args: list[str], env: dict, timeout: float = 300, cwd: Path = REPO_ROOT) -> str:
    """``python -m module args`` in ``cwd`` (a user's own folder, or the repository); its stdout, or the
    test fails with its output."""
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)
    assert proc.returncode == 0, f"{module} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@dataclass
class Watched:
    model: str
    root: str  # storage.root
    registry: Registry
    v1: str
    traffic: TrafficGenerator
    overrides: list[str]
    env: dict

    def events(self) -> list[dict]:
        return read_events(self.root, self.model)

    def kinds(self) -> list[str]:
        return [e["kind"] for e in self.events()]

    def monitor(self):
        import ray

        return ray.get_actor(f"foundry-monitor-{self.model}", namespace="foundry")

    def status(self) -> dict:
        import ray

        return ray.get(self.monitor().status.remote(), timeout=60)


@contextlib.contextmanager
def watched_model(ray_cluster, serve_port: int, workdir: Path, model: str, api_key: str,
                  monitor_overrides: list[str]) -> Iterator[Watched]:
    """Register v1 (built without Ray), serve it at ``/<model>`` and start its monitor; tear down after."""
    overrides = [*ray_cluster.overrides, f"ray.address={ray_cluster.address}", f"serve.http.port={serve_port}",
                 *SERVE, f"model_name={model}", f"serve.app_name={model}", f"serve.route_prefix=/{model}",
                 *MONITOR, *monitor_overrides]
    cfg = config.load(overrides)
    registry = cfg.storage.layout.open_registry()
    v1 = register_version(registry, cfg, workdir)
    env = {**os.environ, "FOUNDRY_API_KEY": api_key}
    run_module("serve_apps.deploy", overrides, env)
    assert f"foundry-monitor-{model}" in run_module("jobs.monitor", overrides, env)
    generator = TrafficGenerator(f"http://127.0.0.1:{serve_port}/{model}", api_key, rows_per_request=25,
                                 concurrency=2)
    try:
        yield Watched(model, ray_cluster.storage_root, registry, v1, generator, overrides, env)
    finally:
        generator.close()
        subprocess.run([sys.executable, "-m", "jobs.monitor", *overrides, "--stop"], cwd=REPO_ROOT, env=env,
                       capture_output=True, timeout=120)
        from foundry.serving import control

        control.delete_app(model, wait=False)


def _drift_traffic(gen: TrafficGenerator, stop: threading.Event, slow: threading.Event, seed: int,
                   scenario: str = "concept_shift") -> None:
    """Enough traffic to detect the drift and label a retrain set quickly, then a trickle (the 2-core
    CI box needs its CPUs for the retrain job) that still spans the swap."""
    while not stop.is_set():
        gen.send(scenario, 200, seed=seed, phase="drift", rate_rows_per_s=40 if slow.is_set() else 250)
        seed += 1


def drift_until(w: Watched, end_kinds: frozenset[str] = EPISODE_ENDS, timeout_s: float = 600,
                seed: int = 200, scenario: str = "concept_shift") -> list[dict]:
    """Send ``scenario``'s traffic (with labels) until one of ``end_kinds`` is an event; returns the events.

    Traffic slows to a trickle once a retrain is submitted and keeps flowing a few seconds past the
    end, so a swap happens under load."""
    stop, slow = threading.Event(), threading.Event()
    thread = threading.Thread(target=_drift_traffic, args=(w.traffic, stop, slow, seed, scenario), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            kinds = set(w.kinds())
            if "retrain_submitted" in kinds:
                slow.set()
            if end_kinds & kinds:
                break
            time.sleep(2)
        time.sleep(3)
    finally:
        stop.set()
        thread.join(timeout=120)
    return w.events()


def exported_metrics() -> str:
    """The Prometheus text of every live node's metrics endpoint."""
    import httpx
    import ray

    ports = {n["MetricsExportPort"] for n in ray.nodes() if n.get("Alive") and n.get("MetricsExportPort")}
    text = ""
    for port in ports:
        with contextlib.suppress(httpx.HTTPError):
            text += httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return text


def metric_value(text: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples (a counter may carry a ``_total`` suffix) whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        if not (line.startswith((name + "{", name + "_total{"))):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_for_metric(name: str, expected: float, timeout_s: float = 60, **labels: str) -> float:
    """The metric's value once it equals ``expected`` (Ray exports every few seconds), else the last seen."""
    deadline = time.monotonic() + timeout_s
    value = metric_value(exported_metrics(), name, **labels)
    while value != expected and time.monotonic() < deadline:
        time.sleep(2)
        value = metric_value(exported_metrics(), name, **labels)
    return value
