"""The ``ray start`` command line and environment built from ``cfg.cluster``, and the address helpers.

No Ray cluster needed: these are pure functions of the config, which is why they are kept apart
from the code that runs them.
"""

from __future__ import annotations

import os
import sys

import pytest

from cluster.local import head_env, head_start_argv
from foundry import config
from foundry.errors import FoundryError
from foundry.runtime import connection


@pytest.fixture(scope="module")
def default_cluster():
    return config.load([]).cluster


def _flag(argv: list[str], name: str) -> str | None:
    for a in argv:
        if a.startswith(f"{name}="):
            return a.split("=", 1)[1]
    return None


def test_argv_binds_loopback_by_default(default_cluster):
    argv = head_start_argv(default_cluster, ray_bin="ray")
    assert argv[:3] == ["ray", "start", "--head"]
    assert _flag(argv, "--node-ip-address") == "127.0.0.1"
    assert _flag(argv, "--dashboard-host") == "127.0.0.1"
    assert _flag(argv, "--port") == str(default_cluster.gcs_port)
    assert _flag(argv, "--dashboard-port") == str(default_cluster.dashboard_port)
    assert "--disable-usage-stats" in argv


def test_argv_takes_ports_and_hosts_from_overrides():
    cfg = config.load(["cluster.gcs_port=6390", "cluster.dashboard_port=8275",
                       "cluster.head_host=10.0.0.5", "cluster.dashboard_host=0.0.0.0"]).cluster
    argv = head_start_argv(cfg, ray_bin="ray", client_server_port=12345)
    assert _flag(argv, "--port") == "6390"
    assert _flag(argv, "--dashboard-port") == "8275"
    assert _flag(argv, "--node-ip-address") == "10.0.0.5"
    assert _flag(argv, "--dashboard-host") == "0.0.0.0"
    assert _flag(argv, "--ray-client-server-port") == "12345"
    # A wildcard bind address is not connectable: clients are sent to the head's address.
    assert connection.dashboard_url(cfg) == "http://10.0.0.5:8275"
    assert connection.gcs_address(cfg) == "10.0.0.5:6390"


def test_argv_never_pins_the_dashboard_agent_port(default_cluster):
    # A fixed agent port (Ray's 52365) makes a second cluster on the machine unable to run jobs.
    assert _flag(head_start_argv(default_cluster, ray_bin="ray"), "--dashboard-agent-listen-port") == "0"


def test_num_cpus_only_when_set():
    unset = config.load(["cluster.head_num_cpus=null"]).cluster
    assert not any(a.startswith("--num-cpus") for a in head_start_argv(unset, ray_bin="ray"))
    cfg = config.load(["cluster.head_num_cpus=2"]).cluster
    assert _flag(head_start_argv(cfg, ray_bin="ray"), "--num-cpus") == "2"


def test_env_passes_config_env_and_forces_token_auth():
    cfg = config.load(["+cluster.env.FOO_SETTING=bar"]).cluster
    env = head_env(cfg, base={"PATH": "/usr/bin", "RAY_AUTH_MODE": "disabled", "RAY_ADDRESS": "http://x:8265"})
    assert env["FOO_SETTING"] == "bar"
    assert env["RAY_SERVE_THROUGHPUT_OPTIMIZED"] == "1"  # from conf/cluster/local.yaml
    assert env["RAY_AUTH_MODE"] == "token"
    assert "RAY_ADDRESS" not in env  # the head is not a client of some other cluster
    # `python` in a job entrypoint must be this interpreter, venv activated or not.
    assert env["PATH"].split(os.pathsep)[0] == os.path.dirname(sys.executable)
    assert "RAY_AUTH_TOKEN_PATH" not in env  # default token path: nothing to tell Ray


def test_env_points_ray_at_a_custom_token_path(tmp_path):
    cfg = config.load([f"cluster.token_path={tmp_path}/tok"]).cluster
    env = head_env(cfg, base={})
    assert env["RAY_AUTH_TOKEN_PATH"] == str((tmp_path / "tok").resolve())


def test_token_helpers_follow_ray_precedence(tmp_path, monkeypatch):
    tok = tmp_path / "auth_token"
    tok.write_text("abc123\n")
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tok))
    assert connection.token_path() == tok.resolve()
    assert connection.read_token() == "abc123"
    assert connection.auth_headers() == {"Authorization": "Bearer abc123"}
    monkeypatch.setenv("RAY_AUTH_TOKEN", "from-env")
    assert connection.read_token() == "from-env"
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    with pytest.raises(FoundryError, match="cluster up"):
        connection.read_token()


def test_enable_token_auth_env_respects_an_explicit_mode(monkeypatch):
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    connection.enable_token_auth_env()
    assert os.environ["RAY_AUTH_MODE"] == "token"
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    connection.enable_token_auth_env()
    assert os.environ["RAY_AUTH_MODE"] == "disabled"


def test_connect_rejects_a_dashboard_url():
    with pytest.raises(FoundryError, match="GCS address"):
        connection.connect("http://127.0.0.1:8265")


def test_cli_help_needs_no_cluster():
    import subprocess

    proc = subprocess.run([sys.executable, "-m", "cluster", "--help"], capture_output=True, text=True,
                          cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    assert proc.returncode == 0
    assert "up" in proc.stdout and "down" in proc.stdout and "status" in proc.stdout


def test_down_matches_only_its_own_cluster_even_with_the_fake_head_node_id():
    """Every fake-multinode head has the node id ffff...00000: the GCS port must decide."""
    from cluster.processes import _belongs

    fake_head = "--node-id=" + "f" * 51 + "00000"
    markers = ["/tmp/ray/session_a/", "/tmp/ray/session_a "]
    mine = ["python", "-m", "ray.util.client.server", "--address=192.0.2.2:6390", fake_head]
    other = ["python", "-m", "ray.util.client.server", "--address=192.0.2.2:6379", fake_head]
    other_raylet = ["raylet", "--raylet_socket_name=/tmp/ray/session_b/sockets/raylet", fake_head]
    own_raylet = ["raylet", "--raylet_socket_name=/tmp/ray/session_a/sockets/raylet"]
    assert _belongs(mine, markers, fake_head, 6390)
    assert _belongs(own_raylet, markers, fake_head, 6390)
    assert not _belongs(other, markers, fake_head, 6390)
    assert not _belongs(other_raylet, markers, fake_head, 6390)
