"""What every benchmark shares: running commands, free ports, wrk load and its parsing, waiting for HTTP,
the private clusters, the machine record. One module, so benchmarks import it as a package
(``python -m benchmarks.<name>``) instead of importing each other."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from benchmarks.machine_info import host

REPO = Path(__file__).resolve().parent.parent
TMP = REPO / "benchmarks" / "results" / "tmp"
PY = sys.executable
# ``run_all --quick`` starts one cluster for every benchmark that needs one and names it here
# ("gcs_port:dashboard_port"): each then skips its own cluster's start and stop (seconds each, and
# Serve's controller and proxy start again on every new cluster). Full runs keep private clusters.
SHARED_CLUSTER_ENV = "FOUNDRY_BENCH_SHARED_CLUSTER"
SHARED_PORTS = (6650, 8650)
SHARED_CLUSTER = ["cluster.name=bench-shared", f"cluster.gcs_port={SHARED_PORTS[0]}",
                  f"cluster.dashboard_port={SHARED_PORTS[1]}", "cluster.head_num_cpus=8",
                  "cluster.autoscaling.enabled=false"]
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


# run_all names a file here: every command a benchmark runs appends "<benchmark>\t<seconds>\t<command>" to it,
# so a slow run shows which step its minutes went to (benchmarks/results/tmp/logs/steps.tsv).
STEPS_FILE_ENV = "FOUNDRY_BENCH_STEPS"


def run(argv: list[str], env: dict | None = None, timeout: float = 900, check: bool = True) -> str:
    started = time.monotonic()
    try:
        proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    finally:
        _record_step(argv, time.monotonic() - started)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} ... failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                           f"{proc.stderr[-3000:]}")
    return proc.stdout + proc.stderr


def _record_step(argv: list[str], seconds: float) -> None:
    path = os.environ.get(STEPS_FILE_ENV)
    if not path:
        return
    shown = " ".join(Path(a).name if a.startswith(str(REPO)) or a == PY else a for a in argv)[:200].replace("\n", " ")
    with open(path, "a") as f:
        f.write(f"{Path(sys.argv[0]).stem}\t{seconds:.1f}\t{shown}\n")


def wrk_script(path: Path, key: str, rows: int = 1) -> Path:
    body = json.dumps({"rows": [ROW] * rows})
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


def ports_free(ports: tuple[int, ...], timeout: float = 90) -> None:
    """Wait until the last cluster's GCS and dashboard ports are closed: its dashboard can still answer a
    few seconds after ``cluster down``, and ``cluster up`` then refuses to start on its port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = []
        for port in ports:
            with socket.socket() as s:
                s.settimeout(0.5)
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    busy.append(port)
        if not busy:
            return
        time.sleep(1)
    raise RuntimeError(f"ports {busy} still in use {timeout:.0f} s after `cluster down`")


def machine() -> dict:
    import fastapi
    import ray
    import torch
    import uvicorn

    return {**host(), "ray": ray.__version__,
            "torch": torch.__version__, "fastapi": fastapi.__version__, "uvicorn": uvicorn.__version__,
            "wrk": run(["wrk", "--version"], check=False).splitlines()[0].strip()}


def shared_cluster() -> bool:
    return bool(os.environ.get(SHARED_CLUSTER_ENV))


def cluster_settings(name: str, ports: tuple[int, int], *extra: str) -> tuple[int, int, list[str]]:
    """(gcs port, dashboard port, the cluster overrides) of a benchmark: its own private cluster, or the
    run's shared one when run_all --quick started it."""
    if shared_cluster():
        return SHARED_PORTS[0], SHARED_PORTS[1], list(SHARED_CLUSTER)
    return ports[0], ports[1], [f"cluster.name={name}", f"cluster.gcs_port={ports[0]}",
                                f"cluster.dashboard_port={ports[1]}", "cluster.head_num_cpus=8", *extra]


# Serve stops a replica gracefully: with the HAProxy (direct) ingress it waits at least
# RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S (30 s) for external load balancers to let go of it, so
# serve.shutdown() alone took 32 s per benchmark (benchmarks/results/tmp/logs/steps.tsv). Between benchmarks no
# request is in flight and nothing balances onto the replicas: the apps are marked for deletion (so the
# controller does not replace what dies), their replicas killed, then Serve shut down.
RESET = """
import sys
import ray
from ray import serve
from foundry.runtime import connection
connection.connect(sys.argv[1], logging_level="ERROR", log_to_driver=False)
try:
    apps = list(serve.status().applications)
except Exception:  # Serve is not running
    apps = []
for app in apps:
    serve.delete(app, _blocking=False)
for actor in ray.util.list_named_actors(all_namespaces=True):
    if actor["name"].startswith("SERVE_REPLICA::"):
        ray.kill(ray.get_actor(actor["name"], namespace=actor["namespace"]), no_restart=True)
serve.shutdown()  # controller and proxies: the next benchmark's deploy starts Serve on its own HTTP port
for actor in ray.util.list_named_actors(all_namespaces=True):
    if actor["namespace"] == "foundry":
        ray.kill(ray.get_actor(actor["name"], namespace="foundry"))
import os
os._exit(0)  # done: skip Ray's atexit hook and the interpreter's teardown (~1 s), as the jobs do
"""


def reset_shared_cluster(env: dict | None = None) -> None:
    """Shut Serve down and kill Foundry's named actors on the shared cluster: the next benchmark starts from
    an empty cluster, as it would from its own (Serve's HTTP port is fixed when Serve starts, and each
    benchmark serves on a port of its own)."""
    env = {**(env or os.environ), "RAY_AUTH_MODE": "token"}
    run([PY, "-c", RESET, f"127.0.0.1:{SHARED_PORTS[0]}"], env=env, timeout=300, check=False)


@contextlib.contextmanager
def private_cluster(cluster: list[str], storage: Path, env: dict) -> Iterator[None]:
    """``python -m cluster up`` with the benchmark's own name and ports, and ``down`` whatever happens: a
    benchmark never touches the developer's cluster (6379) or the tests' (6390). On run_all's shared
    cluster: nothing to start, and what the benchmark left (Serve apps, monitors) is removed after it."""
    if shared_cluster():
        try:
            yield
        finally:
            reset_shared_cluster(env)
        return
    say("starting the private cluster ...")
    run([PY, "-m", "cluster", "up", *cluster, f"storage.root={storage}"], env=env, timeout=300)
    try:
        yield
    finally:
        run([PY, "-m", "cluster", "down", *cluster], env=env, timeout=300, check=False)


def open_registry(storage: Path):
    """The registry under a benchmark's storage root (the platform's own layout)."""
    from foundry.storage.layout import StorageLayout

    return StorageLayout(str(storage)).open_registry()


def register_twin(registry, model: str, version: str, where: Path) -> str:
    """``version``'s files registered again under a new id (not promoted): a second version to swap or shadow
    to without training one. The manifest is the registry's own, so it is not copied."""
    src = registry.fetch(model, version)
    where.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.name != "manifest.json":
            shutil.copy(f, where / f.name)
    return registry.register(model, where, {"variant_of": version}).version
