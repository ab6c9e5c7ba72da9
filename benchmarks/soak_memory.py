"""soak_bench's memory record: every process of the soak cluster (found from its head's GCS port), RSS and
USS at the start and the end, and the bound a process may grow by in 30 minutes of load. Its own module
so the soak's load and swap logic reads on its own."""

from __future__ import annotations

import os
import re

BOUND_MIB, BOUND_FRACTION = 50.0, 0.20
MIB = 2**20



def _psutil():
    from cluster.processes import _psutil as vendored

    return vendored()


def process_name(cmd: list[str]) -> str:
    """A readable, stable name for one Ray process, from its command line."""
    if not cmd:
        return "?"
    first = cmd[0]
    base = os.path.basename(first.split()[0])
    if base in ("gcs_server", "raylet"):
        return base
    m = re.match(r"(ray::[^.\s(]+)", first)
    if m:  # workers and actors: ray::ServeReplica:<app>:<deployment>, ray::DriftMonitor, ray::IDLE, ...
        return m.group(1)
    if first.startswith("ray-dashboard-"):  # dashboard head modules run as their own processes
        return first.split()[0]
    joined = " ".join(cmd)
    for marker, name in (("dashboard/agent.py", "dashboard_agent"), ("runtime_env/agent/main.py", "runtime_env_agent"),
                         ("dashboard/dashboard.py", "dashboard"), ("log_monitor.py", "log_monitor"),
                         ("autoscaler/_private/monitor.py", "autoscaler_monitor"),
                         ("ray.util.client.server", "ray_client_server"),
                         # the dashboard's module processes (ray-dashboard-*) come from a multiprocessing forkserver
                         ("multiprocessing.forkserver", "multiprocessing forkserver"),
                         ("multiprocessing.resource_tracker", "multiprocessing resource_tracker")):
        if marker in joined:
            return name
    script = next((a for a in cmd[1:] if a.endswith(".py")), first)
    return os.path.basename(script)


def memory_snapshot(gcs_port: int, full: bool) -> dict[int, dict]:
    """pid -> name, RSS (and USS, PSS when ``full``) of every process of the soak cluster."""
    from cluster.processes import find_head

    psutil = _psutil()
    head = find_head(gcs_port)
    out: dict[int, dict] = {}
    for pid in head.pids if head else []:
        try:
            p = psutil.Process(pid)
            with p.oneshot():
                cmd = p.cmdline()
                info = {"name": process_name(cmd), "created": p.create_time(), "cmdline": " ".join(cmd)[:300]}
                if full:
                    m = p.memory_full_info()
                    info.update(rss_mib=m.rss / MIB, uss_mib=m.uss / MIB, pss_mib=getattr(m, "pss", 0) / MIB)
                else:
                    info["rss_mib"] = p.memory_info().rss / MIB
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        out[pid] = info
    return out


def rss_by_process(snapshot: dict[int, dict]) -> dict[str, float]:
    """name (with the pid where the name is not unique) -> RSS MiB, for the per-slice record."""
    names = [v["name"] for v in snapshot.values()]
    return {(f"{v['name']} (pid {pid})" if names.count(v["name"]) > 1 else v["name"]): round(v["rss_mib"], 1)
            for pid, v in sorted(snapshot.items(), key=lambda kv: (kv[1]["name"], kv[0]))}


def allowed_growth(start_mib: float) -> float:
    return max(BOUND_MIB, BOUND_FRACTION * start_mib)


def memory_report(start: dict[int, dict], end: dict[int, dict]) -> dict:
    """Per process start/end/growth, new and exited processes, totals, and the verdict against the bound."""
    # A process is its pid and start time (a pid reused by another process is another process).
    start = {(pid, round(v["created"])): v for pid, v in start.items()}
    end = {(pid, round(v["created"])): v for pid, v in end.items()}
    every = {**start, **end}
    names = [v["name"] for v in every.values()]
    dup = {n for n in names if names.count(n) > 1}
    rows = []
    for key in sorted(every, key=lambda k: (every[k]["name"], k)):
        s, e = start.get(key), end.get(key)
        name = every[key]["name"]
        row = {"process": f"{name} (pid {key[0]})" if name in dup else name, "name": name, "pid": key[0],
               "state": "both" if s and e else ("new" if e else "exited"), "cmdline": every[key]["cmdline"]}
        for field in ("rss_mib", "uss_mib", "pss_mib"):
            row[f"start_{field}"] = round(s[field], 1) if s else None
            row[f"end_{field}"] = round(e[field], 1) if e else None
        if s and e:
            growth = e["rss_mib"] - s["rss_mib"]
            row.update(growth_rss_mib=round(growth, 1), growth_uss_mib=round(e["uss_mib"] - s["uss_mib"], 1),
                       growth_pct=round(100 * growth / s["rss_mib"], 1) if s["rss_mib"] else None,
                       allowed_mib=round(allowed_growth(s["rss_mib"]), 1),
                       within_bound=growth <= allowed_growth(s["rss_mib"]))
        rows.append(row)
    both = [r for r in rows if r["state"] == "both"]
    worst = max(both, key=lambda r: r["growth_rss_mib"] / r["allowed_mib"], default=None)
    breaches = [r["process"] for r in both if not r["within_bound"]]

    def total(snapshot: dict, field: str) -> float:
        return round(sum(v[field] for v in snapshot.values()), 1)

    return {"bound": f"every process present at start and end grows by at most max({BOUND_MIB:.0f} MiB, "
                     f"{100 * BOUND_FRACTION:.0f}% of its start RSS)",
            "bound_mib": BOUND_MIB, "bound_fraction": BOUND_FRACTION,
            "verdict": "pass" if both and not breaches else "fail", "breaches": breaches,
            "processes": rows, "processes_start": len(start), "processes_end": len(end),
            "new": [r["process"] for r in rows if r["state"] == "new"],
            "exited": [r["process"] for r in rows if r["state"] == "exited"],
            "total_start_rss_mib": total(start, "rss_mib"), "total_end_rss_mib": total(end, "rss_mib"),
            "total_growth_rss_mib": round(total(end, "rss_mib") - total(start, "rss_mib"), 1),
            "total_start_uss_mib": total(start, "uss_mib"), "total_end_uss_mib": total(end, "uss_mib"),
            "growth_of_processes_in_both_mib": round(sum(r["growth_rss_mib"] for r in both), 1),
            "worst": {k: worst[k] for k in ("process", "start_rss_mib", "end_rss_mib", "growth_rss_mib",
                                             "growth_pct", "allowed_mib")} if worst else None}


def memory_table(mem: dict) -> str:
    lines = [f"{'process':<48} {'RSS start':>9} {'RSS end':>8} {'growth':>7} {'USS start':>9} {'USS end':>8}  bound",
             "-" * 100]
    for r in mem["processes"]:
        def f(v, fmt=">9.1f"):
            return format(v, fmt) if v is not None else format("-", ">9")
        verdict = ("ok" if r["within_bound"] else f"BREACH (> {r['allowed_mib']:.0f} MiB)") if r["state"] == "both" \
            else r["state"]
        lines.append(f"{r['process'][:48]:<48} {f(r['start_rss_mib'])} {f(r['end_rss_mib'], '>8.1f')} "
                     f"{f(r.get('growth_rss_mib'), '>+7.1f') if r['state'] == 'both' else format('-', '>7')} "
                     f"{f(r['start_uss_mib'])} {f(r['end_uss_mib'], '>8.1f')}  {verdict}")
    lines.append(f"{'total':<48} {mem['total_start_rss_mib']:>9.1f} {mem['total_end_rss_mib']:>8.1f} "
                 f"{mem['total_growth_rss_mib']:>+7.1f} {mem['total_start_uss_mib']:>9.1f} {mem['total_end_uss_mib']:>8.1f}")
    return "\n".join(lines)
