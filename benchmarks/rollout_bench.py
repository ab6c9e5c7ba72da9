"""Do new models earn their traffic: canary and shadow roll-outs decided by live model quality.

    python -m benchmarks.rollout_bench [--rate 150] [--seeds 20] [--wrk-duration 10] [--out benchmarks/results/heal.json]

What runs, on a private local cluster (its own ports), over real HTTP, with the real ``DriftMonitor``:
1. the churn model ``v1`` trained by ``python -m jobs.train +experiment=quick`` on the baseline, served (one
   replica) and watched with ``promotion.rollout=canary`` (retraining off: the challengers come from
   ``jobs.train`` runs of our own, through the same gate and candidate alias a retrain uses);
2. **shadow overhead**: wrk, 1-row POST /predict, the champion alone and with a challenger shadowing it in
   the same replica (``control.set_rollout``), in the order off, on, on, off, at concurrency 2 (a
   service with headroom) and 16 (saturated): the median p99 of each setting, side by side;
3. **a bad challenger**: ``jobs.train`` on 20,000 baseline rows whose labels are inverted for one region
   (a labelling bug; its test split has the bug too, so the offline gate passes it); the gate moves the
   candidate alias, the monitor starts the canary at 5%; baseline traffic with labels at ``--rate`` rows/s
   until it is decided. Measured: the share of answered rows the challenger gave, the labelled rows until
   the rollback, failed requests;
4. **a good challenger**: ``jobs.train`` on 20,000 rows of ``concept_shift``; concept-shift traffic until it
   is promoted, then until its guard ends. Measured: labelled rows to 100% (when Serve answered with it
   alone) and when the test decided, failed requests;
5. **false rollbacks** of a truly better challenger, over ``--seeds`` seeds: the real manager
   (``foundry.rollout.manager.Rollouts``, Serve replaced by a recorder) fed the real versions' answers on
   a traffic mix where the challenger is only modestly better (the smallest share of concept-shift rows,
   in steps of 5%, at which its true relative loss reduction on 40,000 rows reaches 3%; the share and the
   reduction are reported), each seed a different order of the rows.

Results: ``heal.json`` keys ``canary_bad_challenger_traffic_share``, ``canary_rows_to_rollback``,
``canary_rows_to_full``, ``shadow_p99_overhead``, ``false_rollbacks`` and ``rollouts`` (the details);
the rest of ``heal.json`` (heal_bench.py's) is kept.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import sys
import threading
import time
import traceback
import types
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.harness import (  # noqa: E402
    PY,
    cluster_settings,
    free_port,
    load,
    need_wrk,
    open_registry,
    private_cluster,
    register_twin,
    run,
    say,
    wait_http,
    wrk_script,
)
from benchmarks.machine_info import host, write_result  # noqa: E402

GCS_PORT, DASHBOARD_PORT, CLUSTER = cluster_settings("rollout-bench", (6630, 8630))
STORAGE = REPO / "benchmarks" / "results" / "tmp" / "rollout-storage"
MODEL, APP = "churn", "rollout"
TRAIN = ["+experiment=quick", "trainer.num_workers=1"]
BUGGY_REGION = "north"  # the labelling bug: churn labels inverted for this region's customers
DECISIONS = {"rolled_back", "rollout_promoted", "rollout_expired", "rollout_failed"}


def common(port: int) -> list[str]:
    return [*CLUSTER, f"storage.root={STORAGE}", f"ray.address=127.0.0.1:{GCS_PORT}", f"model_name={MODEL}",
            f"serve.app_name={APP}", f"serve.route_prefix=/{APP}", f"serve.http.port={port}",
            "serve.autoscaling.min_replicas=1", "serve.autoscaling.max_replicas=1", "serve.access_log=false",
            "drift.retrain.enabled=false", "promotion.rollout=canary", "promotion.live.poll_s=0.5"]


def registry():
    return open_registry(STORAGE)


def train(env, port: int, data: Path | None = None) -> dict:
    """A ``jobs.train`` run (the gate and, with a champion, the candidate alias); its version's metadata."""
    extra = [f"data.source.path={data}"] if data else []
    run([PY, "-m", "jobs.train", *common(port), *TRAIN, *extra], env=env, timeout=1800)
    mv = registry().versions(MODEL)[-1]
    return {"version": mv.version, "promotion": (mv.metadata or {}).get("promotion")}


def write_data(name: str, scenario: str, seed: int, buggy: bool = False) -> Path:
    from foundry.datasets import generate

    frame = generate("churn", scenario, 20_000, seed=seed)
    if buggy:
        bug = frame["region"] == BUGGY_REGION
        frame.loc[bug, "churned"] = 1 - frame.loc[bug, "churned"]
    path = STORAGE / "datasets" / f"{name}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return path


def events_since(at: float) -> list[dict]:
    from foundry.drift.events import read_events

    return read_events(str(STORAGE), MODEL, since=datetime.fromtimestamp(at, timezone.utc))


# ---- 2. shadow overhead ------------------------------------------------------------------------------------
def shadow_overhead(wrk: str, env, port: int, champion: str, duration: int, quick: bool = False) -> dict:
    """p99 with and without a shadow challenger, ABBA-ordered; ``quick``: c=2 only (the key), one ABBA, short warm-ups."""
    from foundry.runtime import connection
    from foundry.serving import control

    connection.connect(f"127.0.0.1:{GCS_PORT}")
    twin = register_twin(registry(), MODEL, champion, STORAGE / "twin")  # the same files, another version id
    script = wrk_script(STORAGE / "post.lua", env["FOUNDRY_API_KEY"])
    url = f"http://127.0.0.1:{port}/{APP}"
    out = {"replica_rss_mb": {}}
    time.sleep(5 if quick else 20)  # the training job's workers wind down: the machine's speed settles first
    order = (False, True, True, False) if quick else (False, True, True, False, False, True, True, False)
    for concurrency in (2,) if quick else (2, 16):
        points = []
        # ABBA (twice in full runs): a drift in the machine's speed falls on both settings alike
        for shadow in order:
            control.set_rollout(APP, champion, twin if shadow else None, "shadow" if shadow else None, 0.0)
            load(wrk, f"{url}/predict", script, concurrency, 1 if quick else 3)
            point = {"shadow": shadow, **load(wrk, f"{url}/predict", script, concurrency, duration)}
            out["replica_rss_mb"].setdefault("with_challenger" if shadow else "champion_only", []).append(
                replica_rss_mb())
            say(f"  c={concurrency:<3} shadow {'on ' if shadow else 'off'}: {point['rps']:>7.1f} req/s  "
                f"p50 {point['p50_ms']:.2f} ms  p99 {point['p99_ms']:.2f} ms  non-2xx {point['non_2xx']}")
            points.append(point)
        off = statistics.median(p["p99_ms"] for p in points if not p["shadow"])
        on = statistics.median(p["p99_ms"] for p in points if p["shadow"])
        out[f"c{concurrency}"] = {"points": points, "p99_off_ms": off, "p99_on_ms": on,
                                  "p99_overhead": round(on / off - 1, 4),
                                  "rps_off": statistics.median(p["rps"] for p in points if not p["shadow"]),
                                  "rps_on": statistics.median(p["rps"] for p in points if p["shadow"])}
    control.set_rollout(APP, champion, None, None, 0.0)
    rss = out["replica_rss_mb"]
    rss["median_extra_for_the_challenger"] = round(statistics.median(rss["with_challenger"])
                                                   - statistics.median(rss["champion_only"]), 1)
    return {"challenger": twin, "duration_s": duration, **out}


def replica_rss_mb() -> float:
    """Resident memory of the (one) Serve replica, MB."""
    import psutil

    from foundry.serving import control
    from foundry.serving.deploy_config import DEPLOYMENT_NAME

    app = control.serve_details()["applications"][APP]["deployments"][DEPLOYMENT_NAME]
    pid = next(r["pid"] for r in app["replicas"] if r["state"] == "RUNNING")
    return round(psutil.Process(pid).memory_info().rss / 2**20, 1)


# ---- 3 and 4. live canaries ------------------------------------------------------------------------------------
def canary(env, port: int, data: Path, scenario: str, rate: float, until: set[str], timeout_s: float = 900) -> dict:
    """Train a challenger on ``data`` (the gate decides), then live traffic with labels until ``until``."""
    from foundry.demo.traffic import TrafficGenerator

    started = time.time()
    trained = train(env, port, data)
    challenger = trained["version"]
    gen = TrafficGenerator(f"http://127.0.0.1:{port}/{APP}", env["FOUNDRY_API_KEY"], rows_per_request=5, concurrency=4)
    stop = threading.Event()

    def traffic() -> None:
        i = 0
        while not stop.is_set():
            gen.send(scenario, 500, seed=5000 + i, phase="canary", rate_rows_per_s=rate)
            i += 1

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    deadline, events = time.time() + timeout_s, []
    while time.time() < deadline:
        events = events_since(started)
        if until & {e["kind"] for e in events} or (not (trained["promotion"] or {}).get("promoted")):
            break
        time.sleep(1)
    time.sleep(3)  # traffic keeps flowing across the last swap
    stop.set()
    thread.join(timeout=120)
    gen.close()
    events = events_since(started)
    start = next((e for e in events if e["kind"] == "rollout_started"), None)
    decision = next((e for e in events if e["kind"] in DECISIONS), None)
    lo = datetime.fromisoformat(start["at"]).timestamp() if start else started
    hi = datetime.fromisoformat(decision["at"]).timestamp() if decision else time.time()
    window = [r for r in gen.log.records if lo <= r.at <= hi and r.status == 200]
    rows = sum(r.rows for r in window)
    by_challenger = sum(r.rows for r in window if r.version == challenger)
    requests = sum(r.version == challenger for r in window)  # the split's unit: a whole request
    return {"challenger": challenger, "gate": trained["promotion"], "events": [
                {k: e.get(k) for k in ("at", "kind", "message", "fraction", "evidence", "apply_s")} for e in events
                if e["kind"] in DECISIONS | {"rollout_started", "rollout_step", "guard_started", "guard_passed"}],
            "decision": decision["kind"] if decision else None,
            "evidence": (decision or {}).get("evidence"),
            "rows_during_rollout": rows, "challenger_rows": by_challenger,
            "challenger_share": round(by_challenger / rows, 4) if rows else None,
            "challenger_share_of_requests": wilson(requests, len(window)),
            "failed_requests": len(gen.log.failed()), "requests": len(gen.log.records)}


def wilson(k: int, n: int, z: float = 1.96) -> dict:
    """A share with its 95% Wilson interval."""
    if n == 0:
        return {"share": None, "low": None, "high": None, "n": 0}
    p = k / n
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * ((p * (1 - p) + z * z / (4 * n)) / n) ** 0.5 / (1 + z * z / n)
    return {"share": round(p, 4), "low": round(centre - half, 4), "high": round(centre + half, 4), "n": n}


# ---- 5. false rollbacks, over seeds ---------------------------------------------------------------------------
def false_rollbacks(champion: str, challenger: str, seeds: int) -> dict:
    import numpy as np

    from foundry import config
    from foundry.datasets import generate
    from foundry.models.predictor import Predictor
    from foundry.rollout.judge import row_losses

    cfg = config.load([f"storage.root={STORAGE / 'replay'}", "promotion.rollout=canary", "promotion.live.poll_s=0.001"])
    features = [f.name for f in cfg.data.features]
    a, b = (Predictor.from_dir(registry().fetch(MODEL, v)) for v in (champion, challenger))
    pools = {}
    for scenario, seed in (("concept_shift", 93_000), ("baseline", 94_000)):
        rows = generate("churn", scenario, 40_000, seed=seed)
        y = rows["churned"].astype(str).tolist()
        pa, pb = a.predict(rows[features]).proba, b.predict(rows[features]).proba
        pools[scenario] = (pa, pb, y, row_losses(cfg.data.task, pa, y, a.preprocessor.classes, 1.0),
                           row_losses(cfg.data.task, pb, y, a.preprocessor.classes, 1.0))

    def reduction(w: float) -> float:
        lc = w * pools["concept_shift"][3].mean() + (1 - w) * pools["baseline"][3].mean()
        lk = w * pools["concept_shift"][4].mean() + (1 - w) * pools["baseline"][4].mean()
        return float((lc - lk) / lc)

    # The traffic mix on which the challenger is truly but only modestly better (>= 3% lower loss).
    share = next((w for w in np.arange(0.05, 1.0001, 0.05) if reduction(w) >= 0.03), 1.0)
    n_concept = int(round(share * 40_000))
    pa = np.concatenate([pools["concept_shift"][0][:n_concept], pools["baseline"][0][:40_000 - n_concept]])
    pb = np.concatenate([pools["concept_shift"][1][:n_concept], pools["baseline"][1][:40_000 - n_concept]])
    labels = pools["concept_shift"][2][:n_concept] + pools["baseline"][2][:40_000 - n_concept]
    outcomes = [replay_canary(cfg, a, champion, challenger, pa, pb, labels, seed) for seed in range(seeds)]
    # The same seeds with every one of the 40,000 rows available (max_labelled_rows): more looks, a stricter test.
    long_cfg = config.load([f"storage.root={STORAGE / 'replay'}", "promotion.rollout=canary",
                            "promotion.live.poll_s=0.001", "promotion.live.max_labelled_rows=40000"])
    long = [replay_canary(long_cfg, a, champion, challenger, pa, pb, labels, seed) for seed in range(seeds)]
    promoted_long = [o["labelled_rows"] for o in long if o["outcome"] == "rollout_promoted"]
    rolled = sum(o["outcome"] == "rolled_back" for o in outcomes)
    rolled_long = sum(o["outcome"] == "rolled_back" for o in long)
    from scipy.stats import beta

    return {"seeds": seeds, "false_rollbacks": rolled, "promoted": sum(o["outcome"] == "rollout_promoted" for o in outcomes),
            "rate_upper_95": round(float(beta.ppf(0.95, rolled + 1, seeds - rolled)), 4),
            "true_relative_loss_reduction": round(reduction(share), 4), "rows": len(labels),
            "traffic": f"{share:.0%} concept_shift + {1 - share:.0%} baseline", "runs": outcomes,
            "long_horizon": {"max_labelled_rows": 40_000, "false_rollbacks": rolled_long,
                             "rate_upper_95": round(float(beta.ppf(0.95, rolled_long + 1, seeds - rolled_long)), 4),
                             "promoted": len(promoted_long),
                             "median_rows_to_promotion": statistics.median(promoted_long) if promoted_long else None,
                             "runs": long}}


def replay_canary(cfg, predictor, champion: str, challenger: str, pa, pb, labels: list[str], seed: int) -> dict:
    """One canary decided by the real ``Rollouts`` on recorded answers, the rows in a seeded order."""
    import numpy as np

    from foundry.rollout.manager import Rollouts

    said, state = [], {"champion": champion}
    reference = types.SimpleNamespace(predictor=predictor, sample=None)
    m = Rollouts(cfg, locked=_Null, say=lambda kind, msg, **f: said.append(kind),
                 champion=lambda: state["champion"], reference=lambda: reference,
                 rebase_to=lambda v: state.update(champion=v), fresh_evidence=lambda: None,
                 apply=lambda *args: None, check=lambda c, v: None,
                 registry=types.SimpleNamespace(alias=lambda *_: challenger, set_alias=lambda *a, **k: None))
    m.begin(challenger, 0.0)
    order = np.random.default_rng(seed).permutation(len(labels))
    for i in range(0, len(order), 25):
        idx = order[i:i + 25]
        ids = [f"{seed}-{j}" for j in idx]
        for version, p in ((champion, pa), (challenger, pb)):
            m.add_answers({"request_id": np.asarray(ids, dtype=object),
                           "model_version": np.full(len(ids), version, dtype=object),
                           "scores": p[idx].astype(np.float32), "served": np.full(len(ids), version == champion),
                           "seconds": np.full(len(ids), 0.001), "failed": np.zeros(len(ids), dtype=bool)})
        m.add_labels(ids, [labels[j] for j in idx])
        m.round(0.0)  # the clock stands still: only labelled rows end a replayed roll-out
        done = [k for k in said if k in DECISIONS]
        if done:
            return {"seed": seed, "outcome": done[0], "labelled_rows": i + len(idx)}
    return {"seed": seed, "outcome": None, "labelled_rows": len(order)}


class _Null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="a smoke run: the bad challenger only, 3 replay seeds, shadow "
                                                         "overhead at c=2 in 4 points of 3 s (results/tmp/rollout-quick.json)")
    p.add_argument("--rate", type=float, default=150.0, help="live rows per second (with labels)")
    p.add_argument("--seeds", type=int, help="seeds for the false-rollback replay (default 20; quick 3)")
    p.add_argument("--wrk-duration", type=int, help="seconds per shadow-overhead point (default 10; quick 3)")
    p.add_argument("--out", help="result file (default benchmarks/results/heal.json; quick: results/tmp/)")
    args = p.parse_args(argv)
    args.seeds = args.seeds or (3 if args.quick else 20)
    args.wrk_duration = args.wrk_duration or (3 if args.quick else 10)
    args.out = args.out or str(REPO / "benchmarks" / "results" / ("tmp/rollout-quick.json" if args.quick
                                                                  else "heal.json"))
    wrk = need_wrk()
    shutil.rmtree(STORAGE, ignore_errors=True)
    STORAGE.mkdir(parents=True)
    env = {**os.environ, "FOUNDRY_API_KEY": "rollout-bench-" + secrets.token_hex(12), "RAY_AUTH_MODE": "token"}
    port = free_port()
    result: dict = {"benchmark": "rollout", "machine": host(), "settings": {"rate_rows_per_s": args.rate,
                    "seeds": args.seeds, "live": None}}
    with private_cluster(CLUSTER, STORAGE, env):
        try:
            from foundry import config

            result["settings"]["live"] = config.to_container(config.load(common(port)))["promotion"]
            say("training v1 (baseline) ...")
            v1 = train(env, port)["version"]
            run([PY, "-m", "serve_apps.deploy", *common(port)], env=env, timeout=600)
            run([PY, "-m", "jobs.monitor", *common(port)], env=env, timeout=600)
            wait_http(f"http://127.0.0.1:{port}/{APP}/healthz")
            say("shadow overhead (wrk, 1-row requests) ...")
            result["shadow"] = shadow_overhead(wrk, env, port, v1, args.wrk_duration, args.quick)
            say(f"bad challenger: labels inverted for region={BUGGY_REGION} ...")
            result["bad"] = canary(env, port, write_data("buggy", "baseline", 95_000, buggy=True), "baseline", args.rate,
                                   DECISIONS)
            say(f"  {result['bad']['decision']}: share {result['bad']['challenger_share']}, evidence "
                f"{json.dumps(result['bad']['evidence'])[:300]}")
            if args.quick:  # the good challenger's roll-out is most of the run; the replay pits v1 against itself
                result["good"] = {"decision": "skipped (--quick)", "evidence": None, "failed_requests": 0,
                                  "challenger": v1}
            else:
                say("good challenger: trained on concept_shift ...")
                result["good"] = canary(env, port, write_data("concept", "concept_shift", 96_000), "concept_shift",
                                        args.rate, {"guard_passed", "rolled_back", "rollout_expired", "rollout_failed"})
                say(f"  {result['good']['decision']}: evidence {json.dumps(result['good']['evidence'])[:300]}")
            say(f"false rollbacks over {args.seeds} seeds (replay) ...")
            result["false_rollbacks"] = false_rollbacks(v1, result["good"]["challenger"], args.seeds)
        except Exception:  # printed before the cluster goes down: a driver that loses the GCS is terminated
            traceback.print_exc()
            raise
    result["when"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    bad, good, shadow = result["bad"], result["good"], result["shadow"]
    keys = {"canary_bad_challenger_traffic_share": bad["challenger_share"],
            "canary_rows_to_rollback": (bad["evidence"] or {}).get("labelled_rows") if bad["decision"] == "rolled_back"
            else None,
            "canary_rows_to_full": (good["evidence"] or {}).get("labelled_rows")
            if good["decision"] == "rollout_promoted" else None,
            "shadow_p99_overhead": shadow["c2"]["p99_overhead"],
            "false_rollbacks": f"{result['false_rollbacks']['false_rollbacks']} in {args.seeds}",
            "false_rollbacks_long_horizon": f"{result['false_rollbacks']['long_horizon']['false_rollbacks']} in {args.seeds}",
            "failed_requests": bad["failed_requests"] + good["failed_requests"]}
    out = Path(args.out)
    heal = json.loads(out.read_text()) if out.exists() else {"benchmark": "heal"}
    heal.update(keys)
    heal["rollouts"] = result
    write_result(out, heal)
    say("\n" + "\n".join(f"{k:<40} {v}" for k, v in keys.items()))
    say(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
