"""The nodes of the ``cluster`` section (``conf/cluster/``): the head, the worker types and Ray's autoscaler."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from foundry.config.common import bounded, check_bounds, require
from foundry.config.kuberay import K8sResourcesConfig

NODE_TYPE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


@dataclass
class HeadNodeConfig:
    """The head node of a cloud or Kubernetes cluster (cluster=local runs it on this machine).
    Its logical CPUs are ``cluster.head_num_cpus`` (0: it only coordinates)."""

    instance_type: str | None = None  # aws EC2 instance type
    machine_type: str | None = None  # gcp machine type
    vm_image: str | None = None  # aws AMI id (null: Ray's default Deep Learning AMI) / gcp boot disk image
    disk_gb: int = bounded(100, ge=1)  # checked on remote kinds only (cluster=local has no head machine)
    image: str | None = None  # container image; null: cluster.image
    k8s: K8sResourcesConfig = field(default_factory=K8sResourcesConfig)


@dataclass
class WorkerTypeConfig:
    """One kind of worker node the autoscaler may add (and remove when idle).

    ``cpus``/``gpus``/``object_store_gb`` are what the node offers Ray; the other fields say what it
    is on each kind of cluster (cluster=local uses none of them).
    """

    cpus: float = bounded(2.0, ge=0)
    gpus: int = bounded(0, ge=0)
    object_store_gb: float = bounded(1.0, gt=0)
    min_workers: int = bounded(0, ge=0)
    max_workers: int = bounded(2, ge=0)
    instance_type: str | None = None  # aws EC2 instance type, e.g. g5.xlarge
    machine_type: str | None = None  # gcp machine type, e.g. n1-standard-8
    accelerator: str | None = None  # gcp accelerator type attached per node, e.g. nvidia-tesla-t4
    vm_image: str | None = None  # aws AMI id / gcp boot disk image (see HeadNodeConfig)
    disk_gb: int = bounded(100, ge=1)
    spot: bool = False  # aws spot / gcp preemptible instances
    image: str | None = None  # container image; null: cluster.gpu_image for GPU types, else cluster.image
    k8s: K8sResourcesConfig = field(default_factory=K8sResourcesConfig)

    def validate(self, name: str) -> None:
        key = f"cluster.autoscaling.worker_types.{name}"
        require(name != "ray.head.default", key, "this name is reserved for the head node")
        require(bool(NODE_TYPE_NAME.fullmatch(name)), key,
                "a worker type name uses letters, digits, '.', '_' or '-' (it names node types and worker groups)")
        check_bounds(self, key)
        require(self.cpus > 0 or self.gpus > 0, key, "a worker type needs cpus or gpus")
        require(self.min_workers <= self.max_workers, f"{key}.min_workers",
                f"min_workers ({self.min_workers}) is greater than max_workers ({self.max_workers})")


@dataclass
class AutoscalingConfig:
    """Ray's autoscaler. cluster=local: the fake multi-node provider (worker 'nodes' are extra
    raylets on this machine, added on demand and removed when idle); aws/gcp: the cluster
    launcher's autoscaler; kuberay: KubeRay's in-tree autoscaler."""

    enabled: bool = False
    max_workers: int = bounded(4, ge=1)
    idle_timeout_minutes: float = bounded(1.0, gt=0)
    upscaling_speed: float = bounded(1.0, gt=0)
    update_interval_s: int = bounded(1, ge=1)
    worker_types: dict[str, WorkerTypeConfig] = field(default_factory=dict)

    def validate(self) -> None:
        check_bounds(self, "cluster.autoscaling")
        require(bool(self.worker_types), "cluster.autoscaling.worker_types", "autoscaling needs at least one worker type")
        for name, w in self.worker_types.items():
            w.validate(name)
        total_min = sum(w.min_workers for w in self.worker_types.values())
        require(total_min <= self.max_workers, "cluster.autoscaling.max_workers",
                f"the worker types' min_workers add up to {total_min}, more than max_workers ({self.max_workers})")
