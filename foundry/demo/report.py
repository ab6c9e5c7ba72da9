"""The demo's report folder: what happened, as figures a person can read and files a script can.

Inputs are plain records the demo collected (every request, every monitor round, the episode's
events), so the report can be rebuilt or tested without a cluster. Time runs in seconds from the
first request; the drift onset and the episode's milestones are drawn on every plot, so the three
pictures line up: statistics cross their thresholds, accuracy drops, the new version takes over,
latency stays flat.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

FIGURES = {"drift": "drift_statistics.png", "accuracy": "live_accuracy.png", "latency": "latency.png"}
# Milestones drawn as vertical lines (label, colour), in the order they happen.
MILESTONES = {"onset": ("drift starts", "black"), "drift_detected": ("drift detected", "tab:red"),
              "retrain_submitted": ("retrain submitted", "tab:orange"), "promoted": ("promoted", "tab:purple"),
              "candidate": ("passed the gate (candidate)", "tab:purple"),
              "rollout_started": ("canary/shadow starts", "tab:brown"), "rolled_out": ("new model serving", "tab:green")}
ACCURACY_WINDOW_ROWS = 500  # the rolling window of the live accuracy curve
LATENCY_BIN_S = 5.0


def _mark(ax, marks: dict[str, float], t0: float) -> None:
    for kind, (label, colour) in MILESTONES.items():
        if kind in marks:
            ax.axvline(marks[kind] - t0, color=colour, linestyle="--", linewidth=1, label=label)


def _figure():
    import matplotlib

    matplotlib.use("Agg")  # files only: the demo may run without a display
    import matplotlib.pyplot as plt

    return plt


def _finish(plt, fig, ax, path: Path, marks: dict[str, float], t0: float, ylabel: str, title: str,
            legend: str) -> None:
    """Milestones, labels and legend the same on every figure (their time axes line up), then save."""
    _mark(ax, marks, t0)
    ax.set_xlabel("seconds since the first request")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:  # a figure with nothing labelled (no milestones, no series) has none
        ax.legend(loc=legend, fontsize=8, ncol=2 if legend == "lower left" else 1)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def rounds_frame(rounds: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (round, detector): time, p-value, statistic, threshold, verdict."""
    rows = [{"round": r["round"], "at": r["at"], "detector": x["detector"], "p_value": x.get("p_value"),
             "statistic": x.get("statistic"), "threshold": x.get("threshold"), "drift": bool(x.get("drift")),
             "vote": bool(x.get("vote"))}
            for r in rounds for x in r.get("results", [])]
    return pd.DataFrame(rows, columns=["round", "at", "detector", "p_value", "statistic", "threshold", "drift",
                                       "vote"])


def plot_drift(path: Path, rounds: list[dict[str, Any]], marks: dict[str, float], t0: float) -> None:
    frame = rounds_frame(rounds)
    alarm = frame[frame["detector"].str.startswith("alarm.")]
    if not alarm.empty:
        _plot_alarm(path, alarm, marks, t0)
        return
    plt = _figure()
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for detector, group in frame.groupby("detector", sort=True):
        g = group.dropna(subset=["p_value"])
        if g.empty:  # online detectors give a statistic against a threshold instead of a p-value
            continue
        x = g["at"] - t0
        p = g["p_value"].clip(lower=1e-12)
        line, = ax.plot(x, p, marker=".", linewidth=1, label=f"{detector}{'' if g['vote'].any() else ' (no vote)'}")
        hit = g["drift"]
        ax.scatter(x[hit], p[hit], color=line.get_color(), marker="x", s=40, zorder=3)
        thresholds = g["threshold"].dropna()
        if not thresholds.empty:
            ax.axhline(float(thresholds.iloc[-1]), color=line.get_color(), linestyle=":", linewidth=0.8)
    ax.set_yscale("log")
    _finish(plt, fig, ax, path, marks, t0, "p-value (x: drift; dotted: threshold)",
            "Drift detectors, one point per monitor round", "lower left")


def _plot_alarm(path: Path, alarm: pd.DataFrame, marks: dict[str, float], t0: float) -> None:
    """The sequential alarm: each signal family's share of the evidence (log) against the budget's log."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for detector, group in alarm.groupby("detector", sort=True):
        g = group.dropna(subset=["statistic"])
        if g.empty:
            continue
        x = g["at"] - t0
        line, = ax.plot(x, g["statistic"], marker=".", linewidth=1, label=detector.removeprefix("alarm."))
        hit = g["drift"]
        ax.scatter(x[hit], g["statistic"][hit], color=line.get_color(), marker="x", s=40, zorder=3)
    thresholds = alarm["threshold"].dropna()
    if not thresholds.empty:
        ax.axhline(float(thresholds.iloc[-1]), color="black", linestyle=":", linewidth=0.8)
    _finish(plt, fig, ax, path, marks, t0, "log evidence (x: alarm; dotted: log of the false-alarm budget)",
            "Sequential drift alarm, by signal family", "upper left")


def rolling_accuracy(traffic: pd.DataFrame, window_rows: int = ACCURACY_WINDOW_ROWS) -> pd.DataFrame:
    """Accuracy over the last ``window_rows`` answered rows, at each answered request (time order)."""
    ok = traffic[traffic["status"] == 200].sort_values("at")
    if ok.empty:
        return pd.DataFrame(columns=["at", "accuracy", "version"])
    requests = max(1, round(window_rows / max(ok["rows"].mean(), 1)))
    correct = ok["correct"].rolling(requests, min_periods=1).sum()
    rows = ok["rows"].rolling(requests, min_periods=1).sum()
    return pd.DataFrame({"at": ok["at"].to_numpy(), "accuracy": (correct / rows).to_numpy(),
                         "version": ok["version"].to_numpy()})


def plot_accuracy(path: Path, traffic: pd.DataFrame, marks: dict[str, float], t0: float) -> None:
    plt = _figure()
    curve = rolling_accuracy(traffic)
    fig, ax = plt.subplots(figsize=(10, 4))
    for version, group in curve.groupby("version", sort=False):
        ax.plot(group["at"] - t0, group["accuracy"], marker=".", markersize=2, linewidth=0.8,
                label=f"served by {version}")
    ax.set_ylim(0, 1)
    _finish(plt, fig, ax, path, marks, t0, f"accuracy, last {ACCURACY_WINDOW_ROWS} rows",
            "Live accuracy seen by users (labels from /feedback)", "lower left")


def latency_bins(traffic: pd.DataFrame, t0: float, bin_s: float = LATENCY_BIN_S) -> pd.DataFrame:
    """p50/p99 latency (ms) and failed requests per time bin."""
    if traffic.empty:
        return pd.DataFrame(columns=["t", "p50_ms", "p99_ms", "requests", "failed"])
    t = traffic.assign(bin=((traffic["at"] - t0) // bin_s) * bin_s, ms=traffic["latency_s"] * 1000,
                       failed=traffic["status"] != 200)
    g = t.groupby("bin")
    return pd.DataFrame({"t": g.size().index + bin_s / 2, "p50_ms": g["ms"].median().to_numpy(),
                         "p99_ms": g["ms"].quantile(0.99).to_numpy(), "requests": g.size().to_numpy(),
                         "failed": g["failed"].sum().to_numpy()})


def plot_latency(path: Path, traffic: pd.DataFrame, marks: dict[str, float], t0: float) -> None:
    plt = _figure()
    bins = latency_bins(traffic, t0)
    fig, ax = plt.subplots(figsize=(10, 4))
    ax.plot(bins["t"], bins["p50_ms"], marker=".", label="p50")
    ax.plot(bins["t"], bins["p99_ms"], marker=".", label="p99")
    failed = bins[bins["failed"] > 0]
    if not failed.empty:
        ax.scatter(failed["t"], failed["p99_ms"], color="red", marker="v", s=50, label="bin with failed requests")
    _finish(plt, fig, ax, path, marks, t0, f"request latency, ms (per {LATENCY_BIN_S:.0f} s)",
            "Latency of POST /predict through detection, retraining and the model swap", "upper left")


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(summary: dict[str, Any]) -> str:
    """The report's text: the story in numbers, then the figures."""
    acc = summary.get("accuracy", {})
    req = summary.get("requests", {})
    lines = [f"# Foundry demo report ({summary.get('finished_at', '')})", "",
             f"Outcome: **{summary.get('outcome', 'unknown')}**. {summary.get('outcome_detail', '')}".rstrip(), "",
             "| | |", "|---|---|",
             f"| model | {summary.get('model')} |",
             f"| first version (pipeline job) | {summary.get('versions', {}).get('initial')} |",
             f"| healed version (retrain job) | {summary.get('versions', {}).get('healed') or 'none'} |",
             f"| drift scenario | {summary.get('scenario')} |",
             f"| accuracy before drift | {_fmt(acc.get('before_drift'))} |",
             f"| accuracy during drift (old model) | {_fmt(acc.get('during_drift'))} |",
             f"| accuracy after healing (new model) | {_fmt(acc.get('after_heal'))} |",
             f"| detection delay | {_fmt(summary.get('detection', {}).get('rows'))} drifted rows, "
             f"{_fmt(summary.get('detection', {}).get('seconds'), 1)} s |",
             f"| time to heal (onset -> new model serving) | {_fmt(summary.get('time_to_heal_s'), 1)} s |",
             f"| requests sent / failed | {req.get('sent', 0)} / {req.get('failed', 0)} |",
             f"| demo wall time | {_fmt(summary.get('wall_s'), 0)} s |", ""]
    stages = summary.get("stages_s")
    if stages:
        lines += ["## Time to heal, per stage", "", "| stage | seconds |", "|---|---:|"]
        lines += [f"| {k} | {v:.1f} |" for k, v in stages.items()]
        lines.append("")
    steps = summary.get("rollout")
    if steps:
        lines += ["## The live roll-out (promotion.rollout)", "", "| at | step | share | labelled rows | "
                  "loss reduction |", "|---|---|---:|---:|---:|"]
        lines += [f"| {s['at'][11:19]} | {s['kind']} | {_fmt(s.get('fraction'), 2)} | {_fmt(s.get('labelled_rows'))} | "
                  f"{_fmt(s.get('relative_loss_reduction'))} |" for s in steps]
        lines.append("")
    lines += ["## Figures", ""]
    lines += [f"![{name}]({file})" for name, file in FIGURES.items()]
    lines += ["", "Raw data: `summary.json`, `traffic.csv` (every request), `rounds.json` (every monitor round), "
              "`events.json` (the monitor's decisions).", ""]
    return "\n".join(lines)


def write_report(out_dir: Path, summary: dict[str, Any], traffic: pd.DataFrame, rounds: list[dict[str, Any]],
                 events: list[dict[str, Any]], marks: dict[str, float], t0: float) -> dict[str, Path]:
    """Write the whole folder; returns the paths by name (figures, report.md, data files)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / file for name, file in FIGURES.items()}
    plot_drift(paths["drift"], rounds, marks, t0)
    plot_accuracy(paths["accuracy"], traffic, marks, t0)
    plot_latency(paths["latency"], traffic, marks, t0)
    paths["report"] = out_dir / "report.md"
    paths["report"].write_text(markdown(summary))
    paths["summary"] = out_dir / "summary.json"
    paths["summary"].write_text(json.dumps(summary, indent=2, default=str))
    paths["traffic"] = out_dir / "traffic.csv"
    traffic.to_csv(paths["traffic"], index=False)
    paths["rounds"] = out_dir / "rounds.json"
    paths["rounds"].write_text(json.dumps(rounds, default=str))
    paths["events"] = out_dir / "events.json"
    paths["events"].write_text(json.dumps(events, indent=1, default=str))
    return paths
