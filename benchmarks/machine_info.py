"""The machine a benchmark ran on, recorded in every result file (figures mean little without it)."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path


def host() -> dict:
    """CPU model, cores, memory, OS and Python; each benchmark adds the library versions it depends on."""
    cpu = platform.processor()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    return {"cpu": cpu, "cores": os.cpu_count(),
            "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
            "os": platform.platform(), "python": platform.python_version()}


def result_header(name: str, started: float, quick: bool, load_before, machine: dict) -> dict:
    """The fields every result file starts with (run_all's summary reads them): what, when, how long, where,
    and the load before/after, because this machine is shared."""
    return {"benchmark": name, "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "elapsed_s": round(time.time() - started), "quick": quick,
            "machine": {**machine, "load_average_before": [round(x, 2) for x in load_before],
                        "load_average_after": [round(x, 2) for x in os.getloadavg()]}}


def write_result(out: str | Path, result: dict) -> Path:
    """The result file run_all's summary reads: JSON, indented, its folder created."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return out
