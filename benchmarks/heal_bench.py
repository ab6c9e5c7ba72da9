"""Does the loop heal, how well and how fast: every drift scenario and a real data set, on a private
local cluster, over real HTTP and the Jobs API; and the monitoring tax.

    python -m benchmarks.heal_bench [--scenarios concept_shift,covariate_shift,new_category,label_shift,real]
        [--seeds 3] [--rate 250] [--timeout 600] [--label-delay-rows 0] [--skip-tax] [--tax-duration 15]
        [--out benchmarks/results/heal.json]

What runs (needs ``wrk`` for the tax, like serve_bench.py):
1. a private cluster (its own ports; head with 8 logical CPUs and the autoscaler on, as in the tests);
   the churn model trained by ``python -m jobs.train +experiment=quick`` (20,000 rows, 1 worker) and,
   for ``real``, the Texas housing model (``benchmarks/real_drift.py``: 2000-2006, ~2,650 rows, a data
   yaml in ``benchmarks/conf`` given with ``--config-dir``, as a user's own data set);
2. **monitoring tax** (``--skip-tax`` skips it): the same Serve application (1 replica, 1 CPU, batching
   on) with ``drift.enabled=false`` and with ``true`` plus a running ``DriftMonitor``, in the order off,
   on, on, off; wrk, 1-row POST /predict, concurrency 16, ``--tax-duration`` s per point;
3. **healing**, per scenario and seed: a fresh monitor and application (monitor stopped, app deleted,
   monitoring storage cleared, production reset to the first version with ``python -m foundry.registry
   promote``, redeployed), baseline traffic with labels, then drifted traffic with labels at ``--rate``
   rows/s (churn: the scenario's generator, seeded per run; ``real``: 2009-2015 city-months in time
   order, the cities of a month in a seeded order, replayed again if the episode needs more) until the
   episode ends (rolled out, or a terminal event: ``TERMINAL_KINDS`` or ``gave_up``) or ``--timeout``.
   Per run: ``outcome`` (``promoted``; ``benign``: the alarm saw no harm, no retrain; ``no_gain``: the gate
   found nothing worth a swap; ``gave_up``: no
   challenger won in ``max_attempts`` tries; both end with the monitor accepting the new normal;
   ``timed_out``) and ``healed``: no failed request, and either a version promoted and rolled out whose
   accuracy on a held-out set of the new distribution beats the first version's, or a give-up with the
   served version within 2 points of the oracle on that set (nothing to heal); ``accuracy_after`` / ``accuracy_before`` (the served / the
   first version on that set: churn 5,000 rows of seed 90,000, ``real`` 723 held-out 2009-2015 rows),
   the live accuracy users saw before and after, ``retrains`` (``retrain_submitted`` events),
   ``time_to_heal_s`` (onset -> rolled out, split into stages), failed requests;
4. **oracle**, once per scenario: the same model config trained offline with ``jobs.train`` on 20,000
   rows of the new distribution (``real``: the ~2,900 live 2009-2015 rows, with hindsight), evaluated on
   the same held-out set.
``heal.json`` has ``scenarios.<name>`` with ``healed``, ``accuracy_after``, ``accuracy_oracle``, ``retrains``,
``time_to_heal_s`` (mean, 95% interval over seeds: Student t; the oracle's: Wilson over the held-out rows),
``details.<name>`` with every run, and ``time_to_heal`` (the first concept_shift run) as before.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import shutil
import statistics
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import real_drift  # noqa: E402
from benchmarks.harness import (  # noqa: E402
    PY,
    free_port,
    load,
    machine,
    need_wrk,
    open_registry,
    private_cluster,
    run,
    say,
    wait_http,
    wrk_script,
)
from benchmarks.heal_cases import (  # noqa: E402
    APP,
    BENIGN_GRACE_S,
    CHURN_TRAIN,
    CLUSTER,
    DASHBOARD_PORT,
    GCS_PORT,
    HEALED_POINTS,
    HOLDOUT_ROWS,
    HOLDOUT_SEED,
    MODEL,
    MONITOR,
    ORACLE_ROWS,
    ORACLE_SEED,
    ROLLOUT_KEYS,
    SCENARIOS,
    STORAGE,
    Case,
    cases,
    episode_over,
)
from benchmarks.heal_stats import aggregate, table  # noqa: E402
from benchmarks.machine_info import host, write_result  # noqa: E402


def common(port: int, model: str = MODEL) -> list[str]:
    return [*CLUSTER, f"storage.root={STORAGE}", f"ray.address=127.0.0.1:{GCS_PORT}", f"model_name={model}",
            f"serve.app_name={APP}", f"serve.route_prefix=/{APP}", f"serve.http.port={port}",
            "serve.autoscaling.min_replicas=1", "serve.autoscaling.max_replicas=1", "serve.access_log=false",
            *MONITOR]


def deploy(env, port: int, drift: bool) -> None:
    run([PY, "-m", "serve_apps.deploy", *common(port), f"drift.enabled={str(drift).lower()}"], env=env, timeout=600)
    if drift:
        run([PY, "-m", "jobs.monitor", *common(port)], env=env, timeout=600)
    else:
        run([PY, "-m", "jobs.monitor", *common(port), "--stop"], env=env, timeout=300, check=False)


def monitoring_tax(wrk: str, env, port: int, duration: int) -> dict:
    script = wrk_script(STORAGE / "post.lua", env["FOUNDRY_API_KEY"])
    url = f"http://127.0.0.1:{port}/{APP}"
    points = []
    # ABBA: a drift in the machine's speed over the four runs (the training job's nodes winding down,
    # caches warming) falls on both settings alike; off-on-off-on gave the first "off" run 28% less.
    for drift in (False, True, True, False):
        deploy(env, port, drift)
        wait_http(f"{url}/healthz")
        load(wrk, f"{url}/predict", script, 16, 5)  # warm-up at the measured concurrency
        point = {"monitor": drift, **load(wrk, f"{url}/predict", script, 16, duration)}
        say(f"  monitor {'on ' if drift else 'off'}: {point['rps']:>7.1f} req/s  p50 {point['p50_ms']:.1f} ms  "
            f"p99 {point['p99_ms']:.1f} ms  non-2xx {point['non_2xx']}")
        points.append(point)
    off = statistics.median(p["rps"] for p in points if not p["monitor"])
    on = statistics.median(p["rps"] for p in points if p["monitor"])
    return {"points": points, "rps_off": off, "rps_on": on, "tax": round(1 - on / off, 4),
            "concurrency": 16, "duration_s": duration}


# ---- models, oracles, held-out accuracy ----------------------------------------------------------------

def registry():
    return open_registry(STORAGE)


def train(env, port: int, case: Case, model: str, *extra: str) -> str:
    run([PY, "-m", "jobs.train", *case.sources, *common(port, model), *case.monitor, *case.train, *extra], env=env,
        timeout=1800)
    return registry().versions(model)[-1].version


def accuracy_on(model: str, version: str, frame) -> float:
    from foundry.models.evaluation import evaluate_predictor
    from foundry.models.predictor import Predictor

    return evaluate_predictor(Predictor.from_dir(registry().fetch(model, version)), [frame])["accuracy"]


def train_oracle(env, port: int, case: Case) -> dict:
    """The same config trained offline on the new distribution (full hindsight), scored on the held-out set."""
    if case.scenario == "real":
        path = STORAGE / "datasets" / "txhousing" / "live.parquet"
    else:
        from foundry.datasets import generate

        path = STORAGE / "datasets" / "oracle" / f"{case.scenario}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        generate("churn", case.scenario, ORACLE_ROWS, seed=ORACLE_SEED).to_parquet(path, index=False)
    model = f"{case.model}-oracle-{case.scenario}"
    version = train(env, port, case, model, f"data.source.path={path}")
    acc = accuracy_on(model, version, case.holdout)
    return {"model": model, "version": version, "data": str(path), "accuracy": acc}


# ---- one run: a fresh monitor, baseline, drift until the episode ends ------------------------------------

def fresh(env, port: int, case: Case) -> None:
    args = [*case.sources, *common(port, case.model), *case.monitor]
    run([PY, "-m", "jobs.monitor", *args, "--stop"], env=env, timeout=300, check=False)
    run([PY, "-m", "serve_apps.deploy", *args, "--delete"], env=env, timeout=300, check=False)
    shutil.rmtree(STORAGE / "monitoring", ignore_errors=True)
    run([PY, "-m", "foundry.registry", "--root", str(STORAGE / "registry"), "promote", case.model, case.v1,
         "--reason", "heal_bench: a fresh run starts from the first version"], env=env, timeout=120)
    run([PY, "-m", "serve_apps.deploy", *args, "drift.enabled=true"], env=env, timeout=600)
    run([PY, "-m", "jobs.monitor", *args], env=env, timeout=600)


def send_drift(gen, case: Case, seed: int, rate: float, stop: threading.Event) -> None:
    if case.scenario != "real":
        i = 0
        while not stop.is_set():
            gen.send(case.scenario, 500, seed=2000 + 100 * seed + i, phase="drift", rate_rows_per_s=rate)
            i += 1
        return
    real_drift.send_live(gen, STORAGE / "datasets" / "txhousing" / "live.parquet", seed, rate, stop)


def heal_run(env, port: int, case: Case, seed: int, rate: float, timeout_s: float, retry: bool,
             label_delay_rows: int = 0) -> dict:
    from foundry.demo.traffic import TrafficGenerator, accuracy
    from foundry.drift.events import read_events
    from foundry.drift.timeline import JobTimes, event_times, first, heal_stages, rows_before
    from foundry.runtime import connection

    fresh(env, port, case)
    url = f"http://127.0.0.1:{port}/{APP}"
    gen = TrafficGenerator(url, env["FOUNDRY_API_KEY"], rows_per_request=20, concurrency=4,
                           label_delay_rows=label_delay_rows)
    if case.scenario == "real":
        real_drift.send(gen, STORAGE / "datasets" / "txhousing" / "baseline.parquet", "baseline", rate)
    else:
        gen.send("baseline", 3000, seed=1000 + seed, phase="baseline", rate_rows_per_s=rate)
    stop, onset = threading.Event(), time.time()
    thread = threading.Thread(target=send_drift, args=(gen, case, seed, rate, stop), daemon=True)
    thread.start()
    deadline, events = onset + timeout_s, []
    while time.time() < deadline:
        events = read_events(str(STORAGE), case.model, since=datetime.fromtimestamp(onset, timezone.utc))
        kinds = {e["kind"] for e in events}
        if episode_over(kinds, retry):
            break
        benign = next((e for e in events if e["kind"] == "benign_shift"), None)
        if benign and "drift_detected" not in kinds and \
                time.time() - datetime.fromisoformat(benign["at"]).timestamp() > BENIGN_GRACE_S:
            break
        time.sleep(2)
    time.sleep(5)  # traffic keeps flowing across the swap
    stop.set()
    thread.join(timeout=120)
    gen.close()
    run([PY, "-m", "jobs.monitor", *case.sources, *common(port, case.model), "--stop"], env=env, timeout=300,
        check=False)
    events = read_events(str(STORAGE), case.model, since=datetime.fromtimestamp(onset, timezone.utc))

    at = event_times(events)
    promoted, rolled = first(events, "promoted"), first(events, "rolled_out")
    served = registry().alias(case.model, "production")
    records = gen.log.records
    drifted = [r for r in records if r.phase.startswith("drift")]
    out = {"scenario": case.scenario, "seed": seed, "rate_rows_per_s": rate, "served_version": served,
           "promoted_version": promoted and promoted["version"], "rolled_out": rolled is not None,
           "retrains": sum(e["kind"] == "retrain_submitted" for e in events),
           "accuracy_before": accuracy_on(case.model, case.v1, case.holdout),
           "accuracy_after": accuracy_on(case.model, served, case.holdout),
           "accuracy_oracle": case.oracle.get("accuracy"),
           "accuracy_before_drift": accuracy([r for r in records if r.phase == "baseline"]),
           "accuracy_during_drift": accuracy([r for r in drifted if r.version == case.v1]),
           "accuracy_after_heal": accuracy([r for r in drifted if promoted and r.version == promoted["version"]]),
           "requests": len(records), "failed_requests": len(gen.log.failed()),
           "drifted_rows": sum(r.rows for r in drifted),
           "timed_out": not episode_over({e["kind"] for e in events}, retry) and first(events, "benign_shift") is None,
           "rejections": [e["message"] for e in events if e["kind"] in ("rejected", "gave_up", "retrain_failed")],
           "events": [{k: e[k] for k in ("at", "kind", "message")} for e in events]}
    gave_up = first(events, "gave_up")
    benign = first(events, "benign_shift") if not first(events, "drift_detected") else None
    no_gain = gave_up is not None and "no gain to be had" in gave_up["message"]
    oracle = out["accuracy_oracle"]
    if promoted and rolled and served == promoted["version"]:
        out["outcome"] = "promoted"
        out["healed"] = out["accuracy_after"] > out["accuracy_before"]
        out["time_to_heal_s"] = out["total_s"] = round(at["rolled_out"] - onset, 2)
    elif gave_up is not None:
        # No challenger beat production (conclusively, "no gain", or in max_attempts tries) and the monitor
        # accepted the new normal: healed only if what serves is as good as the oracle (within HEALED_POINTS)
        # on the new distribution, i.e. there was nothing to heal (a shift production already handles).
        out["outcome"] = "no_gain" if no_gain else "gave_up"
        out["healed"] = oracle is not None and out["accuracy_after"] >= oracle - HEALED_POINTS
        out["time_to_heal_s"] = out["total_s"] = round(at["gave_up"] - onset, 2)
    elif benign is not None:
        # The alarm called it benign (no harm in benign_after_rows rows): healed only if production is as
        # good as the oracle on the new distribution, as for a give-up.
        out["outcome"] = "benign"
        out["healed"] = oracle is not None and out["accuracy_after"] >= oracle - HEALED_POINTS
        out["time_to_heal_s"] = out["total_s"] = round(at["benign_shift"] - onset, 2)
    else:
        out["outcome"] = "timed_out" if out["timed_out"] else "other"
        out["healed"], out["time_to_heal_s"] = False, None
    out["healed"] = bool(out["healed"]) and out["failed_requests"] == 0
    if "drift_detected" in at:
        out["detection_delay_rows"] = rows_before(records, at["drift_detected"], "drift")
    sub = first(events, "retrain_submitted")
    if promoted and rolled and sub:
        # The Jobs API only (no ray.init here: a driver connected to the cluster is killed by Ray when the
        # cluster goes down at the end, before this script could write its results).
        info = connection.job_client(f"http://127.0.0.1:{DASHBOARD_PORT}").get_job_info(sub["submission_id"])
        timings = registry().get(case.model, promoted["version"]).metadata.get("timings_s", {})
        out["stages_s"] = heal_stages(events, onset, JobTimes(info.start_time / 1000, info.end_time / 1000), timings)
        out["retrain_rows"] = sub.get("rows")
    return out


def run_case(env, port: int, case: Case, args, retry: bool) -> list[dict]:
    if args.quick:  # a promotion decides "healed" without it; only a give-up or a benign call needs the oracle
        case.oracle = {"skipped": "--quick"}
    else:
        say(f"{case.scenario}: the oracle (same config, trained offline on the new distribution) ...")
        try:
            case.oracle = train_oracle(env, port, case)
        except Exception as exc:  # the runs still tell whether it healed
            case.oracle = {"error": f"{type(exc).__name__}: {exc}"}
    runs = []
    for seed in range(args.seeds):
        say(f"{case.scenario}, seed {seed}: baseline, then drifted traffic at {args.rate:.0f} rows/s ...")
        try:
            r = heal_run(env, port, case, seed, args.rate, args.timeout, retry, args.label_delay_rows)
        except Exception as exc:  # keep the other runs; the events stay on storage for a look
            import traceback

            traceback.print_exc()
            r = {"scenario": case.scenario, "seed": seed, "healed": False, "error": f"{type(exc).__name__}: {exc}"}
        say(f"  healed={r.get('healed')} ({r.get('outcome')}) accuracy {r.get('accuracy_before', math.nan):.3f} -> "
            f"{r.get('accuracy_after', math.nan):.3f} (oracle {case.oracle.get('accuracy', math.nan):.3f}), "
            f"retrains {r.get('retrains')}, time to heal {r.get('time_to_heal_s')} s, {r.get('failed_requests')} "
            "failed requests; " + ", ".join(e["kind"] for e in r.get("events", [])))
        runs.append(r)
    return runs


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: concept_shift with 1 seed, no monitoring tax, no oracle "
                        "(results/tmp/heal-quick.json)")
    p.add_argument("--scenarios", help="comma-separated, of: " + ", ".join(SCENARIOS) + " (default: all)")
    p.add_argument("--seeds", type=int, help="runs per scenario (seeds 0..N-1; default 3)")
    p.add_argument("--rate", type=float, help="rows per second, baseline and drifted, with labels (default 250; quick 500)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds a run waits for its episode to end")
    p.add_argument("--label-delay-rows", type=int, default=0,
                   help="labels reach /feedback this many answered rows after their predictions")
    p.add_argument("--skip-tax", action="store_true", help="skip the monitoring tax (wrk not needed)")
    p.add_argument("--tax-duration", type=int, default=15, help="seconds per monitoring-tax point")
    p.add_argument("--real-label", choices=real_drift.LABEL_RULES, default="monthly",
                   help="the real data set's label rule (benchmarks/real_drift.py)")
    p.add_argument("--out", help="result file (default benchmarks/results/heal.json; quick: results/tmp/)")
    args = p.parse_args(argv)
    args.scenarios = args.scenarios or ("concept_shift" if args.quick else ",".join(SCENARIOS))
    args.seeds = args.seeds or (1 if args.quick else 3)
    args.rate = args.rate or (500.0 if args.quick else 250.0)
    args.skip_tax = args.skip_tax or args.quick
    args.out = args.out or str(REPO / "benchmarks" / "results" / ("tmp/heal-quick.json" if args.quick else "heal.json"))
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if unknown := set(scenarios) - set(SCENARIOS):
        p.error(f"unknown scenarios {sorted(unknown)} (known: {', '.join(SCENARIOS)})")
    wrk = None if args.skip_tax else need_wrk()
    if wrk:
        where = machine()
    else:  # serve_bench's machine() asks wrk for its version
        import ray
        import torch

        where = {**host(), "ray": ray.__version__, "torch": torch.__version__}
    shutil.rmtree(STORAGE, ignore_errors=True)
    STORAGE.mkdir(parents=True)
    env = {**os.environ, "FOUNDRY_API_KEY": "heal-bench-" + secrets.token_hex(12), "RAY_AUTH_MODE": "token"}
    port = free_port()
    todo = cases(scenarios, args.real_label)
    from foundry import config

    retry = hasattr(config.load(common(port)).drift.retrain, "max_attempts")  # the new gate retries a rejection
    result = {"benchmark": "heal", "when": None, "machine": where,
              "settings": {"scenarios": scenarios, "seeds": args.seeds, "rate_rows_per_s": args.rate,
                           "label_delay_rows": args.label_delay_rows,
                           "timeout_s": args.timeout, "real_label": args.real_label, "retry_after_rejection": retry,
                           "holdout": {"churn": f"{HOLDOUT_ROWS} rows, seed {HOLDOUT_SEED}",
                                       "real": "every 5th 2009-2015 city-month"},
                           "oracle": {"churn": f"{ORACLE_ROWS} rows, seed {ORACLE_SEED}",
                                      "real": "the live 2009-2015 rows"}},
              "monitoring_tax": {"skipped": True}, "scenarios": {}, "details": {}, "time_to_heal": {}}

    def save() -> None:  # after every scenario: a failure later keeps what was measured
        concept = (result["details"].get("concept_shift") or {}).get("runs") or [{}]
        if Path(args.out).exists():  # rollout_bench.py's keys live in the same file: keep them
            old = json.loads(Path(args.out).read_text())
            result.update({k: v for k, v in old.items() if k in ROLLOUT_KEYS})
        result.update(when=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                      time_to_heal=next((r for r in concept if r.get("healed")), concept[0]))
        result["machine"]["load_average"] = os.getloadavg()
        write_result(args.out, result)

    with private_cluster(CLUSTER, STORAGE, env):
        first_versions: dict[str, str] = {}
        for case in todo.values():  # one first version per model (the four churn scenarios share one)
            if case.model not in first_versions:
                say(f"training the first {case.model} version ...")
                first_versions[case.model] = train(env, port, case, case.model)
            case.v1 = first_versions[case.model]
        if not args.skip_tax:
            if MODEL not in first_versions:
                train(env, port, Case("tax", MODEL, [], CHURN_TRAIN, [], None), MODEL)
            say("monitoring tax (wrk, c=16) ...")
            result["monitoring_tax"] = monitoring_tax(wrk, env, port, args.tax_duration)
            save()
        for name, case in todo.items():
            runs = run_case(env, port, case, args, retry)
            result["scenarios"][name], result["details"][name] = aggregate(case, runs)
            save()
    save()
    tax = result["monitoring_tax"]
    if not tax.get("skipped"):
        say(f"\nmonitoring tax: {tax['rps_off']:.0f} req/s off, {tax['rps_on']:.0f} req/s on -> "
            f"{100 * tax['tax']:.1f}%")
    say("\n" + table(result["scenarios"], result["details"]))
    say(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
