"""Training throughput and overhead: Ray Train's TorchTrainer with 1 and 2 workers vs a plain PyTorch loop.

    python -m benchmarks.train_bench [--quick] [--rows 200000] [--epochs 3] [--workers 1,2]
                                     [--scale-rows 1000000] [--out benchmarks/results/train.json]

Setup: ``--rows`` baseline churn rows (one Parquet file, written by data_bench's ``write_source``),
prepared once by ``foundry.data.pipeline.prepare`` (``conf/data/churn.yaml``: 80/10/10 split; the
encoded train and val splits materialized in the object store) on a private Ray instance of 2 CPUs
with its dashboard (``train_session``: as on every Foundry cluster; see there why it matters). The
default model (``conf/model/mlp.yaml``) and the trainer settings of ``conf/trainer/cpu.yaml`` (AdamW,
lr, weight decay, batch size, checkpoint cadence, in-memory budget, controller poll) for every run;
``--epochs`` epochs, early stopping effectively off so every run does the same work.

What runs:
- **Ray Train**: ``foundry.train.trainer.build_trainer`` + ``foundry.train.loop.train_loop_per_worker``,
  exactly as the training job runs them, with ``trainer.num_workers`` 1 and 2, ``cpus_per_worker=1``,
  after one untimed 1-epoch warm-up fit (``warmup_fit_s``): the first fit on a new cluster also starts Ray
  Train's state actor (one detached process per cluster, ~1.5 s of CPU competing with the fit's own
  start on 2 cores), which every later fit of a long-lived cluster finds running; data_bench likewise
  runs one untimed warm-up prepare.
  Per epoch the loop reports ``rows_per_s``: training rows of all workers over rank 0's wall time of the
  epoch's training pass plus its validation pass. The whole ``fit()`` (call to result) is split by the
  loop's timestamps into start-up, loop set-up, epochs, reports/checkpoints and tail (``fit_breakdown``).
- **plain PyTorch**: the same materialized arrays pulled into this process, the same model, optimizer
  (the loop's ``_optimizer``), forward and loss (the loop's ``_forward``), batch size and epochs, a full
  ``torch.randperm`` shuffle per epoch (as the loop's in-memory path), a validation pass each epoch.
  Each run in a fresh Python process (as each Ray fit's worker is: AdamW's constructor imports
  ``torch._dynamo``, ~1 s, once per process), with 1 torch thread (what one Ray worker gets) and with one
  per core; its fit wall time runs from the arrays to the trained model (tensors, model, optimizer, every
  epoch). The 1-worker Ray fit and the 1-thread plain run are repeated ``--fit-repeats`` times, alternately
  in the Ray session (the order flipped each repeat; the plain run leaves one core to Ray's idle
  processes), because this VM's speed drifts by 10-30% over minutes; ``fit_wall_s`` is the median (every
  run in ``fit_wall_all_s``). The all-cores plain run comes after Ray is shut down.
- **scaling** (benchmarks/train_scaling.py): ``--scale-rows`` rows, 1 and 2 workers, at the shipped batch
  size and at a large one; the 2/1 throughput ratio and the crossover (train rows x epochs from which 2
  workers finish a fit() sooner).
Headline keys: ``ratio_1worker_vs_plain`` (s/epoch, median of epochs 2..N), ``fit_wall_ratio_1worker_vs_plain``
and ``scaling_2_vs_1`` (at the shipped batch size).
"""

from __future__ import annotations

import os

# Ray reads this when it is first imported; every Ray client here must use token auth.
os.environ["RAY_AUTH_MODE"] = "token"
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks import train_scaling  # noqa: E402
from benchmarks.data_bench import DATA_SEED, TMP, bench_config, write_source  # noqa: E402
from benchmarks.harness import say  # noqa: E402
from benchmarks.machine_info import host, result_header, write_result  # noqa: E402
from benchmarks.train_plain import (  # noqa: E402
    epoch_figures,
    median_point,
    plain_fresh_run,
    plain_in_fresh_processes,
    plain_inputs,
)

RAY_CPUS = 2
FULL = {"rows": 200_000, "epochs": 3, "workers": "1,2", "scale_rows": 1_000_000, "scale_epochs": 2}
# Quick: one worker on the main set; the scaling set still compares 1 and 2 workers.
QUICK = {"rows": 20_000, "epochs": 2, "workers": "1", "scale_rows": 60_000, "scale_epochs": 2}
STORAGE = TMP / "train-bench" / "storage"
# Per-worker batch sizes the scaling set is also trained with: each DDP step ends in a gloo all-reduce that
# costs ~1.3 ms here whatever the batch, so a second worker pays only when a step's compute is larger.
SCALE_LARGE_BATCHES = [4096, 16384]


def overrides(epochs: int, num_workers: int = 1) -> list[str]:
    """Every run does all ``epochs`` epochs: early stopping would make runs do different amounts of work."""
    return [f"trainer.epochs={epochs}", f"trainer.early_stopping_patience={epochs + 1}",
            f"trainer.num_workers={num_workers}", "trainer.cpus_per_worker=1", "trainer.use_gpu=false"]


@contextlib.contextmanager
def train_session(num_cpus: int):
    """A private Ray instance of ``num_cpus`` CPUs, with the dashboard, as every Foundry cluster has one.

    Not data_bench's session (no dashboard): Ray Train's placement-group cleaner (a detached actor) asks the
    dashboard's state API, every second, whether the controller lives, and ``fit()`` waits for its last
    question to end. Without a dashboard, or when ``/tmp/ray/ray_current_cluster`` names another cluster
    started later on this shared machine, each question hangs for 10 s and every ``fit()`` ends with a
    12 s time-out ("Failed to stop PlacementGroupCleaner gracefully") that a real cluster does not pay.
    So the dashboard runs on a free loopback port and ``RAY_API_SERVER_ADDRESS`` names it; set before
    ``ray.init``, it reaches every worker process through the raylet this driver starts.
    """
    import logging
    import socket

    import ray
    import ray.data

    from foundry import config
    from foundry.runtime.connection import apply_driver_env

    apply_driver_env(config.load([]).cluster.driver_env)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    os.environ["RAY_API_SERVER_ADDRESS"] = f"http://127.0.0.1:{port}"
    ray.init(address="local", num_cpus=num_cpus, include_dashboard=True, dashboard_host="127.0.0.1",
             dashboard_port=port, logging_level="WARNING", log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    try:
        yield {"num_cpus": num_cpus, "dashboard": True,
               "object_store_gib": round(ray.available_resources().get("object_store_memory", 0) / 2**30, 2)}
    finally:
        ray.shutdown()
        os.environ.pop("RAY_API_SERVER_ADDRESS", None)


# ---- data --------------------------------------------------------------------------------------------

def to_arrays(ds) -> dict[str, np.ndarray]:
    """The materialized encoded split as numpy arrays: the very rows the Ray workers train on."""
    batches = list(ds.iter_batches(batch_format="numpy", batch_size=None))
    return {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}


# ---- Ray Train -----------------------------------------------------------------------------------------

def ray_threads() -> dict:
    """The torch and OpenMP threads a 1-CPU Ray task gets, as a Ray Train worker with cpus_per_worker=1 does."""
    import ray

    @ray.remote(num_cpus=1)
    def probe():
        import torch

        return {"torch_threads": torch.get_num_threads(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}

    return ray.get(probe.remote())


def fit_breakdown(fit_started_at: float, fit_ended_at: float, state: dict, epoch_seconds: list[float]) -> dict:
    """Where a ``fit()``'s wall seconds went, from the loop's own timestamps (foundry/train/loop.py):
    start-up (controller, worker processes, process group) until the loop starts; the loop's set-up (data
    pulled, model, optimizer); the epochs' train and validation passes; reports and checkpoints between
    them; and the tail from the last report until ``fit()`` returns."""
    run, history = state["runs"][0], state["history"]
    epochs = sum(epoch_seconds)
    loop_s = history[-1]["ended_at"] - run["started_at"]
    return {"startup_s": round(run["started_at"] - fit_started_at, 2), "loop_setup_s": run["setup_s"],
            "epochs_s": round(epochs, 2), "reports_and_checkpoints_s": round(loop_s - run["setup_s"] - epochs, 2),
            "tail_s": round(fit_ended_at - history[-1]["ended_at"], 2)}


def ray_train(cfg, prepared, spec: dict, num_workers: int, tag: str = "") -> dict:
    from foundry.train.loop import STATE_FILE
    from foundry.train.trainer import build_trainer

    run_name = f"train-bench-{num_workers}w-{datetime.now(timezone.utc):%H%M%S%f}"
    started_at = time.time()
    trainer = build_trainer(cfg, {"train": prepared.train, "val": prepared.val}, spec, run_name)
    result = trainer.fit()
    ended_at = time.time()
    with result.checkpoint.as_directory() as d:
        state = json.loads(Path(d, STATE_FILE).read_text())
    history = state["history"]
    rows = prepared.split_rows["train"]
    seconds = [rows / h["rows_per_s"] for h in history]
    point = {"runner": "ray_train", "workers": num_workers, "threads_per_worker": None,
             **epoch_figures(seconds, rows), "fit_wall_s": round(ended_at - started_at, 2),
             "fit_breakdown": fit_breakdown(started_at, ended_at, state, seconds), "data_path": state["data_path"],
             "loop_rows_per_s": [round(h["rows_per_s"]) for h in history],
             "val_loss": [round(h["val_loss"], 5) for h in history]}
    say(f"  {tag}Ray Train, {num_workers} worker(s): {point['rows_per_s']:>8,} rows/s  {point['s_per_epoch']:.2f} s/epoch  "
        f"(epochs {point['epoch_s']} s; fit() {point['fit_wall_s']:.1f} s: {point['fit_breakdown']}; "
        f"{state['data_path']['train']})")
    return point


def ratios(points: list[dict]) -> None:
    """Each run's throughput over the plain loop's, with 1 thread and with all cores (> 1: faster)."""
    plain = {p["threads_per_worker"]: p["rows_per_s"] for p in points if p["runner"] == "plain_torch"}
    for p in points:
        p["vs_plain_1_thread"] = round(p["rows_per_s"] / plain[1], 3) if plain.get(1) else None
        cores = plain.get(os.cpu_count())
        p["vs_plain_all_cores"] = round(p["rows_per_s"] / cores, 3) if cores else None


# ---- report ------------------------------------------------------------------------------------------

def machine() -> dict:
    import ray
    import torch

    return {**host(), "ray": ray.__version__, "torch": torch.__version__, "numpy": np.__version__}


def label(p: dict) -> str:
    if p["runner"] == "plain_torch":
        return f"plain PyTorch, 1 process, {p['threads_per_worker']} thread(s)"
    return f"Ray Train TorchTrainer, {p['workers']} worker(s) x 1 CPU"


def table(points: list[dict], setup: dict) -> str:
    lines = [f"{setup['train_rows']:,} training rows ({setup['rows']:,} generated), {setup['epochs']} epochs, "
             f"batch {setup['batch_size']}, {setup['cores']} cores",
             "", "| runner | rows/s | s/epoch | epoch 1 s | fit wall s | x plain 1 thread | x plain all cores |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for p in points:
        lines.append(f"| {label(p)} | {p['rows_per_s']:,} | {p['s_per_epoch']:.2f} | {p['first_epoch_s']:.2f} | "
                     f"{p['fit_wall_s']:.1f} | {p['vs_plain_1_thread'] or '-'} | {p['vs_plain_all_cores'] or '-'} |")
    return "\n".join(lines)


def ray_part(cfg_for, workers: list[int], warmup_cfg, repeats: int, source: Path,
             epochs: int) -> tuple[list[dict], dict, dict, dict]:
    """Prepare once, warm up (one untimed fit: see the module docstring), train per worker count, and keep
    the arrays for the plain loop; all in one Ray session. The 1-worker fits alternate with the 1-thread
    plain runs (each in a fresh process, the order flipped each repeat), so that the two are compared in
    the same minutes: this VM's speed drifts by 10-30% over minutes. A 1-thread run leaves one of the 2
    cores to Ray's idle processes."""
    from foundry.data.pipeline import prepare
    from foundry.models import model_spec

    with train_session(RAY_CPUS) as session:
        say("preparing the data (Ray Data, materialized) ...")
        started = time.perf_counter()
        prepared = prepare(cfg_for(1).data)
        prepare_s = time.perf_counter() - started
        spec = model_spec(cfg_for(1).model, prepared.preprocessor)
        arrays = {which: to_arrays(getattr(prepared, which)) for which in ("train", "val")}
        info = {"ray_session": session, "prepare_s": round(prepare_s, 2), "split_rows": prepared.split_rows,
                "ray_worker_threads": ray_threads()}
        warmup = ray_train(warmup_cfg, prepared, spec, 1, tag="[warm-up, untimed] ")
        info["warmup_fit_s"] = warmup["fit_wall_s"]
        folder = plain_inputs(arrays, spec)
        points, plain_runs = [], []
        for n in workers:
            fits = []
            for i in range(repeats if n == 1 else 1):
                for runner in (("ray", "plain") if i % 2 == 0 else ("plain", "ray")) if n == 1 else ("ray",):
                    if runner == "ray":
                        fits.append(ray_train(cfg_for(n), prepared, spec, n))
                    else:
                        plain_runs.append(plain_fresh_run(folder, source, epochs, 1))
            points.append(median_point(fits))
        if plain_runs:
            points.append(median_point(plain_runs))
    return points, arrays, spec, info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help=f"a smoke run ({QUICK['rows']:,} rows; results/tmp/)")
    p.add_argument("--rows", type=int, help=f"rows generated (default {FULL['rows']:,}; quick {QUICK['rows']:,})")
    p.add_argument("--epochs", type=int, help=f"epochs per run (default {FULL['epochs']}; quick {QUICK['epochs']})")
    p.add_argument("--workers", help="Ray Train worker counts (default 1,2)")
    p.add_argument("--scale-rows", type=int, help=f"rows of the scaling set (default {FULL['scale_rows']:,}; "
                                                  f"quick {QUICK['scale_rows']:,}; 0: skip)")
    p.add_argument("--out", help="result file (default benchmarks/results/train.json; quick: results/tmp/)")
    p.add_argument("--fit-repeats", type=int, help="1-worker Ray fits and 1-thread plain runs (default 3; quick 1)")
    args = p.parse_args(argv)
    repeats = args.fit_repeats or (1 if args.quick else 3)
    s = dict(QUICK if args.quick else FULL)
    s.update({k: v for k, v in {"rows": args.rows, "epochs": args.epochs, "workers": args.workers}.items() if v})
    if args.scale_rows is not None:
        s["scale_rows"] = args.scale_rows
    workers = [int(w) for w in s["workers"].split(",") if w]
    out = Path(args.out or (TMP / "train-quick.json" if args.quick else REPO / "benchmarks" / "results" / "train.json"))
    started = time.time()
    load_before = os.getloadavg()

    source = write_source(s["rows"], 1)
    shutil.rmtree(STORAGE, ignore_errors=True)

    def cfg_for(num_workers: int):
        return bench_config(source, STORAGE, overrides(s["epochs"], num_workers))

    say(f"{s['rows']:,} rows at {source}; {s['epochs']} epochs; Ray Train workers {workers}")
    points, arrays, spec, info = ray_part(cfg_for, workers, bench_config(source, STORAGE, overrides(1, 1)), repeats,
                                          source, s["epochs"])
    split_rows = info["split_rows"]
    if os.cpu_count() > 1:
        say("plain PyTorch on every core (Ray shut down; a fresh process) ...")
        points.append(plain_in_fresh_processes(source, s["epochs"], arrays, spec, os.cpu_count(), 1))
    ratios(points)
    scaling = None
    if s["scale_rows"]:
        say(f"scaling: {s['scale_rows']:,} rows, {s['scale_epochs']} epochs, 1 and 2 workers ...")
        scale_source = write_source(s["scale_rows"], 1)

        def scale_cfg(num_workers: int, batch: int | None = None, extra: tuple[str, ...] = ()):
            extra = [*([f"trainer.batch_size={batch}"] if batch else []), *extra]
            return bench_config(scale_source, STORAGE, overrides(s["scale_epochs"], num_workers) + extra)

        def ddp_cfg(num_workers: int, batch: int):
            return scale_cfg(num_workers, batch, ("trainer.average_every_steps=1",))

        batches = [scale_cfg(1).trainer.batch_size, *([] if args.quick else SCALE_LARGE_BATCHES)]
        scaling = train_scaling.run(ray_train, scale_cfg(1), scale_cfg, lambda: train_session(RAY_CPUS), say,
                                    batches, ddp_cfg=ddp_cfg)
        scaling["settings"] = {"rows": s["scale_rows"], "epochs": s["scale_epochs"], "cpus_per_worker": 1,
                               "batch_sizes_per_worker": batches, "ray_cpus": RAY_CPUS,
                               "average_every_steps": scale_cfg(2).trainer.average_every_steps,
                               "headline": f"batch {batches[0]} per worker (the shipped trainer.batch_size)"}
    cfg = cfg_for(1)
    setup = {"rows": s["rows"], "train_rows": split_rows["train"], "val_rows": split_rows["val"],
             "epochs": s["epochs"], "batch_size": cfg.trainer.batch_size, "cores": os.cpu_count()}
    by = {(p["runner"], p["workers"], p["threads_per_worker"]): p for p in points}
    ray1, plain1 = by.get(("ray_train", 1, None)), by.get(("plain_torch", 1, 1))
    headline = {}
    if ray1 and plain1:
        headline = {"ratio_1worker_vs_plain": round(ray1["s_per_epoch"] / plain1["s_per_epoch"], 3),
                    "fit_wall_ratio_1worker_vs_plain": round(ray1["fit_wall_s"] / plain1["fit_wall_s"], 2)}
    if scaling:
        headline["scaling_2_vs_1"] = scaling["scaling_2_vs_1"]
        headline["scaling_2_vs_1_ddp"] = scaling["scaling_2_vs_1_ddp"]
    say(f"headline: {headline}")
    result = {
        **result_header("train", started, args.quick, load_before, machine()),
        **headline,
        "headline_settings": {
            "ratio_1worker_vs_plain": "Ray Train 1 worker s/epoch (train + validation pass, median of epochs 2..N) "
                                      "/ plain PyTorch 1 thread s/epoch, same rows and settings",
            "fit_wall_ratio_1worker_vs_plain": "Ray Train 1 worker fit() call to result / plain PyTorch call to "
                                               "result (tensors, model, optimizer, all epochs), same rows and epochs; after one untimed warm-up "
                                               "fit (settings.warmup_fit_s)",
            "scaling_2_vs_1": "scaling.by_batch_size[shipped batch]: 2-worker / 1-worker steady rows/s on the "
                              "scaling set with the shipped trainer config (local SGD, "
                              "scaling.settings.average_every_steps); scaling_2_vs_1_ddp: the same with DDP"},
        "scaling": scaling,
        "settings": {**setup, "workers": workers, "cpus_per_worker": 1, "ray_cpus": RAY_CPUS, "data_seed": DATA_SEED,
                     "model_spec": spec, "optimizer": cfg.trainer.optimizer, "lr": cfg.trainer.lr,
                     "weight_decay": cfg.trainer.weight_decay, **info,
                     "rows_per_s": "training rows / (train pass + validation pass) seconds, median of epochs 2..N",
                     "plain_torch": "same arrays, model, optimizer, loss, batch size; full shuffle per epoch"},
        "points": points,
    }
    write_result(out, result)
    say("\n" + table(points, setup))
    say(f"\n(written to {out}; {result['elapsed_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
