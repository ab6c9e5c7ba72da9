"""The local cluster's node provider: Ray's fake multi-node provider, its worker nodes fit to share one host.

Ray's ``FakeMultiNodeProvider`` starts each worker "node" inside the autoscaler's process as a
``ray._private.node.Node`` with Ray's default parameters. Those nodes share the head's host and session
folder, which Ray's defaults do not expect twice over:

- **One log monitor per host.** Every node's log monitor read the same worker log files, so each line a
  task or actor printed reached its driver (and a job's logs: ``ray job logs``, the dashboard) once per live
  node. Ray's own advice (``ray start --help``, ``--include-log-monitor``): one log monitor per physical
  host. So worker nodes start without one; the head's publishes every worker's lines, those of the worker
  nodes too.
- **A runtime-environment folder per node.** Each node's runtime-env agent unpacks a job's ``working_dir``
  into ``<session>/runtime_resources/working_dir_files/``, and Ray's working-dir plugin always unpacks
  with ``overwrite=True``: a node that sets up a job's package for the first time deletes the folder and
  unpacks it again. With one shared folder, the first actor or task of a job placed on a new node wiped the
  package under the job's running driver on the head: a retrain failed with ``ImportError: cannot import
  name 'tracking' from 'foundry.train'`` (a module not imported yet when its file vanished), and
  ``os.getcwd()`` raised ``FileNotFoundError`` (foundry/runtime/workdir.py). Each worker node now gets a
  folder of its own (``runtime_resources_<autoscaler pid>_<node number>``), as a real node has.

Ray's provider builds its ``RayParams`` inline, so the override swaps the class it calls for the duration of
one node's creation (under the provider's lock). tests/unit/test_cluster_render.py fails when a Ray upgrade
changes what this relies on; tests/integration/test_autoscaling.py when a node still wipes a running job's
package or repeats its lines.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator

import ray._private.parameter as ray_parameter
from ray.autoscaler._private.fake_multi_node.node_provider import FakeMultiNodeProvider

# Ray's fake node ids end in a 5-digit count (FakeMultiNodeProvider._next_hex_node_id); this one is the fallback.
_NODE_NUMBERS = itertools.count(1)


def runtime_env_dir_name(env_vars: dict | None) -> str:
    """A worker node's own runtime-environment folder (under the session folder it shares with the head)."""
    node_id = (env_vars or {}).get("RAY_OVERRIDE_NODE_ID_FOR_TESTING") or str(next(_NODE_NUMBERS))
    return f"runtime_resources_{os.getpid()}_{node_id[-5:]}"


class _WorkerNodeParams(ray_parameter.RayParams):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("include_log_monitor", False)
        kwargs.setdefault("runtime_env_dir_name", runtime_env_dir_name(kwargs.get("env_vars")))
        super().__init__(*args, **kwargs)


@contextlib.contextmanager
def _worker_node_params() -> Iterator[None]:
    real = ray_parameter.RayParams
    ray_parameter.RayParams = _WorkerNodeParams
    try:
        yield
    finally:
        ray_parameter.RayParams = real


class SharedHostProvider(FakeMultiNodeProvider):
    """Worker nodes on this host without a log monitor of their own (the head's reads the shared log folder)
    and with a runtime-environment folder of their own."""

    def _create_node_with_resources_and_labels(self, node_config, tags, count, resources, labels):
        with _worker_node_params():
            super()._create_node_with_resources_and_labels(node_config, tags, count, resources, labels)
