"""The nodes of the ``cluster`` section (``conf/cluster/``): the head, the worker types and Ray's autoscaler."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from foundry.config.common import require
from foundry.config.kuberay import K8sResourcesConfig

NODE_TYPE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


@dataclass
class HeadNodeConfig:
    """The head node of a cloud or Kubernetes cluster (cluster=local runs it on this machine).
    Its logical CPUs are ``cluster.head_num_cpus`` (0: it only coordinates)."""

    instance_type: str | None = None  # aws EC2 instance type
    machine_type: str | None = None  # gcp machine type
    vm_image: str | None = None  # aws AMI id (null: Ray's default Deep Learning AMI) / gcp boot disk image
    disk_gb: int = 100
    image: str | None = None  # container image; null: cluster.image
    k8s: K8sResourcesConfig = field(default_factory=K8sResourcesConfig)


@dataclass
class WorkerTypeConfig:
    """One kind of worker node the autoscaler may add (and remove when idle).

    ``cpus``/``gpus``/``object_store_gb`` are what the node offers Ray; the other fields say what it
    is on each kind of cluster (cluster=local uses none of them).
    """

    cpus: float = 2.0
    gpus: int = 0
    object_store_gb: float = 1.0
    min_workers: int = 0
    max_workers: int = 2
    instance_type: str | None = None  # aws EC2 instance type, e.g. g5.xlarge
    machine_type: str | None = None  # gcp machine type, e.g. n1-standard-8
    accelerator: str | None = None  # gcp accelerator type attached per node, e.g. nvidia-tesla-t4
    vm_image: str | None = None  # aws AMI id / gcp boot disk image (see HeadNodeConfig)
    disk_gb: int = 100
    spot: bool = False  # aws spot / gcp preemptible instances
    image: str | None = None  # container image; null: cluster.gpu_image for GPU types, else cluster.image
    k8s: K8sResourcesConfig = field(default_factory=K8sResourcesConfig)

    def validate(self, name: str) -> None:
        key = f"cluster.autoscaling.worker_types.{name}"
        require(name != "ray.head.default", key, "this name is reserved for the head node")
        require(bool(NODE_TYPE_NAME.fullmatch(name)), key,
                "a worker type name uses letters, digits, '.', '_' or '-' (it names node types and worker groups)")
        require(self.cpus >= 0, f"{key}.cpus", f"must be >= 0, got {self.cpus}")
        require(self.gpus >= 0, f"{key}.gpus", f"must be >= 0, got {self.gpus}")
        require(self.cpus > 0 or self.gpus > 0, key, "a worker type needs cpus or gpus")
        require(self.object_store_gb > 0, f"{key}.object_store_gb", f"must be > 0, got {self.object_store_gb}")
        require(self.min_workers >= 0, f"{key}.min_workers", f"must be >= 0, got {self.min_workers}")
        require(self.max_workers >= 0, f"{key}.max_workers", f"must be >= 0, got {self.max_workers}")
        require(self.min_workers <= self.max_workers, f"{key}.min_workers",
                f"min_workers ({self.min_workers}) is greater than max_workers ({self.max_workers})")
        require(self.disk_gb >= 1, f"{key}.disk_gb", f"must be >= 1, got {self.disk_gb}")


@dataclass
class AutoscalingConfig:
    """Ray's autoscaler. cluster=local: the fake multi-node provider (worker 'nodes' are extra
    raylets on this machine, added on demand and removed when idle); aws/gcp: the cluster
    launcher's autoscaler; kuberay: KubeRay's in-tree autoscaler."""

    enabled: bool = False
    max_workers: int = 4
    idle_timeout_minutes: float = 1.0
    upscaling_speed: float = 1.0
    update_interval_s: int = 1
    worker_types: dict[str, WorkerTypeConfig] = field(default_factory=dict)

    def validate(self) -> None:
        require(bool(self.worker_types), "cluster.autoscaling.worker_types", "autoscaling needs at least one worker type")
        require(self.max_workers >= 1, "cluster.autoscaling.max_workers", f"must be >= 1, got {self.max_workers}")
        require(self.idle_timeout_minutes > 0, "cluster.autoscaling.idle_timeout_minutes",
                f"must be > 0, got {self.idle_timeout_minutes}")
        require(self.upscaling_speed > 0, "cluster.autoscaling.upscaling_speed", f"must be > 0, got {self.upscaling_speed}")
        require(self.update_interval_s >= 1, "cluster.autoscaling.update_interval_s", f"must be >= 1, got {self.update_interval_s}")
        for name, w in self.worker_types.items():
            w.validate(name)
        total_min = sum(w.min_workers for w in self.worker_types.values())
        require(total_min <= self.max_workers, "cluster.autoscaling.max_workers",
                f"the worker types' min_workers add up to {total_min}, more than max_workers ({self.max_workers})")
