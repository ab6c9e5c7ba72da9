"""Shared fixtures. Integration tests share ONE real Ray cluster, started through the project's own CLI.

Starting a head costs ~5 s and a couple of GiB, so the cluster lives for the whole session; going
through ``python -m cluster up/down`` (not ``ray.init()``) means the tests exercise exactly what a
user runs, token auth included. Test ports (GCS 6390, dashboard 8275) keep it apart from a
developer's cluster on Ray's defaults, and ``down`` stops only the cluster on 6390.

Unit tests never request these fixtures, so they run without Ray.
"""

from __future__ import annotations

import os

# Every Ray client must ask for token auth, and Ray reads this when it is first imported: set it
# before anything (a test module, a fixture) imports Ray.
os.environ["RAY_AUTH_MODE"] = "token"
# The test process is a Ray driver too (in-process pipelines): it gets the cluster's driver_env
# (conf/cluster/local.yaml), as jobs do through connection.connect; Ray Data reads it in the driver.
from foundry.config import load as _load_config  # noqa: E402
from foundry.runtime.connection import apply_driver_env  # noqa: E402

apply_driver_env(_load_config([]).cluster.driver_env)

import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_GCS_PORT = int(os.environ.get("FOUNDRY_TEST_GCS_PORT", "6390"))  # env: run two sessions side by side
TEST_DASHBOARD_PORT = int(os.environ.get("FOUNDRY_TEST_DASHBOARD_PORT", "8275"))
# The test head takes work itself (conf/cluster/local.yaml's 0 would make every test wait for a
# worker node); the autoscaler stays on, and test_autoscaling asks for more than these 8 CPUs.
# 8 logical CPUs on a 2-core box on purpose: fake worker nodes share the same cores, so a node
# added for concurrent small jobs only adds process churn (every node starts its own workers and
# unpacks every job's working_dir again); on one head the jobs reuse warm workers.
TEST_HEAD_CPUS = 8
CLUSTER_UP_TIMEOUT_S = 180


@dataclass(frozen=True)
class RayTestCluster:
    address: str  # GCS host:port, for ray.init / foundry.runtime.connection.connect
    dashboard_url: str  # Jobs API / dashboard, for JobSubmissionClient and REST calls
    storage_root: str  # a fresh storage.root for this session
    overrides: list[str]  # Hydra overrides that point a job at this cluster and storage
    config: object  # the foundry.config.ClusterConfig the cluster was started from

    def cli(self, command: str, *extra: str, timeout: float = 120) -> subprocess.CompletedProcess:
        """``python -m cluster <command>`` aimed at this cluster (its overrides appended)."""
        return run_cluster_cli(command, *self.overrides, *extra, timeout=timeout)


def run_cluster_cli(*args: str, timeout: float = CLUSTER_UP_TIMEOUT_S) -> subprocess.CompletedProcess:
    """``python -m cluster ...`` with this interpreter, from the repo root, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "cluster", *args],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout,
    )


def pytest_collection_modifyitems(config, items):
    """Everything under tests/integration is an integration test (``-m "not integration"`` skips them)."""
    integration_dir = Path(__file__).parent / "integration"
    for item in items:
        if integration_dir in Path(item.path).parents:
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist (`make test` runs it: -n 2)
def pytest_xdist_make_scheduler(config, log):
    """With ``-n N`` every integration test goes to ONE worker, in file order, and the unit tests, a module
    at a time, to the other workers meanwhile. The integration tests share one cluster on fixed ports, which
    each worker would otherwise try to start (a second ``ray start`` on port 6390 fails). xdist's own
    ``--dist loadgroup`` cannot do it under pytest 9.2: it renames node ids, which pytest 9.2 no longer lets
    it do, so the group marks are silently ignored (pytest-dev/pytest-xdist#1386)."""
    from xdist.scheduler import LoadScopeScheduling

    class IntegrationOnOneWorker(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return integration_scope(nodeid)

    if config.getvalue("dist") == "each":
        return None
    # In collection order, so the integration unit (tests/integration sorts before tests/unit) starts first:
    # it is the longest by far (~22 of the suite's ~28 min on 2 cores).
    config.option.loadscopereorder = False
    return IntegrationOnOneWorker(config, log)


def integration_scope(nodeid: str) -> str:
    """The xdist work unit of a test: all of tests/integration together, else the test's own module (so a
    module's fixtures are built once)."""
    module = nodeid.split("::", 1)[0]
    return "tests/integration" if module.startswith("tests/integration/") else module


# Niceness of an xdist worker that runs only unit tests: the integration tests are the suite's critical path
# (their cluster's processes and their timing-bound checks), so the unit tests take the CPU they leave.
UNIT_WORKER_NICENESS = 10
_first_test_seen = False


def pytest_runtest_setup(item):
    """Lower the priority of an xdist worker whose first test is a unit test (the scheduler gives one worker
    all integration tests first; the other runs only unit tests)."""
    global _first_test_seen
    if _first_test_seen or not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    _first_test_seen = True
    if not item.get_closest_marker("integration"):
        os.nice(UNIT_WORKER_NICENESS)


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    from foundry import config
    from foundry.runtime import connection

    storage_root = str(tmp_path_factory.mktemp("foundry-storage"))
    overrides = [
        f"cluster.gcs_port={TEST_GCS_PORT}",
        f"cluster.dashboard_port={TEST_DASHBOARD_PORT}",
        f"storage.root={storage_root}",
    ]
    up_args = [*overrides, f"cluster.head_num_cpus={TEST_HEAD_CPUS}"]
    proc = run_cluster_cli("up", *up_args)
    if proc.returncode != 0:
        pytest.fail(f"`python -m cluster up {' '.join(up_args)}` failed (exit {proc.returncode}):\n"
                    f"{proc.stdout}\n{proc.stderr}", pytrace=False)

    cluster_cfg = config.load(overrides).cluster
    cluster = RayTestCluster(
        address=connection.gcs_address(cluster_cfg),
        dashboard_url=connection.dashboard_url(cluster_cfg),
        storage_root=storage_root,
        overrides=overrides,
        config=cluster_cfg,
    )
    try:
        connection.connect(cluster.address)
        yield cluster
    finally:
        import ray
        from ray._private import auto_init_hook

        # Serve handles made by tests leave a router thread in this process that calls ray.wait every few
        # seconds. After ray.shutdown Ray would auto-connect again for it, to the cluster stopped next, and
        # abort the process when that fails ("Failed to connect to GCS"): a non-zero exit after every test
        # passed. With auto-connect off, the thread's call fails with a Python error and the run ends cleanly.
        auto_init_hook.enable_auto_connect = False
        ray.shutdown()
        down = run_cluster_cli("down", *overrides, timeout=120)
        if down.returncode != 0:
            print(f"warning: `python -m cluster down` failed:\n{down.stdout}\n{down.stderr}", file=sys.stderr)


@pytest.fixture(scope="session")
def serve_port(ray_cluster) -> int:
    """The one Serve HTTP port of the session. Serve fixes its HTTP options when it first starts on a
    cluster, so every module serves on this port and removes only its own applications at the end
    (``serve.shutdown`` between modules would cost 30-50 s each; ``cluster down`` ends Serve)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def job_client(ray_cluster):
    from foundry.runtime import connection

    return connection.job_client(ray_cluster.config)
