"""The GPU paths in one short run: train with mixed precision on a GPU (``trainer=gpu``), serve from a GPU
replica (``serve=gpu``), query it, and record what ran where (issue 17, item 4).

    python -m benchmarks.gpu_check [--quick] [--rows 200000] [--epochs 3] [--out benchmarks/results/gpu.json]
    python -m benchmarks.gpu_check --rehearse-on-cpu   # the same steps without a GPU (checks this script)

One ``jobs.pipeline`` run -- the job a user submits -- on a private local cluster (ports 6640/8640,
autoscaling off, the head offering the machine's cores and its GPUs as Ray detects them), with
``trainer=gpu serve=gpu drift.enabled=false``: Ray Data prepares the bundled churn generator's rows, Ray Train
trains one GPU worker (AMP: autocast to float16 + GradScaler; Foundry's own torch backend sets up NCCL),
the version is registered and promoted, and Serve deploys one GPU replica. Then ``GET /model`` says where
the replica's model runs and ``--requests`` sequential 1-row ``POST /predict`` calls give its latency.
Serve's Python proxy (``cluster.ingress.kind=python``): the GPU path is the replica's, and a GPU machine
need not have HAProxy; serve_bench.py measures the ingress.

Fails (exit 1, saying which) when the version's training metadata does not show a CUDA device with AMP on,
or the replica does not run on CUDA: a ``trainer=gpu`` run that quietly fell back to the CPU is not a pass.
A step that fails (the pipeline, Serve, a request) is a result too: exit 1, the JSON written with ``problems``
naming it, the pipeline's whole output in ``<out>-pipeline.log`` and Ray's session logs in
``gpu-ray-logs.tar.gz`` beside it (all a device call brings back is its files).
Without a CUDA device it refuses (exit 2) unless ``--rehearse-on-cpu``: then the same groups run with
``trainer.use_gpu=false serve.use_gpu=false``, it expects the CPU with AMP off, and writes
``benchmarks/results/tmp/gpu-rehearsal.json`` (never ``gpu.json``).

On the lent GPU machine, which has torch but not Ray or Hydra: docs/benchmarks.md ("GPU check") says how
to carry the wheels (``python -m benchmarks.gpu_wheels``) and run this in one call.
"""

from __future__ import annotations

import os

os.environ["RAY_AUTH_MODE"] = "token"  # read when Ray is first imported
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import secrets  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

from benchmarks.harness import PY, REPO, ROW, ports_free, private_cluster, say, wait_http  # noqa: E402
from benchmarks.machine_info import host, write_result  # noqa: E402

PORTS = (6640, 8640)
HTTP_PORT = 8642
STORAGE = REPO / "benchmarks" / "results" / "tmp" / "gpu-storage"
MODEL = "churn"


class CheckFailed(Exception):
    """A step of the check failed (the pipeline job)."""


def gpu_or_none() -> dict | None:
    """The CUDA device torch sees, or None."""
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return {"name": props.name, "count": torch.cuda.device_count(), "memory_gib": round(props.total_memory / 2**30, 1),
            "capability": f"{props.major}.{props.minor}", "cuda": torch.version.cuda, "torch": torch.__version__}


def cluster_overrides(cpus: int) -> list[str]:
    return ["cluster.name=gpu-check", f"cluster.gcs_port={PORTS[0]}", f"cluster.dashboard_port={PORTS[1]}",
            f"cluster.head_num_cpus={cpus}", "cluster.autoscaling.enabled=false", "cluster.ingress.kind=python"]


def job_overrides(args, rehearse: bool) -> list[str]:
    """The pipeline's overrides: the GPU groups, with the GPU switched off in a rehearsal."""
    out = ["trainer=gpu", "serve=gpu", "drift.enabled=false", f"trainer.epochs={args.epochs}",
           "trainer.early_stopping_patience=1000", f"data.source.synthetic.rows={args.rows}",
           f"serve.http.port={HTTP_PORT}", f"storage.root={STORAGE}", f"ray.address=127.0.0.1:{PORTS[0]}"]
    if rehearse:
        out += ["trainer.use_gpu=false", "serve.use_gpu=false"]
    return out


def call(url: str, key: str, body: dict | None = None) -> tuple[float, dict]:
    """(seconds, JSON answer) of one request: a POST with ``body``, else a GET."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"X-API-Key": key, "Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(req, timeout=30) as r:
        answer = json.loads(r.read())
    return time.perf_counter() - started, answer


def training_record(metadata: dict, history: list[dict]) -> dict:
    """What the registered version says about its training run (metadata ``training``, the epochs' history)."""
    training = metadata.get("training", {})
    return {"device": training.get("device"), "amp": training.get("amp"), "use_gpu": training.get("use_gpu"),
            "epochs_run": training.get("epochs_run"), "train_s": round(metadata.get("timings_s", {}).get("train", 0), 2),
            "rows_per_s": [round(h["rows_per_s"]) for h in history], "val_loss": [round(h["val_loss"], 5) for h in history],
            "test_metrics": metadata.get("metrics")}


def verdict(train: dict, serve: dict, rehearse: bool) -> list[str]:
    """What did not run where the configuration put it (empty: all did)."""
    want = "cpu" if rehearse else "cuda"
    problems = []
    if not str(train.get("device") or "").startswith(want):
        problems.append(f"training ran on {train.get('device')!r}, not {want}")
    if train.get("amp") is not (not rehearse):
        problems.append(f"mixed precision was {'on' if train.get('amp') else 'off'} in training "
                        f"(trainer.amp is on; it applies on CUDA only)")
    if not str(serve.get("device") or "").startswith(want):
        problems.append(f"the replica serves on {serve.get('device')!r}, not {want}")
    if not 0.0 <= serve.get("probability", -1) <= 1.0:
        problems.append(f"the prediction {serve.get('answer')} holds no probability")
    return problems


def probe_serving(url: str, key: str, requests: int) -> dict:
    wait_http(f"{url}/healthz")
    _, info = call(f"{url}/model", key)
    latencies, answer = [], None
    for _ in range(requests):
        seconds, answer = call(f"{url}/predict", key, {"rows": [ROW]})
        latencies.append(seconds * 1000)
    first = latencies[0]
    latencies.sort()
    prediction = answer["predictions"][0]
    probability = max((prediction.get("probabilities") or {"": -1}).values())
    return {"device": info.get("device"), "version": info.get("version"), "requests": requests,
            "p50_ms": round(statistics.median(latencies), 2),
            "p99_ms": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 2),
            "first_ms": round(first, 2), "probability": probability, "answer": prediction}


def run_pipeline(argv: list[str], env: dict, log_path: Path) -> str:
    """``jobs.pipeline`` with its whole output kept beside the result (it comes back from the device call)."""
    proc = subprocess.run([PY, "-m", "jobs.pipeline", *argv], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=1800)
    log = proc.stdout + proc.stderr
    log_path.write_text(log)
    if proc.returncode != 0:
        raise CheckFailed(f"jobs.pipeline exited {proc.returncode}: {log[-1500:]}")
    return log


def keep_ray_logs(folder: Path) -> str | None:
    """Ray's session logs as one archive beside the result, when a step failed: a device call's files are all
    a failed run leaves. None when there are none, or when they are over what a call brings back (16 MiB)."""
    logs = Path("/tmp/ray/session_latest/logs")
    if not logs.is_dir():
        return None
    archive = Path(shutil.make_archive(str(folder / "gpu-ray-logs"), "gztar", root_dir=logs.resolve()))
    if archive.stat().st_size > 15 * 2**20:
        archive.unlink()
        return None
    return str(archive)


def check(args, rehearse: bool, gpu: dict | None, out: Path) -> dict:
    """Train, serve and query on a private cluster; what ran where."""
    shutil.rmtree(STORAGE, ignore_errors=True)
    STORAGE.mkdir(parents=True)
    key = "gpu-check-" + secrets.token_hex(12)
    env = {**os.environ, "FOUNDRY_API_KEY": key, "RAY_AUTH_MODE": "token"}
    cluster = cluster_overrides(max(os.cpu_count() or 1, 8))
    ports_free(PORTS)
    with private_cluster(cluster, STORAGE, env):
        say(f"pipeline: {args.rows:,} rows, {args.epochs} epochs, trainer=gpu serve=gpu"
            + (" (GPU off: rehearsal)" if rehearse else f" on {gpu['name']}"))
        t0 = time.perf_counter()
        log = run_pipeline([*cluster, *job_overrides(args, rehearse)], env, out.with_name(out.stem + "-pipeline.log"))
        pipeline_s = time.perf_counter() - t0
        url = re.search(r"serving at (\S+?)[,\s]", log + "\n").group(1).rstrip("/")
        serve = probe_serving(url, key, args.requests)
        from benchmarks.harness import open_registry
        from foundry.train.workflow import HISTORY_FILE

        registry = open_registry(STORAGE)
        version = registry.get(MODEL, "production")
        history = json.loads((registry.fetch(MODEL, version.version) / HISTORY_FILE).read_text())
    return {"pipeline_s": round(pipeline_s, 1), "train": training_record(version.metadata, history), "serve": serve}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="20,000 rows, 2 epochs, 20 requests")
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("--rehearse-on-cpu", action="store_true", help="the same steps with the GPU switched off")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.rows, args.epochs, args.requests = 20_000, 2, 20
    rehearse = args.rehearse_on_cpu
    gpu = gpu_or_none()
    if gpu is None and not rehearse:
        say("no CUDA device is visible to torch (torch.cuda.is_available() is False): run this on a machine with "
            "an NVIDIA GPU and a CUDA build of torch, or pass --rehearse-on-cpu to walk the same steps on the CPU")
        return 2
    out = Path(args.out or REPO / "benchmarks" / "results" / ("tmp/gpu-rehearsal.json" if rehearse else "gpu.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result = {"benchmark": "gpu", "quick": args.quick, "rehearsal": rehearse, "machine": host(), "gpu": gpu,
              "settings": {"rows": args.rows, "epochs": args.epochs, "overrides": job_overrides(args, rehearse)}}
    try:
        result.update(check(args, rehearse, gpu, out))
        problems = verdict(result["train"], result["serve"], rehearse)
    except Exception as exc:  # noqa: BLE001 -- a failed step is a result too: written, with Ray's logs beside it
        problems = [f"{type(exc).__name__}: {exc}"]
        result["ray_logs"] = keep_ray_logs(out.parent)
    result.update(generated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  elapsed_s=round(time.perf_counter() - started), passed=not problems, problems=problems)
    write_result(out, result)
    say(json.dumps({k: result.get(k) for k in ("passed", "problems", "pipeline_s", "train", "serve")}, indent=2))
    say(f"written to {out}")
    if problems:
        say("GPU CHECK FAILED: " + "; ".join(problems))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
