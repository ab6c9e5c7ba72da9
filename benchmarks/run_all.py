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

from benchmarks.harness import PY, say  # noqa: E402

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


RESULT_FILE = {"rollout": "heal"}  # rollout_bench adds its keys to heal.json (the issue's result file)


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


# ---- headline figures per benchmark ----------------------------------------------------------------------

def _num(value, fmt: str = ",.0f") -> str:
    return "-" if value is None else format(value, fmt)


def serve_table(r: dict) -> tuple[list[str], list[list[str]]]:
    head = ["setting", "req/s (best with p99 <= SLO)", "concurrency", "p99 ms", "x uvicorn 1 proc", "x uvicorn 2 proc"]
    rows = []
    for rows_per_request, best in (("1 row", r.get("best") or {}), ("32 rows", r.get("best_32rows") or {})):
        for name, label in (("uvicorn_1proc", "plain uvicorn, 1 process"), ("uvicorn_2proc", "plain uvicorn, 2 processes")):
            u = best.get(name) or {}
            rows.append([f"{label}, {rows_per_request}", _num(u.get("rps"), ",.1f"), _num(u.get("concurrency")),
                         _num(u.get("p99_ms"), ".1f"), "-", "-"])
    for setting, p in (r.get("per_setting") or {}).items():
        p = p or {}
        rows.append([f"Serve {setting}", _num(p.get("rps"), ",.1f"), _num(p.get("concurrency")),
                     _num(p.get("p99_ms"), ".1f"), _num(p.get("vs_uvicorn"), ".2f"), _num(p.get("vs_uvicorn_2proc"), ".2f")])
    return head, rows


def drift_table(r: dict) -> tuple[list[str], list[list[str]]]:
    configs = r.get("configs") or {}
    scenarios = list(dict.fromkeys(s for c in configs.values() for s in (c.get("scenarios") or {})))
    head = ["conf/drift option", "false episodes / 1M clean rows (95% upper)", "monitor CPU ms / 1,000 rows",
            *[f"{s}: median delay (rows); episodes" for s in scenarios]]
    rows = []
    for name, c in configs.items():
        cells = []
        for s in scenarios:
            d = (c.get("scenarios") or {}).get(s) or {}
            delay = "not detected" if d.get("detected") == 0 else _num(d.get("median_delay_rows"), "g")
            cells.append(f"{delay}; {_num(d.get('episodes_started'))}/{_num(d.get('runs'))}")
        rows.append([name, f"{_num(c.get('false_episodes_per_million'), 'g')} "
                     f"({_num(c.get('false_episodes_per_million_ci_high'), 'g')})",
                     _num(c.get("monitor_cpu_ms_per_1000_rows"), ".1f"), *cells])
    return head, rows


def heal_table(r: dict) -> tuple[list[str], list[list[str]]]:
    tax = r.get("monitoring_tax") or {}
    heal = r.get("time_to_heal") or {}
    rows = [["Serve req/s, monitor off / on", f"{_num(tax.get('rps_off'))} / {_num(tax.get('rps_on'))}"],
            ["monitoring tax", "-" if tax.get("tax") is None else f"{100 * tax['tax']:.1f}%"]]
    if heal.get("healed"):
        rows += [["time to heal (onset -> new version serving)", f"{heal['total_s']:.0f} s"],
                 ["detection delay", f"{_num(heal.get('detection_delay_rows'))} drifted rows"]]
        rows += [[f"stage: {stage}", f"{seconds:.1f} s"] for stage, seconds in (heal.get("stages_s") or {}).items()]
        rows.append(["accuracy before drift / during / after healing",
                     " / ".join(_num(heal.get(k), ".3f") for k in
                                ("accuracy_before_drift", "accuracy_during_drift", "accuracy_after_heal"))])
    else:
        rows.append(["time to heal", "not healed" + (f" ({heal['error']})" if heal.get("error") else "")])
    for name, s in (r.get("scenarios") or {}).items():  # heal_bench --scenarios: per scenario, over seeds
        mean = {k: (s.get(k) or {}).get("mean") for k in ("accuracy_after", "accuracy_oracle", "retrains",
                                                          "time_to_heal_s")}
        rows.append([f"{name}: healed, accuracy after (oracle), retrains, time to heal",
                     f"{s['healed']['count']}/{s['healed']['runs']}, {_num(mean['accuracy_after'], '.3f')} "
                     f"({_num(mean['accuracy_oracle'], '.3f')}), {_num(mean['retrains'], '.1f')}, "
                     f"{_num(mean['time_to_heal_s'])} s"])
    return ["figure", "value"], rows


def rollout_table(r: dict) -> tuple[list[str], list[list[str]]]:
    shadow = ((r.get("rollouts") or {}).get("shadow") or {})
    rows = [["bad challenger under canary: share of traffic it saw", _num(r.get("canary_bad_challenger_traffic_share"),
                                                                        ".4f")],
            ["labelled rows until it was rolled back", _num(r.get("canary_rows_to_rollback"))],
            ["good challenger: labelled rows to 100%", _num(r.get("canary_rows_to_full"))],
            ["shadow: champion p99 overhead (c=2 / c=16)",
             " / ".join("-" if (shadow.get(c) or {}).get("p99_overhead") is None else
                        f"{100 * shadow[c]['p99_overhead']:+.1f}%" for c in ("c2", "c16"))],
            ["false rollbacks of a truly better challenger", str(r.get("false_rollbacks", "-"))],
            ["failed requests during the roll-outs", _num(r.get("failed_requests"))]]
    return ["figure", "value"], rows


def soak_table(r: dict) -> tuple[list[str], list[list[str]]]:
    s = r.get("settings") or {}
    t = r.get("totals") or {}
    summary = r.get("swap_summary") or {}
    swaps = r.get("swaps") or []
    mon = r.get("monitor") or {}
    mem = r.get("memory") or {}
    worst = t.get("worst_p99_slice") or {}
    rows = [["load", f"{_num(s.get('duration_s'))} s in {_num(s.get('slice_s'))} s slices, wrk c={s.get('concurrency', '?')}, "
                     f"1-row POST /predict, {s.get('replicas', '?')} replicas, drift monitor on (retrain off)"],
            ["requests (errors)", f"{_num(t.get('requests'))} ({_num(t.get('errors'))})"],
            ["throughput req/s: overall (slowest / fastest slice)",
             f"{_num(t.get('rps'), ',.1f')} ({_num(t.get('rps_min_slice'), ',.1f')} / {_num(t.get('rps_max_slice'), ',.1f')})"],
            ["latency ms: p50 / p99 / max, overall", " / ".join(_num(t.get(k), ".1f") for k in ("p50_ms", "p99_ms", "max_ms"))],
            ["worst slice p99 ms (slice start)", f"{_num(worst.get('p99_ms'), '.1f')} (at {_num(worst.get('start_s'))} s)"]]
    if swaps:
        rows.append([f"model swaps in place (every {_num(summary.get('every_s'))} s)",
                     f"{_num(summary.get('ok'))} of {_num(summary.get('count'))} ok; same replica processes: "
                     f"{'yes' if summary.get('replicas_kept') else 'NO'}; CLI at most {_num(summary.get('cli_s_max'), '.1f')} s; "
                     f"{sum(sw.get('errors_in_slices_during', 0) for sw in swaps)} errors around them, "
                     f"{sum(sw.get('old_answers_after', 0) for sw in swaps)} answers of a replaced version after them"])
    else:
        rows.append(["model swaps in place", "NOT OK (none ran)"])
    c = mon.get("counters") or {}
    sink = mon.get("sink") or {}
    dropped = "-" if "error" in sink or not sink else _num(sink.get("dropped", 0))
    rows.append(["monitor: rows received / test rounds (flagged drift) / rows dropped by the sinks",
                 f"{_num(c.get('rows'))} / {_num(c.get('rounds'))} ({_num(mon.get('rounds_drifted'))}) / {dropped}"])
    w = mem.get("worst") or {}
    rows.append(["monitor actor RSS growth", f"{_num(r.get('monitor_rss_growth_mib'), '+.1f')} MiB"])
    rows += [["memory RSS of the cluster's processes, start -> end",
              f"{_num(mem.get('total_start_rss_mib'))} -> {_num(mem.get('total_end_rss_mib'))} MiB "
              f"({_num(mem.get('total_growth_rss_mib'), '+,.0f')} MiB; {_num(mem.get('processes_start'))} -> "
              f"{_num(mem.get('processes_end'))} processes)"],
             ["largest growth against the bound", f"{w.get('process', '-')}: {_num(w.get('start_rss_mib'), ',.0f')} -> "
              f"{_num(w.get('end_rss_mib'), ',.0f')} MiB ({_num(w.get('growth_rss_mib'), '+.1f')} MiB, allowed "
              f"{_num(w.get('allowed_mib'), '.0f')})"],
             ["memory bound verdict", f"{str(mem.get('verdict', '-')).upper()}: {mem.get('bound', '-')}"
              + (f"; breached by {', '.join(mem['breaches'])}" if mem.get("breaches") else "")]]
    return ["figure", "value"], rows


def data_table(r: dict) -> tuple[list[str], list[list[str]]]:
    s = r.get("settings") or {}
    head = [f"path ({_num(s.get('rows'))} rows, {s.get('files', '?')} Parquet files, {s.get('cores', '?')} cores)",
            "CPUs", "seconds", "rows/s", "x pandas", "same output as pandas"]
    rows = []
    for p in r.get("points", []):
        same = p.get("same_output_as_pandas")
        rows.append(["pandas, one process" if p.get("path") == "pandas" else "Ray Data (pipeline.prepare)",
                     _num(p.get("cpus")), _num(p.get("seconds"), ".2f"), _num(p.get("rows_per_s")),
                     _num(p.get("vs_pandas"), ".2f"), "-" if same is None else ("yes" if same.get("all") else "NO")])
    return head, rows


def train_table(r: dict) -> tuple[list[str], list[list[str]]]:
    s = r.get("settings") or {}
    head = [f"runner ({_num(s.get('train_rows'))} training rows, {s.get('epochs', '?')} epochs, "
            f"batch {s.get('batch_size', '?')})", "rows/s", "s/epoch", "x plain 1 thread", "x plain all cores"]
    rows = []
    for p in r.get("points", []):
        name = (f"plain PyTorch, {p.get('threads_per_worker')} thread(s)" if p.get("runner") == "plain_torch"
                else f"Ray Train, {p.get('workers')} worker(s) x 1 CPU")
        rows.append([name, _num(p.get("rows_per_s")), _num(p.get("s_per_epoch"), ".2f"),
                     _num(p.get("vs_plain_1_thread"), ".2f"), _num(p.get("vs_plain_all_cores"), ".2f")])
    return head, rows


def store_table(r: dict) -> tuple[list[str], list[list[str]]]:
    f, rd, lab, fl = (r.get(k) or {} for k in ("files", "reads", "labels", "monitor_flood"))
    days = rd.get("days", 30)
    return ["figure", "value"], [
        ["files per hour at 300 req/s, live + feedback: written / stored after compaction",
         f"{_num(f.get('files_written_per_hour'))} / {_num(r.get('files_per_hour'))}"],
        [f"last hour of labels: read with 1 hour / {days} days stored (ratio)",
         f"{_num(rd.get('read_last_hour_s_1h', 0) * 1000, '.1f')} / {_num(rd.get(f'read_last_hour_s_{days}d', 0) * 1000, '.1f')}"
         f" ms ({_num(r.get('read_ratio_30d_vs_1h'), '.2f')})"],
        ["labels for unknown or repeated ids accepted", _num(r.get("labels_for_unknown_or_repeated_ids_accepted"))],
        [f"monitor (drift=online) at {_num(fl.get('rows_per_s_offered'))} rows/s: RSS growth after warm-up",
         f"{_num(r.get('monitor_rss_growth_mib'), '+.1f')} MiB; absorbed {_num(fl.get('absorbed_per_s'))} rows/s, "
         f"sampled out {_num(fl.get('dropped'))}"]]


TABLES = {"serve": serve_table, "store": store_table, "drift": drift_table, "heal": heal_table, "rollout": rollout_table, "soak": soak_table, "data": data_table,
          "train": train_table}


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
        for name in [n for n in BENCHMARKS if n in names]:
            runs[name] = run_one(name, args.quick, args.timeout)
    path = write_summary(args.quick, runs)
    say(f"\n{path.read_text()}\n(written to {path} and {path.with_suffix('.json')})")
    return 1 if any(r["status"] != "ok" for r in runs.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
