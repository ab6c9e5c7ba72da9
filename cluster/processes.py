"""Find and stop the processes of ONE local Ray cluster.

``ray stop`` stops every Ray process on the machine: other clusters started with other ports, and
the private cluster of any script that called a bare ``ray.init()``. On a shared dev box or CI
runner that kills other people's work, so ``down`` stops only the cluster whose GCS listens on the
configured port. A cluster's processes are recognised by what Ray puts on their command lines: the
head's session directory (GCS, raylet, dashboard, monitors) or the head's node id (Ray client
server); everything they spawned (workers, agents, dashboard modules) goes with them.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import time
from dataclasses import dataclass, field


def _psutil():
    import ray  # noqa: F401  (Ray vendors psutil and puts it on sys.path when imported)

    return importlib.import_module("psutil")


def _ray_package_dir() -> str:
    import ray

    return os.path.dirname(ray.__file__)


def _is_ray_process(cmd: list[str], ray_dir: str) -> bool:
    """Only Ray's own programs count, so a ``tail -f`` on the session's logs is never touched."""
    if not cmd:
        return False
    if os.path.basename(cmd[0]) in ("gcs_server", "raylet"):
        return True
    head = cmd[:4]
    return any(a.startswith(ray_dir) or a.startswith("ray.") for a in head)


def _arg(cmdline: list[str], flag: str) -> str | None:
    prefix = f"{flag}="
    for a in cmdline:
        if a.startswith(prefix):
            return a[len(prefix):]
    return None


@dataclass
class RayHead:
    gcs_pid: int
    session_dir: str
    node_id: str | None
    pids: list[int] = field(default_factory=list)

    @property
    def session_name(self) -> str:
        return os.path.basename(self.session_dir.rstrip("/"))


def find_head(gcs_port: int) -> RayHead | None:
    """The local cluster whose GCS was started on ``gcs_port`` and all its processes, or None."""
    psutil = _psutil()
    head = None
    procs = []
    for p in psutil.process_iter(["pid", "name", "cmdline"]):
        cmd = p.info.get("cmdline") or []
        procs.append((p, cmd))
        if head is None and cmd and os.path.basename(cmd[0]) == "gcs_server" \
                and _arg(cmd, "--gcs_server_port") == str(gcs_port):
            session = _arg(cmd, "--session-dir") or os.path.dirname(_arg(cmd, "--log_dir") or "")
            if session:
                head = RayHead(gcs_pid=p.pid, session_dir=session, node_id=_arg(cmd, "--node-id"))
    if head is None:
        return None

    markers = [head.session_dir + "/", head.session_dir + " "]
    node_flag = f"--node-id={head.node_id}" if head.node_id else None
    ray_dir = _ray_package_dir()
    roots = [p for p, cmd in procs
             if _is_ray_process(cmd, ray_dir) and _belongs(cmd, markers, node_flag, gcs_port)]
    me = {os.getpid(), *(a.pid for a in psutil.Process().parents())}
    found: dict[int, object] = {}
    for p in roots:
        for q in [p, *_children(p, psutil)]:
            if q.pid not in me:
                found[q.pid] = q
    head.pids = sorted(found)
    return head


def _belongs(cmd: list[str], session_markers: list[str], node_flag: str | None, gcs_port: int) -> bool:
    """Is this Ray process part of the cluster whose GCS listens on ``gcs_port``?

    The session directory identifies a cluster. The head's node id alone does not: with
    ``RAY_FAKE_CLUSTER=1`` (cluster=local's autoscaler) every cluster's head gets the same fixed id
    (``ffff...00000``), so a process found by node id (the Ray client server) must also name the
    GCS port in its ``--address``; otherwise ``down`` would stop every other local cluster too.
    """
    joined = " ".join(cmd) + " "
    if any(m in joined for m in session_markers):
        return True
    return bool(node_flag and node_flag in cmd and any(a.endswith(f":{gcs_port}") for a in cmd))


def _children(p, psutil) -> list:
    try:
        return p.children(recursive=True)
    except psutil.Error:
        return []


def stop_head(head: RayHead, grace_s: float = 15.0) -> tuple[int, int]:
    """Stop the cluster's processes in ``ray stop``'s order; returns (exited on SIGTERM, SIGKILLed).

    Raylet first (its agents and workers share its fate and exit with it), then everything else,
    GCS last (the others exit cleanly only while it answers). Each stage gets a third of
    ``grace_s`` to exit on SIGTERM before SIGKILL.
    """
    psutil = _psutil()
    procs = []
    for pid in head.pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            procs.append(psutil.Process(pid))

    def name(p) -> str:
        try:
            return os.path.basename((p.cmdline() or [""])[0])
        except psutil.Error:
            return ""

    names = {p.pid: name(p) for p in procs}
    stages = [
        [p for p in procs if names[p.pid] == "raylet"],
        [p for p in procs if names[p.pid] not in ("raylet", "gcs_server")],
        [p for p in procs if names[p.pid] == "gcs_server"],
    ]
    graceful = killed = 0
    for stage in stages:
        for p in stage:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.terminate()
        gone, alive = psutil.wait_procs(stage, timeout=grace_s / len(stages))
        graceful += len(gone)
        for p in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()
        if alive:
            psutil.wait_procs(alive, timeout=5)
        killed += len(alive)
    return graceful, killed


def wait_port_closed(port_open, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while port_open():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True
