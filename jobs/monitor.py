"""Start (or find) the drift monitor of a served model: ``python -m jobs.monitor [hydra overrides]``.

The monitor is a detached, named, restartable Ray actor (``foundry.drift.monitor.DriftMonitor``):
it outlives this process, shows on the dashboard's Actors page as ``<prefix>-<model_name>``, and
Serve replicas find it by that name. Running this again is harmless: an existing monitor is
reported, not duplicated. Also runs as a job: ``ray job submit -- python -m jobs.monitor ...``.

    python -m jobs.monitor                      # start / show the monitor of the default model
    python -m jobs.monitor --from-version loans # the monitor of your model, from its production version's config
    python -m jobs.monitor --status             # its state, as JSON
    python -m jobs.monitor --stop               # kill it (its state stays on storage for a restart)

Exit codes: 0 running, 2 bad config, 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import os

from foundry import config
from foundry.config import sources as config_sources
from foundry.console.entry import exit_when_done, run_or_exit, setup_logging


def _parser() -> argparse.ArgumentParser:
    p = config_sources.parser("python -m jobs.monitor", __doc__.split("\n\n")[0])
    p.add_argument("--status", action="store_true", help="print the running monitor's state and exit")
    p.add_argument("--stop", action="store_true", help="kill the monitor (persisted state is kept)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the monitor to be ready")
    return p


def actor_options(cfg: config.FoundryConfig) -> dict:
    from foundry.drift import monitor_name

    m = cfg.drift.monitor
    return {"name": monitor_name(m.name_prefix, cfg.model_name), "namespace": m.namespace, "lifetime": "detached",
            "max_restarts": m.max_restarts, "max_task_retries": -1 if m.max_restarts != 0 else 0,
            # Threaded: ingest calls from every replica run side by side with status calls.
            "max_concurrency": 8, "num_cpus": m.num_cpus, "get_if_exists": True}


def _address(cfg: config.FoundryConfig) -> str | None:
    from foundry.runtime import connection

    if cfg.ray.address:
        return cfg.ray.address
    if os.environ.get("RAY_ADDRESS"):
        return None
    return connection.gcs_address(cfg.cluster)


def start(cfg: config.FoundryConfig, timeout_s: float = 300.0):
    """The monitor's handle, created if it is not running; waits until it answers."""
    import ray

    from foundry.drift.monitor import DriftMonitor
    from foundry.drift.monitor_config import monitor_config

    handle = ray.remote(DriftMonitor).options(**actor_options(cfg)).remote(monitor_config(cfg).to_container())
    return handle, ray.get(handle.status.remote(), timeout=timeout_s)


def run(args: argparse.Namespace) -> int:
    import ray

    from foundry.drift import monitor_name
    from foundry.runtime import connection

    cfg = config_sources.load(config_sources.from_args(args))
    if not cfg.drift.enabled:
        print("drift.enabled=false: no monitor to start")
        return 0
    from foundry.runtime.jobs import CODE_DIR, UPLOAD_EXCLUDES

    # The detached actor inherits this driver's runtime_env: outside a Ray job, ship the code with it
    # (inside one, the job's own working_dir is already there).
    in_job = bool(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR"))
    runtime_env = None if in_job or CODE_DIR is None else {"working_dir": str(CODE_DIR), "excludes": UPLOAD_EXCLUDES}
    connection.connect(_address(cfg), logging_level="ERROR", log_to_driver=False, runtime_env=runtime_env)
    name = monitor_name(cfg.drift.monitor.name_prefix, cfg.model_name)
    if args.stop or args.status:
        try:
            handle = ray.get_actor(name, namespace=cfg.drift.monitor.namespace)
        except ValueError:
            print(f"no monitor {name!r} is running")
            return 1 if args.status else 0
        if args.status:
            print(json.dumps(ray.get(handle.status.remote(), timeout=args.timeout), indent=2, default=str))
        else:
            ray.kill(handle, no_restart=True)
            print(f"stopped monitor {name!r} (its state stays in {cfg.storage.layout.monitoring}/{cfg.model_name})")
        return 0
    _, status = start(cfg, args.timeout)
    c = status["controller"]
    print(f"monitor {name!r} (namespace {cfg.drift.monitor.namespace}) is watching {cfg.model_name} "
          f"{status['reference_version']}: phase {c['phase']}, {status['counters']['rows']} live rows so far")
    print(f"  history: python -m foundry.ops.events {cfg.model_name}   state: python -m jobs.monitor --status")
    return 0


def main(argv: list[str] | None = None) -> int:
    setup_logging()
    args = _parser().parse_args(argv)
    return run_or_exit(lambda: run(args))


if __name__ == "__main__":
    exit_when_done(main)
