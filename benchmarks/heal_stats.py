"""heal_bench's statistics: means with Student-t intervals over seeds, Wilson intervals for held-out
accuracies, one scenario's summary and details, and the markdown table of every scenario."""

from __future__ import annotations

import math
import statistics


def interval(values: list) -> dict:
    """Mean and a 95% Student-t interval over the runs (none from one run)."""
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    out = {"mean": statistics.fmean(vals) if vals else None, "ci95": None, "n": len(vals), "values": vals}
    if len(vals) >= 2:
        from scipy import stats

        half = stats.t.ppf(0.975, len(vals) - 1) * statistics.stdev(vals) / math.sqrt(len(vals))
        out["ci95"] = [out["mean"] - half, out["mean"] + half]
    return out


def wilson(p: float, n: int, z: float = 1.96) -> dict:
    """An accuracy measured on ``n`` held-out rows, with its 95% Wilson interval."""
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (
        1 + z * z / n)
    return {"mean": p, "ci95": [centre - half, centre + half], "n": n, "values": [p]}


def aggregate(case, runs: list[dict]) -> tuple[dict, dict]:
    """One scenario's runs (``case``: heal_bench's Case) as its summary row and its details."""
    healed = [r for r in runs if r.get("healed")]
    summary = {"healed": {"count": len(healed), "runs": len(runs),
                          "outcomes": {o: sum(r.get("outcome") == o for r in runs)
                                       for o in sorted({r.get("outcome", "error") for r in runs})}},
               "accuracy_after": interval([r.get("accuracy_after") for r in runs]),
               "accuracy_oracle": wilson(case.oracle["accuracy"], len(case.holdout)) if "accuracy" in case.oracle
               else None,
               "retrains": interval([r.get("retrains") for r in runs]),
               "time_to_heal_s": interval([r["time_to_heal_s"] for r in healed])}
    details = {"accuracy_before": interval([r.get("accuracy_before") for r in runs]),
               "live_accuracy_after_heal": interval([r.get("accuracy_after_heal") for r in healed]),
               "failed_requests": sum(r.get("failed_requests", 0) for r in runs), "first_version": case.v1,
               "holdout_rows": len(case.holdout), "oracle": case.oracle, "runs": runs}
    return summary, details


def fmt(s: dict | None, spec: str = ".3f") -> str:
    if not s or s["mean"] is None:
        return "-"
    ci = f" [{s['ci95'][0]:{spec}}, {s['ci95'][1]:{spec}}]" if s.get("ci95") else ""
    return f"{s['mean']:{spec}}{ci}"


def table(scenarios: dict, details: dict) -> str:
    lines = ["| scenario | healed | accuracy before | accuracy after (95% CI) | oracle | retrains | time to heal s "
             "| failed requests |", "|---|---|---|---|---|---|---|---|"]
    for name, s in scenarios.items():
        d = details[name]
        lines.append(f"| {name} | {s['healed']['count']}/{s['healed']['runs']} | {fmt(d['accuracy_before'])} | "
                     f"{fmt(s['accuracy_after'])} | {fmt(s['accuracy_oracle'])} | {fmt(s['retrains'], '.1f')} | "
                     f"{fmt(s['time_to_heal_s'], '.0f')} | {d['failed_requests']} |")
    return "\n".join(lines)
