"""Data preprocessing throughput: the Ray Data pipeline vs the same steps in one process.

    python -m benchmarks.data_bench [--quick] [--rows 2000000] [--files 16] [--cpus 1,2] [--repeats 3]
                                    [--out benchmarks/results/data.json]

Setup: ``--rows`` baseline churn rows (``foundry.datasets.generate("churn", "baseline", rows, seed=0)``,
16 columns) written once as ``--files`` Parquet files of equal size under ``benchmarks/results/tmp/``
and reused while rows, files and seed are unchanged. Both paths start from those files and end with the
same things in memory:
- **Ray Data**: ``foundry.data.pipeline.prepare`` as the training job calls it (``conf/data/churn.yaml``
  with ``data.source.path`` at the Parquet directory): one read, staged and profiled per block (schema
  problems, split sizes, fingerprint, the preprocessor's partial statistics, the block's lowest reference
  draws), the preprocessor fitted and the reference sample merged on the driver, the train and val splits
  encoded from the staged blocks and left in the object store (``data.materialize=true``, the default).
  The test split stays lazy in both paths (the job evaluates it later). A private Ray instance per CPU
  count (``ray.init(address="local", num_cpus=N)``, no dashboard, token auth on); its start-up and one
  warm-up ``prepare`` of the same data (worker processes started, the project imported) are not timed
  (both are reported).
- **pandas** (the single-process baseline; the name stayed, the block functions now take Arrow tables):
  one process, the whole data set as one table (``pyarrow.parquet.read_table``, multi-threaded), run
  once through the pipeline's own block functions (``blocks.stage_block``, ``merge_profiles``,
  ``preprocessor.fit``, ``reference_sample``, ``encode_block``): the same code on one block instead of
  a few. One untimed warm-up run first, as for Ray. Beside the 1-CPU Ray session it also runs with
  Arrow's pool at one thread (``ratio_1cpu_vs_one_arrow_thread``; not the issue's key): Ray gives a
  1-CPU task one thread, the default reader decodes on every core.
Throughput is input rows per wall second of the whole step, reading included; the best of ``--repeats``
runs per path. In each Ray session the two paths run alternately (the order flipped each repeat), and
each ratio is the best single-process run of that session over the best Ray run: this VM's speed drifts
by 10-30% over minutes, and two paths measured minutes apart compared the VM's moods. Both results are checked against each other (split sizes, fingerprint, fitted
preprocessor, reference sample, sums of the encoded arrays) and the check goes into the JSON, with
``ratio_1cpu`` / ``ratio_2cpu`` (Ray Data / pandas throughput) at the top. The machine is shared: load
averages go in too.
"""

from __future__ import annotations

import os

# Ray reads this when it is first imported; every Ray client here must use token auth.
os.environ["RAY_AUTH_MODE"] = "token"
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import logging  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.harness import TMP, say  # noqa: E402
from benchmarks.machine_info import host, result_header, write_result  # noqa: E402

DATA_SEED = 0
FULL = {"rows": 2_000_000, "files": 16, "repeats": 5, "cpus": "1,2"}
QUICK = {"rows": 50_000, "files": 4, "repeats": 1, "cpus": "2"}  # one Ray start, not two
ENCODED = ("train", "val")


# ---- the data set ------------------------------------------------------------------------------------

def write_source(rows: int, files: int, seed: int = DATA_SEED) -> Path:
    """The Parquet directory for these settings, generated once (2M rows: tens of seconds) and reused.

    Written to a temporary directory and renamed, so an interrupted run never leaves a partial data set
    that a later run would take for complete.
    """
    out = TMP / "data-bench" / f"churn-baseline-seed{seed}-{rows}rows-{files}files"
    if out.is_dir():
        return out
    import pyarrow as pa
    import pyarrow.parquet as pq

    from foundry import datasets

    say(f"generating {rows:,} churn rows (seed {seed}) into {files} Parquet file(s) ...")
    df = datasets.generate("churn", "baseline", rows, seed=seed)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    for i, part in enumerate(np.array_split(np.arange(rows), files)):
        table = pa.Table.from_pandas(df.iloc[part], preserve_index=False)
        pq.write_table(table, partial / f"part-{i:05d}.parquet")
    partial.rename(out)
    return out


def bench_config(source: Path | str, storage_root: Path, extra: list[str] | None = None):
    """The project's composed config, pointed at the benchmark's data and a throw-away storage root."""
    from foundry import config

    return config.load([f"data.source.path={source}", f"storage.root={storage_root}", *(extra or [])])


@contextlib.contextmanager
def ray_session(num_cpus: int):
    """A private Ray instance of ``num_cpus`` CPUs for one measurement, stopped after it.

    ``address="local"``: a bare ``ray.init()`` would join a cluster someone started on this machine.
    The driver gets the local cluster's ``driver_env`` (conf/cluster/local.yaml), as every Foundry job
    does: Ray Data lists Parquet files from the driver with 1 actor instead of 32 on this 2-core box.
    """
    import ray
    import ray.data

    from foundry import config
    from foundry.runtime.connection import apply_driver_env

    apply_driver_env(config.load([]).cluster.driver_env)
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, logging_level="WARNING",
             log_to_driver=False)  # worker logs stay in the session directory; errors still raise here
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # an execution plan per Dataset otherwise
    try:
        yield {"num_cpus": num_cpus,
               "object_store_gib": round(ray.available_resources().get("object_store_memory", 0) / 2**30, 2)}
    finally:
        ray.shutdown()


# ---- the two paths -----------------------------------------------------------------------------------

def ray_prepare(data) -> tuple[float, object]:
    from foundry.data.pipeline import prepare

    started = time.perf_counter()
    prepared = prepare(data)
    return time.perf_counter() - started, prepared


def pandas_prepare(source: Path, data) -> tuple[float, dict, dict]:
    """The pipeline's steps on one in-memory DataFrame; returns (seconds, phase seconds, outputs)."""
    import pyarrow.parquet as pq

    from foundry.data import blocks, schema
    from foundry.data import preprocessor as prep

    phases: dict[str, float] = {}
    clock = time.perf_counter()
    started = clock

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        phases[name] = round(now - clock, 3)
        clock = now

    table = pq.read_table(source)
    lap("read Parquet -> Arrow")
    problems = schema.check_columns(table.schema, data)
    staged = blocks.stage_block(table, data)
    merged = blocks.merge_profiles(blocks.block_profiles(staged))
    report = schema.build_report(merged["schema"], data, problems)
    if not report.ok:
        raise RuntimeError(report.format())
    lap("stage + profile: split, fingerprint, schema, statistics, reference candidates")
    fitted = prep.fit(merged["stats"], data)
    lap("fit preprocessor")
    reference = blocks.reference_sample(merged["reference"], data)
    lap("reference sample")
    encoded = {which: blocks.encode_block(staged, which, fitted) for which in ENCODED}
    lap("encode train + val")
    outputs = {"split_rows": merged["split_rows"], "fingerprint": merged["fingerprint"], "preprocessor": fitted,
               "reference": reference, "sums": {which: array_sums([arrays]) for which, arrays in encoded.items()}}
    return time.perf_counter() - started, phases, outputs


# ---- checking that both did the same work ------------------------------------------------------------

def array_sums(batches) -> dict:
    """Row count and float64 column sums of encoded batches: order-free, so two paths can be compared."""
    out: dict = {"rows": 0}
    for batch in batches:
        out["rows"] += len(batch["y"])
        for key, value in batch.items():
            sums = np.asarray(value, dtype="float64").reshape(len(value), -1).sum(axis=0)
            out[key] = out.get(key, 0) + sums
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in out.items()}


def ray_outputs(prepared) -> dict:
    sums = {which: array_sums(getattr(prepared, which).iter_batches(batch_format="numpy", batch_size=None))
            for which in ENCODED}
    return {"split_rows": prepared.split_rows, "fingerprint": prepared.fingerprint,
            "preprocessor": prepared.preprocessor, "reference": prepared.reference, "sums": sums}


def _close(a, b) -> bool:
    return bool(np.allclose(np.asarray(a, dtype="float64"), np.asarray(b, dtype="float64"), rtol=1e-6, atol=1e-6))


def same_frame(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Same rows and values; dtypes may differ (a Ray batch with nulls can come back as a nullable dtype)."""
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return False
    for name in a.columns:
        x, y = a[name], b[name]
        if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
            same = np.array_equal(x.to_numpy("float64", na_value=np.nan), y.to_numpy("float64", na_value=np.nan),
                                  equal_nan=True)
        else:
            same = x.isna().equals(y.isna()) and x[x.notna()].astype(str).tolist() == y[y.notna()].astype(str).tolist()
        if not same:
            return False
    return True


def compare(ray_out: dict, pandas_out: dict) -> dict:
    """Which outputs agree; float sums to 1e-6 (batch order changes the last bits of a sum)."""
    a, b = ray_out["preprocessor"], pandas_out["preprocessor"]
    checks = {
        "split_rows": ray_out["split_rows"] == pandas_out["split_rows"],
        "fingerprint": ray_out["fingerprint"] == pandas_out["fingerprint"],
        "preprocessor": ([c.categories for c in a.categorical] == [c.categories for c in b.categorical]
                         and _close([(n.mean, n.std) for n in a.numeric], [(n.mean, n.std) for n in b.numeric])),
        "reference_sample": same_frame(ray_out["reference"], pandas_out["reference"]),
        "encoded_arrays": all(
            ray_out["sums"][w]["rows"] == pandas_out["sums"][w]["rows"]
            and sorted(ray_out["sums"][w]) == sorted(pandas_out["sums"][w])
            and all(_close(ray_out["sums"][w][k], pandas_out["sums"][w][k]) for k in ray_out["sums"][w] if k != "rows")
            for w in ENCODED),
    }
    return {**checks, "all": all(checks.values())}


# ---- measuring ---------------------------------------------------------------------------------------

def pandas_run(source: Path, data, threads: int | None = None) -> dict:
    """The single process; ``threads``: Arrow's CPU pool limited to that many threads for the run (what Ray
    gives a task of that many CPUs: it sets OMP_NUM_THREADS, which Arrow's pool follows), else Arrow's
    default (one per core: the Parquet decode uses both cores here)."""
    import pyarrow as pa

    default = pa.cpu_count()
    if threads:
        pa.set_cpu_count(threads)
    try:
        seconds, phases, outputs = pandas_prepare(source, data)
    finally:
        pa.set_cpu_count(default)
    say(f"  pandas, 1 process{f', {threads} Arrow thread(s)' if threads else ''}: {seconds:7.2f} s  {phases}")
    return {"seconds": round(seconds, 3), "phases_s": phases, "outputs": outputs}


def measure(source: Path, storage_root: Path, num_cpus: int, repeats: int) -> tuple[dict, list[dict]]:
    """Ray's prepare with ``num_cpus`` and the single process, run alternately in the same minutes:
    (Ray's point, the single process's runs). This VM's speed drifts by 10-30% over minutes, so a ratio
    of two runs taken minutes apart measured the VM as much as the code (0.88 and 1.14 on 1 CPU in two
    runs of the same code); alternating the two paths, the order flipped each repeat, compares like with
    like. The single process runs in this driver beside an idle Ray instance.

    With one Ray CPU the single process also runs with one Arrow thread (``one_thread``, alongside the
    others): the figure that says how much of the 1-CPU ratio is the Parquet decode on two threads against
    Ray's one; the issue's ratio stays against the default reader."""
    data = bench_config(source, storage_root).data
    started = time.perf_counter()
    single: list[dict] = []
    one_thread: list[dict] = []
    with ray_session(num_cpus) as session:
        init_s = time.perf_counter() - started
        warm_s, warm = ray_prepare(data)
        del warm  # its blocks leave the object store before the timed runs
        say(f"  Ray Data, {num_cpus} CPU(s): ray.init {init_s:.1f} s, warm-up (the same prepare, untimed) {warm_s:.1f} s")
        seconds, prepared = [], None
        paths = ("pandas", "pandas_one_thread", "ray") if num_cpus == 1 else ("pandas", "ray")
        for i in range(repeats):
            for path in (paths if i % 2 == 0 else paths[::-1]):
                if path == "pandas":
                    single.append(pandas_run(source, data))
                    continue
                if path == "pandas_one_thread":
                    one_thread.append(pandas_run(source, data, threads=1))
                    continue
                prepared = None  # the last run's blocks leave the object store first
                s, prepared = ray_prepare(data)
                seconds.append(round(s, 3))
                say(f"  Ray Data, {num_cpus} CPU(s): {s:7.2f} s")
        outputs = ray_outputs(prepared)
    point = {"path": "ray_data", "cpus": num_cpus, "seconds": min(seconds), "all_seconds": seconds,
             "pandas_alongside_s": [r["seconds"] for r in single], "ray_init_s": round(init_s, 2),
             "warmup_s": round(warm_s, 2), "object_store_gib": session["object_store_gib"], "outputs": outputs}
    if one_thread:
        point["pandas_one_thread_alongside_s"] = [r["seconds"] for r in one_thread]
        point["vs_pandas_one_thread"] = round(min(point["pandas_one_thread_alongside_s"]) / min(seconds), 3)
    return point, single


def finish(point: dict, rows: int, pandas_seconds: float) -> dict:
    """Throughput and the ratio to the single process run alongside (> 1: faster than it)."""
    point["rows_per_s"] = round(rows / point["seconds"])
    point["vs_pandas"] = round(pandas_seconds / point["seconds"], 3)
    return point


# ---- report ------------------------------------------------------------------------------------------

def machine() -> dict:
    import pyarrow
    import ray

    return {**host(), "ray": ray.__version__, "pandas": pd.__version__, "pyarrow": pyarrow.__version__,
            "numpy": np.__version__}


def table(points: list[dict], setup: dict) -> str:
    lines = [f"{setup['rows']:,} rows in {setup['files']} Parquet files, {setup['cores']} cores",
             "", "| path | CPUs | seconds | rows/s | one process alongside, s | x one process |",
             "|---|---:|---:|---:|---:|---:|"]
    for p in points:
        name = "pandas, one process" if p["path"] == "pandas" else "Ray Data (`pipeline.prepare`)"
        alongside = f"{min(p['pandas_alongside_s']):.2f}" if "pandas_alongside_s" in p else "(best of all)"
        lines.append(f"| {name} | {p['cpus']} | {p['seconds']:.2f} | {p['rows_per_s']:,} | {alongside} | "
                     f"{p['vs_pandas']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help=f"a smoke run ({QUICK['rows']:,} rows; results/tmp/)")
    p.add_argument("--rows", type=int, help=f"rows (default {FULL['rows']:,}; quick {QUICK['rows']:,})")
    p.add_argument("--files", type=int, help=f"Parquet files (default {FULL['files']}; quick {QUICK['files']})")
    p.add_argument("--cpus", help="Ray CPU counts to measure (default 1,2; quick 2)")
    p.add_argument("--repeats", type=int, help="timed runs per path; the fastest is reported (default 3; quick 1)")
    p.add_argument("--out", help="result file (default benchmarks/results/data.json; quick: results/tmp/)")
    args = p.parse_args(argv)
    s = dict(QUICK if args.quick else FULL)
    s.update({k: v for k, v in {"rows": args.rows, "files": args.files, "repeats": args.repeats,
                                "cpus": args.cpus}.items() if v})
    cpus = [int(c) for c in s["cpus"].split(",") if c]
    out = Path(args.out or (TMP / "data-quick.json" if args.quick else REPO / "benchmarks" / "results" / "data.json"))
    started = time.time()
    load_before = os.getloadavg()

    source = write_source(s["rows"], s["files"])
    storage_root = TMP / "data-bench" / "storage"
    data = bench_config(source, storage_root).data
    say(f"{s['rows']:,} rows in {s['files']} Parquet files at {source}")
    warm_s = pandas_prepare(source, data)[0]  # untimed, as Ray's warm-up: imports, first allocations
    say(f"  pandas, 1 process: warm-up (the same steps, untimed) {warm_s:.1f} s")
    points, single = [], []
    for n in cpus:
        point, alongside = measure(source, storage_root, n, s["repeats"])
        points.append(finish(point, s["rows"], min(point["pandas_alongside_s"])))
        single += alongside
    best = min(single, key=lambda r: r["seconds"])
    pandas_point = finish({"path": "pandas", "cpus": 1, "seconds": best["seconds"], "phases_s": best["phases_s"],
                           "all_seconds": [r["seconds"] for r in single], "outputs": best["outputs"]},
                          s["rows"], best["seconds"])
    for point in points:
        point["same_output_as_pandas"] = compare(point["outputs"], pandas_point["outputs"])
    points.insert(0, pandas_point)
    split_rows = pandas_point["outputs"]["split_rows"]
    for point in points:
        point.pop("outputs")
    setup = {"rows": s["rows"], "files": s["files"], "cores": os.cpu_count()}
    result = {
        **result_header("data", started, args.quick, load_before, machine()),
        "settings": {**setup, "repeats": s["repeats"], "ray_cpus": cpus, "data_seed": DATA_SEED,
                     "dataset": "churn baseline (foundry.datasets.generate)", "source": str(source.relative_to(REPO)),
                     "split_rows": split_rows,
                     "ray_data": "foundry.data.pipeline.prepare, data.materialize=true; ray.init and one warm-up "
                                 "prepare untimed; best of repeats",
                     "pandas": "one Arrow table in one process, the pipeline's block functions applied once "
                               "(stage_block, merge_profiles, fit, reference_sample, encode_block); one warm-up "
                               "run untimed; run alternately with Ray's prepare in each Ray session (order "
                               "flipped each repeat); its point is the best of all its runs",
                     "ratio": "best single-process run in a Ray session / best Ray run of that session"},
        # Issue 17's keys: Ray Data throughput / pandas throughput (> 1: Ray Data is faster), by Ray CPU count,
        # each against the single process run alongside it.
        **{f"ratio_{n}cpu": next((p["vs_pandas"] for p in points[1:] if p["cpus"] == n), None) for n in (1, 2)},
        # Not the issue's: 1 Ray CPU against the single process with one Arrow thread (its reader's default
        # decodes on every core), run alongside as well.
        "ratio_1cpu_vs_one_arrow_thread": next((p.get("vs_pandas_one_thread") for p in points[1:] if p["cpus"] == 1),
                                               None),
        "points": points,
    }
    write_result(out, result)
    say("\n" + table(points, setup))
    for point in points[1:]:
        check = point["same_output_as_pandas"]
        say(f"Ray Data {point['cpus']} CPU(s) output same as pandas: {check['all']}"
            + ("" if check["all"] else f" {check}"))
    if result["ratio_1cpu_vs_one_arrow_thread"] is not None:
        say(f"Ray Data 1 CPU against the single process with one Arrow thread: "
            f"{result['ratio_1cpu_vs_one_arrow_thread']:.2f}x")
    say(f"\n(written to {out}; {result['elapsed_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
