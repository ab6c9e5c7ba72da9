"""What the local cluster's processes listen on, and the listeners that may bind beyond loopback.

``python -m cluster up`` keeps every listener Ray lets us bind on 127.0.0.1 (``cluster.local``).
``ALLOWED`` lists the ones Ray 2.60 (or a library it runs) binds to other interfaces whatever the
settings, each with where that is decided, what guards it and what turns it off. It is the one
source for ``tests/integration/test_listeners.py`` (a non-loopback listener not in it fails the test)
and for the README's "What listens where"; ``tests/unit/test_listener_rules.py`` keeps the two in step.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass

ANY_PORT = "any"


@dataclass(frozen=True)
class Listener:
    """One listening TCP socket: the process's short name (``process_name``), address and port."""

    process: str
    ip: str
    port: int
    pid: int = 0

    def __str__(self) -> str:
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"{self.process} (pid {self.pid}) on {host}:{self.port}"


@dataclass(frozen=True)
class Allowed:
    ports: tuple[int, ...] | str  # the ports it may use beyond loopback, or ANY_PORT
    bind: str  # what it binds
    source: str  # where Ray (or the library) decides that
    guard: str  # what stands between the network and it
    off: str  # what turns it off or changes it


def _env_port(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


ALLOWED: dict[str, Allowed] = {
    "ray::ServeReplica": Allowed(
        ports=ANY_PORT,
        bind="[::]:<random> (every interface), the replica's inter-deployment gRPC server",
        source="ray/serve/_private/replica.py, _on_initialized: add_port_to_grpc_server(self._server, \"[::]:0\")",
        guard="Ray token auth: the server is built by create_grpc_server_with_interceptors, which adds the "
              "token interceptor (RAY_AUTH_MODE=token is forced on every process of the cluster)",
        off="none while a Serve replica runs",
    ),
    "ray::RayTrainWorker": Allowed(
        ports=ANY_PORT,
        bind="*:<MASTER_PORT> (every interface) on the rank-0 worker, torch.distributed's TCPStore",
        source="torch c10d TCPStore server (rendezvous of Ray Train's process group) binds the wildcard "
               "address; torch has no bind-address option",
        guard="none (the store has no auth); it lives only while a training run's workers do",
        off="none while a Ray Train run is in progress (Ray Train sets up the process group even for one "
            "worker); the process group's own (gloo) sockets bind loopback (GLOO_SOCKET_IFNAME, cluster.local)",
    ),
}

# The process names Ray gives its programs; any other non-loopback listener fails the test.
_BINARIES = ("gcs_server", "raylet", "haproxy")
_MODULES = {"ray.util.client.server": "ray_client_server"}


def process_name(cmdline: list[str]) -> str:
    """A stable short name from a command line: ``gcs_server``, ``raylet``, ``ray::DashboardAgent``,
    ``ray::ServeReplica`` (from ``ray::ServeReplica:app:Deployment``), ``dashboard`` (``dashboard.py``),
    ``ray_client_server``, ``ray-dashboard-JobHead`` ...; ``?`` for an empty one."""
    args = [a for a in cmdline if a.strip()]
    if not args:
        return "?"
    first = args[0].strip().split()[0]
    if first.startswith("ray::"):
        return "ray::" + re.split(r"[:.\s]", first[len("ray::"):], maxsplit=1)[0]
    if first.startswith("ray-dashboard-"):
        return re.sub(r"-\d+$", "", first)
    base = os.path.basename(first)
    if base in _BINARIES or not base.startswith("python"):
        return base
    rest = args[1:]
    for i, a in enumerate(rest):
        if a == "-m" and i + 1 < len(rest):
            return _MODULES.get(rest[i + 1], rest[i + 1])
        if a.endswith(".py"):
            return os.path.basename(a)[:-3]
    return base


def is_loopback(ip: str) -> bool:
    """127.0.0.0/8, ::1 and IPv4-mapped loopback (``::ffff:127.0.0.1``, what a dual-stack socket shows)."""
    try:
        addr = ipaddress.ip_address(ip.split("%", 1)[0].strip("[]"))
    except ValueError:
        return False
    mapped = getattr(addr, "ipv4_mapped", None)
    return (mapped or addr).is_loopback


def documented(listener: Listener, allowed: dict[str, Allowed] | None = None) -> bool:
    entry = (ALLOWED if allowed is None else allowed).get(listener.process)
    return entry is not None and (entry.ports == ANY_PORT or listener.port in entry.ports)


def undocumented(listeners: Iterable[Listener], allowed: dict[str, Allowed] | None = None) -> list[Listener]:
    """The listeners that are neither on loopback nor in the allow-list: each is a finding."""
    return [lst for lst in listeners if not is_loopback(lst.ip) and not documented(lst, allowed)]


def listening(pids: Iterable[int]) -> list[Listener]:
    """The listening TCP sockets (IPv4 and IPv6) of these processes; vanished processes are skipped."""
    from cluster.processes import _psutil

    psutil = _psutil()
    found: list[Listener] = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            name = process_name(proc.cmdline())
            conns = proc.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            continue
        for c in conns:
            if c.status == psutil.CONN_LISTEN and c.laddr:
                found.append(Listener(name, c.laddr.ip, c.laddr.port, pid))
    return sorted(found, key=lambda lst: (lst.process, lst.port, lst.ip))
