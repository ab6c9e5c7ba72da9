"""The autoscaling config for ``cluster=local``: Ray's fake multi-node provider, written by us.

Ray's wheel does not ship ``fake_multi_node/example.yaml`` (so ``ray.cluster_utils.AutoscalingCluster``
fails), hence this complete cluster config, rendered from ``cluster.autoscaling``. The provider's
worker "nodes" are extra raylets on this machine that the autoscaler starts when tasks or actors
cannot be placed and stops after ``idle_timeout_minutes``: real autoscaling decisions, one host.

They inherit the head's environment (``RAY_AUTH_MODE=token``, the token path, ``cluster.env``), so
token auth holds on every node. Because all nodes share one host, Serve must run with
``proxy_location: HeadOnly`` here (one HTTP proxy, on the head).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from foundry.config import ClusterConfig

HEAD_NODE_TYPE = "ray.head.default"  # the name the fake provider gives the head; fixed by Ray
# The provider class the autoscaler imports (by name: importing it here would load Ray's autoscaler in every
# `python -m cluster` command).
PROVIDER = "cluster.fake_nodes.SharedHostProvider"
GIB = 1024**3


def fake_multinode_config(cfg: ClusterConfig, gcs_address: str) -> dict:
    """A full autoscaler cluster config (the ``ray up`` schema) for the fake multi-node provider."""
    a = cfg.autoscaling
    node_types: dict[str, dict] = {
        HEAD_NODE_TYPE: {"resources": {"CPU": cfg.head_num_cpus or 0}, "node_config": {}, "max_workers": 0},
    }
    for name, w in a.worker_types.items():
        resources: dict[str, float] = {"CPU": w.cpus, "object_store_memory": int(w.object_store_gb * GIB)}
        if w.gpus:
            resources["GPU"] = w.gpus
        node_types[name] = {"resources": resources, "node_config": {}, "min_workers": w.min_workers,
                            "max_workers": w.max_workers}
    return {
        "cluster_name": cfg.name,
        "max_workers": a.max_workers,
        "upscaling_speed": a.upscaling_speed,
        "idle_timeout_minutes": a.idle_timeout_minutes,
        "provider": {
            # Ray's fake multi-node provider; its worker nodes have no log monitor and a runtime-env folder of
            # their own (cluster/fake_nodes.py).
            "type": "external",
            "module": PROVIDER,
            "gcs_address": gcs_address,  # the provider assumes port 6379 otherwise
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
        },
        "auth": {"ssh_user": "ubuntu"},
        "docker": {},
        "available_node_types": node_types,
        "head_node_type": HEAD_NODE_TYPE,
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }


def config_path(cfg: ClusterConfig) -> Path:
    """Where the running autoscaler reads its config (it re-reads it, so it must outlive ``up``)."""
    return Path(tempfile.gettempdir()) / "foundry-cluster" / f"{cfg.name}-{cfg.gcs_port}-autoscaling.json"


def write_config(cfg: ClusterConfig, gcs_address: str) -> Path:
    path = config_path(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(fake_multinode_config(cfg, gcs_address), indent=2))
    return path


def env(cfg: ClusterConfig) -> dict[str, str]:
    """Environment the head needs for the fake provider (the autoscaler refuses to run without it)."""
    if not cfg.autoscaling.enabled:
        return {}
    return {"RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": str(int(cfg.autoscaling.update_interval_s))}
