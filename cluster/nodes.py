"""What every node of a rendered (cloud or Kubernetes) cluster shares, whatever renders it."""

from __future__ import annotations

from pathlib import Path

from foundry import storage
from foundry.config import ClusterConfig, FoundryConfig, WorkerTypeConfig
from foundry.errors import ConfigError
from foundry.runtime import connection
from foundry.serving import haproxy_ingress

REPO_ROOT = Path(__file__).resolve().parent.parent
STORAGE_ENV = "FOUNDRY_STORAGE"  # conf/storage/local.yaml reads it: jobs on the nodes use the bucket


def node_env(cfg: FoundryConfig) -> dict[str, str]:
    """The environment of every Ray node: ``cluster.env``, the Serve ingress (``cluster.ingress``), the
    shared storage root, and token auth.

    Ray processes (workers, job drivers, Serve replicas) inherit it, so a job started on the cluster
    with the default config reads and writes ``storage.root``. ``RAY_AUTH_MODE=token`` is set last
    so that no ``cluster.env`` entry can switch auth off. The token itself is never part of it.
    """
    env = {str(k): str(v) for k, v in (cfg.cluster.env or {}).items()}
    ing = cfg.cluster.ingress
    # wrapper null: the launcher's env file looks foundry-haproxy up on the node's PATH (launcher.py)
    env.update(haproxy_ingress.ingress_env(ing.kind.value, ing.admin_host, ing.wrapper))
    env[STORAGE_ENV] = cfg.storage.layout.root
    env[connection.AUTH_MODE_ENV] = "token"
    return env


def image_of(c: ClusterConfig, w: WorkerTypeConfig) -> str | None:
    """A worker type's container image: its own, else the cluster's GPU image for GPU types, else the CPU one."""
    if w.image:
        return w.image
    return c.gpu_image if w.gpus > 0 else c.image


def check_shared_storage(cfg: FoundryConfig) -> None:
    """Nodes of a cloud or Kubernetes cluster share nothing but a bucket: ``storage.root`` must be one."""
    root = cfg.storage.root
    if storage.is_local(root):
        raise ConfigError(
            f"storage.root: cluster={cfg.cluster.kind.value} needs storage every node reaches "
            f"(s3://..., gs://...), got {root!r}; conf/cluster/storage/{cfg.cluster.kind.value}.yaml sets one, "
            "FOUNDRY_STORAGE or storage.root=... may have replaced it")


def check_gpu_workers(c: ClusterConfig, key: str, names: list[str]) -> None:
    """A GPU trainer or GPU Serve replicas need a GPU worker type among ``names``."""
    workers = c.autoscaling.worker_types
    if not any(workers[n].gpus > 0 for n in names):
        raise ConfigError(f"{key}: none of the worker types {names} has GPUs, but "
                          + ("trainer.use_gpu" if "job" in key else "serve.use_gpu") + " is true")
