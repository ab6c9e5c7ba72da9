"""The headline figures of each benchmark's result file, as (columns, rows) for run_all's summary.md: one
function per benchmark, reading only the keys it shows and printing "-" for a figure a run lacks."""

from __future__ import annotations


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
