"""How every Foundry process reaches the Ray cluster, with token authentication on.

The cluster that ``python -m cluster up`` starts always runs with ``RAY_AUTH_MODE=token``, and Ray
2.60 only sends the token from a client that has ``RAY_AUTH_MODE=token`` in its own environment
too: without it ``ray.init(address=...)``, ``JobSubmissionClient`` and the ``ray`` CLI fail with
"Authentication token is missing or incorrect". So everything that talks to the cluster goes through
``connect`` / ``job_client`` here rather than calling Ray directly.

Ray is imported inside the functions only: importing this module must stay cheap (CLIs, unit tests),
and Ray reads ``RAY_AUTH_MODE`` into its native config, so the variable has to be set first.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from foundry.errors import FoundryError

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

    from foundry.config import ClusterConfig

AUTH_MODE_ENV = "RAY_AUTH_MODE"
TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
DEFAULT_TOKEN_PATH = "~/.ray/auth_token"
# Ray replaces a loopback address (127.0.0.1, localhost, ::1) by this machine's routable IP, in
# `ray start --node-ip-address` and in every client's `ray.init(address=...)`, unless this is "0"
# (ray._private.services.resolve_ip_for_localhost -> get_node_ip_address; ray_constants reads it at
# import). The local cluster runs with it (cluster.local.head_env), so its GCS, raylets and agents bind
# 127.0.0.1; a client outside the cluster needs it too, or it dials the host IP where nothing listens.
LOOPBACK_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_RAY_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")  # ray._common.network_utils.is_localhost

_NO_CLUSTER_HINT = (
    "start the local cluster with `python -m cluster up`, or point ray.address "
    "(config override ray.address=HOST:PORT) or RAY_ADDRESS at a running one"
)


def enable_token_auth_env(cluster_cfg: ClusterConfig | None = None) -> None:
    """Make this process (and every child it starts) a token-auth Ray client.

    Ray clients do not discover that a cluster wants a token; they send one only when
    ``RAY_AUTH_MODE=token`` is in their environment. An explicit ``RAY_AUTH_MODE`` (e.g.
    ``disabled`` for a cluster someone else runs) is respected. A ``cluster_cfg`` whose
    ``token_path`` is not Ray's default also exports ``RAY_AUTH_TOKEN_PATH``, because that is the
    only way to tell Ray where the token lives.
    """
    changed = False
    if not os.environ.get(AUTH_MODE_ENV):
        os.environ[AUTH_MODE_ENV] = "token"
        changed = True
    if cluster_cfg is not None and not os.environ.get(TOKEN_ENV) and not os.environ.get(TOKEN_PATH_ENV):
        configured = _expand(cluster_cfg.token_path)
        if configured != _expand(DEFAULT_TOKEN_PATH):
            os.environ[TOKEN_PATH_ENV] = str(configured)
            changed = True
    if changed:
        _refresh_ray_auth_config()


def _refresh_ray_auth_config() -> None:
    """Ray caches RAY_AUTH_MODE in its native config when ``ray._raylet`` is first imported.

    If Ray was imported before the variable was set, the client would keep running without auth.
    Re-reading the config is what Ray itself does when it turns token auth on
    (``authentication_token_setup._enable_token_auth``); it must not happen once connected,
    because by then the config holds the cluster's system config.
    """
    if "ray._raylet" not in sys.modules:
        return  # Ray reads the environment when it is first imported
    import ray
    from ray._raylet import AuthenticationTokenLoader, Config

    if ray.is_initialized():
        return
    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


def _expand(path: str | os.PathLike[str]) -> Path:
    return Path(os.path.expanduser(str(path))).resolve()


def token_path(cluster_cfg: ClusterConfig | None = None) -> Path:
    """Where the token file is, in the order Ray looks: RAY_AUTH_TOKEN_PATH, then the config, then ~/.ray."""
    env = os.environ.get(TOKEN_PATH_ENV)
    if env:
        return _expand(env)
    if cluster_cfg is not None and cluster_cfg.token_path:
        return _expand(cluster_cfg.token_path)
    return _expand(DEFAULT_TOKEN_PATH)


def read_token(cluster_cfg: ClusterConfig | None = None) -> str:
    """The token Ray clients would send (RAY_AUTH_TOKEN wins over any file, as in Ray).

    Needed for plain HTTP calls to the dashboard, which Ray's SDKs do not make for us.
    """
    env = os.environ.get(TOKEN_ENV, "").strip()
    if env:
        return env
    path = token_path(cluster_cfg)
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        raise FoundryError(
            f"no Ray auth token at {path}; `python -m cluster up` creates one "
            f"(or set {TOKEN_ENV} / {TOKEN_PATH_ENV})"
        ) from None
    if not token:
        raise FoundryError(f"the Ray auth token file {path} is empty")
    return token


def auth_headers(cluster_cfg: ClusterConfig | None = None) -> dict[str, str]:
    """The header the dashboard's REST API (Jobs, Serve, State) requires when token auth is on."""
    return {"Authorization": f"Bearer {read_token(cluster_cfg)}"}


def gcs_address(cluster_cfg: ClusterConfig) -> str:
    """``host:port`` of the head's GCS: what ``ray.init(address=...)`` and worker nodes connect to."""
    return f"{cluster_cfg.head_host}:{cluster_cfg.gcs_port}"


def dashboard_url(cluster_cfg: ClusterConfig) -> str:
    """The HTTP address of the dashboard and Jobs API (what ``ray job submit --address`` takes).

    A wildcard bind address (0.0.0.0, ::) is not something a client can connect to, so the head's
    address is used in its place.
    """
    host = cluster_cfg.dashboard_host
    if host in ("", "0.0.0.0", "::", "[::]"):
        host = cluster_cfg.head_host
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # a bare IPv6 literal needs brackets in a URL
    return f"http://{host}:{cluster_cfg.dashboard_port}"


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections there; a fast probe before slower Ray calls."""
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=timeout):
            return True
    except OSError:
        return False


def is_loopback_host(host: str) -> bool:
    """A host Ray treats as loopback (and rewrites unless ``LOOPBACK_ONLY_ENV=0``)."""
    return host.strip().lower() in _RAY_LOOPBACK_NAMES


def keep_loopback_addresses() -> None:
    """Make Ray in this process (and its children) keep 127.0.0.1 instead of the host's IP.

    Needed to reach the loopback-only local cluster. It changes nothing for other addresses: Ray
    only rewrites loopback ones. An explicit ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` is respected.
    """
    os.environ.setdefault(LOOPBACK_ONLY_ENV, "0")
    if "ray" in sys.modules and os.environ[LOOPBACK_ONLY_ENV] == "0":
        from ray._private import ray_constants  # already imported: it read the variable too early

        ray_constants.ENABLE_RAY_CLUSTER = False


def _split_host_port(address: str) -> tuple[str, int] | None:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return host, int(port)


def apply_driver_env(driver_env: dict[str, str] | None) -> None:
    """Export ``cluster.driver_env`` into this process (values already set here win)."""
    for key, value in (driver_env or {}).items():
        os.environ.setdefault(key, str(value))


# Worker lines that Ray's log deduplication must never fold, in a driver's output (a job's log): each
# training run's epoch lines (foundry/train/loop.py ``epoch_line``). Ray folds lines from different processes
# that differ only in numbers, so the epochs of Tune trials (run names differ only in numbers) showed as one
# line "[repeated 4x across cluster]" instead of live progress per trial.
NEVER_DEDUPLICATE = r"\] epoch +\d+ +train_loss "


def connect(address: str | None = None, driver_env: dict[str, str] | None = None, **init_kwargs: Any):
    """Connect this process to a running cluster (never start a private one).

    ``driver_env`` (``cfg.cluster.driver_env``) is set in this process's environment unless already
    set: some of Ray's driver-side code (Ray Data's executor and Parquet file listing) is tuned only
    through environment variables, read in the driver, not on the cluster.

    Returns ``ray.get_runtime_context()`` (``.gcs_address``, ``.get_node_id()``, ...) on every call,
    rather than ``ray.init``'s RayContext, which only the first call could return.

    ``address`` (usually ``cfg.ray.address``) wins, then ``RAY_ADDRESS`` (the Jobs API sets it for
    every submitted job), then ``"auto"`` (the cluster ``ray start`` last started on this machine).
    A second call is a no-op that returns the existing context, so library code can call it freely.
    """
    target = address or os.environ.get("RAY_ADDRESS") or "auto"
    if target.startswith(("http://", "https://")):
        raise FoundryError(
            f"Ray address {target!r} is a dashboard (Jobs API) URL; ray.init needs the GCS address "
            "HOST:PORT (e.g. 127.0.0.1:6379). Use the dashboard URL only with `ray job submit`."
        )
    enable_token_auth_env()
    apply_driver_env(driver_env)
    # No telemetry by default; it also stops Ray Data from polling a Prometheus that is not there.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Read once, when ray is first imported in this driver (below): see NEVER_DEDUPLICATE.
    os.environ.setdefault("RAY_DEDUP_LOGS_ALLOW_REGEX", NEVER_DEDUPLICATE)
    import ray

    if ray.is_initialized():
        return ray.get_runtime_context()

    if target == "local":
        raise FoundryError(f"ray address 'local' would start a private Ray instance; {_NO_CLUSTER_HINT}")
    hostport = None if target.startswith("ray://") or target == "auto" else _split_host_port(target)
    if target == "auto" or (hostport is not None and is_loopback_host(hostport[0])):
        keep_loopback_addresses()  # "auto" finds the address `ray start` recorded: 127.0.0.1 for ours
    if hostport is not None and not port_open(*hostport):
        # ray.init would otherwise retry an unreachable GCS for up to a minute before failing.
        raise FoundryError(f"no Ray cluster answers at {target}; {_NO_CLUSTER_HINT}")

    try:
        ray.init(address=target, **init_kwargs)
    except ConnectionError as exc:
        raise FoundryError(f"cannot reach a Ray cluster at {target!r} ({exc}); {_NO_CLUSTER_HINT}") from exc
    except Exception as exc:
        if "uthentication" in str(exc):
            raise FoundryError(
                f"the Ray cluster at {target!r} rejected this client's token ({exc}). "
                f"Check that {token_path()} (or {TOKEN_ENV}/{TOKEN_PATH_ENV}) holds the cluster's token."
            ) from exc
        raise
    return ray.get_runtime_context()


def configure_data(progress_bars: bool) -> None:
    """This driver's Ray Data settings (``ray.data_progress_bars``), before it creates any dataset: a
    dataset carries the driver's DataContext to the workers and Ray Train's split coordinator."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = progress_bars
    ctx.enable_operator_progress_bars = progress_bars


def job_client(target: ClusterConfig | str | None = None) -> JobSubmissionClient:
    """A Jobs API client that sends the token (the SDK adds it only when RAY_AUTH_MODE=token is set).

    ``target`` is a ClusterConfig, a dashboard URL (``http://host:port``), or None for the Ray SDK's
    own lookup (``RAY_ADDRESS``, then the local cluster).
    """
    from foundry.config import ClusterConfig  # local: keeps Hydra out of plain imports of this module

    cluster_cfg = target if isinstance(target, ClusterConfig) else None
    enable_token_auth_env(cluster_cfg)
    from ray.job_submission import JobSubmissionClient

    address = dashboard_url(target) if cluster_cfg is not None else target
    try:
        return JobSubmissionClient(address)
    except ConnectionError as exc:
        raise FoundryError(
            f"no Ray Jobs API answers at {address!r} ({exc}); start the local cluster with "
            "`python -m cluster up`, or set RAY_ADDRESS to a running cluster's dashboard URL"
        ) from exc
