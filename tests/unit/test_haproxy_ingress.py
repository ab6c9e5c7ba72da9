"""The HAProxy ingress wrapper: Ray's own HAProxy config, rewritten so the admin listeners bind loopback.

The config is rendered by Ray's HAProxy manager code (the template Ray 2.60 really writes), so a change in
Ray's template that the rewrite no longer matches fails here, not in production."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from cluster import launcher, local
from foundry import config
from foundry.errors import ConfigError
from foundry.serving import haproxy_ingress as hi


@pytest.fixture(scope="module")
def ray_haproxy_config(tmp_path_factory) -> str:
    """The HAProxy config Ray's HAProxyApi writes for a loopback Serve frontend on port 8000."""
    from ray.serve._private.haproxy import HAProxyApi, HAProxyConfig
    from ray.serve.config import HTTPOptions

    d = tmp_path_factory.mktemp("hap")
    cfg = HAProxyConfig(http_options=HTTPOptions(host="127.0.0.1", port=8000), socket_path=str(d / "admin.sock"),
                        server_state_base=str(d), server_state_file=str(d / "state"))
    api = HAProxyApi(cfg, config_file_path=str(d / "haproxy.cfg"))
    api._generate_config_file_internal()
    return (d / "haproxy.cfg").read_text()


def _binds(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().startswith("bind ")]


def test_rays_template_binds_the_admin_listeners_everywhere(ray_haproxy_config):
    """What the wrapper exists for: if Ray fixes its template, this fails and the wrapper can go."""
    assert "bind *:8404" in _binds(ray_haproxy_config)
    assert "bind :9101" in _binds(ray_haproxy_config)
    assert "mode 666" in ray_haproxy_config


def test_rewrite_binds_stats_and_metrics_to_loopback_only(ray_haproxy_config):
    out = hi.rewrite_admin_listeners(ray_haproxy_config)
    assert sorted(_binds(out)) == sorted(["bind 127.0.0.1:8404", "bind 127.0.0.1:9101", "bind 127.0.0.1:8000"])
    assert "mode 600 level admin" in out and "mode 666" not in out
    before, after = ray_haproxy_config.splitlines(), out.splitlines()
    assert len(after) == len(before)
    assert sum(a != b for a, b in zip(before, after, strict=True)) == 3


def test_rewrite_leaves_a_client_frontend_on_every_interface_alone():
    """serve.http.host=0.0.0.0 is the operator's choice: only the admin sections change."""
    text = textwrap.dedent("""\
        frontend prometheus
            bind :9101
        frontend http_frontend
            bind *:8000
        listen stats
          bind *:8404
        """)
    out = hi.rewrite_admin_listeners(text, "::1")
    assert _binds(out) == ["bind [::1]:9101", "bind *:8000", "bind [::1]:8404"]


def test_rewritten_config_is_valid_for_the_real_haproxy(ray_haproxy_config, tmp_path):
    path = tmp_path / "haproxy.cfg"
    path.write_text(hi.rewrite_admin_listeners(ray_haproxy_config))
    binary = hi.real_binary()
    done = subprocess.run([binary, "-c", "-f", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_wrapper_rewrites_the_file_then_execs_haproxy_with_the_same_arguments(ray_haproxy_config, tmp_path):
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(ray_haproxy_config)
    fake = tmp_path / "fake-haproxy"
    record = tmp_path / "argv"
    fake.write_text(f"#!/bin/sh\necho \"$$ $@\" > {record}\n")
    fake.chmod(0o755)
    env = {**os.environ, hi.REAL_BINARY_ENV: str(fake), hi.ADMIN_HOST_ENV: "127.0.0.1"}
    proc = subprocess.Popen([sys.executable, "-m", "foundry.serving.haproxy_ingress", "-db", "-f", str(cfg),
                             "-sf", "123"], env=env)
    assert proc.wait(timeout=60) == 0
    pid, *args = record.read_text().split()
    assert int(pid) == proc.pid  # exec, not a child: Ray signals and finds this pid
    assert args == ["-db", "-f", str(cfg), "-sf", "123"]
    assert "bind 127.0.0.1:8404" in cfg.read_text()


def test_wrapper_without_any_haproxy_fails_loudly(tmp_path, monkeypatch):
    monkeypatch.delenv(hi.REAL_BINARY_ENV, raising=False)
    monkeypatch.setitem(sys.modules, "ray_haproxy", None)  # the bundled binary's package is missing
    monkeypatch.setenv("PATH", str(tmp_path))
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text("listen stats\n  bind *:8404\n")
    assert hi.main(["-f", str(cfg)]) == 127


def test_default_cluster_runs_haproxy_through_the_wrapper():
    cfg = config.load([])
    env = local.head_env(cfg.cluster, base={})
    assert env[hi.ENABLE_ENV] == "1"
    assert env[hi.BINARY_ENV] == hi.wrapper_beside() and os.access(env[hi.BINARY_ENV], os.X_OK)
    assert env[hi.ADMIN_HOST_ENV] == "127.0.0.1"


def test_python_ingress_turns_haproxy_off():
    env = local.head_env(config.load(["cluster.ingress.kind=python"]).cluster, base={})
    assert env[hi.ENABLE_ENV] == "0" and hi.BINARY_ENV not in env


def test_cluster_env_cannot_bypass_the_ingress_setting():
    with pytest.raises(ConfigError, match="cluster.env.RAY_SERVE_ENABLE_HA_PROXY"):
        config.load(["+cluster.env.RAY_SERVE_ENABLE_HA_PROXY='1'"])


def test_rendered_nodes_find_the_wrapper_on_path_or_fail_closed():
    cfg = config.load(["cluster=aws", "cluster.install.git_url=https://example.org/foundry.git"])
    command = launcher.env_file_command(cfg)
    assert "RAY_SERVE_HAPROXY_BINARY_PATH=" in command and "command -v foundry-haproxy" in command
    assert "/nonexistent/foundry-haproxy" in command
