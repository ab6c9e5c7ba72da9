"""Every benchmark, one after another, then one summary of their headline figures.

    python -m benchmarks.run_all [--quick] [--only serve,drift,heal,soak,data,train] [--timeout 3600] [--summary-only]
    make bench ARGS="--quick --only data,train"

Each benchmark runs as its own process (``python -m benchmarks.<name>_bench --out ...``), with ``--quick``
passed on (every benchmark has one). Its output is shown and kept in
``benchmarks/results/tmp/logs/<name>.log``. A benchmark that fails or runs past ``--timeout`` is recorded
and the next one runs. Then every result file is read, whether or not it ran this time, and
``summary.md`` / ``summary.json`` are written next to the results: per benchmark its status in this run,
when its figures were produced, the machine, and a table of its headline figures. With ``--quick`` all
result files and the summary go to ``benchmarks/results/tmp/`` (smoke figures, never the published ones).
Exit status 1 when any benchmark of this run failed.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # `python -m benchmarks.run_all` as well as `python -m benchmarks.run_all`

from benchmarks.harness import (  # noqa: E402
    PY,
    SHARED_CLUSTER,
    SHARED_CLUSTER_ENV,
    SHARED_PORTS,
    STEPS_FILE_ENV,
    ports_free,
    run,
    say,
)
from benchmarks.summary_tables import TABLES  # noqa: E402

RESULTS = REPO / "benchmarks" / "results"
TMP = RESULTS / "tmp"
BENCHMARKS = {  # name -> (script, what it compares); run in this order
    "serve": ("serve_bench.py", "Ray Serve as shipped (HAProxy ingress) vs plain uvicorn with 1 and 2 processes, 1- and "
              "32-row requests"),
    "drift": ("drift_bench.py", "drift alarms through replay: false episodes, detection delays, benign shifts"),
    "heal": ("heal_bench.py", "monitoring tax; healing every drift scenario and a real data set, vs an oracle"),
    "soak": ("soak_bench.py", "30 minutes of load on /predict, monitor on, a model swap every 5 minutes; memory of every "
             "Ray process"),
    "store": ("store_bench.py", "stores for weeks: files per hour, last-hour reads against 30 days, label provenance, "
              "a monitor flooded at 3,000 rows/s"),
    "rollout": ("rollout_bench.py", "canary/shadow roll-outs decided by live labels: a bad and a good challenger, "
                "shadow p99 overhead, false rollbacks over seeds (its keys go into heal.json)"),
    "data": ("data_bench.py", "Ray Data preprocessing vs single-process pandas"),
    "train": ("train_bench.py", "Ray Train TorchTrainer vs a plain PyTorch loop"),
}
INTERRUPT_GRACE_S = 120  # a benchmark stops its private cluster in `finally` blocks after Ctrl-C


# With --quick these run first, one after another, on one shared cluster (harness.SHARED_CLUSTER): each
# would otherwise start and stop its own, and Serve its controller and proxy on each.
CLUSTER_BENCHMARKS = ("serve", "heal", "soak", "rollout")
RESULT_FILE = {"rollout": "heal"}  # rollout_bench adds its keys to heal.json (the result file)


def result_path(name: str, quick: bool) -> Path:
    name = RESULT_FILE.get(name, name)
    return TMP / f"{name}-quick.json" if quick else RESULTS / f"{name}.json"


# ---- running -------------------------------------------------------------------------------------------

def supports_quick(script: Path) -> bool:
    """Read from the script's source (its argparse option), so a benchmark that gains ``--quick`` later gets it
    passed on; reading beats running ``--help``, which imports Ray and torch (seconds per benchmark)."""
    return '"--quick"' in script.read_text()


def _tee(stream, log) -> None:
    for line in stream:
        sys.stdout.write(line)
        sys.stdout.flush()
        log.write(line)


def _stop(proc: subprocess.Popen) -> None:
    """Ctrl-C first (the benchmark's ``finally`` stops its cluster), then kill the process group we started."""
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=INTERRUPT_GRACE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run_one(name: str, quick: bool, timeout: float) -> dict:
    script = REPO / "benchmarks" / BENCHMARKS[name][0]
    argv = [PY, "-m", f"benchmarks.{script.stem}", "--out", str(result_path(name, quick))]
    quick_passed = quick and supports_quick(script)
    if quick_passed:
        argv.append("--quick")
    log_path = TMP / "logs" / f"{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    shown = " ".join(str(Path(a).relative_to(REPO)) if a.startswith(str(REPO)) else a for a in argv[1:])
    say(f"\n== {name}: python {shown}")
    record = {"name": name, "command": f"python {shown}", "quick": quick_passed, "log": str(log_path.relative_to(REPO)),
              "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    started = time.monotonic()
    with log_path.open("w") as log:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
        reader = threading.Thread(target=_tee, args=(proc.stdout, log), daemon=True)
        reader.start()
        try:
            proc.wait(timeout=timeout)
            status = "ok" if proc.returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            _stop(proc)
            status = "timeout"
        except KeyboardInterrupt:  # its own session: the terminal's Ctrl-C reached only this process
            _stop(proc)
            raise
        reader.join(timeout=10)
    record.update(status=status, returncode=proc.returncode, seconds=round(time.monotonic() - started, 1))
    if status != "ok":
        record["tail"] = log_path.read_text(errors="replace").splitlines()[-15:]
    say(f"== {name}: {status} in {record['seconds']:.0f} s (exit {proc.returncode})")
    return record


def shared_cluster(command: str) -> None:
    """Start (and name in the environment every benchmark inherits) or stop the quick run's one cluster."""
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    if command == "up":
        ports_free(SHARED_PORTS)
        say(f"\n== the quick run's shared cluster: python -m cluster up {' '.join(SHARED_CLUSTER)}")
        run([PY, "-m", "cluster", "up", *SHARED_CLUSTER], env=env, timeout=300)
        os.environ[SHARED_CLUSTER_ENV] = f"{SHARED_PORTS[0]}:{SHARED_PORTS[1]}"
    else:
        os.environ.pop(SHARED_CLUSTER_ENV, None)
        run([PY, "-m", "cluster", "down", *SHARED_CLUSTER], env=env, timeout=300, check=False)
        say("== the shared cluster is down")


def load_results(quick: bool) -> dict[str, dict | None]:
    """Every benchmark's latest result file, None where there is none or it cannot be parsed."""
    out: dict[str, dict | None] = {}
    for name in BENCHMARKS:
        path = result_path(name, quick)
        try:
            out[name] = json.loads(path.read_text())
        except (OSError, ValueError):
            out[name] = None
    return out


# ---- the summary -----------------------------------------------------------------------------------------

def machine_line(m: dict | None) -> str:
    if not m:
        return "machine not recorded"
    parts = [f"{m.get('cpu', '?')}, {m.get('cores', '?')} cores, {m.get('memory_gib', '?')} GiB",
             f"Python {m.get('python', '?')}"]
    parts += [f"{lib} {m[lib]}" for lib in ("ray", "torch", "pandas", "alibi_detect") if m.get(lib)]
    before = m.get("load_average_before") or m.get("load_average")
    if before:
        after = m.get("load_average_after")
        parts.append(f"load {before[0]:.1f}" + (f" -> {after[0]:.1f}" if after else ""))
    return "; ".join(parts)


def status_of(result: dict | None, run: dict | None) -> str:
    """One word for the overview: what happened to this benchmark in this run."""
    if run is not None and run["status"] != "ok":
        return run["status"]
    if result is None:
        return "missing"
    return "ok" if run is not None else "not run"


def section(name: str, result: dict | None, run: dict | None) -> dict:
    status = status_of(result, run)
    out = {"name": name, "what": BENCHMARKS[name][1], "status": status, "run": run,
           "generated_at": (result or {}).get("generated_at") or (result or {}).get("when"),
           "quick": bool((result or {}).get("quick")), "machine": machine_line((result or {}).get("machine")),
           "columns": None, "rows": None, "error": None}
    if result is not None:
        try:
            out["columns"], out["rows"] = TABLES[name](result)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            out["error"] = f"unreadable result ({type(exc).__name__}: {exc})"
    return out


def summarize(results: dict[str, dict | None], runs: dict[str, dict] | None = None,
              generated_at: str | None = None) -> tuple[str, dict]:
    """The summary as markdown and as JSON-able data, from the loaded result files and this run's records.

    ``results``: benchmark name -> its parsed result file, or None when there is none; ``runs``: name ->
    record of this run (``status`` ok/failed/timeout, ``returncode``, ``seconds``, ``tail``) for the
    benchmarks that ran. A benchmark that failed keeps its older figures, marked as not from this run.
    """
    runs = runs or {}
    generated_at = generated_at or datetime.now(timezone.utc).isoformat(timespec="seconds")
    sections = [section(name, results.get(name), runs.get(name)) for name in BENCHMARKS]
    return render(sections, generated_at), {"generated_at": generated_at, "benchmarks": sections}


def _md_table(columns: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|---|" + "---:|" * (len(columns) - 1)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def _ran(s: dict) -> str:
    run = s["run"]
    if run is None:
        return "not run this time"
    return f"{run['status']} in {run['seconds']:.0f} s" + ("" if run["status"] == "ok" else f" (exit {run['returncode']})")


def render(sections: list[dict], generated_at: str) -> str:
    lines = ["# Benchmark summary", "", f"Written by `benchmarks/run_all.py` at {generated_at}. Figures are from "
             "each benchmark's latest result file; a failed benchmark's older figures are marked as such.", "",
             "| benchmark | this run | figures from | kind |", "|---|---|---|---|"]
    for s in sections:
        kind = "-" if s["generated_at"] is None else ("smoke (--quick)" if s["quick"] else "full")
        lines.append(f"| {s['name']} | {_ran(s)} | {s['generated_at'] or 'no result file'} | {kind} |")
    for s in sections:
        lines += ["", f"## {s['name']}: {s['what']}", ""]
        if s["run"] is not None and s["status"] != "ok":
            lines.append(f"**{s['status'].upper()} in this run** (exit {s['run']['returncode']}, "
                         f"log `{s['run'].get('log', '?')}`):")
            lines += ["", "```", *s["run"].get("tail", []), "```", ""]
        if s["generated_at"] is None and s["rows"] is None:
            lines.append("**No result file**: this benchmark has not produced figures yet.")
            continue
        older = " (older figures, not from this run)" if s["run"] is not None and s["status"] != "ok" else ""
        smoke = " Smoke figures (--quick): not for comparison." if s["quick"] else ""
        lines += [f"Figures from {s['generated_at'] or 'an unknown time'}{older}.{smoke}",
                  f"Machine: {s['machine']}.", ""]
        if s["error"]:
            lines.append(f"**{s['error']}**")
        else:
            lines += _md_table(s["columns"], s["rows"])
    return "\n".join(lines) + "\n"


def write_summary(quick: bool, runs: dict[str, dict]) -> Path:
    markdown, data = summarize(load_results(quick), runs)
    out_dir = TMP if quick else RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.md").write_text(markdown)
    (out_dir / "summary.json").write_text(json.dumps({**data, "quick": quick}, indent=2) + "\n")
    return out_dir / "summary.md"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smoke runs where a script supports it; results/tmp/")
    p.add_argument("--only", help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per benchmark before it is stopped")
    p.add_argument("--summary-only", action="store_true", help="run nothing; summarize the existing result files")
    args = p.parse_args(argv)
    names = [n for n in (args.only.split(",") if args.only else BENCHMARKS) if n]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        sys.exit(f"unknown benchmark(s) {unknown}; known: {list(BENCHMARKS)}")
    runs: dict[str, dict] = {}
    if not args.summary_only:
        order = [n for n in BENCHMARKS if n in names]
        if args.quick:
            order = sorted(order, key=lambda n: n not in CLUSTER_BENCHMARKS)  # stable: cluster benchmarks first
        shared = args.quick and any(n in CLUSTER_BENCHMARKS for n in order)
        steps = TMP / "logs" / "steps.tsv"  # every command each benchmark ran, with its seconds
        steps.parent.mkdir(parents=True, exist_ok=True)
        steps.write_text("benchmark\tseconds\tcommand\n")
        os.environ[STEPS_FILE_ENV] = str(steps)
        try:
            if shared:
                shared_cluster("up")
            for name in order:
                if shared and name not in CLUSTER_BENCHMARKS and SHARED_CLUSTER_ENV in os.environ:
                    shared_cluster("down")
                runs[name] = run_one(name, args.quick, args.timeout)
        finally:
            if SHARED_CLUSTER_ENV in os.environ:
                shared_cluster("down")
    path = write_summary(args.quick, runs)
    say(f"\n{path.read_text()}\n(written to {path} and {path.with_suffix('.json')})")
    return 1 if any(r["status"] != "ok" for r in runs.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
