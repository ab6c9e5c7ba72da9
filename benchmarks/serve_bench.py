"""Serving throughput and latency: the Ray Serve application vs a plain uvicorn server of the same model.

    python benchmarks/serve_bench.py [--duration 8] [--concurrency 1,4,16,64] [--out benchmarks/results/serve.json]

What runs, all over loopback with wrk (Debian's ``wrk``; the script checks for it):
- the baseline: ``python -m foundry.serving.standalone``, one uvicorn process (uvloop + httptools)
  serving the same FastAPI app, validation, auth and ``Predictor`` as Serve, one request at a time
  through the model (no batching). Measured before and after the Serve runs; the better of the two
  is the reference, so machine noise cannot flatter Serve.
- Ray Serve on a private cluster (its own ports, stopped at the end) in three cluster settings:
  ``RAY_SERVE_THROUGHPUT_OPTIMIZED=0``, ``=1`` (the repo's default) and ``=1`` plus
  ``RAY_SERVE_ENABLE_HA_PROXY=1``; in each, one application with ``@serve.batch`` on and one with
  it off (one replica each, 1 CPU).
- Every point: 1-row POST /predict with the API key, at several concurrencies; throughput, p50 and
  p99 latency (wrk's, not corrected for coordinated omission); any non-2xx or socket error marks
  the point invalid.

The JSON (``benchmarks/results/serve.json``) holds the machine, the settings, every point and
``ratio_vs_uvicorn``: the best Serve throughput with p99 <= 50 ms over the best baseline throughput
with p99 <= 50 ms. The model is trained once (``jobs.train``, the default MLP, 2 epochs) into
``benchmarks/results/tmp/`` and reused by later runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from machine_info import host, write_result  # noqa: E402 -- benchmarks/ is the script's own directory

PY = sys.executable
SLO_P99_MS = 50.0
GCS_PORT, DASHBOARD_PORT = 6580, 8580  # a private cluster: never the developer's (6379) or the tests' (6390)
STORAGE = REPO / "benchmarks" / "results" / "tmp" / "serve-storage"
CLUSTER = ["cluster.name=bench", f"cluster.gcs_port={GCS_PORT}", f"cluster.dashboard_port={DASHBOARD_PORT}",
           "cluster.head_num_cpus=4", "cluster.autoscaling.enabled=false"]
VARIANTS = {  # name -> extra cluster overrides (env vars of every Ray process, read at start)
    "tp_opt=0": ["cluster.env.RAY_SERVE_THROUGHPUT_OPTIMIZED='0'"],
    "tp_opt=1": [],  # conf/cluster/local.yaml already sets RAY_SERVE_THROUGHPUT_OPTIMIZED=1
    "tp_opt=1+haproxy": ["+cluster.env.RAY_SERVE_ENABLE_HA_PROXY='1'"],
}
TRAIN = ["trainer.num_workers=1", "trainer.epochs=2", "data.source.synthetic.rows=20000"]
ROW = {"age": 48, "tenure_months": 9, "monthly_charges": 115.32, "data_usage_gb": 74.72, "support_calls": 1,
       "num_products": 3, "late_payments": 0, "satisfaction": 7.0, "plan": "premium", "contract": "monthly",
       "payment_method": "bank_transfer", "region": "east"}


def say(text: str) -> None:
    print(text, flush=True)


def need_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        sys.exit("wrk is not installed. On Debian/Ubuntu: `sudo apt-get install -y wrk` "
                 "(as root: `apt-get update && apt-get install -y wrk`), then run this again.")
    return wrk


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(argv: list[str], env: dict | None = None, timeout: float = 900, check: bool = True) -> str:
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} ... failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                           f"{proc.stderr[-3000:]}")
    return proc.stdout + proc.stderr


# ---- wrk -------------------------------------------------------------------------------------------

def wrk_script(path: Path, key: str) -> Path:
    body = json.dumps({"rows": [ROW]})
    path.write_text(f"wrk.method = \"POST\"\nwrk.body = '{body}'\n"
                    f"wrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.headers[\"X-API-Key\"] = \"{key}\"\n")
    return path


def _ms(value: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value)
    number, unit = float(m.group(1)), m.group(2)
    return number * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def parse_wrk(text: str) -> dict:
    out = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))}
    for pct in ("50", "99"):
        out[f"p{pct}_ms"] = round(_ms(re.search(rf"^\s+{pct}%\s+(\S+)", text, re.M).group(1)), 3)
    out["requests"] = int(re.search(r"(\d+) requests in", text).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    out["non_2xx"] = int(non2xx.group(1)) if non2xx else 0
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    out["socket_errors"] = sum(int(g) for g in errors.groups()) if errors else 0
    out["rps"] = round(out["rps"], 1)
    return out


def load(wrk: str, url: str, script: Path, concurrency: int, duration: int) -> dict:
    text = run([wrk, "-t1", f"-c{concurrency}", f"-d{duration}s", "--latency", "-s", str(script), url],
               timeout=duration + 60)
    return parse_wrk(text)


def sweep(wrk, url, script, concurrencies, duration, label: dict) -> list[dict]:
    load(wrk, url, script, 4, 2)  # warm-up: connections, JIT-free but caches and allocators
    points = []
    for c in concurrencies:
        point = {**label, "concurrency": c, **load(wrk, url, script, c, duration)}
        point["valid"] = point["non_2xx"] == 0 and point["socket_errors"] == 0
        points.append(point)
        say(f"  {label['server']:<8} {label['variant']:<17} batching={str(label['batching']):<5} c={c:<3} "
            f"{point['rps']:>8.1f} req/s  p50 {point['p50_ms']:>7.2f} ms  p99 {point['p99_ms']:>7.2f} ms"
            + ("" if point["valid"] else f"  INVALID ({point['non_2xx']} non-2xx, {point['socket_errors']} errors)"))
    return points


def wait_http(url: str, timeout: float = 120) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


# ---- the two servers ---------------------------------------------------------------------------------

def common(version: str | None = None) -> list[str]:
    out = [f"storage.root={STORAGE}", "serve.access_log=false"]
    return out + ([f"serve.model_ref={version}"] if version else [])


def baseline(wrk, script, concurrencies, duration, version, env, label: str) -> list[dict]:
    port = free_port()
    proc = subprocess.Popen([PY, "-m", "foundry.serving.standalone", *common(version), "--port", str(port)],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        return sweep(wrk, f"http://127.0.0.1:{port}/predict", script, concurrencies, duration,
                     {"server": "uvicorn", "variant": label, "batching": False})
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def cluster(command: str, variant: list[str]) -> None:
    run([PY, "-m", "cluster", command, *CLUSTER, f"storage.root={STORAGE}", *variant], timeout=300)


def ensure_model(env) -> str:
    """The production version in the bench storage; trained once on the running bench cluster."""
    from foundry.registry import Registry

    reg = Registry(STORAGE / "registry")
    if "churn" not in reg.models() or reg.alias("churn", "production") is None:
        say("training the benchmark model (default MLP, 2 epochs, 20,000 rows) ...")
        run([PY, "-m", "jobs.train", *CLUSTER, f"storage.root={STORAGE}", f"ray.address=127.0.0.1:{GCS_PORT}",
             *TRAIN], env=env, timeout=1200)
    return reg.alias("churn", "production")


def serve_variant(wrk, script, concurrencies, duration, version, env, name, extra) -> list[dict]:
    port = free_port()
    points = []
    for batching in (True, False):
        app = "bench-b" if batching else "bench-nb"
        run([PY, "-m", "serve_apps.deploy", *CLUSTER, *common(version), f"serve.app_name={app}",
             f"serve.route_prefix=/{app}", f"serve.http.port={port}", f"serve.batching.enabled={batching}",
             "serve.autoscaling.min_replicas=1", "serve.autoscaling.max_replicas=1", f"ray.address=127.0.0.1:{GCS_PORT}",
             *extra], env=env, timeout=600)
    for batching in (True, False):
        app = "bench-b" if batching else "bench-nb"
        url = f"http://127.0.0.1:{port}/{app}"
        wait_http(f"{url}/healthz")
        points += sweep(wrk, f"{url}/predict", script, concurrencies, duration,
                        {"server": "serve", "variant": name, "batching": batching})
    return points


# ---- report ----------------------------------------------------------------------------------------

def best(points: list[dict]) -> dict | None:
    ok = [p for p in points if p["valid"] and p["p99_ms"] <= SLO_P99_MS]
    return max(ok, key=lambda p: p["rps"]) if ok else None


def machine() -> dict:
    import fastapi
    import ray
    import torch
    import uvicorn

    return {**host(), "ray": ray.__version__,
            "torch": torch.__version__, "fastapi": fastapi.__version__, "uvicorn": uvicorn.__version__,
            "wrk": run(["wrk", "--version"], check=False).splitlines()[0].strip()}


def table(points: list[dict]) -> str:
    lines = [f"{'server':<8} {'variant':<17} {'batching':<8} {'conc':>4} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}",
             "-" * 68]
    for p in points:
        flag = "" if p["valid"] else "  invalid"
        lines.append(f"{p['server']:<8} {p['variant']:<17} {str(p['batching']):<8} {p['concurrency']:>4} "
                     f"{p['rps']:>9.1f} {p['p50_ms']:>8.2f} {p['p99_ms']:>8.2f}{flag}")
    return "\n".join(lines)


def summarize(points: list[dict]) -> dict:
    plain = best([p for p in points if p["server"] == "uvicorn"])
    serve = best([p for p in points if p["server"] == "serve"])
    per_setting = {}
    for name in VARIANTS:
        for batching in (True, False):
            b = best([p for p in points if p["server"] == "serve" and p["variant"] == name
                      and p["batching"] == batching])
            per_setting[f"{name}, batching={'on' if batching else 'off'}"] = (
                {"rps": b["rps"], "concurrency": b["concurrency"], "p99_ms": b["p99_ms"],
                 "vs_uvicorn": round(b["rps"] / plain["rps"], 3) if plain else None} if b else None)
    ratio = round(serve["rps"] / plain["rps"], 3) if plain and serve else None
    return {"ratio_vs_uvicorn": ratio, "best_serve": serve, "best_uvicorn": plain, "per_setting": per_setting}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=int, default=8, help="seconds per point (default 8)")
    p.add_argument("--concurrency", default="1,4,16,64", help="comma-separated connection counts")
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"subset of {list(VARIANTS)}")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "serve.json"))
    args = p.parse_args(argv)
    wrk = need_wrk()
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        sys.exit(f"unknown variant(s) {unknown}; known: {list(VARIANTS)}")
    key = secrets.token_urlsafe(24)
    env = {**os.environ, "FOUNDRY_API_KEY": key, "RAY_AUTH_MODE": "token"}
    STORAGE.mkdir(parents=True, exist_ok=True)
    tmp = STORAGE.parent
    script = wrk_script(tmp / "predict.lua", key)
    started = time.time()
    load_before = os.getloadavg()
    points: list[dict] = []

    say(f"cluster for model training: python -m cluster up {' '.join(CLUSTER)}")
    cluster("up", [])
    try:
        version = ensure_model(env)
    finally:
        cluster("down", [])
    say(f"model churn {version}")

    say("baseline (plain uvicorn), before")
    points += baseline(wrk, script, concurrencies, args.duration, version, env, "before")
    for name in variants:
        extra = VARIANTS[name]
        say(f"Ray Serve, {name}: python -m cluster up ... {' '.join(extra)}")
        cluster("up", extra)
        try:
            points += serve_variant(wrk, script, concurrencies, args.duration, version, env, name, extra)
        finally:
            cluster("down", extra)
    say("baseline (plain uvicorn), after")
    points += baseline(wrk, script, concurrencies, args.duration, version, env, "after")

    summary = summarize(points)
    result = {
        **summary,
        "slo_p99_ms": SLO_P99_MS,
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "elapsed_s": round(time.time() - started),
        "machine": {**machine(), "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in os.getloadavg()]},
        "settings": {"duration_s": args.duration, "concurrency": concurrencies, "request": "1 row, POST /predict",
                     "model": {"name": "churn", "version": version, "arch": "mlp [128, 64]", "training": TRAIN},
                     "load_tool": "wrk -t1 --latency (1 thread; latencies not corrected for coordinated omission)",
                     "serve": {"replicas": 1, "num_cpus": 1, "torch_threads": 1, "access_log": False,
                               "batching": "max_batch_size 32, batch_wait_timeout_s 0.002 (conf/serve/default.yaml)",
                               "cluster_variants": VARIANTS},
                     "uvicorn": "python -m foundry.serving.standalone: 1 process, uvloop + httptools, "
                                "access log off, same app and Predictor, no batching"},
        "points": points,
    }
    out = Path(args.out)
    write_result(out, result)
    say("\n" + table(points))
    say(f"\nbest uvicorn (p99 <= {SLO_P99_MS:.0f} ms): {summary['best_uvicorn']}")
    say(f"best Serve   (p99 <= {SLO_P99_MS:.0f} ms): {summary['best_serve']}")
    say(f"ratio_vs_uvicorn = {summary['ratio_vs_uvicorn']}   (written to {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
