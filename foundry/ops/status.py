"""``python -m foundry.ops.status [overrides]``: the platform at a glance, from one terminal.

Cluster nodes and resources, Serve applications, named actors (monitors), recent jobs with their
metadata, and every registered model with its aliases: the same facts the dashboard shows across
several pages, plus the registry it does not know about. Each section degrades to a one-line note
when its part is not there yet, so the command is useful on a half-built platform too.
"""

from __future__ import annotations

import sys
from collections import Counter
from datetime import datetime, timedelta, timezone

from foundry.config import ClusterConfig, FoundryConfig, StorageConfig
from foundry.config import sources as config_sources
from foundry.console.entry import run_or_exit

RECENT_JOBS = 8


def _section(title: str) -> None:
    print(f"\n== {title}")


def _cluster() -> None:
    import ray

    nodes = [n for n in ray.nodes() if n["Alive"]]
    kinds = Counter("head" if "node:__internal_head__" in n["Resources"] else "worker" for n in nodes)
    total, free = ray.cluster_resources(), ray.available_resources()
    print(f"nodes: {kinds.get('head', 0)} head + {kinds.get('worker', 0)} worker(s)")
    for key, scale, unit in (("CPU", 1, ""), ("GPU", 1, ""), ("object_store_memory", 1024**3, " GiB")):
        if key in total:
            used = (total[key] - free.get(key, 0)) / scale
            print(f"  {key:<20} {used:8.1f} used of {total[key] / scale:8.1f}{unit}")


def _serve() -> None:
    from ray import serve

    try:
        apps = serve.status().applications
    except Exception as exc:  # Serve not started on this cluster
        print(f"Serve is not running ({type(exc).__name__})")
        return
    if not apps:
        print("no Serve applications")
    for name, app in apps.items():
        deployments = ", ".join(f"{d}: {s.status.value}" for d, s in app.deployments.items())
        print(f"  {name:<16} {app.status.value:<10} {deployments}")


def _actors() -> None:
    from ray.util.state import list_actors

    named = [a for a in list_actors(filters=[("state", "=", "ALIVE")], limit=1000) if a.name]
    if not named:
        print("no named actors (drift monitors appear here)")
    for a in named:
        print(f"  {a.name:<32} {a.class_name:<28} namespace={a.ray_namespace}")


def _jobs(cluster: ClusterConfig) -> None:
    from foundry.runtime.connection import job_client

    # Submitted jobs only: every `ray.init` client (this command included) also shows up as a driver job.
    jobs = sorted((j for j in job_client(cluster).list_jobs() if j.submission_id),
                  key=lambda j: j.start_time or 0, reverse=True)
    if not jobs:
        print("no jobs yet")
    for j in jobs[:RECENT_JOBS]:
        meta = " ".join(f"{k}={v}" for k, v in sorted((j.metadata or {}).items()))
        print(f"  {j.submission_id:<36} {j.status.value:<10} {meta}")


def _registry(storage: StorageConfig) -> None:
    registry = storage.layout.open_registry()
    models = registry.models()
    if not models:
        print(f"no models in {registry.root}")
    for model in models:
        versions = registry.versions(model)
        aliases = {a: rec["version"] for a, rec in registry.aliases(model).items()}
        latest = versions[-1] if versions else None
        primary = latest.metadata.get("primary_metric") if latest else None
        metric = f"{primary}={latest.metrics[primary]:.4f}" if latest and primary in latest.metrics else ""
        print(f"  {model:<20} {len(versions)} version(s)  aliases {aliases}  latest {latest.version if latest else '-'} {metric}")


def _monitor(cfg: FoundryConfig) -> None:
    import ray

    from foundry.drift import monitor_name
    from foundry.drift.events import read_events
    from foundry.ops.events import format_event

    name = monitor_name(cfg.drift.monitor.name_prefix, cfg.model_name)
    try:
        status = ray.get(ray.get_actor(name, namespace=cfg.drift.monitor.namespace).status.remote(), timeout=30)
        c = status["controller"]
        print(f"  {name}: reference {status['reference_version']}, phase {c['phase']}, episode {c['episode']}, "
              f"{status['counters']['rows']} rows / {status['counters']['labels']} labels seen")
        errors, last = status["counters"].get("loop_errors", 0), status.get("last_error")
        if errors:  # the loop goes on after a failed round; a count that keeps growing needs a look
            print(f"    {errors} failed monitor round(s); last: {last.get('type')}: {last.get('message')} "
                  f"at {last.get('at')}" if last else f"    {errors} failed monitor round(s)")
        for r in status["last_results"]:
            if r["p_value"] is not None:
                value = f" p={r['p_value']:.3g}"
            elif r["detector"].startswith("alarm.") and r["statistic"] is not None:  # log evidence vs log budget
                value = f" evidence {r['statistic']:.1f} of {r['threshold']:.1f} (log)"
            else:
                value = ""
            flag = "ALARM" if r["detector"].startswith("alarm.") else "DRIFT"
            print(f"    {r['detector']:<15} {flag if r['drift'] else 'ok':<6}{value}")
        print("    " + rollout_line(status.get("rollout") or {}))
    except ValueError:
        print(f"  no monitor {name!r} running (start it: python -m jobs.monitor)")
    # The last week only: the read follows the range, not the length of the history.
    since = datetime.now(timezone.utc) - timedelta(days=7)
    for e in read_events(cfg.storage.root, cfg.model_name, since=since)[-RECENT_JOBS:]:
        print("  " + format_event(e))


def rollout_line(rollout: dict) -> str:
    """One line on the roll-out in progress (foundry/rollout/), or the mode when there is none."""
    a = rollout.get("active")
    if not a:
        last = (rollout.get("history") or [{}])[-1]
        done = f"; last: {last['challenger']} {last['outcome']}" if last else ""
        return f"roll-out: none in progress (promotion.rollout={rollout.get('mode', '?')}{done})"
    ev = a.get("evidence") or {}
    share = f" at {a['fraction']:.0%}" if a["mode"] == "canary" and a["kind"] == "rollout" else ""
    return (f"roll-out: {a['kind']} ({a['mode']}{share}) of {a['challenger']} against {a['champion']}: "
            f"{ev.get('labelled_rows', 0)} labelled rows, loss {ev.get('loss_challenger')} vs {ev.get('loss_champion')}, "
            f"log e-values {ev.get('log_e')} (decides at {ev.get('threshold')})")


def main(argv: list[str]) -> int:
    from foundry.runtime.connection import connect, dashboard_url, gcs_address

    args = config_sources.parser("python -m foundry.ops.status", __doc__.split("\n\n")[0]).parse_args(argv)
    cfg = config_sources.load(config_sources.from_args(args))
    print(f"Foundry on cluster '{cfg.cluster.name}'  dashboard {dashboard_url(cfg.cluster)}  storage {cfg.storage.root}")
    connect(cfg.ray.address or gcs_address(cfg.cluster), log_to_driver=False, logging_level="ERROR")
    for title, show in (("cluster", _cluster), ("serve", _serve), ("named actors", _actors),
                        ("recent jobs", lambda: _jobs(cfg.cluster)), ("registry", lambda: _registry(cfg.storage)),
                        (f"drift monitor of {cfg.model_name} and its latest events", lambda: _monitor(cfg))):
        _section(title)
        try:
            show()
        except Exception as exc:  # one broken part must not hide the others
            print(f"  (unavailable: {exc})")
    return 0


if __name__ == "__main__":
    sys.exit(run_or_exit(lambda: main(sys.argv[1:])))
