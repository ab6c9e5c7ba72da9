"""The local cluster's node provider: Ray's fake multi-node provider with one log monitor per host.

Ray's ``FakeMultiNodeProvider`` starts each worker "node" inside the autoscaler's process as a
``ray._private.node.Node`` with Ray's default parameters, a log monitor included. Those nodes share the head's
host and session folder, so every node's log monitor read the same worker log files, and each line a task or
actor printed reached its driver (and a job's logs: ``ray job logs``, the dashboard) once per live node. Ray's
own advice (``ray start --help``, ``--include-log-monitor``): one log monitor per physical host. So worker
nodes start without one; the head's publishes every worker's lines, those of the worker nodes too.

Ray's provider builds its ``RayParams`` inline, so the override swaps the class it calls for the duration of
one node's creation (under the provider's lock). tests/unit/test_cluster_render.py fails when a Ray upgrade
changes what this relies on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import ray._private.parameter as ray_parameter
from ray.autoscaler._private.fake_multi_node.node_provider import FakeMultiNodeProvider


class _WithoutLogMonitor(ray_parameter.RayParams):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("include_log_monitor", False)
        super().__init__(*args, **kwargs)


@contextlib.contextmanager
def _nodes_without_log_monitor() -> Iterator[None]:
    real = ray_parameter.RayParams
    ray_parameter.RayParams = _WithoutLogMonitor
    try:
        yield
    finally:
        ray_parameter.RayParams = real


class OneLogMonitorProvider(FakeMultiNodeProvider):
    """Worker nodes on this host without a log monitor of their own (the head's reads the shared folder)."""

    def _create_node_with_resources_and_labels(self, node_config, tags, count, resources, labels):
        with _nodes_without_log_monitor():
            super()._create_node_with_resources_and_labels(node_config, tags, count, resources, labels)
