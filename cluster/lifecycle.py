"""``up`` / ``down`` / ``status`` of the local head, built on the pure builders in ``cluster.local``.

Each command is idempotent and decides from what answers on the configured ports, not from local
bookkeeping, so it stays right after a crash, a reboot, or a cluster started by hand.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from cluster import autoscaling
from cluster.auth import describe_mode, ensure_token
from cluster.local import head_env, head_start_argv, pick_client_server_port, stop_all_argv
from cluster.processes import find_head, stop_head, wait_port_closed
from foundry.config import ClusterConfig
from foundry.errors import FoundryError
from foundry.runtime import connection

Printer = Callable[[str], None]


class HeadState(str, Enum):
    down = "down"  # nothing on the GCS port
    up = "up"  # GCS port open and the dashboard accepts our token
    starting = "starting"  # GCS port open, dashboard not answering (yet)
    wrong_token = "wrong_token"  # a Ray dashboard answers but rejects our token: someone else's cluster
    port_taken = "port_taken"  # GCS port free but the dashboard port is held by something else


@dataclass
class Probe:
    state: HeadState
    detail: str = ""
    ray_version: str | None = None


def _get(url: str, headers: dict[str, str], timeout: float) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def probe(cfg: ClusterConfig, timeout: float = 2.0) -> Probe:
    """What is on the configured ports right now (one quick look, no waiting)."""
    gcs_open = connection.port_open(cfg.head_host, cfg.gcs_port, timeout)
    url = connection.dashboard_url(cfg)
    try:
        headers = connection.auth_headers(cfg)
    except FoundryError:
        headers = {}
    try:
        code, body = _get(f"{url}/api/version", headers, timeout)
    except (urllib.error.URLError, OSError) as exc:
        if gcs_open:
            return Probe(HeadState.starting, f"the GCS port answers but the dashboard at {url} does not ({exc})")
        return Probe(HeadState.down)
    if code in (401, 403):
        return Probe(HeadState.wrong_token, f"the dashboard at {url} rejects this machine's token (HTTP {code})")
    version = None
    if code == 200:
        try:
            version = json.loads(body).get("ray_version")
        except ValueError:
            version = None
    if code != 200 or version is None:
        return Probe(HeadState.port_taken, f"{url} answers HTTP {code} but is not a Ray dashboard")
    if not gcs_open:
        return Probe(HeadState.port_taken,
                     f"a Ray dashboard already answers at {url}, but nothing listens on GCS port "
                     f"{cfg.head_host}:{cfg.gcs_port}: another cluster uses this dashboard port")
    return Probe(HeadState.up, ray_version=version)


def wait_until_up(cfg: ClusterConfig, timeout: float, poll: float = 0.5) -> Probe:
    """Poll until the dashboard (and with it the Jobs API) accepts authenticated requests.

    ``ray start`` returns once the head's processes run, but the dashboard needs a few more seconds;
    a job submitted in between would fail with a connection error.
    """
    deadline = time.monotonic() + timeout
    last = probe(cfg)
    while last.state is not HeadState.up and time.monotonic() < deadline:
        if last.state is HeadState.wrong_token:
            break
        time.sleep(poll)
        last = probe(cfg)
    return last


def _auth_prefix(cfg: ClusterConfig) -> str:
    prefix = "RAY_AUTH_MODE=token "
    env = head_env(cfg, base={})
    if connection.TOKEN_PATH_ENV in env:
        prefix += f"{connection.TOKEN_PATH_ENV}={env[connection.TOKEN_PATH_ENV]} "
    return prefix


def submit_hint(cfg: ClusterConfig) -> str:
    """The command a user runs next; spelled out because it fails without RAY_AUTH_MODE=token."""
    return (f"{_auth_prefix(cfg)}RAY_ADDRESS={connection.dashboard_url(cfg)} "
            "ray job submit --working-dir . -- python -m jobs.train")


def cli_hint(cfg: ClusterConfig) -> str:
    """A ``ray`` CLI call on the GCS; a loopback cluster also needs ``LOOPBACK_ONLY_ENV=0``, or the
    CLI dials the host's IP, where nothing of this cluster listens."""
    loopback = f"{connection.LOOPBACK_ONLY_ENV}=0 " if connection.is_loopback_host(cfg.head_host) else ""
    return f"{loopback}{_auth_prefix(cfg)}ray status --address={connection.gcs_address(cfg)}"


def _print_summary(cfg: ClusterConfig, out: Printer, token_file) -> None:
    out(f"  GCS address: {connection.gcs_address(cfg)}")
    out(f"  Dashboard:   {connection.dashboard_url(cfg)}")
    if token_file is not None:
        out(f"  Auth token:  {token_file} (mode {describe_mode(token_file)})")
    else:
        out(f"  Auth token:  from ${connection.TOKEN_ENV}")
    out("Submit a job with:")
    out(f"  {submit_hint(cfg)}")
    out("Ray CLI:")
    out(f"  {cli_hint(cfg)}")


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def up(cfg: ClusterConfig, timeout: float = 90.0, out: Printer = print) -> bool:
    """Start the head unless it already runs; True if this call started it."""
    token_file = ensure_token(cfg)
    connection.enable_token_auth_env(cfg)
    current = probe(cfg)
    if current.state is HeadState.starting:
        if find_head(cfg.gcs_port) is None:
            raise FoundryError(f"port {cfg.gcs_port} is in use by something that is not a Ray GCS. "
                               "Pick another port with cluster.gcs_port=...")
        current = wait_until_up(cfg, timeout)  # e.g. a second `up` right after the first
    if current.state is HeadState.up:
        out(f"Ray cluster '{cfg.name}' is already up (Ray {current.ray_version}); nothing to do.")
        _print_summary(cfg, out, token_file)
        return False
    if current.state is not HeadState.down:
        raise FoundryError(f"cannot start the Ray head: {current.detail}. "
                           "Pick other ports with cluster.gcs_port=... cluster.dashboard_port=...")

    scaling_file = None
    if cfg.autoscaling.enabled:
        scaling_file = str(autoscaling.write_config(cfg, f"{cfg.head_host}:{cfg.gcs_port}"))
    argv = head_start_argv(cfg, client_server_port=pick_client_server_port(), autoscaling_config=scaling_file)
    out(f"Starting Ray head '{cfg.name}': {' '.join(argv[1:])}")
    started = time.monotonic()
    try:
        proc = subprocess.run(argv, env=head_env(cfg), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise FoundryError(f"`ray start` did not return within {timeout:.0f} s") from exc
    if proc.returncode != 0:
        cleaned = _clean_up_partial_start(cfg)
        raise FoundryError(f"`ray start` failed (exit {proc.returncode}):\n"
                           f"{_tail(proc.stdout + proc.stderr)}{cleaned}")
    remaining = max(5.0, timeout - (time.monotonic() - started))
    ready = wait_until_up(cfg, remaining)
    if ready.state is not HeadState.up:
        head = find_head(cfg.gcs_port)
        logs = f"{head.session_dir}/logs/dashboard.log" if head else "the session's logs/dashboard.log"
        raise FoundryError(f"`ray start` succeeded but the dashboard at {connection.dashboard_url(cfg)} did not "
                           f"accept the token within {timeout:.0f} s ({ready.state.value}: {ready.detail}). "
                           f"See {logs}; `python -m cluster down` stops the half-started head.")
    out(f"Ray cluster '{cfg.name}' is up (Ray {ready.ray_version}, {time.monotonic() - started:.1f} s).")
    _print_summary(cfg, out, token_file)
    return True


def _clean_up_partial_start(cfg: ClusterConfig) -> str:
    """A failed ``ray start`` can leave a GCS running on the port, which would make the next ``up``
    report "already up" (or hang waiting for a dashboard that never comes)."""
    head = find_head(cfg.gcs_port)
    if head is None:
        return ""
    stopped, killed = stop_head(head)
    return f"\n(stopped the {stopped + killed} processes it had left running on port {cfg.gcs_port})"


def down(cfg: ClusterConfig, out: Printer = print, all_clusters: bool = False, timeout: float = 120.0) -> None:
    """Stop this cluster (the one on ``cfg.gcs_port``); ``all_clusters`` runs ``ray stop`` instead.

    Stopping by port leaves other Ray clusters on the machine alone (see ``cluster.processes``);
    ``ray stop`` is the big hammer for leftovers whose GCS is already gone.
    """
    if all_clusters:
        proc = subprocess.run(stop_all_argv(), env=head_env(cfg), capture_output=True, text=True, timeout=timeout)
        text = _tail(proc.stdout + proc.stderr, 10)
        if proc.returncode != 0:
            raise FoundryError(f"`ray stop` failed (exit {proc.returncode}):\n{text}")
        out(f"ray stop (every Ray process on this machine): {text or 'done'}")
        return

    head = find_head(cfg.gcs_port)
    if head is None:
        if connection.port_open(cfg.head_host, cfg.gcs_port):
            raise FoundryError(
                f"something listens on {connection.gcs_address(cfg)} but it is not a Ray GCS this user can "
                "see; stop it by hand, or use `python -m cluster down --all` (runs `ray stop`)")
        out(f"Ray cluster '{cfg.name}' was not running on {connection.gcs_address(cfg)}; nothing to stop.")
        return
    terminated, killed = stop_head(head)
    closed = wait_port_closed(lambda: connection.port_open(cfg.head_host, cfg.gcs_port), timeout=10.0)
    detail = f"{terminated} processes stopped" + (f", {killed} killed after the grace period" if killed else "")
    if not closed:
        raise FoundryError(f"stopped {detail}, but {connection.gcs_address(cfg)} still answers")
    out(f"Stopped Ray cluster '{cfg.name}' ({connection.gcs_address(cfg)}, {head.session_name}): {detail}.")


def status(cfg: ClusterConfig, out: Printer = print) -> bool:
    """Print nodes and resources; False (and "not running") when no head answers."""
    current = probe(cfg)
    if current.state is HeadState.down:
        out(f"Ray cluster '{cfg.name}' is not running ({connection.gcs_address(cfg)}).")
        return False
    if current.state is not HeadState.up:
        out(f"Ray cluster '{cfg.name}' is not usable: {current.detail}")
        return False

    import ray

    connection.enable_token_auth_env(cfg)
    connection.connect(connection.gcs_address(cfg), logging_level="ERROR", log_to_driver=False)
    try:
        nodes = ray.nodes()
        total = ray.cluster_resources()
        available = ray.available_resources()
    finally:
        ray.shutdown()
    alive = [n for n in nodes if n.get("Alive")]
    out(f"Ray cluster '{cfg.name}' is up (Ray {current.ray_version}).")
    out(f"  GCS address: {connection.gcs_address(cfg)}")
    out(f"  Dashboard:   {connection.dashboard_url(cfg)}")
    out(f"  Nodes: {len(alive)} alive" + (f", {len(nodes) - len(alive)} dead" if len(nodes) > len(alive) else ""))
    for n in alive:
        role = "head" if n.get("Resources", {}).get("node:__internal_head__") else "worker"
        out(f"    {n['NodeManagerAddress']} ({role}) {n['NodeID'][:12]}")
    out("  Resources (available / total):")
    for key in sorted(total):
        if key.startswith("node:"):
            continue
        out(f"    {key}: {_fmt(key, available.get(key, 0.0))} / {_fmt(key, total[key])}")
    return True


def _fmt(key: str, value: float) -> str:
    if key in ("memory", "object_store_memory"):
        return f"{value / 2**30:.1f} GiB"
    return f"{value:g}"
