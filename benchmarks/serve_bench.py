"""Serving throughput and latency: the Ray Serve application vs plain uvicorn servers of the same model.

    python -m benchmarks.serve_bench [--quick] [--duration 8] [--concurrency 4,16,32,64]
                                     [--out benchmarks/results/serve.json]

What runs, all over loopback with wrk (Debian's ``wrk``; the script checks for it):
- the baselines: ``python -m foundry.serving.standalone`` with 1 and with 2 uvicorn worker processes
  (uvloop + httptools, access log off: the baseline's best case) serving the same FastAPI app, validation,
  auth and ``Predictor`` as Serve, one request at a time through the model (no batching). Measured before
  and after the Serve runs; the better of the two is the reference, so machine noise cannot flatter Serve.
- Ray Serve on a private cluster (its own ports, stopped at the end) in two cluster settings: the shipped
  one (``cluster.ingress.kind=haproxy``: HAProxy in front of the replicas, its admin listeners on loopback)
  and ``cluster.ingress.kind=python`` (Serve's Python proxy). In the shipped cluster, applications with
  the shipped ``conf/serve/default.yaml`` (batching on, access log on, autoscaling 1-2 replicas), with
  batching off, and with a 5 ms batch wait: the measurements behind the batching defaults.
- Every point: POST /predict with the API key, 1-row and 32-row bodies, at several concurrencies;
  throughput, p50 and p99 latency (wrk's, not corrected for coordinated omission); any non-2xx or socket
  error marks the point invalid.

The JSON (``benchmarks/results/serve.json``) holds the machine, the settings, every point and the ratios of
the best throughput with p99 <= 50 ms: ``ratio_vs_uvicorn_shipped`` (the shipped cluster and app, 1-row
requests, over uvicorn with 1 process) and ``ratio_vs_uvicorn_2proc`` (the same over 2 processes), the same
for 32-row requests (``..._32rows``) and for Serve's Python proxy. The model is trained once (``jobs.train``,
the default MLP, 2 epochs) into ``benchmarks/results/tmp/`` and reused by later runs.
"""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # `python -m benchmarks.serve_bench` as well as `python -m benchmarks.serve_bench`

from benchmarks.harness import (  # noqa: E402
    PY,
    cluster_settings,
    free_port,
    load,
    machine,
    need_wrk,
    open_registry,
    ports_free,
    reset_shared_cluster,
    run,
    say,
    shared_cluster,
    wait_http,
    wrk_script,
)
from benchmarks.machine_info import write_result  # noqa: E402

SLO_P99_MS = 50.0
# A private cluster (never the developer's 6379 or the tests' 6390), or run_all --quick's shared one.
GCS_PORT, DASHBOARD_PORT, CLUSTER = cluster_settings("bench", (6580, 8580), "cluster.autoscaling.enabled=false")
STORAGE = REPO / "benchmarks" / "results" / "tmp" / "serve-storage"
# Logical CPUs for up to 3 applications of up to 2 one-CPU replicas each (the machine has what it has).
VARIANTS = {  # cluster setting -> extra cluster overrides (env vars of every Ray process, read at start)
    "haproxy": [],  # the shipped cluster: conf/cluster/local.yaml (ingress haproxy, RAY_SERVE_THROUGHPUT_OPTIMIZED=1)
    "python-proxy": ["cluster.ingress.kind=python"],
}
APPS = {  # application -> serve overrides on top of conf/serve/default.yaml
    "shipped": [],
    "no-batching": ["serve.batching.enabled=false"],
    "wait-5ms": ["serve.batching.batch_wait_timeout_s=0.005"],
    "no-access-log": ["serve.access_log=false"],
    "1-replica": ["serve.autoscaling.max_replicas=1"],
}
# 1-replica: measured once (benchmarks/README.md); not part of the default run.
APPS_OF = {"haproxy": ["shipped", "no-batching", "wait-5ms", "no-access-log"], "python-proxy": ["shipped"]}
PAYLOADS = (1, 32)
QUICK = {"duration": 2, "concurrency": "4,64", "variants": "haproxy", "apps": ["shipped"]}
TRAIN = ["trainer.num_workers=1", "trainer.epochs=2", "data.source.synthetic.rows=20000"]


# ---- wrk -------------------------------------------------------------------------------------------

def sweep(wrk, url, script, concurrencies, duration, label: dict) -> list[dict]:
    load(wrk, url, script, 4, 2)  # warm-up: connections, JIT-free but caches and allocators
    points = []
    for c in concurrencies:
        point = {**label, "concurrency": c, **load(wrk, url, script, c, duration)}
        point["valid"] = point["non_2xx"] == 0 and point["socket_errors"] == 0
        points.append(point)
        say(f"  {label['server']:<8} {label['variant']:<13} {label['app']:<12} rows={label['rows']:<3} c={c:<3} "
            f"{point['rps']:>8.1f} req/s  p50 {point['p50_ms']:>7.2f} ms  p99 {point['p99_ms']:>7.2f} ms"
            + ("" if point["valid"] else f"  INVALID ({point['non_2xx']} non-2xx, {point['socket_errors']} errors)"))
    return points


# ---- the two servers ---------------------------------------------------------------------------------

def common(version: str | None = None) -> list[str]:
    return [f"storage.root={STORAGE}"] + ([f"serve.model_ref={version}"] if version else [])


def baseline(wrk, scripts, concurrencies, duration, version, env, label: str, workers: int) -> list[dict]:
    port = free_port()
    proc = subprocess.Popen([PY, "-m", "foundry.serving.standalone", *common(version), "serve.access_log=false",
                             "--port", str(port), "--workers", str(workers)],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    points = []
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        for rows, script in scripts.items():
            points += sweep(wrk, f"http://127.0.0.1:{port}/predict", script, concurrencies, duration,
                            {"server": "uvicorn", "variant": f"{workers}proc-{label}", "app": "standalone",
                             "rows": rows, "workers": workers})
        return points
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def cluster(command: str, variant: list[str]) -> None:
    """Start or stop the bench's cluster with a variant's settings; on run_all's shared cluster (quick runs:
    the shipped variant only) nothing, and ``down`` removes the applications the benchmark deployed."""
    if shared_cluster():
        if command == "down":
            reset_shared_cluster()
        return
    if command == "up":
        ports_free((GCS_PORT, DASHBOARD_PORT))
    run([PY, "-m", "cluster", command, *CLUSTER, f"storage.root={STORAGE}", *variant], timeout=300)


def ensure_model(env) -> str:
    """The production version in the bench storage; trained once, on a bench cluster started only for that."""
    reg = open_registry(STORAGE)
    if "churn" not in reg.models() or reg.alias("churn", "production") is None:
        say(f"cluster for model training: python -m cluster up {' '.join(CLUSTER)}")
        cluster("up", [])
        try:
            say("training the benchmark model (default MLP, 2 epochs, 20,000 rows) ...")
            run([PY, "-m", "jobs.train", *CLUSTER, f"storage.root={STORAGE}", f"ray.address=127.0.0.1:{GCS_PORT}",
                 *TRAIN], env=env, timeout=1200)
        finally:
            cluster("down", [])
    return reg.alias("churn", "production")


def serve_variant(wrk, scripts, concurrencies, duration, version, env, name, extra, apps) -> list[dict]:
    port = free_port()
    points = []
    for app in apps:
        run([PY, "-m", "serve_apps.deploy", *CLUSTER, *common(version), f"serve.app_name=bench-{app}",
             f"serve.route_prefix=/{app}", f"serve.http.port={port}", f"ray.address=127.0.0.1:{GCS_PORT}",
             *APPS[app], *extra], env=env, timeout=600)
    for app in apps:
        url = f"http://127.0.0.1:{port}/{app}"
        wait_http(f"{url}/healthz")
        for rows, script in scripts.items():
            points += sweep(wrk, f"{url}/predict", script, concurrencies, duration,
                            {"server": "serve", "variant": name, "app": app, "rows": rows})
    return points


# ---- report ----------------------------------------------------------------------------------------

def best(points: list[dict]) -> dict | None:
    ok = [p for p in points if p["valid"] and p["p99_ms"] <= SLO_P99_MS]
    return max(ok, key=lambda p: p["rps"]) if ok else None


def table(points: list[dict]) -> str:
    lines = [f"{'server':<8} {'variant':<13} {'app':<12} {'rows':>4} {'conc':>4} {'req/s':>9} {'p50 ms':>8} "
             f"{'p99 ms':>8}", "-" * 76]
    for p in points:
        flag = "" if p["valid"] else "  invalid"
        lines.append(f"{p['server']:<8} {p['variant']:<13} {p['app']:<12} {p['rows']:>4} {p['concurrency']:>4} "
                     f"{p['rps']:>9.1f} {p['p50_ms']:>8.2f} {p['p99_ms']:>8.2f}{flag}")
    return "\n".join(lines)


def _ratio(a: dict | None, b: dict | None) -> float | None:
    return round(a["rps"] / b["rps"], 3) if a and b else None


def summarize(points: list[dict]) -> dict:
    def best_of(server: str, rows: int, **match) -> dict | None:
        return best([p for p in points if p["server"] == server and p["rows"] == rows
                     and all(p.get(k) == v for k, v in match.items())])

    out: dict = {}
    per_setting = {}
    for rows in PAYLOADS:
        suffix = "" if rows == 1 else f"_{rows}rows"
        uv1, uv2 = best_of("uvicorn", rows, workers=1), best_of("uvicorn", rows, workers=2)
        shipped = best_of("serve", rows, variant="haproxy", app="shipped")
        python = best_of("serve", rows, variant="python-proxy", app="shipped")
        out[f"ratio_vs_uvicorn_shipped{suffix}"] = _ratio(shipped, uv1)
        out[f"ratio_vs_uvicorn_2proc{suffix}"] = _ratio(shipped, uv2)
        out[f"ratio_python_proxy_vs_uvicorn{suffix}"] = _ratio(python, uv1)
        out[f"best{suffix}"] = {"uvicorn_1proc": uv1, "uvicorn_2proc": uv2, "serve_shipped": shipped,
                                "serve_python_proxy": python}
        for name, apps in APPS_OF.items():
            for app in apps:
                b = best_of("serve", rows, variant=name, app=app)
                per_setting[f"{name}, {app}, {rows} row{'s' if rows > 1 else ''}"] = (
                    {"rps": b["rps"], "rows_per_s": round(b["rps"] * rows), "concurrency": b["concurrency"],
                     "p99_ms": b["p99_ms"], "vs_uvicorn": _ratio(b, uv1), "vs_uvicorn_2proc": _ratio(b, uv2)}
                    if b else None)
    out["ratio_vs_uvicorn"] = out["ratio_vs_uvicorn_shipped"]  # the key of earlier runs
    out["per_setting"] = per_setting
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help=f"a smoke run: {QUICK['duration']} s points at c={QUICK['concurrency']}, the shipped cluster "
                        "and app only, uvicorn once (results/tmp/)")
    p.add_argument("--duration", type=int, help="seconds per point (default 8)")
    p.add_argument("--concurrency", help="comma-separated connection counts (default 4,16,32,64)")
    p.add_argument("--variants", help=f"subset of {list(VARIANTS)}")
    p.add_argument("--apps", help=f"Serve applications to measure (default: all of {list(APPS)} on the haproxy "
                                  "cluster, shipped on the others)")
    p.add_argument("--out", help="result file (default benchmarks/results/serve.json)")
    args = p.parse_args(argv)
    wrk = need_wrk()
    duration = args.duration or (QUICK["duration"] if args.quick else 8)
    concurrencies = [int(c) for c in (args.concurrency or (QUICK["concurrency"] if args.quick else "4,16,32,64"))
                     .split(",")]
    variants = [v for v in (args.variants or (QUICK["variants"] if args.quick else ",".join(VARIANTS))).split(",")
                if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        sys.exit(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
    if shared_cluster() and any(VARIANTS[v] for v in variants):
        sys.exit(f"variants {[v for v in variants if VARIANTS[v]]} need a cluster of their own; run_all's shared "
                 "cluster (--quick) has the shipped settings only")
    out = Path(args.out or (STORAGE.parent / "serve-quick.json" if args.quick
                            else REPO / "benchmarks" / "results" / "serve.json"))
    key = secrets.token_urlsafe(24)
    env = {**os.environ, "FOUNDRY_API_KEY": key, "RAY_AUTH_MODE": "token"}
    STORAGE.mkdir(parents=True, exist_ok=True)
    tmp = STORAGE.parent
    scripts = {rows: wrk_script(tmp / f"predict-{rows}.lua", key, rows) for rows in PAYLOADS}
    started = time.time()
    load_before = os.getloadavg()
    points: list[dict] = []

    version = ensure_model(env)
    say(f"model churn {version}")

    rounds = ["before"] if args.quick else ["before", "after"]
    say("baselines (plain uvicorn, 1 and 2 processes), before")
    for workers in (1, 2):
        points += baseline(wrk, scripts, concurrencies, duration, version, env, "before", workers)
    for name in variants:
        extra = VARIANTS[name]
        apps = [a for a in args.apps.split(",") if a in APPS] if args.apps else \
            QUICK["apps"] if args.quick else APPS_OF[name]
        say(f"Ray Serve, {name}: python -m cluster up ... {' '.join(extra)}; applications {apps}")
        cluster("up", extra)
        try:
            points += serve_variant(wrk, scripts, concurrencies, duration, version, env, name, extra, apps)
        finally:
            cluster("down", extra)
    if "after" in rounds:
        say("baselines (plain uvicorn, 1 and 2 processes), after")
        for workers in (1, 2):
            points += baseline(wrk, scripts, concurrencies, duration, version, env, "after", workers)

    summary = summarize(points)
    result = {
        **summary,
        "slo_p99_ms": SLO_P99_MS,
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "elapsed_s": round(time.time() - started),
        "quick": bool(args.quick),
        "machine": {**machine(), "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in os.getloadavg()]},
        "settings": {"duration_s": duration, "concurrency": concurrencies, "payload_rows": list(PAYLOADS),
                     "request": "POST /predict with 1 or 32 rows",
                     "model": {"name": "churn", "version": version, "arch": "mlp [128, 64]", "training": TRAIN},
                     "load_tool": "wrk -t1 --latency (1 thread; latencies not corrected for coordinated omission)",
                     "serve": {"config": "conf/serve/default.yaml as shipped (batching max 32 / wait 2 ms, access "
                                         "log on, autoscaling 1-2 one-CPU replicas, 1 torch thread) + APPS",
                               "cluster_variants": VARIANTS, "apps": APPS},
                     "uvicorn": "python -m foundry.serving.standalone --workers 1|2: uvloop + httptools, access log "
                                "off, same app and Predictor, no batching; the better of before/after"},
        "points": points,
    }
    write_result(out, result)
    say("\n" + table(points))
    for rows in PAYLOADS:
        suffix = "" if rows == 1 else f"_{rows}rows"
        say(f"{rows:>2}-row requests: ratio_vs_uvicorn_shipped{suffix} = {summary[f'ratio_vs_uvicorn_shipped{suffix}']}"
            f"   ratio_vs_uvicorn_2proc{suffix} = {summary[f'ratio_vs_uvicorn_2proc{suffix}']}"
            f"   python proxy: {summary[f'ratio_python_proxy_vs_uvicorn{suffix}']}")
    say(f"(written to {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
