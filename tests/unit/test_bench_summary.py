"""The benchmark summary (benchmarks/run_all.py): headline figures, and failed or missing benchmarks said so.

The result dicts are small hand-made copies of the shapes the benchmarks write (benchmarks/results/*.json).
"""

from __future__ import annotations

import json

import pytest

from benchmarks import run_all

MACHINE = {"cpu": "AMD EPYC", "cores": 2, "memory_gib": 23.5, "python": "3.11.7", "ray": "2.60.0",
           "torch": "2.13.0+cpu", "load_average_before": [1.95, 1.5, 1.2], "load_average_after": [1.13, 1.1, 1.0]}


def serve_result() -> dict:
    def uv(workers, rps, conc, p99):
        return {"server": "uvicorn", "variant": f"{workers}proc-before", "app": "standalone", "rows": 1,
                "workers": workers, "concurrency": conc, "rps": rps, "p50_ms": 5.0, "p99_ms": p99, "valid": True}

    shipped = {"server": "serve", "variant": "haproxy", "app": "shipped", "rows": 1, "concurrency": 32,
               "rps": 1681.1, "p50_ms": 17.9, "p99_ms": 37.64, "valid": True}
    return {"ratio_vs_uvicorn_shipped": 4.59, "ratio_vs_uvicorn_2proc": 2.32, "ratio_vs_uvicorn": 4.59,
            "best": {"uvicorn_1proc": uv(1, 366.2, 16, 43.1), "uvicorn_2proc": uv(2, 723.7, 16, 40.76),
                     "serve_shipped": shipped, "serve_python_proxy": None},
            "best_32rows": {"uvicorn_1proc": None, "uvicorn_2proc": uv(2, 592.6, 4, 10.63)},
            "per_setting": {"haproxy, shipped, 1 row": {"rps": 1681.1, "rows_per_s": 1681, "concurrency": 32,
                                                        "p99_ms": 37.64, "vs_uvicorn": 4.59, "vs_uvicorn_2proc": 2.32},
                            "python-proxy, shipped, 1 row": None},
            "slo_p99_ms": 50.0, "generated_at": "2026-11-24T21:22:31+00:00", "elapsed_s": 367, "machine": MACHINE,
            "points": []}


def drift_result() -> dict:
    def scenario(median, detected=20, episodes=20):
        return {"runs": 20, "detected": detected, "median_delay_rows": median, "episodes_started": episodes}

    return {"generated_at": "2026-11-30T00:46:21+00:00", "quick": False, "machine": MACHINE, "seeds": 20,
            "configs": {
                "default": {"false_episodes_per_million": 0.0, "false_episodes_per_million_ci_high": 0.999,
                            "monitor_cpu_ms_per_1000_rows": 12.6,
                            "scenarios": {"covariate_shift": scenario(155, episodes=0), "concept_shift": scenario(400)}},
                "windows": {"false_episodes_per_million": 30.0, "false_episodes_per_million_ci_high": 61.2,
                            "monitor_cpu_ms_per_1000_rows": 87.2,
                            "scenarios": {"covariate_shift": scenario(500), "concept_shift": scenario(None, detected=0)}}}}


def heal_result() -> dict:
    return {"benchmark": "heal", "when": "2026-11-25T01:05:42+00:00",
            "machine": {**MACHINE, "load_average": [15.8, 12.0, 9.0]},
            "monitoring_tax": {"rps_off": 287.55, "rps_on": 293.95, "tax": -0.0223},
            "time_to_heal": {"healed": True, "total_s": 182.49, "detection_delay_rows": 820,
                             "stages_s": {"detect (onset -> drift_detected)": 3.21, "train (Ray Train)": 26.67},
                             "accuracy_before_drift": 0.803, "accuracy_during_drift": 0.668,
                             "accuracy_after_heal": 0.789}}


def soak_result(verdict: str = "pass") -> dict:
    breaches = [] if verdict == "pass" else ["ray::DriftMonitor"]
    return {"benchmark": "soak", "generated_at": "2026-11-25T02:30:00+00:00", "quick": False, "machine": MACHINE,
            "settings": {"duration_s": 300, "slice_s": 10, "concurrency": 16, "replicas": 2},
            "totals": {"requests": 84_312, "errors": 0, "rps": 281.04, "rps_min_slice": 240.5, "rps_max_slice": 310.2,
                       "p50_ms": 52.61, "p99_ms": 137.65, "max_ms": 477.6,
                       "worst_p99_slice": {"index": 15, "start_s": 150.4, "p99_ms": 319.43}},
            "swap_summary": {"count": 5, "every_s": 300, "ok": 5, "replicas_kept": True, "all_ok": True,
                             "cli_s_max": 4.52},
            "swaps": [{"ok": True, "requested_at_s": 300.0 * k, "cli_s": 4.52, "errors_in_slices_during": 0,
                       "old_answers_after": 0, "worst_p99_ms_during": 319.43} for k in range(1, 6)],
            "monitor_rss_growth_mib": 10.1,
            "monitor": {"counters": {"rows": 85_000, "rounds": 170}, "rounds_drifted": 3,
                        "sink": {"sent": 85_000, "dropped": 0}},
            "memory": {"verdict": verdict, "breaches": breaches, "bound": "max(50 MiB, 20%) per process",
                       "total_start_rss_mib": 4063.3, "total_end_rss_mib": 4168.1, "total_growth_rss_mib": 104.8,
                       "processes_start": 26, "processes_end": 26,
                       "worst": {"process": "ray::DriftMonitor", "start_rss_mib": 704.5, "end_rss_mib": 785.3,
                                 "growth_rss_mib": 80.9, "allowed_mib": 140.9}}}


def store_result() -> dict:
    return {"benchmark": "store", "generated_at": "2026-11-30T21:00:00+00:00", "quick": False, "machine": MACHINE,
            "files": {"files_written_per_hour": 14760}, "files_per_hour": 4,
            "reads": {"days": 30, "read_last_hour_s_1h": 0.0021, "read_last_hour_s_30d": 0.0025},
            "read_ratio_30d_vs_1h": 1.19, "labels_for_unknown_or_repeated_ids_accepted": 0,
            "monitor_flood": {"rows_per_s_offered": 3000, "absorbed_per_s": 2980, "dropped": 0},
            "monitor_rss_growth_mib": 2.5}


def data_result(when: str = "2026-11-25T03:00:00+00:00", pandas_rows_per_s: int = 250_000) -> dict:
    same = {"split_rows": True, "fingerprint": True, "all": True}
    return {"benchmark": "data", "generated_at": when, "quick": False, "machine": MACHINE,
            "settings": {"rows": 2_000_000, "files": 16, "cores": 2},
            "points": [{"path": "pandas", "cpus": 1, "seconds": 8.0, "rows_per_s": pandas_rows_per_s, "vs_pandas": 1.0},
                       {"path": "ray_data", "cpus": 2, "seconds": 40.0, "rows_per_s": 50_000, "vs_pandas": 0.2,
                        "same_output_as_pandas": same}]}


def train_result(quick: bool = False) -> dict:
    return {"benchmark": "train", "generated_at": "2026-11-25T04:00:00+00:00", "quick": quick, "machine": MACHINE,
            "settings": {"rows": 200_000, "train_rows": 160_420, "epochs": 3, "batch_size": 256},
            "points": [{"runner": "ray_train", "workers": 2, "threads_per_worker": None, "rows_per_s": 61_000,
                        "s_per_epoch": 2.63, "vs_plain_1_thread": 0.55, "vs_plain_all_cores": 0.8},
                       {"runner": "plain_torch", "workers": 1, "threads_per_worker": 1, "rows_per_s": 110_000,
                        "s_per_epoch": 1.46, "vs_plain_1_thread": 1.0, "vs_plain_all_cores": 1.44}]}


def rollout_result() -> dict:
    """heal.json with rollout_bench.py's keys (the two share the file)."""
    return {**heal_result(), "canary_bad_challenger_traffic_share": 0.0508, "canary_rows_to_rollback": 160,
            "canary_rows_to_full": 285, "shadow_p99_overhead": 0.0121, "false_rollbacks": "0 in 20",
            "failed_requests": 0, "rollouts": {"shadow": {"c2": {"p99_overhead": 0.0121},
                                                          "c16": {"p99_overhead": -0.004}}}}


def all_results() -> dict:
    return {"serve": serve_result(), "drift": drift_result(), "heal": heal_result(), "soak": soak_result(), "store": store_result(),
            "rollout": rollout_result(), "data": data_result(), "train": train_result()}


def ok_run(name: str) -> dict:
    return {"name": name, "status": "ok", "returncode": 0, "seconds": 12.0, "log": f"logs/{name}.log"}


def cells(markdown: str, first: str) -> list[str]:
    """The cells of the table row whose first cell is ``first`` (exactly one such row)."""
    rows = [line for line in markdown.splitlines() if line.startswith(f"| {first} |")]
    assert len(rows) == 1, f"{len(rows)} rows start with {first!r}"
    return [c.strip() for c in rows[0].strip("|").split("|")]


def section_text(markdown: str, name: str) -> str:
    start = markdown.index(f"\n## {name}:")
    end = markdown.find("\n## ", start + 1)
    return markdown[start:end if end != -1 else None]


def test_every_benchmark_gets_its_headline_figures():
    runs = {name: ok_run(name) for name in run_all.BENCHMARKS}
    md, data = run_all.summarize(all_results(), runs, generated_at="2026-11-25T05:00:00+00:00")

    assert cells(md, "Serve haproxy, shipped, 1 row") == [
        "Serve haproxy, shipped, 1 row", "1,681.1", "32", "37.6", "4.59", "2.32"]
    assert cells(md, "plain uvicorn, 2 processes, 1 row")[1:] == ["723.7", "16", "40.8", "-", "-"]
    assert cells(md, "plain uvicorn, 1 process, 32 rows")[1:] == ["-", "-", "-", "-", "-"]  # none within the SLO
    assert cells(md, "Serve python-proxy, shipped, 1 row")[1:] == ["-", "-", "-", "-", "-"]
    assert cells(md, "default") == ["default", "0 (0.999)", "12.6", "155; 0/20", "400; 20/20"]
    assert cells(md, "windows")[1:] == ["30 (61.2)", "87.2", "500; 20/20", "not detected; 20/20"]
    assert cells(md, "monitoring tax") == ["monitoring tax", "-2.2%"]
    assert cells(md, "bad challenger under canary: share of traffic it saw")[1] == "0.0508"
    assert cells(md, "good challenger: labelled rows to 100%")[1] == "285"
    assert cells(md, "shadow: champion p99 overhead (c=2 / c=16)")[1] == "+1.2% / -0.4%"
    assert cells(md, "false rollbacks of a truly better challenger")[1] == "0 in 20"
    assert cells(md, "time to heal (onset -> new version serving)")[1] == "182 s"
    assert cells(md, "stage: train (Ray Train)")[1] == "26.7 s"
    assert cells(md, "pandas, one process")[1:] == ["1", "8.00", "250,000", "1.00", "-"]
    assert cells(md, "Ray Data (pipeline.prepare)")[1:] == ["2", "40.00", "50,000", "0.20", "yes"]
    assert "2,000,000 rows, 16 Parquet files, 2 cores" in md
    assert cells(md, "Ray Train, 2 worker(s) x 1 CPU")[1:] == ["61,000", "2.63", "0.55", "0.80"]
    assert cells(md, "plain PyTorch, 1 thread(s)")[1:3] == ["110,000", "1.46"]
    for name in run_all.BENCHMARKS:
        assert cells(md, name)[1] == "ok in 12 s"
    assert cells(md, "heal")[2] == "2026-11-25T01:05:42+00:00"  # heal.json says "when", not "generated_at"
    assert "Machine: AMD EPYC, 2 cores, 23.5 GiB; Python 3.11.7; ray 2.60.0; torch 2.13.0+cpu; load 1.9 -> 1.1" in md
    assert [s["status"] for s in data["benchmarks"]] == ["ok"] * len(run_all.BENCHMARKS)
    json.dumps(data)  # summary.json must be writable as is


def test_soak_headline_figures_and_verdict():
    md, _ = run_all.summarize(all_results(), {"soak": ok_run("soak")})

    assert list(run_all.BENCHMARKS).index("soak") == list(run_all.BENCHMARKS).index("heal") + 1
    assert cells(md, "requests (errors)")[1] == "84,312 (0)"
    assert cells(md, "throughput req/s: overall (slowest / fastest slice)")[1] == "281.0 (240.5 / 310.2)"
    assert cells(md, "latency ms: p50 / p99 / max, overall")[1] == "52.6 / 137.7 / 477.6"
    assert cells(md, "worst slice p99 ms (slice start)")[1] == "319.4 (at 150 s)"
    assert cells(md, "model swaps in place (every 300 s)")[1].startswith("5 of 5 ok; same replica processes: yes; CLI at most 4.5 s; 0 errors")
    assert cells(md, "monitor actor RSS growth")[1] == "+10.1 MiB"
    assert cells(md, "monitor: rows received / test rounds (flagged drift) / rows dropped by the sinks")[1] == \
        "85,000 / 170 (3) / 0"
    assert cells(md, "memory RSS of the cluster's processes, start -> end")[1].startswith("4,063 -> 4,168 MiB (+105 MiB")
    assert cells(md, "largest growth against the bound")[1] == \
        "ray::DriftMonitor: 704 -> 785 MiB (+80.9 MiB, allowed 141)"
    assert cells(md, "memory bound verdict")[1].startswith("PASS: ")

    broken = soak_result(verdict="fail")
    broken["swaps"] = []
    broken["monitor"]["sink"] = {"error": "no metrics"}
    md, _ = run_all.summarize({**all_results(), "soak": broken})
    assert cells(md, "memory bound verdict")[1].startswith("FAIL: ")
    assert cells(md, "memory bound verdict")[1].endswith("breached by ray::DriftMonitor")
    assert cells(md, "model swaps in place")[1] == "NOT OK (none ran)"
    assert cells(md, "monitor: rows received / test rounds (flagged drift) / rows dropped by the sinks")[1].endswith("/ -")


def test_missing_benchmark_is_reported_missing():
    results = {**all_results(), "train": None}
    md, data = run_all.summarize(results, {})

    train = section_text(md, "train")
    assert "**No result file**" in train
    assert "|" not in train  # no table without figures
    assert cells(md, "train")[1:] == ["not run this time", "no result file", "-"]
    assert cells(md, "data")[1:] == ["not run this time", "2026-11-25T03:00:00+00:00", "full"]
    status = {s["name"]: s["status"] for s in data["benchmarks"]}
    assert status == {"serve": "not run", "drift": "not run", "heal": "not run", "soak": "not run", "store": "not run",
                      "rollout": "not run", "data": "not run", "train": "missing"}


def test_failed_benchmark_is_reported_and_its_old_figures_marked():
    runs = {name: ok_run(name) for name in run_all.BENCHMARKS}
    runs["data"] = {"name": "data", "status": "failed", "returncode": 3, "seconds": 4.2, "log": "logs/data.log",
                    "tail": ["Traceback (most recent call last):", "RuntimeError: object store full"]}
    runs["train"] = {"name": "train", "status": "timeout", "returncode": -9, "seconds": 3600.0,
                     "log": "logs/train.log", "tail": ["epoch 1"]}
    results = {**all_results(), "data": data_result(when="2026-11-20T10:00:00+00:00"), "train": None}
    md, data = run_all.summarize(results, runs)

    assert cells(md, "data")[1] == "failed in 4 s (exit 3)"
    assert cells(md, "train")[1:3] == ["timeout in 3600 s (exit -9)", "no result file"]
    data_section = section_text(md, "data")
    assert "**FAILED in this run** (exit 3, log `logs/data.log`)" in data_section
    assert "RuntimeError: object store full" in data_section
    assert "Figures from 2026-11-20T10:00:00+00:00 (older figures, not from this run)." in data_section
    train_section = section_text(md, "train")
    assert "**TIMEOUT in this run**" in train_section and "**No result file**" in train_section
    status = {s["name"]: s["status"] for s in data["benchmarks"]}
    assert status["data"] == "failed" and status["train"] == "timeout" and status["serve"] == "ok"


def test_unreadable_result_and_smoke_figures_are_labelled():
    broken = serve_result()
    broken["per_setting"] = ["not", "a", "dict"]
    md, data = run_all.summarize({**all_results(), "serve": broken, "train": train_result(quick=True)})

    assert "**unreadable result (AttributeError" in section_text(md, "serve")
    assert "Smoke figures (--quick)" in section_text(md, "train")
    assert "Smoke figures" not in section_text(md, "data")
    assert cells(md, "train")[3] == "smoke (--quick)"


@pytest.mark.parametrize("name", list(run_all.BENCHMARKS))
def test_every_benchmark_has_a_table(name):
    assert name in run_all.TABLES
    assert (run_all.REPO / "benchmarks" / run_all.BENCHMARKS[name][0]).exists()


def test_store_headline_figures():
    md, _ = run_all.summarize(all_results(), {"store": ok_run("store")})
    assert cells(md, "files per hour at 300 req/s, live + feedback: written / stored after compaction")[1] == "14,760 / 4"
    assert cells(md, "last hour of labels: read with 1 hour / 30 days stored (ratio)")[1] == "2.1 / 2.5 ms (1.19)"
    assert cells(md, "labels for unknown or repeated ids accepted")[1] == "0"
    assert cells(md, "monitor (drift=online) at 3,000 rows/s: RSS growth after warm-up")[1].startswith("+2.5 MiB")
