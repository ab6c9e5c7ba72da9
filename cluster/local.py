"""What it takes to start a local Ray head from ``cfg.cluster``: the ``ray start`` command line and
its environment, as pure functions of the config.

They are kept free of side effects so that the exact command can be unit-tested without Ray, and so
that a later cluster kind (Ray's fake multi-node autoscaler for ``cluster=local``) only has to add
its flags here (``--autoscaling-config=...``) while ``up``/``down``/``status`` stay as they are.

Loopback only (Ray 2.60 on Linux, verified with ``ss``): Ray replaces a loopback
``--node-ip-address`` with the machine's routable IP (``services.resolve_ip_for_localhost``), and
then its GCS, raylets and workers bind every interface (their gRPC servers bind 127.0.0.1 only when
the node IP *is* 127.0.0.1) while the agents and the Ray client server bind that IP. With
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (``connection.LOOPBACK_ONLY_ENV``) Ray keeps 127.0.0.1, so
``head_env`` sets it whenever ``head_host`` is loopback: every process of the cluster (the fake worker
nodes the autoscaler starts included) inherits it and binds 127.0.0.1, and jobs get
``RAY_ADDRESS=127.0.0.1:<port>``. What Ray still binds elsewhere, and what guards it:
``cluster.listeners.ALLOWED`` (README, "What listens where"). Clients outside the cluster need the
variable too; ``connection.connect`` sets it for loopback addresses.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from collections.abc import Mapping
from pathlib import Path

from cluster import autoscaling
from foundry.config import ClusterConfig
from foundry.runtime import connection
from foundry.serving import haproxy_ingress

# Ray-start settings a caller's environment must not leak into the head: the head is a server,
# not a client of some other cluster, and stale values would make it look for the wrong one.
_CLIENT_ONLY_ENV = ("RAY_ADDRESS",)


def ray_executable() -> str:
    """The ``ray`` CLI of the interpreter running us, so a venv works without being activated."""
    beside = Path(sys.executable).with_name("ray")
    if beside.exists():
        return str(beside)
    found = shutil.which("ray")
    if found is None:
        raise FileNotFoundError("the `ray` command is not installed next to this Python nor on PATH")
    return found


def loopback_interface() -> str | None:
    """The loopback network interface's name (``lo`` on Linux, ``lo0`` on macOS), or None."""
    try:
        names = {name for _, name in socket.if_nameindex()}
    except OSError:
        return None
    return next((n for n in ("lo", "lo0") if n in names), None)


def head_env(cfg: ClusterConfig, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for ``ray start``: the caller's, plus ``cfg.env``, the Serve ingress
    (``cfg.ingress``: HAProxy through ``foundry-haproxy`` by default), loopback-only binding for a
    loopback ``head_host``, plus token auth.

    ``cfg.env`` is applied here because Ray processes read most settings (e.g.
    ``RAY_SERVE_THROUGHPUT_OPTIMIZED``) from their environment at start, and every worker and job
    inherits the head's environment. ``RAY_AUTH_MODE=token`` is set last so that no config or
    shell can start this cluster without auth.
    """
    env = dict(os.environ if base is None else base)
    for key in _CLIENT_ONLY_ENV:
        env.pop(key, None)
    # Job entrypoints say `python ...` and resolve it on the head's PATH: make that this
    # interpreter (the one with Ray and Foundry installed), even when the venv is not activated.
    bin_dir = os.path.dirname(sys.executable)
    path = env.get("PATH", "")
    if path.split(os.pathsep)[0] != bin_dir:
        env["PATH"] = os.pathsep.join([bin_dir, path]) if path else bin_dir
    env.update({str(k): str(v) for k, v in (cfg.env or {}).items()})
    ing = cfg.ingress
    env.update(haproxy_ingress.ingress_env(ing.kind.value, ing.admin_host,
                                           ing.wrapper or haproxy_ingress.wrapper_beside()))
    env.update(autoscaling.env(cfg))
    if connection.is_loopback_host(cfg.head_host):
        # Keep --node-ip-address=127.0.0.1 as given, so every listener Ray can bind to loopback is
        # (see the module docstring); set after cfg.env so that no config can undo it.
        env[connection.LOOPBACK_ONLY_ENV] = "0"
        # Ray Train's gloo process group binds the address the hostname resolves to, a LAN IP on many
        # hosts; all ranks share this machine, so the loopback interface suffices (cfg.env or the shell may
        # set another).
        lo = loopback_interface()
        if lo is not None:
            env.setdefault("GLOO_SOCKET_IFNAME", lo)
    env[connection.AUTH_MODE_ENV] = "token"
    if not env.get(connection.TOKEN_ENV) and not env.get(connection.TOKEN_PATH_ENV):
        configured = Path(os.path.expanduser(cfg.token_path)).resolve()
        if configured != Path(os.path.expanduser(connection.DEFAULT_TOKEN_PATH)).resolve():
            env[connection.TOKEN_PATH_ENV] = str(configured)
    return env


DEFAULT_CLIENT_SERVER_PORT = 10001  # Ray's own default for the Ray client server (ray://)


def head_start_argv(cfg: ClusterConfig, ray_bin: str | None = None,
                    client_server_port: int = DEFAULT_CLIENT_SERVER_PORT,
                    autoscaling_config: str | None = None) -> list[str]:
    """``ray start --head`` for this config.

    Hosts default to 127.0.0.1 (from the config) so a laptop cluster is not advertised on the LAN;
    ``--num-cpus`` only when set, otherwise Ray counts the machine's cores; usage stats off because
    the platform must start without network access.

    Two ports Ray fixes by default are set here so that several clusters can share a machine (a
    developer's on 6379, the test session's on 6390, a bare ``ray.init()``): the dashboard agent
    otherwise always takes 52365, and a second cluster then cannot run any job ("No available agent
    to submit job"); ``0`` lets it pick a free port and register it with the GCS, where the Jobs API
    looks it up. The Ray client server binds with SO_REUSEPORT, so two clusters on 10001 both
    "succeed" and ``ray://`` connections are split between them; the caller passes a free port.
    """
    argv = [
        ray_bin or ray_executable(),
        "start",
        "--head",
        f"--port={cfg.gcs_port}",
        f"--node-ip-address={cfg.head_host}",
        "--include-dashboard=true",
        f"--dashboard-host={cfg.dashboard_host}",
        f"--dashboard-port={cfg.dashboard_port}",
        "--dashboard-agent-listen-port=0",
        f"--ray-client-server-port={client_server_port}",
    ]
    if cfg.head_num_cpus is not None:
        argv.append(f"--num-cpus={cfg.head_num_cpus}")
    if autoscaling_config is not None:
        argv.append(f"--autoscaling-config={autoscaling_config}")
    argv.append("--disable-usage-stats")
    return argv


def port_free(port: int, host: str = "") -> bool:
    """Whether ``port`` can be bound exclusively (no SO_REUSEPORT, so a shared listener counts as taken)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def pick_client_server_port(preferred: int = DEFAULT_CLIENT_SERVER_PORT) -> int:
    """Ray's default when it is free (what ``ray://host:10001`` users expect), else any free port."""
    if port_free(preferred):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def stop_all_argv(ray_bin: str | None = None) -> list[str]:
    """``ray stop``: it stops every Ray process on the machine, not just this cluster's."""
    return [ray_bin or ray_executable(), "stop"]
