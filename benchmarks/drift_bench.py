"""Drift alarms offline, through replay: false episodes on clean traffic, detection delays, benign shifts.

    python -m benchmarks.drift_bench [--seeds 20] [--clean-rows 3000000] [--configs default,online,windows]
                                     [--quick] [--out benchmarks/results/drift.json]

Everything runs through ``foundry.drift.replay.Replay``, the monitor's own decision path (detectors, the
sequential alarm's false-alarm budget, the harm estimate, ``RetrainController``) without Ray or HTTP,
the engine of ``python -m jobs.replay``; the last step times that command on 1,000,000 rows.

Setup: a model version built as the training job stages one, without Ray: 40,000 baseline churn rows
(seed 0) split by ``data.split``; the default MLP trained with plain torch for 5 epochs; probabilities
calibrated by temperature scaling on the validation split (``foundry.train.calibration``); a 5,000-row
reference sample drawn as ``foundry.data.pipeline`` draws it. Built once under ``results/tmp/``.

Per ``conf/drift`` option (``windows`` is the old windowed voting, ``drift.alarm.method=windows``, measured
on fewer clean rows because every round runs LSDD):
- false episodes: ``--clean-rows`` baseline rows in ``--seeds`` independent streams (seeds 5000+),
  labels at once, every episode the monitor would start counted (the controller answers each at
  once, so no cooldown hides one). Rate per 1,000,000 rows with its exact Poisson 95% upper bound
  (one-sided): zero episodes in 3,000,000 rows bound the rate at 1.0 per million;
- per scenario and seed (``--seeds``): 2,000 baseline rows then 8,000 drifted rows, labels at once;
  the delay to the first alarm of any kind after the onset (rows; and for the labelled-error alarm the
  labelled rows since the onset: concept and label shift change no input, only labels show them, and
  rows and labels arrive in batches of 100), the delay to the first episode, and whether the run retrained
  at all. Medians with a 95% order-statistic interval; fractions with a Clopper-Pearson interval;
- ``harmful_covariate`` again with labels delayed 10,000 rows (no label arrives in the run): the
  episode must come from the expected error (harm without labels);
- the decision path's CPU time per 1,000 clean rows (``time.process_time``; prediction excluded);
- a real data set (``real_drift.py``: ggplot2's Texas housing table from the plotnine wheel, the bench
  extra): a version trained on 2000-2006, replayed on its 659 held-out 2000-2006 rows (clean) then the
  2009-2015 rows in time order, with labels at once, and with labels too late to arrive (default policy,
  and ``harm_or_unlabelled_drift``).

Machine: written for the 2-core development VM (CPU). Figures only, no assertions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # the monitor actor's thread count (num_cpus 0.5)

import numpy as np  # noqa: E402 -- after OMP_NUM_THREADS

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.harness import TMP  # noqa: E402
from benchmarks.machine_info import host, write_result  # noqa: E402

VERSION_DIR = TMP / "drift-version"
SCENARIOS = ("covariate_shift", "new_category", "concept_shift", "label_shift", "benign_shift", "harmful_covariate")
BENIGN = ("benign_shift",)  # the model handles it (true error within harm_tolerance): a retrain is a false episode
MODEL = {"data_rows": 40_000, "data_seed": 0, "epochs": 5}
CONFIGS = {"default": [], "online": ["drift=online"], "windows": ["drift.alarm.method=windows"]}
PREFIX_ROWS, DRIFT_ROWS, DELAYED_LABEL_ROWS = 2_000, 8_000, 10_000


def say(text: str) -> None:
    print(text, flush=True)


def build_version(cfg, out: Path) -> dict:
    """The churn benchmark version (see the docstring); reused while its stamp holds."""
    from foundry import datasets

    stamp = {**MODEL, "calibrated": True, "lr": cfg.trainer.lr, "batch_size": cfg.trainer.batch_size,
             "reference_rows": cfg.data.reference_rows, "hidden_sizes": list(cfg.model.hidden_sizes)}
    info_file = out / "bench.json"
    if info_file.exists() and json.loads(info_file.read_text()).get("stamp") == stamp:
        return json.loads(info_file.read_text())
    say(f"training the benchmark model (default MLP, {MODEL['epochs']} epochs) ...")
    df = datasets.generate("churn", "baseline", MODEL["data_rows"], seed=MODEL["data_seed"])
    info = {"stamp": stamp, **stage_version(cfg, df, out, MODEL["epochs"])}
    info_file.write_text(json.dumps(info, indent=2) + "\n")
    return info


def stage_version(cfg, df, out: Path, epochs: int) -> dict:
    """Split ``df`` by ``data.split``, train ``cfg.model`` with plain torch, calibrate on the validation
    split, draw the reference sample as the pipeline does, and write the version files to ``out``."""
    import torch

    from foundry.data import preprocessor as pp
    from foundry.data import split
    from foundry.models import build_model, model_spec
    from foundry.models.evaluation import evaluate_predictor
    from foundry.models.predictor import Predictor, write_model_files
    from foundry.models.tasks import loss_fn, loss_target
    from foundry.train.calibration import CALIBRATION_FILE, fit_temperature

    data, trainer = cfg.data, cfg.trainer
    started = time.perf_counter()
    columns = [f.name for f in data.features] + [data.label]
    which = split.assign(df, data)
    train = df[which == "train"][columns].reset_index(drop=True)
    val = df[which == "val"][columns].reset_index(drop=True)
    pool = df[split.in_reference_pool(which)].reset_index(drop=True)
    draw = split.reference_draw(pool, data)
    reference = pool[columns].iloc[np.argsort(draw, kind="stable")[:data.reference_rows]].reset_index(drop=True)
    pre = pp.fit([pp.partial_stats(train, data)], data)
    spec = model_spec(cfg.model, pre)
    torch.manual_seed(trainer.seed)
    model = build_model(spec)
    enc = pre.transform_with_label(train)
    x_num, x_cat, y = (torch.from_numpy(enc[k]) for k in ("x_num", "x_cat", "y"))
    opt = torch.optim.AdamW(model.parameters(), lr=trainer.lr, weight_decay=trainer.weight_decay)
    loss = loss_fn(data.task)
    gen = torch.Generator().manual_seed(trainer.seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        for i in range(0, len(y), trainer.batch_size):
            idx = order[i:i + trainer.batch_size]
            opt.zero_grad()
            logits, target = loss_target(data.task, model(x_num[idx], x_cat[idx]), y[idx])
            loss(logits, target).backward()
            opt.step()
    model.eval()
    out.mkdir(parents=True, exist_ok=True)
    write_model_files(out, model.state_dict(), spec, pre, reference)
    predictor = Predictor.from_dir(out)
    venc = pre.transform_with_label(val)
    calibration = fit_temperature(data.task, predictor.logits(venc["x_num"], venc["x_cat"]), venc["y"])
    (out / CALIBRATION_FILE).write_text(json.dumps(calibration, indent=2))
    predictor = Predictor.from_dir(out)
    return {"train_rows": len(train), "val_rows": len(val), "reference_rows": len(reference),
            "train_seconds": round(time.perf_counter() - started, 1), "calibration": calibration,
            "val_error_rate": round(1 - evaluate_predictor(predictor, [val])["accuracy"], 4)}


# ---- a real data set: Texas housing (benchmarks/real_drift.py) ---------------------------------------------

def real_data() -> dict:
    """The Texas housing version (2000-2006) replayed: its 2000-2006 held-out rows (clean), then 2009-2015 in
    time order (real drift), labels at once and, again, with no label in time (10,000 rows late)."""
    from benchmarks import real_drift
    from foundry.config import sources as config_sources
    from foundry.drift.replay import Replay, replay_frames

    parts = real_drift.split("monthly")
    cfg_overrides = ("data=txhousing", "model=mlp_small", "trainer.batch_size=32", "trainer.lr=0.01")
    cfg = config_sources.load(config_sources.ConfigSources(cfg_overrides, str(REPO / "benchmarks" / "conf")))
    out = TMP / "drift-real-version"
    say("== real data: Texas housing (2000-2006 version; 2009-2015 live, in time order)")
    info = stage_version(cfg, parts["train"], out, epochs=20)
    clean, live = parts["baseline"], real_drift.live_order(parts["live"], seed=0)
    result = {"data": "ggplot2 txhousing (plotnine wheel), label monthly", "version": info,
              "clean_rows": len(clean), "live_rows": len(live)}
    unlabelled = config_sources.load(config_sources.ConfigSources(
        (*cfg_overrides, "drift.alarm.policy=harm_or_unlabelled_drift"), str(REPO / "benchmarks" / "conf")))
    for name, delay, run_cfg in (("labels_at_once", 0, cfg), ("labels_late", 10_000, cfg),
                                 ("labels_late_policy_harm_or_unlabelled_drift", 10_000, unlabelled)):
        engine = Replay(run_cfg, out, "real", label_delay_rows=delay, batch_rows=20, onset_row=len(clean))
        s = replay_frames(engine, [clean, live])
        result[name] = {"false_episodes_on_clean_rows": s.false_episodes, "alarms": s.alarms,
                        "detection_delay_rows": s.detection_delay_rows, "episode_delay_rows": s.episode_delay_rows,
                        "detection_delay_labelled_rows": s.detection_delay_labelled_rows}
        say(f"    {name}: {s.false_episodes} episodes on {len(clean)} clean rows; drift: first alarm after "
            f"{s.detection_delay_rows} rows, episode after {s.episode_delay_rows} ({s.alarms})")
    return result


# ---- statistics ----------------------------------------------------------------------------------------------

def poisson_upper(count: int, exposure: float, confidence: float = 0.95) -> float:
    """Exact one-sided upper bound of a Poisson rate (events per unit of ``exposure``)."""
    from scipy import stats

    return float(stats.chi2.ppf(confidence, 2 * (count + 1)) / 2 / exposure)


def median_interval(values: list[float]) -> tuple[float | None, list[float | None]]:
    """Median and its distribution-free 95% interval (order statistics of a Binomial(n, 1/2))."""
    from scipy import stats

    xs = sorted(values)
    n = len(xs)
    if not n:
        return None, [None, None]
    lo = max(int(stats.binom.ppf(0.025, n, 0.5)) - 1, 0)  # n=20: the 6th and 15th values (95.9%)
    hi = n - 1 - lo
    return float(statistics.median(xs)), [float(xs[lo]), float(xs[hi])]


def fraction_interval(k: int, n: int) -> list[float]:
    from scipy import stats

    lo = 0.0 if k == 0 else float(stats.beta.ppf(0.025, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(0.975, k + 1, n - k))
    return [round(lo, 4), round(hi, 4)]


# ---- runs -----------------------------------------------------------------------------------------------------

def replay(cfg, parts: list[tuple[str, int, int]], onset: int | None, label_delay: int = 0):
    """One monitor over the concatenated parts (scenario, rows, seed); returns its ReplaySummary."""
    from foundry import datasets
    from foundry.drift.replay import Replay, replay_frames

    engine = Replay(cfg, VERSION_DIR, "bench", label_delay_rows=label_delay, batch_rows=100, onset_row=onset)
    frames = (datasets.generate("churn", scenario, rows, seed=seed) for scenario, rows, seed in parts)
    return replay_frames(engine, frames)


def false_episodes(cfg, clean_rows: int, seeds: int) -> dict:
    per_seed = max(clean_rows // seeds, 1)
    chunk = 50_000
    episodes = alarms = rows = 0
    cpu = []
    for i in range(seeds):
        parts = [("baseline", min(chunk, per_seed - j), 5000 + 100 * i + j // chunk) for j in range(0, per_seed, chunk)]
        s = replay(cfg, parts, onset=None)
        episodes += s.episodes
        alarms += sum(s.alarms.values())
        rows += s.rows
        cpu.append(s.monitor_cpu_ms_per_1000_rows)
    rate = episodes / rows * 1e6
    say(f"    clean: {rows:,} rows, {episodes} episodes, {alarms} alarms of any kind; "
        f"{rate:.2f} per million (95% upper {poisson_upper(episodes, rows) * 1e6:.2f}); CPU {statistics.median(cpu):.1f} "
        "ms / 1,000 rows")
    return {"clean_rows": rows, "false_episodes": episodes, "false_alarms_any_kind": alarms,
            "false_episodes_per_million": round(rate, 3),
            "false_episodes_per_million_ci_high": round(poisson_upper(episodes, rows) * 1e6, 3),
            "monitor_cpu_ms_per_1000_rows": round(statistics.median(cpu), 2)}


def scenario_runs(cfg, scenario: str, seeds: int, label_delay: int = 0) -> dict:
    delays, labelled_delays, episode_delays, retrained = [], [], [], 0
    kinds: dict[str, int] = {}
    for i in range(seeds):
        s = replay(cfg, [("baseline", PREFIX_ROWS, 100 + i), (scenario, DRIFT_ROWS, 200 + i)], onset=PREFIX_ROWS,
                   label_delay=label_delay)
        if s.detection_delay_rows is not None:
            delays.append(s.detection_delay_rows)
        if s.detection_delay_labelled_rows is not None:
            labelled_delays.append(s.detection_delay_labelled_rows)
        if s.episode_delay_rows is not None:
            episode_delays.append(s.episode_delay_rows)
            retrained += 1
        for k, v in s.alarms.items():
            kinds[k] = kinds.get(k, 0) + v
    median, interval = median_interval(delays)
    ep_median, ep_interval = median_interval(episode_delays)
    lab_median, lab_interval = median_interval(labelled_delays)
    out = {"runs": seeds, "detected": len(delays), "median_delay_rows": median, "median_delay_rows_ci": interval,
           "median_labelled_delay_rows": lab_median, "median_labelled_delay_rows_ci": lab_interval,
           "episodes_started": retrained, "median_episode_delay_rows": ep_median,
           "median_episode_delay_rows_ci": ep_interval, "alarms_by_kind": kinds,
           "no_retrain_fraction": round(1 - retrained / seeds, 4),
           "no_retrain_fraction_ci": fraction_interval(seeds - retrained, seeds)}
    if scenario in BENIGN:
        out["benign_no_retrain_fraction"] = out["no_retrain_fraction"]
    say(f"    {scenario + (f' (labels {label_delay:,} rows late)' if label_delay else ''):<48} detected {len(delays)}/"
        f"{seeds}, median delay {median} rows {interval} ({lab_median} labelled); episodes {retrained}/{seeds}, median delay {ep_median}")
    return out


def replay_command(rows: int) -> dict:
    """``python -m jobs.replay`` on ``rows`` generated clean rows, as a user would run it (one process)."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "jobs.replay", "--version-dir", str(VERSION_DIR), "--generate",
                           f"baseline:{rows}", "--seed", "9000", "--quiet"], cwd=REPO, capture_output=True, text=True,
                          check=False)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        return {"rows": rows, "failed": proc.stderr[-2000:]}
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    say(f"  python -m jobs.replay on {rows:,} rows: {wall:.0f} s ({summary['rows_per_s']:,.0f} rows/s in the loop)")
    return {"rows": rows, "wall_s": round(wall, 1), "rows_per_s": summary["rows_per_s"],
            "episodes": summary["episodes"], "monitor_cpu_ms_per_1000_rows": summary["monitor_cpu_ms_per_1000_rows"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--clean-rows", type=int, default=3_000_000)
    p.add_argument("--windows-clean-rows", type=int, default=200_000, help="the old windowed voting's clean rows")
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--replay-rows", type=int, default=1_000_000)
    p.add_argument("--quick", action="store_true", help="2 seeds, 60,000 clean rows (results/tmp/)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.clean_rows, args.windows_clean_rows, args.replay_rows = 2, 60_000, 20_000, 100_000
    out = Path(args.out or (TMP / "drift-quick.json" if args.quick else REPO / "benchmarks/results/drift.json"))

    import alibi_detect
    import torch

    from foundry import config

    started = time.perf_counter()
    load_before = os.getloadavg()
    cfg0 = config.load([])
    info = build_version(cfg0, VERSION_DIR)
    say(f"version: {info['reference_rows']} reference rows, validation error {info['val_error_rate']}, "
        f"temperature {info['calibration']['temperature']:.3f}")
    result = {"generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "quick": args.quick,
              "seeds": args.seeds, "machine": {**host(), "torch": torch.__version__, "alibi_detect": alibi_detect.__version__,
                                               "load_average_before": [round(x, 2) for x in load_before]},
              "settings": {"prefix_rows": PREFIX_ROWS, "drift_rows": DRIFT_ROWS, "batch_rows": 100,
                           "delayed_label_rows": DELAYED_LABEL_ROWS, "model": info},
              "configs": {}}
    for name in args.configs.split(","):
        cfg = config.load(CONFIGS[name])
        say(f"== {name} (drift.alarm.method={cfg.drift.alarm.method.value}, budget "
            f"{cfg.drift.alarm.expected_rows_between_false_episodes:,.0f} rows, policy {cfg.drift.alarm.policy.value})")
        clean = args.windows_clean_rows if name == "windows" else args.clean_rows
        seeds = min(args.seeds, 5) if name == "windows" else args.seeds
        entry = false_episodes(cfg, clean, seeds)
        entry["scenarios"] = {sc: scenario_runs(cfg, sc, seeds) for sc in SCENARIOS}
        entry["scenarios"]["harmful_covariate_labels_late"] = scenario_runs(cfg, "harmful_covariate", seeds,
                                                                            label_delay=DELAYED_LABEL_ROWS)
        result["configs"][name] = entry
        write_result(out, result)
    try:
        result["real"] = real_data()
    except ImportError as exc:  # the bench extra (plotnine's data files) is not installed
        result["real"] = {"skipped": f"{exc}: pip install -e '.[bench]'"}
    write_result(out, result)
    result["replay_command"] = replay_command(args.replay_rows)
    result["elapsed_s"] = round(time.perf_counter() - started)
    result["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    write_result(out, result)
    say(f"wrote {out} ({result['elapsed_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
