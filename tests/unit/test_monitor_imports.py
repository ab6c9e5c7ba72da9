"""``python -m jobs.monitor`` (start, --status, --stop) only names the monitor's actor class: importing
``foundry.drift.monitor`` must not import torch, scipy.stats or alibi-detect, which only the actor needs
when it loads a version's detectors and predictor (2.1-2.7 s -> 0.6 s for the module; each CLI call and
each test fixture that starts or stops a monitor pays it). Fails when a module on that import path
imports one of them at module level again (``foundry.models`` imports torch in its package ``__init__``)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT

HEAVY = {"torch", "scipy.stats", "alibi_detect"}


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", f"{code}; import sys; print(' '.join(sys.modules))"],
                         cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_the_monitor_cli_and_actor_class_import_no_torch_scipy_stats_or_alibi_detect():
    for code in ("import jobs.monitor", "from foundry.drift.monitor import DriftMonitor",
                 "from jobs.monitor import actor_options; from foundry.drift.monitor import DriftMonitor"):
        loaded = _modules_after(code)
        assert "foundry.drift.evidence" in loaded or code == "import jobs.monitor"
        assert not HEAVY & loaded, (code, HEAVY & loaded)


def test_the_bounds_still_get_scipy_when_they_run():
    loaded = _modules_after("from foundry.drift.evidence import rate_upper; assert 0 < rate_upper(0, 5000, 0.01) < 0.002")
    assert "scipy.stats" in loaded
