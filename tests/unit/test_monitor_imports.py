"""``python -m jobs.monitor`` (start, --status, --stop) only names the monitor's actor class: importing
``foundry.drift.monitor`` must not import torch, scipy.stats or alibi-detect, which only the actor needs
when it loads a version's detectors and predictor (2.1-2.7 s -> 0.6 s for the module; each CLI call and
each test fixture that starts or stops a monitor pays it). Fails when a module on that import path
imports one of them at module level again (``foundry.models`` imports torch in its package ``__init__``)."""

from __future__ import annotations

from tests.imports import modules_after

HEAVY = {"torch", "scipy.stats", "alibi_detect"}


def test_the_monitor_cli_and_actor_class_import_no_torch_scipy_stats_or_alibi_detect():
    for code in ("import jobs.monitor", "from foundry.drift.monitor import DriftMonitor"):
        loaded = modules_after(code)
        assert not HEAVY & loaded, (code, HEAVY & loaded)
    assert "foundry.drift.evidence" in loaded  # the actor class's path reaches the module that uses scipy


def test_the_bounds_still_get_scipy_when_they_run():
    loaded = modules_after("from foundry.drift.evidence import rate_upper; assert 0 < rate_upper(0, 5000, 0.01) < 0.002")
    assert "scipy.stats" in loaded
