"""Follow the demo's loop: traffic in a thread, the monitor's rounds and events, progress lines, the summary."""

from __future__ import annotations

import threading
import time
from datetime import datetime

from foundry import config
from foundry.demo.session import say
from foundry.errors import FoundryError


class Traffic:
    """Baseline rows, then drifted rows until told to stop; runs in a thread so the demo can watch."""

    def __init__(self, demo: config.DemoConfig, url: str, key: str):
        from foundry.demo.traffic import TrafficGenerator

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
    from foundry.demo.traffic import accuracy

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


def watch(cfg, traffic: Traffic, monitor, t0: float, started: datetime) -> tuple[list, list]:
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


def print_summary(summary: dict, paths: dict) -> None:
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
