"""Ray Data's resource limits are refreshed every LIMITS_REFRESH_S in a process that prepares data, so an
execution gets the CPUs its coordinator reserved within a tenth of a second instead of running one task
at a time for its first second; and its scheduling loop notices a finished task within COMPLETION_WAIT_S,
not 0.1 s (foundry/data/executor_start.py)."""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import pytest
from ray.data._internal.execution import streaming_executor_state
from ray.data._internal.execution.resource_manager import ResourceManager

from foundry.data import executor_start, pipeline


@pytest.fixture
def ray_default_interval(monkeypatch):
    monkeypatch.setattr(ResourceManager, "GLOBAL_LIMITS_UPDATE_INTERVAL_S", 1)
    monkeypatch.setattr(streaming_executor_state, "WAIT_FOR_TASK_COMPLETION_TIMEOUT_S", 0.1)


@pytest.mark.parametrize(("owner", "attribute", "ours", "ray_default"), [
    (ResourceManager, "GLOBAL_LIMITS_UPDATE_INTERVAL_S", executor_start.LIMITS_REFRESH_S, 1),
    (streaming_executor_state, "WAIT_FOR_TASK_COMPLETION_TIMEOUT_S", executor_start.COMPLETION_WAIT_S, 0.1),
])
def test_each_timing_is_lowered_and_never_raised(ray_default_interval, monkeypatch, owner, attribute, ours,
                                                 ray_default):
    executor_start.use_reserved_cpus_promptly()
    assert getattr(owner, attribute) == ours < ray_default
    monkeypatch.setattr(owner, attribute, ours / 10)
    executor_start.use_reserved_cpus_promptly()
    assert getattr(owner, attribute) == ours / 10


def test_rays_loop_reads_the_wait_when_it_waits():
    # The module attribute works only while Ray reads it at call time, not as a default argument bound
    # at import: a Ray upgrade that binds it early would make the setting above silently do nothing.
    source = inspect.getsource(streaming_executor_state.process_completed_tasks)
    assert "timeout=WAIT_FOR_TASK_COMPLETION_TIMEOUT_S" in source
    assert "WAIT_FOR_TASK_COMPLETION_TIMEOUT_S" not in str(
        inspect.signature(streaming_executor_state.process_completed_tasks))


def test_validating_a_source_applies_it_before_reading(ray_default_interval, monkeypatch):
    class Stop(Exception):
        pass

    def read_source(source):
        assert ResourceManager.GLOBAL_LIMITS_UPDATE_INTERVAL_S == executor_start.LIMITS_REFRESH_S
        assert streaming_executor_state.WAIT_FOR_TASK_COMPLETION_TIMEOUT_S == executor_start.COMPLETION_WAIT_S
        raise Stop

    monkeypatch.setattr(pipeline, "read_source", read_source)
    with pytest.raises(Stop):
        pipeline.validate(SimpleNamespace(source=None))
