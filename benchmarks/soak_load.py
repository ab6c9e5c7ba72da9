"""soak_bench's load: a wrk Lua script that cycles through in-distribution rows and counts the answers of
each model version, and the parsing of each slice's counts, latency histogram and errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from benchmarks.harness import REPO

POOL_ROWS, POOL_SEED = 2000, 4242
WRK_TIMEOUT_S = 10


LUA = r"""-- written by benchmarks/soak_bench.py: cycle through in-distribution rows, count answers per version
local bodies = {
%(bodies)s
}
local headers = {["Content-Type"] = "application/json", ["X-API-Key"] = "%(key)s"}
local reqs = {}
local n = 0
local threads = {}
counts = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  for i, b in ipairs(bodies) do reqs[i] = wrk.format("POST", nil, headers, b) end
  n = math.random(#reqs) - 1
end

function request()
  n = n %% #reqs + 1
  return reqs[n]
end

function response(status, hdrs, body)
  local key
  if status == 200 then
    key = string.match(body, '"model_version"%%s*:%%s*"([^"]+)"') or "?"
  else
    key = "status_" .. status
  end
  counts[key] = (counts[key] or 0) + 1
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("SOAK summary %%d %%d %%d %%d %%d %%d %%d\n", summary.duration, summary.requests,
    e.connect, e.read, e.write, e.status, e.timeout))
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("counts")) do io.write(string.format("SOAK count %%s %%d\n", k, v)) end
  end
  if summary.requests > 0 then
    local parts = {}
    for i = 1, #latency do  -- wrk 4: #latency distinct values; latency(i) -> the i-th value (us), its count
      local us, c = latency(i)
      parts[#parts + 1] = string.format("%%d:%%d", us, c)
    end
    io.write("SOAK hist " .. table.concat(parts, ",") .. "\n")
    io.write(string.format("SOAK p %%d %%d %%d %%d\n", latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max))
  end
end
"""


def write_lua(path: Path, key: str) -> Path:
    """The wrk script: POST /predict with one of POOL_ROWS baseline rows per request, cycled."""
    from foundry.datasets import generate
    from foundry.demo.traffic import LABEL_COLUMNS

    frame = generate("churn", "baseline", POOL_ROWS, seed=POOL_SEED).drop(columns=list(LABEL_COLUMNS))
    rows = json.loads(frame.to_json(orient="records"))
    bodies = ",\n".join("[==[" + json.dumps({"rows": [row]}) + "]==]" for row in rows)
    path.write_text(LUA % {"bodies": bodies, "key": key})
    return path


def parse_slice(text: str) -> dict:
    """wrk's output of one slice -> counts, errors, per-version answers and the latency histogram (us -> n)."""
    out: dict = {"versions": {}, "hist": {}}
    for line in text.splitlines():
        if not line.startswith("SOAK "):
            continue
        kind, _, rest = line[5:].partition(" ")
        if kind == "summary":
            dur, reqs, connect, read, write, status, timeout = (int(x) for x in rest.split())
            out.update(duration_s=dur / 1e6, requests=reqs,
                       errors={"non_2xx": status, "connect": connect, "read": read, "write": write,
                               "timeout": timeout})
        elif kind == "count":
            key, _, n = rest.rpartition(" ")
            out["versions"][key] = out["versions"].get(key, 0) + int(n)
        elif kind == "hist" and rest:
            for pair in rest.split(","):
                us, n = pair.split(":")
                out["hist"][int(us)] = int(n)
        elif kind == "p":
            p50, p90, p99, mx = (int(x) for x in rest.split())
            out["wrk_percentiles_us"] = {"p50": p50, "p90": p90, "p99": p99, "max": mx}
    if "requests" not in out:
        raise RuntimeError(f"wrk gave no summary:\n{text[-2000:]}")
    return out


def percentile(hist: dict[int, int], p: float) -> float | None:
    """The p-th percentile (ms) of a latency histogram in microseconds (the smallest value with >= p% at or below)."""
    total = sum(hist.values())
    if total == 0:
        return None
    need = total * p / 100
    seen = 0
    for us in sorted(hist):
        seen += hist[us]
        if seen >= need:
            return us / 1000
    return max(hist) / 1000


def wrk_slice(wrk: str, url: str, script: Path, concurrency: int, seconds: int) -> dict:
    proc = subprocess.run([wrk, "-t1", f"-c{concurrency}", f"-d{seconds}s", f"--timeout={WRK_TIMEOUT_S}s",
                           "-s", str(script), url], cwd=REPO, capture_output=True, text=True, timeout=seconds + 120)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return parse_slice(proc.stdout)


def errors_of(s: dict) -> int:
    return sum(s["errors"].values())
