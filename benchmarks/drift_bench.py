"""Drift detectors offline: cost per test window, build cost, detection delay and false alarms.

    python benchmarks/drift_bench.py [--quick] [--seeds 5] [--options default,light,online]
                                     [--out benchmarks/results/drift.json]

One process, no Ray, no storage but a model version directory under ``benchmarks/results/tmp/``.

Setup: a model version built the way the training job stages one, without Ray: 40,000 baseline churn
rows (seed 0) split by ``data.split`` (80/10/10 by customer id); the preprocessor fitted on the
training split; the default MLP (``conf/model/mlp.yaml``, [128, 64], dropout 0.1) trained with plain
torch for 5 epochs (AdamW, ``conf/trainer/cpu.yaml``'s lr, weight decay and batch size); the reference
sample is 5,000 held-out (val/test) rows drawn as ``foundry.data.pipeline`` draws it
(``data.reference_rows``, ``split.in_reference_pool``, ``split.reference_draw``). Built once, reused
while its settings are unchanged. Its validation-split AUC and error rate, and its error rate on the reference sample, go into the JSON.

What runs:
1. Cost per test window (baseline rows, windows of 500, 1,000 and 5,000 rows; reference 5,000 rows),
   the median of several ``predict`` calls on ready matrices (feature building not included), in CPU
   time of this process (``time.process_time``; one torch/BLAS thread, as the monitor actor gets from
   Ray: num_cpus 0.5 -> OMP_NUM_THREADS=1) and wall time (in the JSON; a shared machine's load inflates
   it, CPU time much less): TabularDrift (8 numerics by KS + 2 missing indicators and 4 categoricals
   by chi-square), KSDrift on the 8 numerics only, LSDDDrift (torch; the configured 1,000-row
   reference subsample, and the full 5,000), MMDDrift (torch; 100 permutations on the 1,000-row
   subsample; 10 on the full reference, and 100 on its smallest window if the estimate fits; each
   MMD measurement capped at 20 s of calls, and a window whose estimated call is over 40 s skipped),
   KSDrift on P(churn), FETDrift on the 0/1 error stream; versus a plain numpy two-sample KS test on
   the same 8 numerics (reference sorted once; per window: sort, ``searchsorted`` per column,
   asymptotic p-value from ``scipy.special.kolmogorov``, Bonferroni). Also the online detectors' cost
   per 500 rows fed row by row (as ``DetectorSuite.update_online`` feeds them), and the one-time
   ``build_suite`` cost of every ``conf/drift`` option at its shipped settings (online: the full ERT
   calibration, once).
2. Detection delay and false alarms per ``conf/drift`` option: the monitor's round logic replayed
   exactly (``DriftMonitor._drain``/``_test_round``: batches of 100 rows, every row labelled at once;
   every ``window.test_every_rows`` rows the last ``window.size`` rows are tested, the concept test on
   the last ``concept.window_rows`` errors, online verdicts collected since the last round; a round
   drifts when ``votes_required`` voting detectors flag; ``RetrainController`` on a fake clock decides).
   Delay: per scenario and seed, 3,000 baseline rows then drifted rows; the drifted rows seen when
   the episode starts (median and max over seeds), or "not detected" within 10,000 drifted rows.
   Rounds come every ``test_every_rows`` rows, so delays are multiples of it (500); a chance flag in
   the last round before the onset can shorten one by a round. An alarm during the baseline prefix
   is counted and the controller reset. Also the detector CPU time per 500 rows (online feeds +
   rounds). False alarms: 100,000 baseline rows (seed 2000; the model and reference come from seed
   0); after every episode the controller goes back to idle (consecutive 0, windows kept) so every
   alarm counts, and every detector's share of flagged rounds is recorded.

Machine: written for and run on the 2-core development VM (CPU, no GPU), ~11 minutes there (the online
calibration ~165 s and the MMD measurements most of it; ``--quick`` ~1 minute). It is shared: the load
average before and after goes into the JSON with the CPU, versions and thread counts. Figures only, no
assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

# The monitor actor (num_cpus 0.5) gets OMP_NUM_THREADS=1 from Ray: measure with the same, unless set.
THREADS_FROM_ENV = os.environ.get("OMP_NUM_THREADS")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402 -- after OMP_NUM_THREADS

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from machine_info import host, write_result  # noqa: E402 -- benchmarks/ is the script's own directory

TMP = REPO / "benchmarks" / "results" / "tmp"
VERSION_DIR = TMP / "drift-version"
VERSION = "churn-bench"
SCENARIOS = ("covariate_shift", "new_category", "concept_shift", "label_shift")
OPTIONS = ("default", "light", "online")
BATCH_ROWS = 100  # rows per ingest batch (one Serve replica flush)
MODEL = {"data_rows": 40_000, "data_seed": 0, "epochs": 5}
FULL = {"seeds": 5, "prefix_rows": 3_000, "max_drift_rows": 10_000, "false_alarm_rows": 100_000,
        "windows": [500, 1000, 5000], "reps": 7, "mmd_cap_s": 20.0}
QUICK = {"seeds": 2, "prefix_rows": 1_000, "max_drift_rows": 3_000, "false_alarm_rows": 10_000,
         "windows": [500, 1000], "reps": 3, "mmd_cap_s": 5.0}
# --quick only: a tiny online calibration (the shipped one takes ~100 s); never in the written figures.
QUICK_CALIBRATION = ["drift.detectors.online.ert=100", "drift.detectors.online.n_bootstraps=1000",
                     "drift.detectors.online.window_sizes=[20]", "drift.detectors.concept.ert=100",
                     "drift.detectors.concept.n_bootstraps=1000", "drift.detectors.concept.window_sizes=[20]"]


def say(text: str) -> None:
    print(text, flush=True)


def torch_threads() -> None:
    """Back to OMP_NUM_THREADS torch threads. An online detector's calibration (numba ``parallel=True``,
    OpenMP threading layer) sets the process's OpenMP thread count to numba's (the core count) as a side
    effect, and torch follows it; every measurement after one would otherwise run on more threads."""
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


# ---- the model version -----------------------------------------------------------------------------------

def build_version(cfg, out: Path) -> dict:
    """Train the default MLP on the training split and stage the version files (see the docstring)."""
    import torch

    from foundry import datasets
    from foundry.data import preprocessor as pp
    from foundry.data import split
    from foundry.evaluation import evaluate_predictor
    from foundry.models import build_model, model_spec
    from foundry.predictor import Predictor, write_model_files
    from foundry.tasks import loss_fn, loss_target

    data, trainer = cfg.data, cfg.trainer
    stamp = {**MODEL, "model": {"hidden_sizes": list(cfg.model.hidden_sizes), "dropout": cfg.model.dropout},
             "lr": trainer.lr, "weight_decay": trainer.weight_decay, "batch_size": trainer.batch_size,
             "reference_rows": data.reference_rows, "reference_splits": list(split.REFERENCE_SPLITS)}
    info_file = out / "bench.json"
    if info_file.exists():
        info = json.loads(info_file.read_text())
        if info.get("stamp") == stamp:
            return info
    say(f"training the benchmark model (default MLP, {MODEL['epochs']} epochs) ...")
    started = time.perf_counter()
    columns = [f.name for f in data.features] + [data.label]
    df = datasets.generate("churn", "baseline", MODEL["data_rows"], seed=MODEL["data_seed"])
    which = split.assign(df, data)
    train = df[which == "train"][columns].reset_index(drop=True)
    val = df[which == "val"][columns].reset_index(drop=True)
    pool = df[split.in_reference_pool(which)].reset_index(drop=True)
    draw = split.reference_draw(pool, data)
    reference = pool[columns].iloc[np.argsort(draw, kind="stable")[:data.reference_rows]].reset_index(drop=True)
    pre = pp.fit([pp.partial_stats(train, data)], data)
    spec = model_spec(cfg.model, pre)
    task = cfg.data.task
    torch.manual_seed(trainer.seed)
    model = build_model(spec)
    enc = pre.transform_with_label(train)
    x_num, x_cat, y = (torch.from_numpy(enc[k]) for k in ("x_num", "x_cat", "y"))
    opt = torch.optim.AdamW(model.parameters(), lr=trainer.lr, weight_decay=trainer.weight_decay)
    loss = loss_fn(task)
    gen = torch.Generator().manual_seed(trainer.seed)
    model.train()
    for _ in range(MODEL["epochs"]):
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), trainer.batch_size):
            idx = order[i:i + trainer.batch_size]
            opt.zero_grad()
            logits, target = loss_target(task, model(x_num[idx], x_cat[idx]), y[idx])
            loss(logits, target).backward()
            opt.step()
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    write_model_files(out, model.state_dict(), spec, pre, reference)
    predictor = Predictor.from_dir(out)
    val_metrics = evaluate_predictor(predictor, [val])
    ref_metrics = evaluate_predictor(predictor, [reference])
    info = {"stamp": stamp, "train_rows": len(train), "val_rows": len(val), "reference_rows": len(reference),
            "train_seconds": round(time.perf_counter() - started, 1),
            "val": {"roc_auc": round(val_metrics["roc_auc"], 4), "error_rate": round(1 - val_metrics["accuracy"], 4)},
            "reference": {"roc_auc": round(ref_metrics["roc_auc"], 4),
                          "error_rate": round(1 - ref_metrics["accuracy"], 4)},
            "churn_rate_train": round(float(train[data.label].mean()), 4)}
    info_file.write_text(json.dumps(info, indent=2) + "\n")
    return info


# ---- streams ---------------------------------------------------------------------------------------------

@dataclass
class Stream:
    """Live rows as the monitor holds them: encoded features, scores and the 0/1 error of each row."""

    x_num: np.ndarray
    x_cat: np.ndarray
    scores: np.ndarray
    errors: np.ndarray

    def __len__(self) -> int:
        return len(self.x_num)

    @staticmethod
    def concat(parts: list[Stream]) -> Stream:
        return Stream(*(np.concatenate([getattr(p, k) for p in parts]) for k in ("x_num", "x_cat", "scores",
                                                                                  "errors")))


def make_stream(predictor, features: list[str], label: str, scenario: str, rows: int, seed: int) -> Stream:
    from foundry import datasets
    from foundry.drift.detectors import _errors

    df = datasets.generate("churn", scenario, rows, seed=seed)
    pred = predictor.predict(df[features])
    errs = _errors(predictor.preprocessor.task, pred.values, df[label].to_numpy())
    return Stream(pred.encoded["x_num"].astype(np.float32), pred.encoded["x_cat"].astype(np.int64),
                  pred.proba.astype(np.float32), errs)


# ---- part 1: cost per window -----------------------------------------------------------------------------

class NumpyKS:
    """Two-sample KS per column against a fixed reference, vectorised numpy; Bonferroni over columns."""

    def __init__(self, x_ref: np.ndarray, p_val: float = 0.05):
        self.ref = np.sort(np.asarray(x_ref, dtype=np.float64), axis=0)
        self.p_val = p_val

    def predict(self, x: np.ndarray) -> dict:
        from scipy.special import kolmogorov

        n, m = len(self.ref), len(x)
        xs = np.sort(np.asarray(x, dtype=np.float64), axis=0)
        stat = np.empty(xs.shape[1])
        for j in range(xs.shape[1]):
            points = np.concatenate([self.ref[:, j], xs[:, j]])
            stat[j] = np.abs(np.searchsorted(self.ref[:, j], points, side="right") / n
                             - np.searchsorted(xs[:, j], points, side="right") / m).max()
        p = kolmogorov(np.sqrt(n * m / (n + m)) * stat)
        return {"data": {"is_drift": int(p.min() < self.p_val / len(p)), "p_val": p, "distance": stat}}


def time_calls(fn, reps: int, cap_s: float | None = None) -> tuple[dict, object]:
    """Median CPU and wall time of ``reps`` calls after one warm-up call, and the last call's result.
    With ``cap_s`` (wall seconds), fewer calls: the warm-up call alone is the measurement when it takes
    more than ``cap_s / 2``. CPU time (``time.process_time``) is the figure to read on a loaded machine."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = fn()
    cpu, wall = [time.process_time() - cpu0], [time.perf_counter() - wall0]
    n = reps if cap_s is None else max(0, min(reps, int(cap_s / wall[0]) - 1))
    if n:
        cpu, wall = [], []
        for _ in range(n):
            cpu0, wall0 = time.process_time(), time.perf_counter()
            result = fn()
            cpu.append(time.process_time() - cpu0)
            wall.append(time.perf_counter() - wall0)
    return {"ms": round(statistics.median(cpu) * 1e3, 2), "wall_ms": round(statistics.median(wall) * 1e3, 2),
            "min_wall_ms": round(min(wall) * 1e3, 2), "calls": len(cpu), "capped": len(cpu) < reps}, result


def window_costs(version_dir: Path, baseline: Stream, s: dict) -> tuple[list[dict], dict]:
    import pandas as pd
    from alibi_detect.cd import (
        CVMDriftOnline,
        FETDrift,
        FETDriftOnline,
        KSDrift,
        LSDDDrift,
        MMDDrift,
        TabularDrift,
    )

    from foundry.drift import features
    from foundry.drift.detectors import REFERENCE_FILE, _errors, _subsample
    from foundry.predictor import Predictor

    predictor = Predictor.from_dir(version_dir)
    pre = predictor.preprocessor
    reference = pd.read_parquet(version_dir / REFERENCE_FILE)
    ref_pred = predictor.predict(reference)
    ref_num, ref_cat = ref_pred.encoded["x_num"], ref_pred.encoded["x_cat"]
    k = len(pre.numeric)
    ref = {"tabular": features.tabular_matrix(ref_num, ref_cat), "numeric": ref_num[:, :k].astype(np.float32),
           "dense": features.dense_matrix(pre, ref_num, ref_cat),
           "prediction": features.prediction_matrix(pre.task, ref_pred.proba),
           "errors": _errors(pre.task, ref_pred.values, reference[pre.label].to_numpy()).reshape(-1, 1)}
    dense1k = _subsample(ref["dense"], 1000)
    shapes = {"reference_rows": len(reference), "numeric_columns": k, "tabular_columns": ref["tabular"].shape[1],
              "dense_columns": ref["dense"].shape[1]}
    say(f"  reference: {shapes}")

    built: dict[str, float] = {}

    def build(name, make):
        t = time.process_time()
        det = make()
        built[name] = round(time.process_time() - t, 3)
        return det

    dets = {  # name -> (detector, matrix kind)
        "numpy KS (8 numerics)": (build("numpy KS", lambda: NumpyKS(ref["numeric"])), "numeric"),
        "KSDrift (8 numerics)": (build("KSDrift numerics", lambda: KSDrift(ref["numeric"], p_val=0.05)), "numeric"),
        "TabularDrift (14 columns)": (build("TabularDrift", lambda: TabularDrift(
            ref["tabular"], p_val=0.05, categories_per_feature=features.categorical_columns(pre),
            correction="bonferroni")), "tabular"),
        "LSDDDrift ref 1,000": (build("LSDD ref 1000", lambda: LSDDDrift(dense1k, backend="pytorch", p_val=0.05,
                                                                          n_permutations=100)), "dense"),
        "LSDDDrift ref 5,000": (build("LSDD ref 5000", lambda: LSDDDrift(ref["dense"], backend="pytorch", p_val=0.05,
                                                                          n_permutations=100)), "dense"),
        "KSDrift P(churn)": (build("KS prediction", lambda: KSDrift(ref["prediction"], p_val=0.05)), "prediction"),
        "FETDrift errors": (build("FET errors", lambda: FETDrift(ref["errors"], p_val=0.01, alternative="greater")),
                            "errors"),
    }
    live = {"numeric": baseline.x_num[:, :k], "tabular": features.tabular_matrix(baseline.x_num, baseline.x_cat),
            "dense": features.dense_matrix(pre, baseline.x_num, baseline.x_cat),
            "prediction": features.prediction_matrix(pre.task, baseline.scores),
            "errors": baseline.errors.reshape(-1, 1)}

    points = []

    def measure(name, det, kind, window, cap=None):
        x = live[kind][:window]
        cost, pred = time_calls(lambda: det.predict(x), s["reps"], cap)
        points.append({"detector": name, "window": window, **cost, "is_drift": bool(pred["data"]["is_drift"])})
        say(f"  {name:<40} window {window:>5}: {cost['ms']:>10.2f} CPU ms, {cost['wall_ms']:>10.2f} wall ms "
            f"({cost['calls']} calls)")
        return cost

    for window in s["windows"]:
        for name, (det, kind) in dets.items():
            measure(name, det, kind, window)

    # MMD: a permutation test over the (reference + window)^2 kernel matrix. Each series runs its windows
    # smallest first and skips a window whose estimate (the last call scaled by the matrix size) is over
    # twice the cap; 100 permutations on the full reference are estimated from 10 first.
    def mmd_series(name, det, n_ref, perms_note=None):
        last = None
        for window in s["windows"]:
            if last is not None:
                estimate = last[1] * ((n_ref + window) / (n_ref + last[0])) ** 2
                if estimate > 2 * s["mmd_cap_s"]:
                    points.append({"detector": name, "window": window, "skipped": True,
                                   "estimated_wall_ms": round(estimate * 1e3)})
                    say(f"  {name:<40} window {window:>5}: skipped (estimated {estimate:.0f} s a call)")
                    continue
            cost = measure(name, det, "dense", window, s["mmd_cap_s"])
            last = (window, cost["wall_ms"] / 1e3)

    mmd_series("MMDDrift ref 1,000, 100 perms", build("MMD ref 1000", lambda: MMDDrift(
        dense1k, backend="pytorch", p_val=0.05, n_permutations=100)), 1000)
    mmd10 = build("MMD ref 5000, 10 perms", lambda: MMDDrift(ref["dense"], backend="pytorch", p_val=0.05,
                                                             n_permutations=10))
    mmd_series("MMDDrift ref 5,000, 10 perms", mmd10, len(ref["dense"]))
    ten = next((p for p in points if p["detector"] == "MMDDrift ref 5,000, 10 perms" and not p.get("skipped")), None)
    if ten is not None and ten["wall_ms"] * 10 / 1e3 <= 2 * s["mmd_cap_s"]:
        mmd100 = MMDDrift(ref["dense"], backend="pytorch", p_val=0.05, n_permutations=100)
        measure("MMDDrift ref 5,000, 100 perms", mmd100, "dense", ten["window"], s["mmd_cap_s"])
    elif ten is not None:
        points.append({"detector": "MMDDrift ref 5,000, 100 perms", "window": ten["window"], "skipped": True,
                       "estimated_wall_ms": round(ten["wall_ms"] * 10)})
        say(f"  MMDDrift ref 5,000, 100 perms: skipped (estimated {ten['wall_ms'] / 100:.0f} s a call)")

    # Agreement of the numpy KS with alibi's (same columns, several windows).
    agree = []
    for i in range(5):
        x = live["numeric"][i * 1000:(i + 1) * 1000]
        a, b = dets["KSDrift (8 numerics)"][0].predict(x)["data"], dets["numpy KS (8 numerics)"][0].predict(x)["data"]
        agree.append({"same_verdict": bool(a["is_drift"]) == bool(b["is_drift"]),
                      "max_abs_distance_diff": float(np.abs(np.asarray(a["distance"]) - b["distance"]).max()),
                      "max_abs_p_diff": float(np.abs(np.asarray(a["p_val"]) - b["p_val"]).max())})

    # Online detectors: cost per 500 rows fed one row at a time (as DetectorSuite._feed_online does); the
    # cost of a row does not depend on the calibration (ERT, bootstraps), so a small one is used here.
    online_ref = _subsample(ref["numeric"], 1000)
    cvm = build("CVMDriftOnline (small calibration)", lambda: CVMDriftOnline(
        online_ref, ert=100, window_sizes=[200], n_bootstraps=2000, verbose=False))
    fet_online = build("FETDriftOnline (small calibration)", lambda: FETDriftOnline(
        ref["errors"], ert=100, window_sizes=[200], n_bootstraps=2000, verbose=False))
    for name, det, x in (("CVMDriftOnline 8 numerics, per 500 rows", cvm, live["numeric"][:500]),
                         ("FETDriftOnline errors, per 500 rows", fet_online, live["errors"][:500].astype(np.float32))):
        def feed(det=det, x=x):
            for i in range(len(x)):
                det.predict(x[i])
            det.reset_state()
        cost, _ = time_calls(feed, max(3, s["reps"] // 2))
        points.append({"detector": name, "window": 500, **cost, "note": "fed row by row"})
        say(f"  {name:<40}             : {cost['ms']:>10.2f} CPU ms, {cost['wall_ms']:>10.2f} wall ms")
    return points, {"shapes": shapes, "build_cpu_seconds": built, "numpy_vs_alibi_ks": agree}


# ---- part 2: the monitor's rounds, replayed ---------------------------------------------------------------

def simulate(suite, drift, stream: Stream, onset: int | None = None, stop_after_onset: bool = True) -> dict:
    """Replay ``DriftMonitor`` rounds over ``stream`` (batches of BATCH_ROWS rows, each labelled at once)."""
    from foundry.drift.controller import Action, ControllerState, Phase, RetrainController

    w, conc = drift.window, drift.detectors.concept
    ctrl = RetrainController(drift.retrain, "bench", w.consecutive, ControllerState(reference_version=VERSION))
    suite.reset_online()
    windowed_fet = suite.cfg.concept.method.value == "fet"
    errors: deque = deque(maxlen=max(conc.window_rows, 1))
    rows_since = labels_since = 0
    online: list = []
    rounds = 0
    flags: Counter = Counter()  # detector -> rounds it flagged drift
    first_flag: dict[str, int] = {}  # detector -> drifted rows seen when it first flagged (after the onset)
    episodes: list[dict] = []
    round_seconds: list[float] = []
    busy = wall = 0.0  # CPU and wall seconds spent in detectors (online feeds and rounds)
    for start in range(0, len(stream), BATCH_ROWS):
        end = min(start + BATCH_ROWS, len(stream))
        rows_since += end - start
        t, c = time.perf_counter(), time.process_time()
        result = suite.update_online(stream.x_num[start:end], stream.x_cat[start:end])
        if result is not None:
            online.append(result)
        errs = stream.errors[start:end]
        errors.extend(errs.tolist())
        labels_since += len(errs)
        if not windowed_fet:
            result = suite.test_concept(errs)
            if result is not None:
                online.append(result)
        busy += time.process_time() - c
        wall += time.perf_counter() - t
        if rows_since < w.test_every_rows or end < w.size:
            continue
        lo = end - w.size
        t, c = time.perf_counter(), time.process_time()
        results = suite.test_window(stream.x_num[lo:end], stream.x_cat[lo:end], stream.scores[lo:end])
        if windowed_fet and len(errors) >= conc.window_rows and labels_since > 0:
            result = suite.test_concept(np.asarray(errors))
            if result is not None:
                results.append(result)
        round_seconds.append(time.process_time() - c)
        busy += round_seconds[-1]
        wall += time.perf_counter() - t
        results += online
        online = []
        rows_since = labels_since = 0
        rounds += 1
        flagged = sorted({r.detector for r in results if r.drift})
        votes = sorted({r.detector for r in results if r.vote and r.drift})
        flags.update(flagged)
        drifted_rows = None if onset is None else end - onset
        if drifted_rows is not None and drifted_rows > 0:
            for d in flagged:
                first_flag.setdefault(d, drifted_rows)
        decision = ctrl.observe(len(votes) >= w.votes_required, float(end))
        if decision.action is Action.submit:
            episodes.append({"row": end, "drifted_rows": drifted_rows, "votes": votes, "flagged": flagged})
            ctrl.state.phase = Phase.idle  # every alarm counts: back to idle, fresh evidence needed
            ctrl.state.consecutive = 0
            if stop_after_onset and drifted_rows is not None and drifted_rows > 0:
                break
    return {"rows": end, "rounds": rounds, "flags": dict(flags), "first_flag": first_flag, "episodes": episodes,
            "round_ms_median": round(statistics.median(round_seconds) * 1e3, 2) if round_seconds else None,
            "detector_ms_per_500_rows": round(busy / end * 500 * 1e3, 2),
            "detector_wall_ms_per_500_rows": round(wall / end * 500 * 1e3, 2)}


def delays(suite, drift, predictor, feats, label, s: dict) -> list[dict]:
    out = []
    for k, scenario in enumerate(SCENARIOS):
        runs = []
        for seed in range(s["seeds"]):
            prefix_seed = 100 + 10 * k + seed  # a prefix of its own per scenario: one unlucky window, not four
            stream = Stream.concat([make_stream(predictor, feats, label, "baseline", s["prefix_rows"], prefix_seed),
                                    make_stream(predictor, feats, label, scenario, s["max_drift_rows"], 200 + seed)])
            sim = simulate(suite, drift, stream, onset=s["prefix_rows"])
            after = [e for e in sim["episodes"] if e["drifted_rows"] > 0]
            runs.append({"seed": seed, "delay_rows": after[0]["drifted_rows"] if after else None,
                         "votes": after[0]["votes"] if after else [], "flagged": after[0]["flagged"] if after else [],
                         "first_flag": sim["first_flag"], "pre_onset_alarms": len(sim["episodes"]) - len(after),
                         "round_ms_median": sim["round_ms_median"],
                         "detector_ms_per_500_rows": sim["detector_ms_per_500_rows"]})
        found = [r["delay_rows"] for r in runs if r["delay_rows"] is not None]
        point = {"scenario": scenario, "seeds": len(runs), "detected": len(found),
                 "median_delay_rows": statistics.median(found) if found else None,
                 "max_delay_rows": (max(found) if len(found) == len(runs) else None),
                 "not_detected_within_rows": s["max_drift_rows"] if len(found) < len(runs) else None,
                 "votes": dict(Counter(v for r in runs for v in r["votes"])),
                 "flagged_by_episode": dict(Counter(v for r in runs for v in r["flagged"])),
                 "pre_onset_alarms": sum(r["pre_onset_alarms"] for r in runs), "runs": runs}
        out.append(point)
        say(f"    {scenario:<16} detected {len(found)}/{len(runs)}  median {point['median_delay_rows']}  "
            f"max {point['max_delay_rows']}  votes {point['votes']}")
    return out


def false_alarms(suite, drift, predictor, feats, label, rows: int) -> dict:
    stream = make_stream(predictor, feats, label, "baseline", rows, 2000)
    started = time.perf_counter()
    sim = simulate(suite, drift, stream)
    per = 100_000 / rows
    out = {"rows": rows, "rounds": sim["rounds"], "episodes": len(sim["episodes"]),
           "episodes_per_100k_rows": round(len(sim["episodes"]) * per, 2),
           "flag_rate_per_round": {d: round(n / sim["rounds"], 4) for d, n in sorted(sim["flags"].items())},
           "votes_in_episodes": dict(Counter(v for e in sim["episodes"] for v in e["votes"])),
           "episode_rows": [e["row"] for e in sim["episodes"]], "round_ms_median": sim["round_ms_median"],
           "detector_ms_per_500_rows": sim["detector_ms_per_500_rows"],
           "detector_wall_ms_per_500_rows": sim["detector_wall_ms_per_500_rows"],
           "seconds": round(time.perf_counter() - started, 1)}
    say(f"    false alarms: {out['episodes']} episodes in {rows:,} rows ({out['rounds']} rounds) -> "
        f"{out['episodes_per_100k_rows']} per 100k rows; flag rate per round {out['flag_rate_per_round']}; "
        f"round {out['round_ms_median']} CPU ms; detectors {out['detector_ms_per_500_rows']} CPU ms per 500 rows")
    return out


def option_settings(drift) -> dict:
    from omegaconf import OmegaConf

    d = OmegaConf.to_container(OmegaConf.structured(drift.detectors), enum_to_str=True)
    return {"window": OmegaConf.to_container(OmegaConf.structured(drift.window)),
            "detectors": {k: v for k, v in d.items() if v.get("enabled")}}


# ---- report ----------------------------------------------------------------------------------------------

def machine() -> dict:
    import alibi_detect
    import scipy
    import torch

    return {**host(), "numpy": np.__version__,
            "scipy": scipy.__version__, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "omp_num_threads_from_env": THREADS_FROM_ENV,
            "alibi_detect": alibi_detect.__version__}


def cost_table(points: list[dict]) -> str:
    windows = sorted({p["window"] for p in points})
    base = {p["window"]: p["ms"] for p in points if p["detector"].startswith("numpy KS")}
    names = list(dict.fromkeys(p["detector"] for p in points))
    head = "| detector | " + " | ".join(f"{w:,} rows: CPU ms (x numpy KS)" for w in windows) + " |"
    lines = [head, "|---|" + "---:|" * len(windows)]
    for name in names:
        cells = []
        for w in windows:
            p = next((q for q in points if q["detector"] == name and q["window"] == w), None)
            if p is None:
                cells.append("")
                continue
            if p.get("skipped"):
                cells.append(f"skipped (~{p['estimated_wall_ms'] / 1e3:,.0f} s)")
                continue
            ratio = p["ms"] / base[w] if base.get(w) else None
            mark = "*" if p.get("capped") else ""
            cells.append(f"{p['ms']:,.1f}{mark} ({ratio:,.0f}x)" if ratio and ratio >= 10
                         else f"{p['ms']:,.2f}{mark} ({ratio:.1f}x)" if ratio else f"{p['ms']:,.2f}{mark}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def build_table(options: dict) -> str:
    lines = ["| option | detectors built (wall s each) | total wall s | total CPU s |", "|---|---|---:|---:|"]
    for name, o in options.items():
        parts = ", ".join(f"{k} {v:.2f}" for k, v in o["build_seconds"].items())
        lines.append(f"| {name} | {parts} | {o['build_total_s']:.1f} | {o['build_cpu_s']:.1f} |")
    return "\n".join(lines)


def delay_table(options: dict, s: dict) -> str:
    lines = ["| option | detector CPU ms per 500 rows | " + " | ".join(SCENARIOS) + " | false alarms / 100k rows |",
             "|---|---:|" + "---|" * len(SCENARIOS) + "---|"]
    for name, o in options.items():
        cells = []
        for p in o["delay"]:
            if p["detected"] == 0:
                cells.append(f"not within {s['max_drift_rows']:,}")
                continue
            votes = "+".join(f"{k}" for k, _ in sorted(p["votes"].items(), key=lambda kv: -kv[1]))
            miss = "" if p["detected"] == p["seeds"] else f", {p['seeds'] - p['detected']} missed"
            worst = f"{p['max_delay_rows']:,}" if p["max_delay_rows"] is not None else f">{s['max_drift_rows']:,}"
            cells.append(f"{p['median_delay_rows']:,.0f} / {worst}{miss} ({votes})")
        fa = o["false_alarms"]
        votes = ", ".join(f"{k} {v}" for k, v in sorted(fa["votes_in_episodes"].items(), key=lambda kv: -kv[1]))
        cells.append(f"{fa['episodes_per_100k_rows']:g}" + (f" ({votes})" if votes else ""))
        lines.append(f"| {name} | {o['detector_ms_per_500_rows']:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a reduced run (smoke test; small online calibration)")
    p.add_argument("--seeds", type=int, help="seeds per drift scenario (default 5; quick 2)")
    p.add_argument("--options", default=",".join(OPTIONS), help=f"conf/drift options (default {','.join(OPTIONS)})")
    p.add_argument("--out", help="result file (default benchmarks/results/drift.json; quick: results/tmp/)")
    args = p.parse_args(argv)
    s = dict(QUICK if args.quick else FULL)
    if args.seeds:
        s["seeds"] = args.seeds
    out = Path(args.out or (TMP / "drift-quick.json" if args.quick else REPO / "benchmarks" / "results" / "drift.json"))
    started = time.time()
    load_before = os.getloadavg()

    import torch

    from foundry import config
    from foundry.drift.detectors import build_suite
    from foundry.predictor import Predictor

    torch.manual_seed(0)
    cfg = config.load(["storage.root=/unused"])
    model = build_version(cfg, VERSION_DIR)
    say(f"model: {model['train_rows']:,} training rows, val AUC {model['val']['roc_auc']}, val error rate "
        f"{model['val']['error_rate']}, reference error rate {model['reference']['error_rate']}")
    predictor = Predictor.from_dir(VERSION_DIR)
    feats, label = [f.name for f in cfg.data.features], cfg.data.label

    say("cost per test window (reference 5,000 rows)")
    baseline = make_stream(predictor, feats, label, "baseline", max(5000, *s["windows"]), 1000)
    costs, cost_info = window_costs(VERSION_DIR, baseline, s)
    torch_threads()

    options: dict[str, dict] = {}
    for name in [o for o in args.options.split(",") if o]:
        overrides = ["storage.root=/unused", f"drift={name}"]
        drift = config.load(overrides).drift
        if args.quick and (drift.detectors.online.enabled or drift.detectors.concept.method.value == "fet_online"):
            drift = config.load([*overrides, *QUICK_CALIBRATION]).drift
        say(f"conf/drift/{name}.yaml: building the detectors")
        t, c = time.perf_counter(), time.process_time()
        suite = build_suite(drift.detectors, VERSION_DIR, VERSION, say=lambda m: None)
        build_total, build_cpu = time.perf_counter() - t, time.process_time() - c
        torch_threads()
        say(f"  built in {build_total:.1f} s ({build_cpu:.1f} CPU s): {suite.build_seconds}")
        o = {"settings": option_settings(drift), "build_seconds": suite.build_seconds,
             "build_total_s": round(build_total, 2), "build_cpu_s": round(build_cpu, 2)}
        say("  detection delay (drifted rows until the episode starts)")
        o["delay"] = delays(suite, drift, predictor, feats, label, s)
        o["false_alarms"] = false_alarms(suite, drift, predictor, feats, label, s["false_alarm_rows"])
        o["round_ms_median"] = o["false_alarms"]["round_ms_median"]
        o["detector_ms_per_500_rows"] = o["false_alarms"]["detector_ms_per_500_rows"]
        options[name] = o

    result = {
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "elapsed_s": round(time.time() - started),
        "quick": args.quick,
        "machine": {**machine(), "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in os.getloadavg()]},
        "settings": {**s, "batch_rows": BATCH_ROWS, "scenarios": list(SCENARIOS), "model": model,
                     "reference": cost_info["shapes"],
                     "seeds": {"model_and_reference": MODEL["data_seed"], "cost_windows": 1000,
                               "baseline_prefix": "100 + 10 * scenario index + i", "drifted": "200 + i", "false_alarms": 2000},
                     "quick_calibration": QUICK_CALIBRATION if args.quick else None},
        "window_costs": costs,
        "window_cost_builds_cpu_s": cost_info["build_cpu_seconds"],
        "numpy_vs_alibi_ks": cost_info["numpy_vs_alibi_ks"],
        "options": options,
    }
    write_result(out, result)
    say("\nCost per test window (median CPU ms per predict call; * = capped: fewer calls):\n")
    say(cost_table(costs))
    say("\nBuild (and calibration) per conf/drift option:\n")
    say(build_table(options))
    say(f"\nDetection delay in drifted rows, median / max over {s['seeds']} seeds (voting detectors), and false "
        f"alarms in {s['false_alarm_rows']:,} baseline rows:\n")
    say(delay_table(options, s))
    say(f"\n(written to {out}; {result['elapsed_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
