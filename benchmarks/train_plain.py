"""The plain PyTorch side of benchmarks/train_bench.py: the project's model, optimizer (the loop's
``_optimizer``), forward and loss (the loop's ``_forward``) on the same encoded arrays, each run in a fresh
Python process, as each Ray fit's worker is (AdamW's constructor imports ``torch._dynamo``, ~1 s, once per
process).

    python -m benchmarks.train_plain FOLDER SOURCE EPOCHS THREADS   (what train_bench starts per run)
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.data_bench import TMP, bench_config
from benchmarks.harness import say

REPO = Path(__file__).resolve().parent.parent


def epoch_figures(seconds: list[float], rows: int) -> dict:
    """Steady-state figures leave out epoch 1 (worker warm-up, first pass over the data) when there are more."""
    steady = seconds[1:] or seconds
    median = statistics.median(steady)
    return {"rows_per_s": round(rows / median), "s_per_epoch": round(median, 3),
            "first_epoch_s": round(seconds[0], 3), "epoch_s": [round(s, 3) for s in seconds]}


def plain_epoch(model, optimizer, criterion, task, train: dict, val: dict, batch_size: int,
                seed: int) -> tuple[float, float]:
    """One epoch as the Ray loop does it (train pass, then validation) on in-memory tensors: (seconds, val loss)."""
    import torch

    from foundry.train.loop import _forward

    cpu = torch.device("cpu")
    started = time.perf_counter()
    model.train()
    order = torch.randperm(len(train["y"]), generator=torch.Generator().manual_seed(seed))
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        loss = _forward(model, {k: v[idx] for k, v in train.items()}, task, criterion, False, cpu)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    val_total = 0.0
    with torch.inference_mode():
        for i in range(0, len(val["y"]), 4 * batch_size):
            batch = {k: v[i:i + 4 * batch_size] for k, v in val.items()}
            val_total += float(_forward(model, batch, task, criterion, False, cpu)) * len(batch["y"])
    return time.perf_counter() - started, val_total / max(len(val["y"]), 1)


def plain_train(cfg, arrays: dict, spec: dict, threads: int) -> dict:
    import torch

    from foundry.models import build_model
    from foundry.models.tasks import loss_fn
    from foundry.train.loop import _optimizer

    t, task = cfg.trainer, cfg.data.task
    torch.set_num_threads(threads)
    dynamo_loaded = "torch._dynamo" in sys.modules  # AdamW's constructor imports it (~1 s) where it is not
    started = time.perf_counter()  # "call to result": tensors, model and optimizer built, every epoch run
    torch.manual_seed(t.seed)
    train, val = ({k: torch.from_numpy(v) for k, v in arrays[which].items()} for which in ("train", "val"))
    model = build_model(spec)
    optimizer = _optimizer(model.parameters(), t)
    criterion = loss_fn(task)
    seconds, val_loss = [], []
    for epoch in range(t.epochs):
        s, loss = plain_epoch(model, optimizer, criterion, task, train, val, t.batch_size, t.seed + epoch)
        seconds.append(s)
        val_loss.append(round(loss, 5))
    fit_s = time.perf_counter() - started
    rows = len(train["y"])
    point = {"runner": "plain_torch", "workers": 1, "threads_per_worker": threads, **epoch_figures(seconds, rows),
             "fit_wall_s": round(fit_s, 2), "torch_dynamo_imported_before": dynamo_loaded, "val_loss": val_loss}
    say(f"  plain PyTorch, {threads} thread(s): {point['rows_per_s']:>8,} rows/s  {point['s_per_epoch']:.2f} s/epoch  "
        f"(epochs {point['epoch_s']} s)")
    return point


def plain_inputs(arrays: dict, spec: dict) -> Path:
    """The arrays and model spec saved where ``plain_fresh_run``'s child process reads them."""
    folder = TMP / "train-bench"
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(folder / "arrays.npz", **{f"{which}.{k}": v for which, split in arrays.items() for k, v in split.items()})
    (folder / "spec.json").write_text(json.dumps(spec))
    return folder


def plain_fresh_run(folder: Path, source: Path, epochs: int, threads: int) -> dict:
    """One ``plain_train`` in a fresh process (``--plain-child``) on ``plain_inputs``' files: its point."""
    import subprocess

    out = subprocess.run([sys.executable, "-m", "benchmarks.train_plain", str(folder), str(source), str(epochs),
                          str(threads)], capture_output=True, text=True, check=True, cwd=REPO)
    *said, point = out.stdout.strip().splitlines()
    say("\n".join(said) + f" (fit {json.loads(point)['fit_wall_s']} s)")
    return json.loads(point)


def plain_in_fresh_processes(source: Path, epochs: int, arrays: dict, spec: dict, threads: int, repeats: int) -> dict:
    """``plain_train`` in ``repeats`` fresh processes; the median run."""
    folder = plain_inputs(arrays, spec)
    return median_point([plain_fresh_run(folder, source, epochs, threads) for _ in range(repeats)])


def plain_child(folder: Path, source: str, epochs: int, threads: int) -> None:
    """One plain run in this fresh process; its point as the last line of stdout."""
    saved = np.load(folder / "arrays.npz")
    arrays: dict = {}
    for key in saved.files:
        which, name = key.split(".", 1)
        arrays.setdefault(which, {})[name] = saved[key]
    spec = json.loads((folder / "spec.json").read_text())
    from benchmarks.train_bench import STORAGE, overrides

    point = plain_train(bench_config(source, STORAGE, overrides(epochs, 1)), arrays, spec, threads)
    print(json.dumps(point))


def median_point(runs: list[dict]) -> dict:
    """The run with the median fit wall time, with every run's in ``fit_wall_all_s``."""
    ranked = sorted(runs, key=lambda p: p["fit_wall_s"])
    return {**ranked[(len(ranked) - 1) // 2], "fit_wall_all_s": [p["fit_wall_s"] for p in runs]}


if __name__ == "__main__":
    plain_child(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
