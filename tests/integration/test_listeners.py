"""What the shared test cluster listens on: loopback only, except what ``cluster.listeners.ALLOWED``
documents (docs/operations.md, "What listens where").

The cluster's processes are found the way ``python -m cluster down`` finds them
(``cluster.processes.find_head``: the head's session directory and node id, and everything those
processes started), so workers, agents, Serve replicas and the autoscaler's worker nodes are
included. A plain actor and a small Serve application run during the check, so the listeners of
workers and replicas are there to be seen, not only the head's servers.
"""

from __future__ import annotations

import contextlib
import socket
import time

import pytest

from cluster import listeners
from cluster.processes import find_head
from foundry import config

APP = "listeners-probe"
ROUTE = "/listeners-probe"


@pytest.fixture(scope="module")
def workloads(ray_cluster, serve_port):
    """A plain actor and a one-replica Serve application (removed at module end; Serve stays up)."""
    import ray
    from ray import serve

    from foundry.serving.deploy_config import build_serve_config

    @ray.remote(num_cpus=0)
    class ListenerProbe:
        def __init__(self):
            self._sockets: dict[int, socket.socket] = {}

        def ip(self) -> str:
            return ray.util.get_node_ip_address()

        def listen_on(self, host: str) -> int:
            """Open a listening socket in this worker process, as a new Ray feature might."""
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            s.listen()
            port = s.getsockname()[1]
            self._sockets[port] = s
            return port

        def close(self, port: int) -> None:
            self._sockets.pop(port).close()

    @serve.deployment(ray_actor_options={"num_cpus": 0})
    class Probe:
        def __call__(self, request) -> str:
            return "ok"

    # The session's Serve options, as the project's own deploy sets them (Serve keeps the first ones).
    cfg = config.load([*ray_cluster.overrides, f"serve.http.port={serve_port}"])
    options = build_serve_config(cfg)
    serve.start(proxy_location=options["proxy_location"], http_options=options["http_options"])
    actor = ListenerProbe.remote()
    ray.get(actor.ip.remote(), timeout=120)  # its worker is up
    serve.run(Probe.bind(), name=APP, route_prefix=ROUTE)
    try:
        yield actor
    finally:
        with contextlib.suppress(Exception):
            # Not waited for: behind the HAProxy ingress Serve keeps a deleted app's replica for its 30 s
            # draining period (RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S); no later test uses this app.
            serve.delete(APP, _blocking=False)
        ray.kill(actor)


def _cluster_listeners(ray_cluster) -> list[listeners.Listener]:
    head = find_head(ray_cluster.config.gcs_port)
    assert head is not None, f"no Ray cluster process found for GCS port {ray_cluster.config.gcs_port}"
    return listeners.listening(head.pids)


def _table(found: list[listeners.Listener]) -> str:
    return "\n".join(f"  {lst}" for lst in found)


EXPECTED_PROCESSES = {"gcs_server", "raylet", "dashboard", "ray::DashboardAgent", "ray::RuntimeEnvAgent",
                      "ray_client_server", "ray::ListenerProbe", "ray::ServeReplica",
                      # The default ingress (cluster.ingress.kind=haproxy): its client frontend and its stats and
                      # Prometheus listeners, which foundry-haproxy binds to loopback (Ray's template: every
                      # interface).
                      "haproxy"}
SERVERS_UP_TIMEOUT_S = 60


def _listeners_once_all_are_up(ray_cluster) -> list[listeners.Listener]:
    """The cluster's listeners once every expected server has one. Serve's HAProxy manager starts (and on a
    reload restarts) the haproxy process a while after an application is deployed: a scan right after the
    deploy can run before it listens (a CI run saw exactly that, 70 s after the manager started)."""
    deadline = time.monotonic() + SERVERS_UP_TIMEOUT_S
    while True:
        found = _cluster_listeners(ray_cluster)
        haproxy = {(lst.ip, lst.port) for lst in found if lst.process == "haproxy"}
        names = {lst.process for lst in found}
        up = names >= EXPECTED_PROCESSES and haproxy >= {("127.0.0.1", 8404), ("127.0.0.1", 9101)}
        if up or time.monotonic() > deadline:
            return found
        time.sleep(1)


def test_every_listener_is_on_loopback_or_documented(ray_cluster, workloads):
    found = _listeners_once_all_are_up(ray_cluster)
    # The check proves nothing unless it sees the cluster's servers: the head's, the agents', a
    # worker's (the probe actor) and a Serve replica's.
    names = {lst.process for lst in found}
    expected = EXPECTED_PROCESSES
    assert expected <= names, f"missing {sorted(expected - names)} among the listeners:\n{_table(found)}"
    ports = {lst.port for lst in found}
    assert {ray_cluster.config.gcs_port, ray_cluster.config.dashboard_port} <= ports, _table(found)
    haproxy = {(lst.ip, lst.port) for lst in found if lst.process == "haproxy"}
    assert {("127.0.0.1", 8404), ("127.0.0.1", 9101)} <= haproxy, _table(found)

    bad = listeners.undocumented(found)
    assert not bad, (
        "listeners beyond loopback that cluster.listeners.ALLOWED does not document (bind them to "
        f"127.0.0.1, or document them there and in docs/operations.md 'What listens where'):\n{_table(bad)}\n"
        f"all listeners of the cluster:\n{_table(found)}")


def test_a_new_listener_on_every_interface_is_caught(ray_cluster, workloads):
    """The check can fail: a socket on 0.0.0.0 in a worker of the cluster is reported."""
    import ray

    port = ray.get(workloads.listen_on.remote("0.0.0.0"), timeout=60)
    try:
        bad = []
        for _ in range(20):  # the socket is open once the call returns; allow /proc a moment anyway
            bad = [lst for lst in listeners.undocumented(_cluster_listeners(ray_cluster)) if lst.port == port]
            if bad:
                break
            time.sleep(0.5)
        assert [(lst.process, lst.ip) for lst in bad] == [("ray::ListenerProbe", "0.0.0.0")]
    finally:
        ray.get(workloads.close.remote(port), timeout=60)


def test_nodes_jobs_and_clients_use_the_loopback_address(ray_cluster, workloads, job_client):
    """Every node registers 127.0.0.1, and a job's bare ``ray.init()`` joins 127.0.0.1:<port>: one
    address for the cluster, so Ray never sees "multiple active Ray instances" of it."""
    import ray
    from ray.job_submission import JobStatus

    gcs = f"127.0.0.1:{ray_cluster.config.gcs_port}"
    assert ray.get_runtime_context().gcs_address == gcs
    assert {n["NodeManagerAddress"] for n in ray.nodes() if n["Alive"]} == {"127.0.0.1"}
    assert ray.get(workloads.ip.remote(), timeout=60) == "127.0.0.1"

    job_id = job_client.submit_job(entrypoint=(
        'python -c "import os, ray; ray.init(); '
        "print('ADDRESS', os.environ.get('RAY_ADDRESS'), ray.get_runtime_context().gcs_address)\""))
    deadline = time.monotonic() + 120
    status = job_client.get_job_status(job_id)
    while not status.is_terminal() and time.monotonic() < deadline:
        time.sleep(1)
        status = job_client.get_job_status(job_id)
    logs = job_client.get_job_logs(job_id)
    assert status == JobStatus.SUCCEEDED, f"job {job_id} ended {status}; logs:\n{logs}"
    assert f"ADDRESS {gcs} {gcs}" in logs, logs
    assert "multiple active Ray instances" not in logs, logs
