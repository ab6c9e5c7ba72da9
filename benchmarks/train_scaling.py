"""Worker scaling for train_bench: 2 workers against 1 on a data set large enough to split, and the crossover.

Why a second data set: on the 160k-row comparison every run is dominated by fixed costs (worker start-up),
so it cannot say whether a second worker speeds the epochs up. Here the same loop trains on ``rows``
generated rows (80% train) with 1 and then 2 workers in one Ray session, and ``scaling_2_vs_1`` is the
ratio of their steady-state throughputs (train rows / (train + validation pass) seconds).

The crossover: a run of N training rows and E epochs costs ``fixed_w + E * N / r_w`` seconds with w
workers, where ``fixed_w`` is everything but the train and validation passes (start-up, set-up,
reports, checkpoints, tail: measured by the fit breakdown) and ``r_w`` the steady throughput. Two
workers pay off once ``N * E >= (fixed_2 - fixed_1) / (1/r_1 - 1/r_2)`` training rows x epochs; never
when ``r_2 <= r_1``.
"""

from __future__ import annotations


def crossover(one: dict, two: dict) -> dict:
    """Rows x epochs from which 2 workers finish a fit() sooner than 1 (None: they never do)."""
    fixed = {w: p["fit_wall_s"] - p["fit_breakdown"]["epochs_s"] for w, p in ((1, one), (2, two))}
    per_row = {1: 1 / one["rows_per_s"], 2: 1 / two["rows_per_s"]}
    saved_per_row = per_row[1] - per_row[2]
    threshold = None if saved_per_row <= 0 else max(fixed[2] - fixed[1], 0.0) / saved_per_row
    return {"fixed_s": {str(w): round(v, 2) for w, v in fixed.items()},
            "rows_per_s": {"1": one["rows_per_s"], "2": two["rows_per_s"]},
            "train_rows_x_epochs": None if threshold is None else round(threshold),
            "rule": "2 workers when train rows x epochs >= train_rows_x_epochs (fixed_2 - fixed_1) / "
                    "(1/r_1 - 1/r_2), from this run's fixed costs and steady throughputs; else 1"}


def run(ray_train, prepare_cfg, cfg_for, session, say, batch_sizes: list[int], ddp_cfg=None) -> dict:
    """Prepare the scaling set, train it with 1 and 2 workers per batch size (``cfg_for(workers, batch)``),
    and return the figures: points, ratio and crossover per batch size; the first batch size is the
    headline (the shipped ``trainer.batch_size``). ``ddp_cfg(workers, batch)``: the same with
    ``trainer.average_every_steps=1``, run at the headline batch with 2 workers, side by side with the
    shipped local SGD, with each run's validation loss (foundry/train/sync.py)."""
    from foundry.data.pipeline import prepare
    from foundry.models import model_spec

    by_batch = {}
    with session() as info:
        prepared = prepare(prepare_cfg.data)
        spec = model_spec(prepare_cfg.model, prepared.preprocessor)
        for batch in batch_sizes:
            points = {w: ray_train(cfg_for(w, batch), prepared, spec, w, tag=f"[scaling, batch {batch}] ")
                      for w in (1, 2)}
            cross = crossover(points[1], points[2])
            ratio = round(points[2]["rows_per_s"] / points[1]["rows_per_s"], 3)
            say(f"  [scaling, batch {batch}] 2 workers / 1 worker throughput: {ratio}; 2 workers pay off from "
                f"{cross['train_rows_x_epochs']} train rows x epochs")
            by_batch[str(batch)] = {"scaling_2_vs_1": ratio, "points": [points[1], points[2]], "crossover": cross,
                                    "val_loss_last": {"1": points[1]["val_loss"][-1],
                                                      "2": points[2]["val_loss"][-1]}}
            if ddp_cfg is not None and batch == batch_sizes[0]:
                ddp = ray_train(ddp_cfg(2, batch), prepared, spec, 2, tag=f"[scaling, batch {batch}, DDP] ")
                ddp_ratio = round(ddp["rows_per_s"] / points[1]["rows_per_s"], 3)
                say(f"  [scaling, batch {batch}] 2 workers with DDP (gradients every step) / 1 worker: {ddp_ratio}")
                by_batch[str(batch)]["ddp"] = {"scaling_2_vs_1": ddp_ratio, "point": ddp,
                                               "val_loss_last": ddp["val_loss"][-1]}
    headline = by_batch[str(batch_sizes[0])]
    return {"ray_session": info, "split_rows": prepared.split_rows, "scaling_2_vs_1": headline["scaling_2_vs_1"],
            "scaling_2_vs_1_ddp": headline.get("ddp", {}).get("scaling_2_vs_1"), "by_batch_size": by_batch}
