"""Soak: 30 minutes of sustained load on /predict, drift monitor on, a model swap every 5 minutes; memory of every Ray process.

    python -m benchmarks.soak_bench [--quick] [--duration 1800] [--swap-every 300] [--slice 10] [--concurrency 16] [--out ...]

What runs (needs ``wrk``, like serve_bench.py and heal_bench.py):
1. a private cluster (its own ports, head with 8 logical CPUs, autoscaler on, as heal_bench) and two
   versions of the model, each from ``python -m jobs.train +experiment=quick`` (20,000 rows, 1 worker):
   v1 (promoted to ``production``) and v2 (``trainer.seed=1``, ``promotion.policy=never``, so it is
   only registered);
2. Serve with 2 replicas (1 CPU each, batching on) serving v1, ``drift.enabled=true`` and a running
   ``DriftMonitor`` (every answered row goes through the replicas' sinks to the monitor, which runs a
   test round every 500 rows). ``drift.retrain.enabled=false``: the soak measures serving and
   monitoring steadily, so a chance drift flag (about 3 windowed false alarms per 100k baseline rows,
   drift_bench) can never start a retrain job in the middle of it;
3. a warm-up, then a memory snapshot (RSS and USS) of every process of the cluster (GCS, raylet,
   dashboard and its modules, agents, autoscaler, Serve controller, proxy, replicas, the monitor
   actor, idle workers), found as ``python -m cluster down`` finds them;
4. the soak: closed-loop load, wrk with ``--concurrency`` connections, in back-to-back slices of
   ``--slice`` seconds for ``--duration`` seconds. Each request is one in-distribution row (a pool of
   2,000 ``baseline`` rows, cycled) with the API key, so the monitor sees live traffic like the
   training data, not one repeated row (which is drift). Per slice: throughput, p50/p90/p99/max
   latency, errors (non-2xx, connect/read/write errors, timeouts over 10 s), answers per served
   ``model_version`` (wrk's Lua ``response()`` reads it from every body) and the cluster's total RSS.
   The latency histogram of every slice is kept, so the overall percentiles are exact, not averages;
5. every ``--swap-every`` seconds: ``python -m serve_apps.deploy serve.model_ref=<the other version>``
   with the same overrides (an in-place swap through ``user_config``, no replica restart: v1 -> v2 ->
   v1 ...); a probe sends one request every 0.2 s meanwhile to time when the first answer of the new
   version came. A swap is ok when the CLI exits 0, no slice between it and the next swap has an answer
   of the version it replaced (and has some of the new one), neither the slices around it nor the
   probe saw an error, and the replica processes are the same ones at the end as at the start;
6. the end: the memory snapshot again, the monitor's counters and test rounds, and the replicas'
   sink counters (rows sent to / sampled out before / lost on the way to the monitor) from the
   node's Prometheus metrics; then the monitor and the cluster are stopped (also on error or Ctrl-C)
   and the script checks that no process of the cluster is left.

Memory bound: no process present at start and end grows by more than max(50 MiB, 20% of its start
RSS). Why: the bounded buffers that legitimately fill during a soak (the monitor keeps at most
``retain_rows`` = 50,000 live rows and 2,000 rounds; each replica's sink buffers at most 20,000 rows)
are a few to tens of MiB; allocator and import warm-up is noise of that size; and a leak that grows
with traffic breaches it: at ~100,000 requests a leak of ~500 bytes per request is 50 MiB. The verdict
is printed and recorded (``memory.verdict``); like the other benchmarks, the script exits 0 whenever it
measured (a failure to measure exits non-zero).

The JSON (``benchmarks/results/soak.json``; ``--quick``: a 30 s smoke run into results/tmp/) keeps the
machine, the settings, every slice, the swap, the monitor's figures and every process's memory.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.harness import (  # noqa: E402
    PY,
    TMP,
    cluster_settings,
    free_port,
    machine,
    need_wrk,
    open_registry,
    private_cluster,
    register_twin,
    run,
    say,
    wait_http,
)
from benchmarks.machine_info import result_header, write_result  # noqa: E402
from benchmarks.soak_load import (  # noqa: E402
    POOL_ROWS,
    POOL_SEED,
    WRK_TIMEOUT_S,
    errors_of,
    percentile,
    write_lua,
    wrk_slice,
)
from benchmarks.soak_memory import memory_report, memory_snapshot, memory_table, rss_by_process  # noqa: E402
from benchmarks.soak_monitor import folder_size, monitor_figures, sink_counters  # noqa: E402
from benchmarks.soak_swap import Swaps  # noqa: E402

GCS_PORT, DASHBOARD_PORT, CLUSTER = cluster_settings("soak-bench", (6630, 8630))
STORAGE = TMP / "soak-storage"
MODEL = "churn"
APP = "soak"
REPLICAS = 2
TRAIN = ["+experiment=quick", "trainer.num_workers=1"]
MONITOR = ["drift.enabled=true", "drift.retrain.enabled=false"]
FULL = {"duration": 1800, "slice": 10, "warmup": 15, "swap_every": 300}
QUICK = {"duration": 30, "slice": 5, "warmup": 5, "swap_every": 8}  # one swap: a swap needs 20 s of slices after it


def common(port: int) -> list[str]:
    return [*CLUSTER, f"storage.root={STORAGE}", f"ray.address=127.0.0.1:{GCS_PORT}", f"model_name={MODEL}",
            f"serve.app_name={APP}", f"serve.route_prefix=/{APP}", f"serve.http.port={port}",
            f"serve.autoscaling.min_replicas={REPLICAS}", f"serve.autoscaling.initial_replicas={REPLICAS}",
            f"serve.autoscaling.max_replicas={REPLICAS}", "serve.access_log=false", *MONITOR]


# ---- the soak ------------------------------------------------------------------------------------------

def registry_versions() -> tuple[str, str]:
    """(v1: production, v2: the other, unpromoted version)."""
    reg = open_registry(STORAGE)
    v1 = reg.alias(MODEL, "production")
    others = [v.version for v in reg.versions(MODEL) if v.version != v1]
    if v1 is None or len(others) != 1:
        raise RuntimeError(f"expected a production version and one other; got production={v1}, others={others}")
    return v1, others[0]


def soak(wrk: str, env: dict, port: int, s: dict, concurrency: int, v1: str, v2: str) -> dict:
    url = f"http://127.0.0.1:{port}/{APP}"
    script = write_lua(STORAGE / "soak.lua", env["FOUNDRY_API_KEY"])
    wait_http(f"{url}/healthz")
    say(f"  warm-up ({s['warmup']} s) ...")
    warm = wrk_slice(wrk, f"{url}/predict", script, concurrency, s["warmup"])
    time.sleep(3)  # the sinks flush and the monitor drains before the first snapshot
    mem_start = memory_snapshot(GCS_PORT, full=True)
    say(f"  memory at start: {len(mem_start)} processes, {sum(v['rss_mib'] for v in mem_start.values()):,.0f} MiB RSS")
    n_slices = max(1, s["duration"] // s["slice"])
    t0 = time.time()
    swaps = Swaps(t0, s["swap_every"], t0 + n_slices * s["slice"], env, port, v1, v2, common(port), APP)
    swaps.start()
    slices = []
    say(f"  {'slice':>5} {'t s':>5} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'errors':>6} "
        f"{'RSS MiB: all':>12} {'monitor':>7} {'replicas':>8}  answers per version")
    for i in range(n_slices):
        started = time.time()
        r = wrk_slice(wrk, f"{url}/predict", script, concurrency, s["slice"])
        ended = time.time()
        mem = memory_snapshot(GCS_PORT, full=False)
        rss = sum(v["rss_mib"] for v in mem.values())
        by_name = rss_by_process(mem)
        mon = sum(v for k, v in by_name.items() if k.startswith("ray::DriftMonitor"))
        rep = sum(v for k, v in by_name.items() if k.startswith("ray::ServeReplica"))
        ok = sum(n for k, n in r["versions"].items() if not k.startswith("status_"))
        row = {"index": i, "start_s": round(started - t0, 2), "end_s": round(ended - t0, 2),
               "requests": r["requests"], "ok": ok, "rps": round(r["requests"] / r["duration_s"], 1),
               "p50_ms": percentile(r["hist"], 50), "p90_ms": percentile(r["hist"], 90),
               "p99_ms": percentile(r["hist"], 99), "max_ms": max(r["hist"]) / 1000 if r["hist"] else None,
               "errors": r["errors"], "error_count": errors_of(r), "versions": r["versions"],
               "cluster_rss_mib": round(rss, 1), "rss_mib_by_process": by_name, "hist": r["hist"]}
        slices.append(row)
        short = {("v1" if k == v1 else "v2" if k == v2 else k): n for k, n in r["versions"].items()}
        say(f"  {i:>5} {row['start_s']:>5.0f} {row['rps']:>7.1f} {row['p50_ms'] or 0:>7.2f} {row['p99_ms'] or 0:>7.2f} "
            f"{row['max_ms'] or 0:>7.1f} {row['error_count']:>6} {rss:>12,.0f} {mon:>7.0f} {rep:>8.0f}  {short}")
    swaps.join(timeout=600)
    time.sleep(3)
    mem_end = memory_snapshot(GCS_PORT, full=True)
    return {"warmup": {k: warm[k] for k in ("requests", "errors", "versions")}, "slices": slices, "t0": t0,
            "load_ended_at": ended,
            "swaps": [sw.result for sw in swaps.swaps], "mem_start": mem_start, "mem_end": mem_end}


def judge_swap(sw: dict, slices: list[dict], t0: float, next_at: float | None) -> dict:
    """One swap: ok when the CLI exits 0, no slice between it and the next swap has an answer of the version
    it replaced (and some of the new one), and neither the slices around it nor the probe saw an error."""
    old, new = sw["from"], sw["to"]
    if "started_at" not in sw:
        return {"from": old, "to": new, "ok": False, "error": "the swap did not run"}
    rel = {k: (round(sw[k] - t0, 2) if sw.get(k) is not None else None)
           for k in ("started_at", "returned_at", "first_v2_at", "last_v1_at")}
    limit = float("inf") if next_at is None else next_at - t0
    after = [s for s in slices if s["start_s"] >= rel["returned_at"] and s["end_s"] <= limit]
    during = [s for s in slices if s["end_s"] > rel["started_at"] and s["start_s"] < rel["returned_at"]]
    old_after = sum(s["versions"].get(old, 0) for s in after)
    new_after = sum(s["versions"].get(new, 0) for s in after)
    out = {"from": old, "to": new, "cli_returncode": sw["returncode"], "cli_output": sw["output"],
           "requested_at_s": rel["started_at"], "cli_returned_at_s": rel["returned_at"], "cli_s": sw["cli_s"],
           "first_new_answer_at_s": rel["first_v2_at"], "last_old_answer_at_s": rel["last_v1_at"],
           "probe_requests": sw["probes"], "probe_errors": sw["probe_errors"],
           "slices_during": [s["index"] for s in during],
           "errors_in_slices_during": sum(s["error_count"] for s in during),
           "worst_p99_ms_during": max((s["p99_ms"] or 0 for s in during), default=None),
           "old_answers_after": old_after, "new_answers_after": new_after}
    out["ok"] = (sw["returncode"] == 0 and old_after == 0 and new_after > 0 and out["errors_in_slices_during"] == 0
                 and sw["probe_errors"] == 0)
    return out


def analyse(raw: dict, v1: str, v2: str) -> dict:
    slices, t0 = raw["slices"], raw["t0"]
    hist: dict[int, int] = {}
    for s in slices:
        for us, n in s["hist"].items():
            hist[us] = hist.get(us, 0) + n
    requests = sum(s["requests"] for s in slices)
    seconds = sum(s["end_s"] - s["start_s"] for s in slices)
    errors = sum(s["error_count"] for s in slices)
    worst = max(slices, key=lambda s: s["p99_ms"] or 0)
    totals = {"requests": requests, "ok": sum(s["ok"] for s in slices), "errors": errors,
              "error_kinds": {k: sum(s["errors"][k] for s in slices) for k in slices[0]["errors"]},
              "rps": round(requests / seconds, 1) if seconds else None,
              "rps_min_slice": min(s["rps"] for s in slices), "rps_max_slice": max(s["rps"] for s in slices),
              "p50_ms": percentile(hist, 50), "p90_ms": percentile(hist, 90), "p99_ms": percentile(hist, 99),
              "p999_ms": percentile(hist, 99.9), "max_ms": max(hist) / 1000 if hist else None,
              "worst_p99_slice": {k: worst[k] for k in ("index", "start_s", "p50_ms", "p99_ms", "max_ms", "rps")},
              "median_slice_p99_ms": sorted(s["p99_ms"] or 0 for s in slices)[len(slices) // 2]}
    # Each swap, in seconds from the start of the soak, and what the slices saw around it (main() adds whether
    # the replica processes stayed the same, from the memory snapshots).
    raws = raw["swaps"]
    swaps = [judge_swap(sw, slices, t0, raws[i + 1].get("started_at") if i + 1 < len(raws) else None)
             for i, sw in enumerate(raws)]
    for s in slices:
        s["hist_points"] = len(s.pop("hist"))
    return {"totals": totals, "swaps": swaps}


def cluster_left() -> list[int]:
    from cluster.processes import find_head

    head = find_head(GCS_PORT)
    return head.pids if head else []


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a 30 s smoke run; v2 is v1's files under a second id (results/tmp/)")
    p.add_argument("--duration", type=int, help="seconds of load (default 1800; quick 30)")
    p.add_argument("--swap-every", type=int, help="seconds between swaps (default 300; quick 8: one swap, judged on the 20 s after it)")
    p.add_argument("--slice", type=int, help="seconds per reported slice (default 10)")
    p.add_argument("--concurrency", type=int, default=16, help="wrk connections, closed loop (default 16)")
    p.add_argument("--out", help="result file (default benchmarks/results/soak.json; quick: results/tmp/)")
    args = p.parse_args(argv)
    s = dict(QUICK if args.quick else FULL)
    s.update({k: v for k, v in {"duration": args.duration, "slice": args.slice, "swap_every": args.swap_every}.items()
              if v})
    out = Path(args.out or (TMP / "soak-quick.json" if args.quick else REPO / "benchmarks" / "results" / "soak.json"))
    started = time.time()
    load_before = os.getloadavg()
    wrk = need_wrk()
    shutil.rmtree(STORAGE, ignore_errors=True)
    STORAGE.mkdir(parents=True)
    env = {**os.environ, "FOUNDRY_API_KEY": "soak-bench-" + secrets.token_hex(12), "RAY_AUTH_MODE": "token"}
    port = free_port()
    say(f"soak: {s['duration']} s of wrk c={args.concurrency} on POST /predict (1 row), {REPLICAS} replicas, "
        f"drift monitor on (retrain off), a model swap every {s['swap_every']} s")
    with private_cluster(CLUSTER, STORAGE, env):
        monitor = sink = None
        try:
            say("training v1 (+experiment=quick, 20,000 rows; promoted to production) ...")
            run([PY, "-m", "jobs.train", *common(port), *TRAIN], env=env, timeout=1200)
            if args.quick:  # a swap reloads whatever version it is given: v1's files under a second version id do
                say("v2: v1's files registered as a second version (--quick) ...")
                registry = open_registry(STORAGE)
                register_twin(registry, MODEL, registry.alias(MODEL, "production"), STORAGE / "twin")
            else:
                say("training v2 (same, trainer.seed=1, promotion.policy=never: registered only) ...")
                run([PY, "-m", "jobs.train", *common(port), *TRAIN, "trainer.seed=1", "promotion.policy=never"], env=env,
                    timeout=1200)
            v1, v2 = registry_versions()
            say(f"deploying {v1} ({REPLICAS} replicas, drift on) and starting the monitor ...")
            run([PY, "-m", "serve_apps.deploy", *common(port), f"serve.model_ref={v1}"], env=env, timeout=600)
            run([PY, "-m", "jobs.monitor", *common(port)], env=env, timeout=600)
            say(f"soak ({s['duration']} s in {s['slice']} s slices; a swap every {s['swap_every']} s) ...")
            raw = soak(wrk, env, port, s, args.concurrency, v1, v2)
            say("monitor and sink figures ...")
            # Replicas report their metrics every few seconds (Ray's metrics_report_interval_ms, 10 s by default).
            time.sleep(max(0.0, raw["load_ended_at"] + 15 - time.time()))
            try:
                monitor = monitor_figures(env, GCS_PORT, MODEL)
                sink = sink_counters(monitor.pop("metrics_ports"))
            except Exception as exc:  # keep the load and memory figures
                monitor = {"error": f"{type(exc).__name__}: {exc}"}
        finally:
            run([PY, "-m", "jobs.monitor", *common(port), "--stop"], env=env, timeout=120, check=False)
    left = cluster_left()
    if left:
        say(f"WARNING: {len(left)} processes of the soak cluster are still running: {left}")

    figures = analyse(raw, v1, v2)
    memory = memory_report(raw["mem_start"], raw["mem_end"])
    replicas = [r for r in memory["processes"] if r["name"].startswith("ray::ServeReplica")]
    # An in-place swap reconfigures the live replicas: the same processes serve before and after every swap.
    replicas_kept = bool(replicas) and all(r["state"] == "both" for r in replicas)
    swaps = figures["swaps"]
    swap_summary = {"count": len(swaps), "every_s": s["swap_every"], "ok": sum(1 for sw in swaps if sw["ok"]),
                    "replicas_kept": replicas_kept, "all_ok": bool(swaps) and replicas_kept and all(sw["ok"] for sw in swaps),
                    "cli_s_max": max((sw.get("cli_s") or 0 for sw in swaps), default=None),
                    "probe_errors": sum(sw.get("probe_errors", 0) for sw in swaps)}
    served_ok = raw["warmup"]["versions"].get(v1, 0) + figures["totals"]["ok"] + \
        sum(sw.get("probe_requests", 0) - sw.get("probe_errors", 0) for sw in swaps)
    monitor_rows = [r for r in memory["processes"] if r["name"].startswith("ray::DriftMonitor") and r["state"] == "both"]
    monitor = {**(monitor or {}), "sink": sink, "answered_rows_counted": served_ok,
               "live_store": folder_size(STORAGE / "monitoring"),
               "live_files": sum(1 for f in (STORAGE / "monitoring").rglob("*.parquet") if "/live/" in str(f))}
    result = {
        **result_header("soak", started, args.quick, load_before, machine()),
        "settings": {"duration_s": s["duration"], "slice_s": s["slice"], "warmup_s": s["warmup"],
                     "swap_every_s": s["swap_every"],
                     "concurrency": args.concurrency, "replicas": REPLICAS, "replica_cpus": 1, "batching": True,
                     "rows_per_request": 1, "row_pool": f"{POOL_ROWS} baseline rows (seed {POOL_SEED}), cycled",
                     "wrk_timeout_s": WRK_TIMEOUT_S, "cluster": CLUSTER, "monitor": MONITOR,
                     "train": TRAIN, "versions": {"v1": v1, "v2": v2},
                     "load": "wrk -t1 closed loop, back-to-back slices; latency not corrected for coordinated omission"},
        "totals": figures["totals"], "swap_summary": swap_summary, "swaps": swaps, "monitor": monitor,
        "memory": memory, "errors": figures["totals"]["errors"],
        "monitor_rss_growth_mib": monitor_rows[0]["growth_rss_mib"] if monitor_rows else None,
        "slices": raw["slices"], "warmup": raw["warmup"], "cluster_processes_left": len(left),
    }
    write_result(out, result)

    t = figures["totals"]
    say(f"\n{t['requests']:,} requests in {len(raw['slices'])} slices: {t['rps']:.1f} req/s "
        f"(slices {t['rps_min_slice']:.0f}-{t['rps_max_slice']:.0f}), p50 {t['p50_ms']:.2f} ms, p99 {t['p99_ms']:.2f} ms, "
        f"max {t['max_ms']:.0f} ms; worst slice p99 {t['worst_p99_slice']['p99_ms']:.2f} ms "
        f"(slice {t['worst_p99_slice']['index']}); errors {t['errors']} {t['error_kinds']}")
    for sw in swaps:
        if "requested_at_s" in sw:
            say(f"swap {sw['from']} -> {sw['to']} at {sw['requested_at_s']:.0f} s: CLI {sw['cli_s']:.1f} s (exit "
                f"{sw['cli_returncode']}); first new answer at {sw['first_new_answer_at_s']} s; {sw['old_answers_after']} "
                f"old answers after it; {sw['errors_in_slices_during']} errors around it -> {'OK' if sw['ok'] else 'NOT OK'}")
        else:
            say(f"swap: NOT OK ({sw.get('error')})")
    say(f"swaps: {swap_summary['ok']} of {swap_summary['count']} ok; same replica processes throughout: "
        f"{'yes' if replicas_kept else 'NO'}")
    if "counters" in monitor:
        c = monitor["counters"]
        say(f"monitor: {c['rows']:,} rows received ({served_ok:,} answers counted by wrk and the swap probe; "
            f"wrk does not count answers in flight when a slice ends), {monitor['rounds']} test rounds "
            f"({monitor['rounds_drifted']} flagged drift), sink {sink}; live store {monitor['live_store']}")
    else:
        say(f"monitor: {monitor.get('error')}")
    say("\n" + memory_table(memory))
    say(f"\nmemory bound: {memory['bound']} -> {memory['verdict'].upper()}"
        + (f" (breached by {', '.join(memory['breaches'])})" if memory["breaches"] else ""))
    if memory["new"] or memory["exited"]:
        say(f"processes new since the start: {memory['new'] or 'none'}; exited: {memory['exited'] or 'none'}")
    say(f"\n(written to {out}; {result['elapsed_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
