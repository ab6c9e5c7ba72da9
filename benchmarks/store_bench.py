"""Stores that run for weeks: files per hour, range reads against history, label provenance, a flooded monitor.

    python -m benchmarks.store_bench [--quick] [--out benchmarks/results/store.json]

No Ray cluster: each part drives the real components (``foundry.storage.tables.HourlyTable`` through
``LiveStore``/``FeedbackStore``, ``foundry.ops.maintenance.maintain``, ``LabelLedger``, ``DriftMonitor``)
in this process, with simulated time where an hour or a month of traffic would otherwise take that long.

1. **files per hour** (``files_per_hour``): one hour of 300 requests/s with a label for each. Live rows
   are written as the monitor writes them (one file per ``storage.tables.live_flush_s``), labels as two
   replicas write them (one file per replica per ``serve.feedback.flush_s``), and the monitor's
   maintenance runs every ``maintain_every_s`` (simulated clock). Reported: files written during the
   hour, and files stored for that hour once it is compacted (what a listing, a read and a bucket
   bill see). Before (one file per /feedback request and one per sink flush): about 15,000 an hour.
2. **range reads** (``read_ratio_30d_vs_1h``): the last hour of labels read with ``read_feedback(since=
   now - 1 h)`` from a store holding 1 hour, then 30 days of compacted history (``--rows-per-hour``
   labels an hour); best of ``--repeats``. The full read (what every restart, re-base and retrain
   check did before) is timed too.
3. **label provenance**: a ledger that saw 10,000 answers is offered 10,000 forged ids, 10,000 repeats
   and the 10,000 real ones; the figures are what it accepted, and its claims per second.
4. **a flooded monitor** (``monitor_rss_growth_mib``): a ``DriftMonitor`` with ``drift=online`` (about
   1 ms a row) offered 3,000 rows/s for ``--flood-s`` seconds; this process's RSS is sampled every 5 s.
   Growth is the last sample minus the one after ``--flood-warmup-s``. Bounded queues sample out what a
   round cannot absorb, and the counts say how much.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.machine_info import host, result_header, write_result  # noqa: E402
from foundry import config  # noqa: E402
from foundry.config import Task  # noqa: E402
from foundry.drift.live_store import LiveStore  # noqa: E402
from foundry.ops.maintenance import maintain  # noqa: E402
from foundry.serving.feedback import FeedbackStore, read_feedback  # noqa: E402
from foundry.serving.ledger import LabelLedger, digests  # noqa: E402

MIB = 2**20
RATE = 300  # requests (= rows, one row each) per second
HOUR0 = datetime(2026, 11, 2, 10, tzinfo=timezone.utc)


def say(msg: str) -> None:
    print(msg, flush=True)


# ---- 1. files per hour --------------------------------------------------------------------------------
def files_per_hour(root: Path, cfg) -> dict:
    live, feedback = LiveStore(str(root), "churn"), FeedbackStore(str(root), "churn", Task.binary)
    t = cfg.storage.tables
    live_flush, label_flush, replicas = t.live_flush_s, cfg.serve.feedback.flush_s, 2
    written = {"live": 0, "feedback": 0}
    step = min(live_flush, label_flush)
    next_live = next_label = next_maintain = 0.0
    seq = 0
    for k in range(int(3600 / step)):
        s = k * step
        now = HOUR0 + timedelta(seconds=s)
        if s >= next_live:
            n = int(RATE * live_flush)
            live.write(pd.DataFrame({"request_id": [f"r{seq + i}" for i in range(n)],
                                     "received_at": [pd.Timestamp(now)] * n, "age": np.arange(n, dtype=float)}), now)
            written["live"] += 1
            next_live += live_flush
        if s >= next_label:
            for _ in range(replicas):
                n = int(RATE * label_flush / replicas)
                feedback.write_many([([{"request_id": f"r{seq + i}", "label": "1"} for i in range(n)], "v1", None)],
                                    now)
                written["feedback"] += 1
            next_label += label_flush
        if s >= next_maintain and t.maintain_every_s:
            maintain(cfg, now=now.timestamp())
            next_maintain += t.maintain_every_s
        seq += int(RATE * step)
    written_total = sum(written.values())
    maintain(cfg, now=(HOUR0 + timedelta(hours=1, seconds=t.compact_after_s + 1)).timestamp())
    stored = {"live": live.table.file_count(), "feedback": feedback.table.file_count()}
    return {"rate_requests_per_s": RATE, "replicas": replicas, "live_flush_s": live_flush,
            "feedback_flush_s": label_flush, "maintain_every_s": t.maintain_every_s,
            "files_written_in_the_hour": written, "files_written_per_hour": written_total,
            "files_stored_per_hour": stored, "files_per_hour": sum(stored.values()),
            "before": "about 15,000 files an hour (one per /feedback request, one per sink flush), never merged"}


# ---- 2. range reads ---------------------------------------------------------------------------------------
def history(root: Path, hours: int, rows_per_hour: int, end: datetime) -> None:
    store = FeedbackStore(str(root), "churn", Task.binary)
    for h in range(hours):
        at = end - timedelta(hours=hours - h) + timedelta(minutes=30)
        ids = [uuid.uuid4().hex for _ in range(rows_per_hour)]
        store.write_many([([{"request_id": i, "label": "1"} for i in ids], "v1", None)], at)


def timed(fn, repeats: int) -> tuple[float, int]:
    best, rows = float("inf"), 0
    for _ in range(repeats):
        started = time.perf_counter()
        rows = len(fn())
        best = min(best, time.perf_counter() - started)
    return best, rows


def range_reads(tmp: Path, rows_per_hour: int, days: int, repeats: int) -> dict:
    end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    out = {"rows_per_hour": rows_per_hour, "days": days, "repeats": repeats}
    since = end - timedelta(hours=1)
    for name, hours in (("1h", 1), (f"{days}d", 24 * days)):
        root = tmp / f"reads-{name}"
        say(f"  writing {hours} hours of labels ({hours * rows_per_hour:,} rows)")
        history(root, hours, rows_per_hour, end)
        seconds, rows = timed(lambda root=root: read_feedback(str(root), "churn", since=since), repeats)
        out[f"read_last_hour_s_{name}"] = round(seconds, 4)
        out[f"rows_read_{name}"] = rows
        if hours > 1:
            full, full_rows = timed(lambda root=root: read_feedback(str(root), "churn"), 1)
            out[f"full_read_s_{name}"] = round(full, 3)
            out[f"full_read_rows_{name}"] = full_rows
    out["read_ratio_30d_vs_1h"] = round(out[f"read_last_hour_s_{days}d"] / out["read_last_hour_s_1h"], 2)
    return out


# ---- 3. label provenance -------------------------------------------------------------------------------
def provenance(n: int = 10_000) -> dict:
    ledger = LabelLedger(window_s=86_400, max_ids=10**7)
    real = [uuid.uuid4().hex for _ in range(n)]
    ledger.answered(digests(real))
    forged = [uuid.uuid4().hex for _ in range(n)]
    accepted = {"forged": 0, "first": 0, "repeated": 0}
    started = time.perf_counter()
    for i in range(0, n, 100):  # requests of 100 labels, as a client batches them
        accepted["forged"] += ledger.claim(digests(forged[i:i + 100])).count("ok")
        accepted["first"] += ledger.claim(digests(real[i:i + 100])).count("ok")
        accepted["repeated"] += ledger.claim(digests(real[i:i + 100])).count("ok")
    seconds = time.perf_counter() - started
    return {"answered": n, "forged_offered": n, "forged_accepted": accepted["forged"], "real_accepted":
            accepted["first"], "repeated_offered": n, "repeated_accepted": accepted["repeated"],
            "labels_for_unknown_or_repeated_ids_accepted": accepted["forged"] + accepted["repeated"],
            "claims_per_s": round(3 * n / seconds)}


# ---- 4. a flooded monitor --------------------------------------------------------------------------------
def rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / MIB


def flood(tmp: Path, seconds: int, warmup_s: int, rate: int) -> dict:
    import logging

    from foundry.drift.detectors import build_suite
    from foundry.drift.monitor import DriftMonitor
    from foundry.drift.monitor_config import monitor_config
    from foundry.models.predictor import Predictor
    from foundry.serving.inference import live_columns
    from tests.versions import build_version_dir

    logging.getLogger("foundry.drift.monitor").setLevel(logging.ERROR)  # no Jobs API here: retrain is off anyway
    root = tmp / "flood"
    cfg = config.load([f"storage.root={root}", "model_name=churn", "drift=online", "drift.retrain.enabled=false"])
    say("  building a model version and its drift detectors (drift=online)")
    registry = cfg.storage.layout.open_registry()
    out = build_version_dir(cfg, tmp / "flood-version")  # no evaluation: that is Ray Data, and no Ray runs here
    build_suite(cfg.drift.detectors, out, "churn", say=lambda _: None).save(out)
    version = registry.register("churn", out, {"task": cfg.data.task.value}).version
    registry.set_alias("churn", "production", version)
    predictor = Predictor.from_dir(registry.fetch("churn", version))
    from foundry import datasets

    features = [f.name for f in cfg.data.features]
    pool = []
    for seed in range(10):
        df = datasets.generate("churn", "baseline", rate // 10, seed=seed)[features]
        pool.append(live_columns(df, predictor.predict(df), [f"p{seed}-{i}" for i in range(len(df))], version))
    from foundry.drift import reference

    reference.served_version = lambda _cfg: version  # no Serve here to ask which version answers
    monitor = DriftMonitor(monitor_config(cfg).to_container(), start=False)
    monitor._metrics = False  # no Ray here: Ray's metrics would look for a cluster
    threading.Thread(target=monitor._run, name="foundry-drift-monitor", daemon=True).start()
    acks = {"taken": 0, "dropped": 0, "full": 0}
    samples = []
    stop = threading.Event()

    def feed():
        k = 0
        while not stop.is_set():
            tick = time.monotonic()
            batch = dict(pool[k % len(pool)])
            batch["request_id"] = np.asarray([f"{k}-{i}" for i in range(len(batch["request_id"]))], dtype=object)
            batch["received_at"] = np.full(len(batch["request_id"]), time.time())
            ack = monitor.ingest(batch)
            acks["taken"] += ack["taken"]
            acks["dropped"] += ack["dropped"]
            acks["full"] += ack["full"]
            k += 1
            stop.wait(max(0.0, 0.1 - (time.monotonic() - tick)))  # 10 batches a second

    feeder = threading.Thread(target=feed, daemon=True)
    started = time.monotonic()
    feeder.start()
    while time.monotonic() - started < seconds:
        time.sleep(5)
        samples.append({"t_s": round(time.monotonic() - started), "rss_mib": round(rss_mib(), 1),
                        "queued_rows": monitor._queue.rows, "unwritten_rows": monitor.live_writer.buffered})
        say(f"    t={samples[-1]['t_s']:>4} s  rss {samples[-1]['rss_mib']:.0f} MiB  queued {samples[-1]['queued_rows']}"
            f"  taken {acks['taken']:,}  dropped {acks['dropped']:,}")
    stop.set()
    feeder.join()
    monitor.stop()
    status = monitor.status()
    after = [s for s in samples if s["t_s"] >= warmup_s]
    growth = after[-1]["rss_mib"] - after[0]["rss_mib"] if len(after) >= 2 else None
    offered = acks["taken"] + acks["dropped"]
    return {"rows_per_s_offered": rate, "seconds": seconds, "warmup_s": warmup_s, "drift": "online",
            "max_queued_rows": cfg.drift.monitor.max_queued_rows, "offered": offered, "taken": acks["taken"],
            "dropped": acks["dropped"], "full_acks": acks["full"], "rows_absorbed": status["counters"]["rows"],
            "absorbed_per_s": round(status["counters"]["rows"] / seconds), "rows_dropped_counter":
            status["counters"]["rows_dropped"], "monitor_rss_growth_mib": None if growth is None else round(growth, 1),
            "max_queued_rows_seen": max(s["queued_rows"] for s in samples), "samples": samples}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer days and a shorter flood (results/tmp/)")
    p.add_argument("--rows-per-hour", type=int, default=None, help="labels per hour of history (default 5,000)")
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--flood-rate", type=int, default=3000, help="rows/s offered to the monitor (default 3,000)")
    p.add_argument("--flood-s", type=int, default=None, help="seconds of flood (default 300; quick 20)")
    p.add_argument("--flood-warmup-s", type=int, default=None, help="default 60; quick 10")
    p.add_argument("--out", help="default benchmarks/results/store.json (quick: results/tmp/store.json)")
    args = p.parse_args(argv)
    started, load_before = time.time(), os.getloadavg()
    days = 3 if args.quick else args.days
    rows_per_hour = args.rows_per_hour or (1000 if args.quick else 5000)
    flood_s = args.flood_s or (20 if args.quick else 300)
    warmup = args.flood_warmup_s or (10 if args.quick else 60)
    tmp = Path(tempfile.mkdtemp(prefix="store-bench-"))
    try:
        # Quick: replicas flush labels every 5 s instead of 0.5 s (a tenth of the files to write; the
        # compaction that keeps a handful per hour is the same).
        cfg = config.load([f"storage.root={tmp / 'hour'}", "model_name=churn",
                           *(["serve.feedback.flush_s=5"] if args.quick else [])])
        say("1. files per hour at 300 requests/s (simulated clock)")
        files = files_per_hour(tmp / "hour", cfg)
        say(f"   written {files['files_written_per_hour']:,}, stored after compaction {files['files_per_hour']}")
        say(f"2. reading the last hour of labels: 1 hour vs {days} days stored")
        reads = range_reads(tmp, rows_per_hour, days, args.repeats)
        say(f"   {reads['read_last_hour_s_1h'] * 1000:.1f} ms vs {reads[f'read_last_hour_s_{days}d'] * 1000:.1f} ms "
            f"(ratio {reads['read_ratio_30d_vs_1h']}); a full read of {days} days: {reads[f'full_read_s_{days}d']:.2f} s")
        say("3. label provenance")
        labels = provenance()
        say(f"   forged accepted {labels['forged_accepted']}, repeats accepted {labels['repeated_accepted']}, "
            f"real accepted {labels['real_accepted']:,}; {labels['claims_per_s']:,} claims/s")
        say(f"4. a monitor (drift=online) offered {args.flood_rate:,} rows/s for {flood_s} s")
        flooded = flood(tmp, flood_s, warmup, args.flood_rate)
        say(f"   RSS growth after warm-up {flooded['monitor_rss_growth_mib']} MiB; absorbed {flooded['absorbed_per_s']}"
            f" rows/s, sampled out {flooded['dropped']:,} of {flooded['offered']:,}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    machine = {**host(), "pyarrow": pa.__version__}
    result = {**result_header("store", started, args.quick, load_before, machine),
              "files": files, "reads": reads, "labels": labels, "monitor_flood": flooded,
              "files_per_hour": files["files_per_hour"], "read_ratio_30d_vs_1h": reads["read_ratio_30d_vs_1h"],
              "labels_for_unknown_or_repeated_ids_accepted": labels["labels_for_unknown_or_repeated_ids_accepted"],
              "monitor_rss_growth_mib": flooded["monitor_rss_growth_mib"]}
    out = args.out or str(REPO / "benchmarks" / "results" / ("tmp/store.json" if args.quick else "store.json"))
    say(f"wrote {write_result(out, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
