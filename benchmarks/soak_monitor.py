"""soak_bench's view of the monitor after the load: its counters and test rounds (from a short-lived
driver), the replicas' sink counters (from the nodes' Prometheus endpoints) and the live store's size."""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path

from benchmarks.harness import PY, run
from benchmarks.soak_memory import MIB

PROBE = """
import json, sys
import ray
from foundry.runtime import connection
connection.connect(sys.argv[1], logging_level="ERROR", log_to_driver=False)
h = ray.get_actor(sys.argv[2], namespace="foundry")
st = ray.get(h.flush.remote(), timeout=120)
rounds = ray.get(h.rounds.remote(0), timeout=120)
ports = [n.get("MetricsExportPort") for n in ray.nodes() if n.get("Alive")]
print("SOAKJSON " + json.dumps({"status": st, "metrics_ports": ports, "rounds": [{k: r.get(k) for k in ("round", "at", "rows", "drifted",
      "votes", "reference_version")} for r in rounds]}, default=str))
"""


def monitor_figures(env: dict, gcs_port: int, model: str) -> dict:
    """Counters and test rounds of the monitor, from a short-lived driver (this process never joins the
    cluster: Ray kills a connected driver when the cluster goes down, before it could write results)."""
    text = run([PY, "-c", PROBE, f"127.0.0.1:{gcs_port}", f"foundry-monitor-{model}"], env=env, timeout=300)
    line = next(x for x in text.splitlines() if x.startswith("SOAKJSON "))
    data = json.loads(line[len("SOAKJSON "):])
    st, rounds = data["status"], data["rounds"]
    return {"counters": st["counters"], "window_rows": st["window_rows"], "queued_rows": st.get("queued_rows"),
            "phase": st["controller"].get("phase"), "reference_version": st["reference_version"],
            "rounds": len(rounds), "rounds_drifted": sum(1 for r in rounds if r["drifted"]),
            "drift_votes": sorted({v for r in rounds for v in r["votes"] or []}),
            "metrics_ports": data["metrics_ports"]}


def sink_counters(ports: list[int]) -> dict:
    """The replicas' ``foundry_monitor_sink_rows`` counters (sent / dropped / failed), summed over the nodes'
    Prometheus endpoints (``ports``: each node's MetricsExportPort); {"error": ...} when none can be read."""
    out: dict[str, float] = {}
    problems = []
    for port in ports:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
                text = r.read().decode()
        except OSError as exc:
            problems.append(f":{port}: {exc}")
            continue
        for line in text.splitlines():
            if line.startswith("#") or "foundry_monitor_sink_rows" not in line:
                continue
            m = re.search(r'outcome="([^"]+)"', line)
            if m:
                out[m.group(1)] = out.get(m.group(1), 0) + float(line.rsplit(" ", 1)[1])
    if not out:
        return {"error": f"no foundry_monitor_sink_rows on the metrics ports {ports} {problems}"}
    return {k: int(v) for k, v in out.items()}


def folder_size(path: Path) -> dict:
    files = [p for p in path.rglob("*") if p.is_file()] if path.exists() else []
    return {"files": len(files), "mib": round(sum(p.stat().st_size for p in files) / MIB, 1)}
