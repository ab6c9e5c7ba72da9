"""``make demo``: bring up the local cluster, submit the training job through the Jobs API, show the result.

This is the path a user takes from a laptop, end to end: a token-authenticated cluster, a real
``ray job submit``-equivalent submission of ``jobs.train`` with the repository as working_dir, live
job logs, and the registered version read back from the registry.

    python -m foundry.demo [hydra overrides, e.g. trainer.epochs=5]
"""

from __future__ import annotations

import logging
import sys
import time

from foundry import config, storage
from foundry.cli import run_or_exit
from foundry.errors import FoundryError
from foundry.job_submission import follow, metadata, submit


def _worth_showing(line: str) -> bool:
    """Our own progress lines and errors; Ray's per-operator progress chatter stays in the dashboard."""
    noisy = ("logging_progress.py", "streaming_executor.py", "INFO worker.py", "pid=", "DeprecationWarning",
             "warnings.warn", "\x1b[A", "INFO __init__.py", "(autoscaler")
    return bool(line.strip()) and not any(n in line for n in noisy)


def main(overrides: list[str]) -> int:
    from cluster import lifecycle
    from foundry.ray_runtime import dashboard_url, job_client
    from foundry.registry import Registry

    logging.getLogger("ray").setLevel(logging.WARNING)  # the client's upload chatter, not the job's
    cfg = config.load(overrides)
    t0 = time.monotonic()
    print(f"== 1/3 local Ray cluster ({cfg.cluster.name})", flush=True)
    lifecycle.up(cfg.cluster)  # idempotent; raises FoundryError if the head cannot start
    print(f"   dashboard: {dashboard_url(cfg.cluster)}  (jobs, actors, metrics)", flush=True)

    print("== 2/3 training job via the Ray Jobs API", flush=True)
    client = job_client(cfg.cluster)
    job = submit(client, "jobs.train", overrides, metadata("train", cfg.model_name))
    print(f"submitted job {job.submission_id}: python -m jobs.train {' '.join(overrides)}", flush=True)
    if cfg.cluster.autoscaling.enabled:
        print("   (the autoscaler adds worker nodes for it: watch `python -m cluster status`)", flush=True)
    status = follow(client, job.submission_id, timeout_s=1800, out=lambda s: print(s, flush=True),
                    show=_worth_showing)
    if status != "SUCCEEDED":
        raise FoundryError(f"training job ended {status}; its full log is on the dashboard's Jobs page")

    print("== 3/3 registry", flush=True)
    registry = Registry(storage.normalize(cfg.storage.registry))
    latest = registry.get(cfg.model_name, "latest")
    production = registry.alias(cfg.model_name, cfg.promotion.alias)
    print(f"   model {cfg.model_name}: {len(registry.versions(cfg.model_name))} version(s), "
          f"{cfg.promotion.alias} = {production}", flush=True)
    print(f"   newest version {latest.version}:", flush=True)
    for name, value in latest.metrics.items():
        print(f"     {name:>10}  {value:.4f}" if isinstance(value, float) else f"     {name:>10}  {value}")
    print(f"   stored at {latest.uri}", flush=True)
    print(f"done in {time.monotonic() - t0:.0f} s. The cluster keeps running: `make demo-down` stops it.",
          flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_or_exit(lambda: main(sys.argv[1:])))
