"""KubeRay's part of the ``cluster`` section (``conf/cluster/kuberay.yaml``): the RayJob and RayService it
renders, and the Kubernetes resources of each Ray container."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from foundry.config.common import bounded, check_bounds, require

K8S_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
K8S_LABEL = re.compile(r"([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
K8S_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
K8S_QUANTITY = re.compile(r"(\d+(\.\d+)?|\.\d+)([eE][-+]?\d+|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?")


@dataclass
class K8sResourcesConfig:
    """The Ray container's Kubernetes resources (quantities: "4", "500m", "16Gi") and placement.

    KubeRay derives the node's Ray CPUs and memory from them; ``limits`` empty falls back to
    ``requests`` and vice versa. A GPU worker type's ``gpus`` is added as ``nvidia.com/gpu``.
    """

    requests: dict[str, str] = field(default_factory=dict)
    limits: dict[str, str] = field(default_factory=dict)
    # "label=value" items (label keys hold dots, which Hydra keys cannot), e.g.
    # cloud.google.com/gke-accelerator=nvidia-tesla-t4
    node_selector: list[str] = field(default_factory=list)

    def validate(self, key: str) -> None:
        """Checked on cluster=kuberay only: what the other kinds ignore may stay loose."""
        for res in ("cpu", "memory"):
            require(res in self.limits or res in self.requests, f"{key}.limits",
                    f"cluster=kuberay needs the Ray container's {res} (limits or requests)")
        for item in self.node_selector:
            label, sep, value = str(item).partition("=")
            require(bool(sep) and bool(K8S_LABEL.fullmatch(label)) and bool(K8S_LABEL_VALUE.fullmatch(value)),
                    f"{key}.node_selector", f"items are label=value, got {item!r}")
        for part, values in (("requests", self.requests), ("limits", self.limits)):
            for res, q in values.items():
                require(bool(K8S_QUANTITY.fullmatch(str(q))), f"{key}.{part}.{res}",
                        f"not a Kubernetes quantity: {q!r} (e.g. 4, 500m, 16Gi)")


@dataclass
class KubeRayJobConfig:
    """The RayJob that runs training on a cluster of its own (deleted when the job ends)."""

    name: str = "foundry-train"
    overrides: list[str] = field(default_factory=list)  # Hydra overrides after `python -m jobs.train`
    worker_types: list[str] | None = None  # worker groups of its cluster (null: all)
    shutdown_after_job_finishes: bool = True
    ttl_seconds_after_finished: int = bounded(300, ge=0)
    active_deadline_seconds: int | None = None
    backoff_limit: int = bounded(0, ge=0)


@dataclass
class KubeRayServiceConfig:
    """The RayService that runs the Serve application (``serveConfigV2``)."""

    name: str = "foundry-serve"
    worker_types: list[str] | None = None  # worker groups of its cluster (null: all)
    api_key_secret: str | None = "foundry-api-key"  # Kubernetes Secret (key `api_key`) for serve.auth


@dataclass
class KubeRayConfig:
    namespace: str = "default"
    service_type: str = "ClusterIP"  # the head Service; reach the dashboard with kubectl port-forward
    upscaling_mode: str = "Default"  # Conservative | Default | Aggressive
    job: KubeRayJobConfig = field(default_factory=KubeRayJobConfig)
    service: KubeRayServiceConfig = field(default_factory=KubeRayServiceConfig)

    def validate(self) -> None:
        check_bounds(self.job, "cluster.kuberay.job")
        require(bool(K8S_NAME.fullmatch(self.namespace)), "cluster.kuberay.namespace",
                f"must be a Kubernetes namespace name, got {self.namespace!r}")
        require(self.service_type in ("ClusterIP", "NodePort", "LoadBalancer"), "cluster.kuberay.service_type",
                f"must be ClusterIP, NodePort or LoadBalancer, got {self.service_type!r}")
        require(self.upscaling_mode in ("Conservative", "Default", "Aggressive"), "cluster.kuberay.upscaling_mode",
                f"must be Conservative, Default or Aggressive, got {self.upscaling_mode!r}")
        for key, name in (("cluster.kuberay.job.name", self.job.name), ("cluster.kuberay.service.name", self.service.name)):
            require(bool(K8S_NAME.fullmatch(name)) and len(name) <= 47, key,
                    f"must be a Kubernetes name of at most 47 characters, got {name!r}")
        if self.service.api_key_secret is not None:
            require(bool(K8S_NAME.fullmatch(self.service.api_key_secret)), "cluster.kuberay.service.api_key_secret",
                    f"must be a Kubernetes object name, got {self.service.api_key_secret!r}")
        require(self.job.active_deadline_seconds is None or self.job.active_deadline_seconds > 0,
                "cluster.kuberay.job.active_deadline_seconds", "must be > 0 (or null)")
