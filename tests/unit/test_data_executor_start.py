"""Ray Data's resource limits are refreshed every LIMITS_REFRESH_S in a process that prepares data, so an
execution gets the CPUs its coordinator reserved within a tenth of a second instead of running one task
at a time for its first second (foundry/data/executor_start.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from ray.data._internal.execution.resource_manager import ResourceManager

from foundry.data import executor_start, pipeline


@pytest.fixture
def ray_default_interval(monkeypatch):
    monkeypatch.setattr(ResourceManager, "GLOBAL_LIMITS_UPDATE_INTERVAL_S", 1)


def test_the_refresh_interval_is_lowered_and_never_raised(ray_default_interval, monkeypatch):
    executor_start.use_reserved_cpus_promptly()
    assert ResourceManager.GLOBAL_LIMITS_UPDATE_INTERVAL_S == executor_start.LIMITS_REFRESH_S < 1
    monkeypatch.setattr(ResourceManager, "GLOBAL_LIMITS_UPDATE_INTERVAL_S", 0.01)
    executor_start.use_reserved_cpus_promptly()
    assert ResourceManager.GLOBAL_LIMITS_UPDATE_INTERVAL_S == 0.01


def test_validating_a_source_applies_it_before_reading(ray_default_interval, monkeypatch):
    class Stop(Exception):
        pass

    def read_source(source):
        assert ResourceManager.GLOBAL_LIMITS_UPDATE_INTERVAL_S == executor_start.LIMITS_REFRESH_S
        raise Stop

    monkeypatch.setattr(pipeline, "read_source", read_source)
    with pytest.raises(Stop):
        pipeline.validate(SimpleNamespace(source=None))
