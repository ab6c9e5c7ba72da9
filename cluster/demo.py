"""``make demo``: the whole self-healing loop on the bundled data set, on a local autoscaling cluster.

    python -m cluster.demo [hydra overrides, e.g. tune=quick demo.traffic.drift_scenario=covariate_shift]

1. start the local cluster (token auth, autoscaler; idempotent);
2. submit ``jobs.pipeline`` through the Jobs API (prepare, optional Tune, train with 2 workers,
   register + promote, deploy Serve, start the drift monitor) and stream its log;
3. send in-distribution traffic over HTTP with labels on ``/feedback``;
4. switch the traffic to a drift scenario and follow the monitor (rounds, events) until the new
   model is detected, retrained, evaluated, promoted and rolled out, then send some more;
5. print the summary and write the report folder (plots, tables, raw records).

Runs with ``+experiment=demo`` (conf/experiment/demo.yaml) and ``demo.*`` (conf/demo/default.yaml).
It lives here, beside the cluster's lifecycle it starts and stops, and not in the library: ``foundry.demo`` holds
the parts (key, traffic, watching, summary, report) and never imports this package.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from foundry import config
from foundry.demo.session import DEMO_EXPERIMENT, api_key, fresh_start, key_env, say, worth_showing
from foundry.demo.watch import Traffic, print_summary, watch
from foundry.errors import FoundryError


def main(overrides: list[str]) -> int:
    import ray

    from cluster import lifecycle
    from foundry.demo.report import write_report
    from foundry.demo.summary import milestones, summarize
    from foundry.drift import monitor_name
    from foundry.drift.timeline import JobTimes, first
    from foundry.runtime.connection import connect, dashboard_url, gcs_address, job_client
    from foundry.runtime.jobs import follow, metadata, submit
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
                 env_vars=key_env(cfg.serve, key))
    say(f"   submitted {job.submission_id}: python -m jobs.pipeline {' '.join(overrides)}")
    if cfg.cluster.autoscaling.enabled:
        say("   (the autoscaler adds worker nodes for it: `python -m cluster status` shows them)")
    status = follow(client, job.submission_id, timeout_s=cfg.demo.pipeline_timeout_s, out=say, show=worth_showing)
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
        rounds, events = watch(cfg, traffic, monitor, traffic_t0, started)
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
    print_summary(summary, paths)
    ray.shutdown()
    if cfg.demo.down_at_end:
        lifecycle.down(cfg.cluster)
    else:
        say("The cluster, the Serve app and the monitor keep running: `make demo-down` stops them.")
    return 0 if summary["outcome"] == "healed" and summary["requests"]["failed"] == 0 else 1


if __name__ == "__main__":
    from foundry.console.entry import run_or_exit

    sys.exit(run_or_exit(lambda: main(sys.argv[1:])))
