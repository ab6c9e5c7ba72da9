"""``make demo``: the whole self-healing loop on the bundled data set, on a local autoscaling cluster.

    python -m foundry.demo [hydra overrides, e.g. tune=quick demo.traffic.drift_scenario=covariate_shift]

1. start the local cluster (token auth, autoscaler; idempotent);
2. submit ``jobs.pipeline`` through the Jobs API (prepare, optional Tune, train with 2 workers,
   register + promote, deploy Serve, start the drift monitor) and stream its log;
3. send in-distribution traffic over HTTP with labels on ``/feedback``;
4. switch the traffic to a drift scenario and follow the monitor (rounds, events) until the new
   model is detected, retrained, evaluated, promoted and rolled out, then send some more;
5. print the summary and write the report folder (plots, tables, raw records).

Runs with ``+experiment=demo`` (conf/experiment/demo.yaml) and ``demo.*`` (conf/demo/default.yaml).
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from foundry import config, storage
from foundry.errors import FoundryError

DEMO_EXPERIMENT = "+experiment=demo"
KEY_FILE = "api_key"


def _worth_showing(line: str) -> bool:
    """Our own progress lines and errors; Ray's per-operator progress chatter stays in the dashboard."""
    noisy = ("logging_progress.py", "streaming_executor.py", "INFO worker.py", "pid=", "DeprecationWarning",
             "warnings.warn", "INFO __init__.py", "(autoscaler", "INFO ", "Running 0:", "- ListFiles",
             "- ReadParquet", "- Map", "- split", "- limit")
    return bool(line.strip()) and not any(n in line for n in noisy)


def say(text: str) -> None:
    print(text, flush=True)


def _key_env(serve: config.ServeConfig, key: str) -> dict | None:
    """The pipeline job's environment: the key's salted digest only (Ray logs a job's runtime_env in full).
    The running application's digest is reused when it is this key's, so a rerun swaps in place instead of
    restarting the replicas for a new salt."""
    from ray.serve.exceptions import RayServeException

    from foundry.serving import control
    from foundry.serving.keys import check_key_strength, digest_list

    auth = serve.auth
    if not (auth.enabled and auth.api_key_sha256_env):
        return None
    check_key_strength(key, f"the demo's API key (${auth.api_key_env} or {KEY_FILE} in demo.report_dir)")
    try:
        running = control.deployed_apps().get(serve.app_name) or {}
    except RayServeException:  # Serve not started yet
        running = {}
    previous = ((running.get("runtime_env") or {}).get("env_vars") or {}).get(auth.api_key_sha256_env)
    return {auth.api_key_sha256_env: digest_list([key], previous)}


def api_key(cfg: config.FoundryConfig) -> str:
    """$FOUNDRY_API_KEY when set, else the demo's own key (kept 0600 next to its reports, reused)."""
    env = cfg.serve.auth.api_key_env
    if env and os.environ.get(env):
        return os.environ[env]
    path = Path(cfg.demo.report_dir) / KEY_FILE
    if path.exists():
        if path.stat().st_mode & 0o077:  # copied or restored with looser permissions: tighten them
            path.chmod(0o600)
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(32)  # 43 characters, 256 bits (foundry.serving.keys wants >= 32 and 128)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key


def fresh_start(cfg: config.FoundryConfig) -> None:
    """Forget the demo model: its monitor actor, monitoring state, registry versions (nothing else)."""
    import ray

    from foundry.drift import monitor_name

    with contextlib.suppress(ValueError):  # ValueError: not running
        ray.kill(ray.get_actor(monitor_name(cfg.drift.monitor.name_prefix, cfg.model_name),
                               namespace=cfg.drift.monitor.namespace), no_restart=True)
    layout = cfg.storage.layout
    for base in (layout.registry, layout.monitoring):
        fs, path = storage.resolve(storage.join(base, cfg.model_name))
        fs.delete_dir_contents(path, missing_dir_ok=True)


class Traffic:
    """Baseline rows, then drifted rows until told to stop; runs in a thread so the demo can watch."""

    def __init__(self, demo: config.DemoConfig, url: str, key: str):
        from foundry.traffic import TrafficGenerator

        self.t = demo.traffic
        self.gen = TrafficGenerator(url, key, rows_per_request=self.t.rows_per_request,
                                    concurrency=self.t.concurrency)
        self.onset: float | None = None
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="demo-traffic", daemon=True)

    def _run(self) -> None:
        try:
            self.gen.send("baseline", self.t.baseline_rows, seed=self.t.seed, phase="baseline",
                          rate_rows_per_s=self.t.rate_rows_per_s)
            self.onset = time.time()
            seed = self.t.seed + 1
            while not self.stop.is_set():
                self.gen.send(self.t.drift_scenario, 500, seed=seed, phase="drift", rate_rows_per_s=self.t.rate_rows_per_s)
                seed += 1
        except BaseException as exc:  # surfaced by the watcher, never lost in a thread
            self.error = exc

    def rows(self, phase: str, version: str | None = None) -> int:
        with self.gen.log.lock:
            return sum(r.rows for r in self.gen.log.records
                       if r.phase == phase and r.status == 200 and (version is None or r.version == version))


def _progress(traffic: Traffic, status: dict | None, t0: float) -> str:
    from foundry.traffic import accuracy

    with traffic.gen.log.lock:
        records = list(traffic.gen.log.records)
    recent, rows = [], 0
    for r in reversed(records):
        if r.status == 200:
            recent.append(r)
            rows += r.rows
            if rows >= 500:
                break
    failed = sum(1 for r in records if r.status != 200)
    phase = "drifted" if traffic.onset else "baseline"
    served = recent[0].version if recent else "-"
    monitor = ""
    if status:
        c = status["controller"]
        monitor = f" | monitor round {status['counters']['rounds']}, {c['phase']}"
        if c.get("submission_id") and c["phase"] == "running":
            monitor += f" ({c['submission_id']})"
    return (f"   [{time.time() - t0:5.0f} s] {phase} traffic: {sum(r.rows for r in records):,} rows, {failed} failed"
            f" | serving {served}, accuracy (last 500 rows) {accuracy(recent):.3f}{monitor}")


def _watch(cfg, traffic: Traffic, monitor, t0: float, started: datetime) -> tuple[list, list]:
    """Follow rounds and events until healed (+ after_rows), a dead end, or the timeout."""
    import ray

    from foundry.drift.events import read_events
    from foundry.drift.timeline import TERMINAL_KINDS

    rounds: list[dict] = []
    seen: set[str] = set()
    events: list[dict] = []
    deadline = None
    healed_version, next_progress = None, 0.0
    while True:
        time.sleep(1.0)
        if traffic.error:
            raise FoundryError(f"the traffic generator failed: {traffic.error}")
        status = None
        try:
            rounds += ray.get(monitor.rounds.remote(rounds[-1]["round"] if rounds else 0), timeout=30)
            status = ray.get(monitor.status.remote(), timeout=30)
        except Exception as exc:  # a restarting monitor: keep going, the plots just miss a point
            say(f"   (monitor not answering: {type(exc).__name__})")
        events = read_events(cfg.storage.root, cfg.model_name, since=started)
        for e in events:
            key = f"{e['at']}-{e['kind']}"
            if key not in seen and e["kind"] != "monitor_started":
                seen.add(key)
                say(f"   >> {e['kind']}: {e['message']}")
        now = time.time()
        if now >= next_progress:
            say(_progress(traffic, status, t0))
            next_progress = now + cfg.demo.progress_every_s
        if traffic.onset and deadline is None:
            deadline = traffic.onset + cfg.demo.heal_timeout_s
            say(f"== 4/5 the world changes: {cfg.demo.traffic.drift_scenario} traffic from now on; waiting for the "
                "monitor to detect it, retrain, promote and roll out")
        kinds = {e["kind"] for e in events}
        if "rolled_out" in kinds and healed_version is None:
            healed_version = next(e["version"] for e in events if e["kind"] == "rolled_out")
            say(f"== 5/5 healed: {healed_version} serves; {cfg.demo.traffic.after_rows:,} more drifted rows to "
                "measure it")
        if healed_version and traffic.rows("drift", healed_version) >= cfg.demo.traffic.after_rows:
            break
        if kinds & (TERMINAL_KINDS - {"rebased"}) and "rolled_out" not in kinds:
            break
        if deadline and now > deadline:
            say(f"   heal timeout ({cfg.demo.heal_timeout_s:.0f} s) reached")
            break
    return rounds, events


def main(overrides: list[str]) -> int:
    import ray

    from cluster import lifecycle
    from foundry.demo.report import write_report
    from foundry.demo.summary import milestones, summarize
    from foundry.drift import monitor_name
    from foundry.drift.timeline import JobTimes, first
    from foundry.job_submission import follow, metadata, submit
    from foundry.ray_runtime import connect, dashboard_url, gcs_address, job_client
    from foundry.serving.control import url_of

    logging.getLogger("ray").setLevel(logging.WARNING)  # the client's upload chatter, not the job's
    overrides = [DEMO_EXPERIMENT, *overrides] if DEMO_EXPERIMENT not in overrides else list(overrides)
    cfg = config.load(overrides)
    t0 = time.time()
    started = datetime.now(timezone.utc)
    key = api_key(cfg)

    say(f"== 1/5 local Ray cluster ({cfg.cluster.name})")
    lifecycle.up(cfg.cluster)  # idempotent; raises FoundryError if the head cannot start
    say(f"   dashboard: {dashboard_url(cfg.cluster)}  (Jobs, Actors, Serve, Metrics pages)")
    connect(gcs_address(cfg.cluster), logging_level="ERROR", log_to_driver=False)
    if cfg.demo.fresh_start:
        fresh_start(cfg)

    say(f"== 2/5 pipeline job via the Ray Jobs API: prepare{', tune' if cfg.tune.enabled else ''}, train "
        f"({cfg.trainer.num_workers} workers), register, deploy Serve, start the drift monitor")
    client = job_client(cfg.cluster)
    job = submit(client, "jobs.pipeline", overrides, metadata("pipeline", cfg.model_name),
                 env_vars=_key_env(cfg.serve, key))
    say(f"   submitted {job.submission_id}: python -m jobs.pipeline {' '.join(overrides)}")
    if cfg.cluster.autoscaling.enabled:
        say("   (the autoscaler adds worker nodes for it: `python -m cluster status` shows them)")
    status = follow(client, job.submission_id, timeout_s=cfg.demo.pipeline_timeout_s, out=say, show=_worth_showing)
    if status != "SUCCEEDED":
        raise FoundryError(f"the pipeline job ended {status}; its full log: ray job logs {job.submission_id} "
                           f"(or the dashboard's Jobs page)")
    registry = cfg.storage.layout.open_registry()
    initial = registry.alias(cfg.model_name, cfg.promotion.alias)
    url = url_of({"host": cfg.serve.http.host, "port": cfg.serve.http.port}, cfg.serve.route_prefix)
    monitor = ray.get_actor(monitor_name(cfg.drift.monitor.name_prefix, cfg.model_name),
                            namespace=cfg.drift.monitor.namespace)

    traffic_cfg = cfg.demo.traffic
    say(f"== 3/5 live traffic to {url}/predict: {traffic_cfg.baseline_rows:,} in-distribution rows at "
        f"{traffic_cfg.rate_rows_per_s:.0f} rows/s, labels sent to /feedback")
    traffic = Traffic(cfg.demo, url, key)
    traffic_t0 = time.time()
    traffic.thread.start()
    try:
        rounds, events = _watch(cfg, traffic, monitor, traffic_t0, started)
    finally:
        traffic.stop.set()
        traffic.thread.join(timeout=120)
        traffic.gen.close()

    onset = traffic.onset or time.time()
    submitted = first(events, "retrain_submitted")
    job_times, timings = None, {}
    if submitted:
        info = client.get_job_info(submitted["submission_id"])
        if info.start_time and info.end_time:
            job_times = JobTimes(info.start_time / 1000, info.end_time / 1000)
    promoted = first(events, "promoted") or first(events, "candidate")  # candidate: a canary/shadow followed
    if promoted:
        timings = registry.get(cfg.model_name, promoted["version"]).metadata.get("timings_s", {})
    records = list(traffic.gen.log.records)
    summary = summarize(cfg.model_name, traffic_cfg.drift_scenario, records, events, onset, initial, job_times,
                        timings, t0)
    out_dir = Path(cfg.demo.report_dir) / started.strftime("%Y%m%d-%H%M%S")
    paths = write_report(out_dir, summary, traffic.gen.log.frame(), rounds, events, milestones(events, onset),
                         traffic_t0)
    _print_summary(summary, paths)
    ray.shutdown()
    if cfg.demo.down_at_end:
        lifecycle.down(cfg.cluster)
    else:
        say("The cluster, the Serve app and the monitor keep running: `make demo-down` stops them.")
    return 0 if summary["outcome"] == "healed" and summary["requests"]["failed"] == 0 else 1


def _print_summary(summary: dict, paths: dict) -> None:
    acc, det = summary["accuracy"], summary["detection"]

    def f(v, d=3):
        return "n/a" if v is None or v != v else f"{v:.{d}f}"

    say("\n== summary")
    say(f"   outcome: {summary['outcome'].upper()} - {summary['outcome_detail']}")
    say(f"   versions: {summary['versions']['initial']} -> {summary['versions']['healed'] or '(unchanged)'}")
    say(f"   accuracy: before drift {f(acc['before_drift'])}, during drift {f(acc['during_drift'])}, "
        f"after healing {f(acc['after_heal'])}")
    say(f"   detection delay: {det['rows'] if det['rows'] is not None else 'n/a'} drifted rows, "
        f"{f(det['seconds'], 1)} s; time to heal: {f(summary['time_to_heal_s'], 1)} s")
    for stage, seconds in (summary.get("stages_s") or {}).items():
        say(f"     {stage:<44} {seconds:7.1f} s")
    say(f"   requests: {summary['requests']['sent']:,} sent, {summary['requests']['failed']} failed "
        f"({summary['requests']['rows']:,} rows)")
    say(f"   report: {paths['report']} (figures: {', '.join(str(paths[k].name) for k in ('drift', 'accuracy', 'latency'))})")
    say(f"   demo wall time: {summary['wall_s']:.0f} s")
