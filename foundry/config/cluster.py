"""The ``cluster`` section (``conf/cluster/``): where Ray runs (local, aws, gcp, kuberay), how nodes get the
project and the auth token, and the ingress. The checks of a remote kind live here because they cross
the node, image, install and auth keys."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

from foundry.config.common import bounded, check_bounds, require
from foundry.config.kuberay import K8S_NAME, KubeRayConfig
from foundry.config.nodes import AutoscalingConfig, HeadNodeConfig

_CLUSTER_NAME = re.compile(r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?")
_INSTALL_DIR = re.compile(r"(~/)?[A-Za-z0-9._/-]+")
# Ray's published images (any tag): Ray and its dependencies, no Foundry.
_STOCK_RAY_IMAGE = re.compile(r"(docker\.io/)?(rayproject|anyscale)/ray(-ml)?([:@]|$)")


class ClusterKind(str, Enum):
    """Where the cluster runs; all kinds are rendered from the same ``cluster`` config."""

    local = "local"  # this machine: `python -m cluster up` (Ray's fake multi-node autoscaler)
    aws = "aws"  # Ray cluster launcher YAML for `ray up` (EC2)
    gcp = "gcp"  # Ray cluster launcher YAML for `ray up` (Compute Engine)
    kuberay = "kuberay"  # KubeRay manifests: RayCluster, RayService, RayJob


class TokenSource(str, Enum):
    """Where the nodes of a cloud cluster get the Ray auth token from (it is never written in a file we render)."""

    file = "file"  # aws/gcp: `ray up` copies cluster.token_path from this machine to every node
    secret = "secret"  # aws Secrets Manager / gcp Secret Manager / a Kubernetes Secret named cluster.auth.secret_name


class InstallSource(str, Enum):
    """How the nodes of a cloud cluster get this project. ``image``: built into the container image
    (the Dockerfile), so a node added at scale-up starts Ray at once; git/upload `pip install -e` it
    (with torch) on every node at setup, for trying a branch on stock Ray images."""

    image = "image"  # cluster.image / gpu_image hold the project already: nothing is installed at setup
    git = "git"  # clone cluster.install.git_url at git_ref
    upload = "upload"  # `ray up` uploads this working tree (file_mounts)


@dataclass
class CloudConfig:
    """cluster=aws|gcp: where `ray up` creates the nodes."""

    region: str | None = None  # aws region / gcp region
    zone: str | None = None  # aws availability zone(s), comma-separated / gcp zone
    project: str | None = None  # gcp project id
    ssh_user: str = "ubuntu"
    # Identity of the WORKER nodes (the head gets the launcher's default role unless set here too):
    # they read and write storage.root and, with cluster.auth.token_source=secret, read the token.
    iam_instance_profile: str | None = None  # aws instance profile ARN
    service_account: str | None = None  # gcp service account e-mail


@dataclass
class ClusterAuthConfig:
    token_source: TokenSource = TokenSource.file
    # aws Secrets Manager secret id / gcp Secret Manager secret / Kubernetes Secret (key `auth_token`).
    secret_name: str = "foundry-ray-auth-token"


@dataclass
class InstallConfig:
    """How aws/gcp nodes get this project; on kuberay the images must contain it already."""

    source: InstallSource = InstallSource.image
    git_url: str | None = None
    git_ref: str = "main"
    dir: str = "~/foundry"  # where the project lives on every node
    extras: list[str] = field(default_factory=list)


class IngressKind(str, Enum):
    haproxy = "haproxy"  # Ray Serve's HAProxy ingress, admin listeners on loopback (foundry/serving/haproxy_ingress.py)
    python = "python"  # Serve's own Python proxy: slower (6-11 ms a request on 2 cores), no extra process


@dataclass
class IngressConfig:
    """How HTTP requests reach the Serve replicas on every node of the cluster."""

    kind: IngressKind = IngressKind.haproxy
    # Where HAProxy's read-only stats page (8404) and Prometheus exporter (9101) listen; Ray binds them to
    # every interface, the wrapper to this address.
    admin_host: str = "127.0.0.1"
    # The foundry-haproxy console script on the nodes (null: next to the Python that starts Ray; rendered
    # aws/gcp nodes look it up on PATH, kuberay images need the path of their install).
    wrapper: str | None = None


class PlaceholderPolicy(str, Enum):
    """What rendering does with a value that only stands in for the user's own (an example account id,
    image, project or bucket; cluster/placeholders.py): such a cluster cannot start."""

    warn = "warn"  # render, with a warning naming each key (the shipped configs render for a look)
    fail = "fail"  # ConfigError naming the first key; nothing is written (`python -m cluster render --strict`)


@dataclass
class ClusterConfig:
    name: str = "local"
    kind: ClusterKind = ClusterKind.local
    head_host: str = "127.0.0.1"
    gcs_port: int = 6379
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8265
    head_num_cpus: int | None = bounded(None, ge=0)
    token_path: str = "~/.ray/auth_token"
    env: dict[str, str] = field(default_factory=dict)
    # Environment of the *drivers* that connect to it (jobs, tests): Ray Data plans and lists files there.
    driver_env: dict[str, str] = field(default_factory=dict)
    autoscaling: AutoscalingConfig = field(default_factory=AutoscalingConfig)
    ray_version: str = "2.60.0"
    image: str | None = None  # container image of the head and CPU workers (aws/gcp: docker; kuberay: pods)
    gpu_image: str | None = None  # default image of worker types with gpus > 0 (CUDA)
    head: HeadNodeConfig = field(default_factory=HeadNodeConfig)
    cloud: CloudConfig = field(default_factory=CloudConfig)
    auth: ClusterAuthConfig = field(default_factory=ClusterAuthConfig)
    install: InstallConfig = field(default_factory=InstallConfig)
    kuberay: KubeRayConfig = field(default_factory=KubeRayConfig)
    ingress: IngressConfig = field(default_factory=IngressConfig)
    placeholders: PlaceholderPolicy = PlaceholderPolicy.warn

    def validate(self) -> None:
        check_bounds(self, "cluster")
        for key in ("gcs_port", "dashboard_port"):
            require(0 < getattr(self, key) < 65536, f"cluster.{key}", f"must be a TCP port, got {getattr(self, key)}")
        for key in ("RAY_SERVE_ENABLE_HA_PROXY", "RAY_SERVE_HAPROXY_BINARY_PATH", "FOUNDRY_HAPROXY_ADMIN_HOST"):
            require(key not in (self.env or {}), f"cluster.env.{key}",
                    "set by cluster.ingress (kind: haproxy | python, admin_host, wrapper); use those keys")
        require(bool(self.ingress.admin_host), "cluster.ingress.admin_host", "must name an address (127.0.0.1: loopback)")
        a = self.autoscaling
        remote = self.kind is not ClusterKind.local
        if remote:
            # A cloud or Kubernetes cluster always runs Ray's autoscaler over its worker types.
            require(a.enabled, "cluster.autoscaling.enabled", f"cluster={self.kind.value} always autoscales; set it true")
        if not a.enabled:
            return
        a.validate()
        if remote:
            self._validate_remote()

    def _validate_remote(self) -> None:
        """What cluster=aws|gcp|kuberay need on top of the local checks: machines, images, and names that exist."""
        kind = self.kind.value
        h = self.head
        workers = self.autoscaling.worker_types
        require(bool(_CLUSTER_NAME.fullmatch(self.name)), "cluster.name",
                f"use lower-case letters, digits and '-' (it names cloud and Kubernetes objects), got {self.name!r}")
        check_bounds(h, "cluster.head")
        version = re.fullmatch(r"(\d+)\.(\d+)(\.\d+)?", self.ray_version or "")
        require(version is not None, "cluster.ray_version", f"must be a Ray version such as 2.60.0, got {self.ray_version!r}")
        require((int(version[1]), int(version[2])) >= (2, 52), "cluster.ray_version",
                f"token auth needs Ray 2.52 or later, got {self.ray_version}")
        for name, w in workers.items():
            require(float(w.cpus).is_integer(), f"cluster.autoscaling.worker_types.{name}.cpus",
                    f"a node offers whole CPUs on cluster={kind}, got {w.cpus}")
        require(bool(h.image or self.image), "cluster.image",
                f"cluster={kind} runs Ray in a container: set cluster.image (or cluster.head.image)")
        for name, w in workers.items():
            key = f"cluster.autoscaling.worker_types.{name}"
            if w.gpus > 0:
                require(bool(w.image or self.gpu_image), f"{key}.image",
                        f"a GPU worker type needs a GPU (CUDA) image: set cluster.gpu_image or {key}.image")
            else:
                require(bool(w.image or self.image), f"{key}.image", "no image: set cluster.image or this key")
        if self.kind is ClusterKind.kuberay or self.install.source is InstallSource.image:
            self._validate_project_images()
        require(bool(self.auth.secret_name) or self.auth.token_source is TokenSource.file, "cluster.auth.secret_name",
                "token_source=secret needs the secret's name")
        for secret in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"):
            require(secret not in (self.env or {}), f"cluster.env.{secret}",
                    "rendered clusters always run token auth, and the token never goes into a rendered file: "
                    "use cluster.auth.token_source and cluster.auth.secret_name")
        if self.kind is ClusterKind.kuberay:
            self._validate_kuberay()
            return
        # aws / gcp: the Ray cluster launcher
        cl = self.cloud
        require(bool(cl.region), "cluster.cloud.region", f"cluster={kind} needs a region")
        require(bool(cl.ssh_user), "cluster.cloud.ssh_user", "must not be empty")
        if self.install.source is InstallSource.git:
            require(bool(self.install.git_url), "cluster.install.git_url",
                    "install.source=git needs the repository URL (or use install.source=upload)")
        require(bool(_INSTALL_DIR.fullmatch(self.install.dir)), "cluster.install.dir",
                f"must be a plain path (letters, digits, '._-/', may start with '~/'), got {self.install.dir!r}")
        require("ray_head" not in workers, "cluster.autoscaling.worker_types.ray_head",
                "this name is the head's node type in the launcher config; pick another")
        machine = "instance_type" if self.kind is ClusterKind.aws else "machine_type"
        require(bool(getattr(h, machine)), f"cluster.head.{machine}", f"cluster={kind} needs the head's {machine}")
        for name, w in workers.items():
            key = f"cluster.autoscaling.worker_types.{name}"
            require(bool(getattr(w, machine)), f"{key}.{machine}", f"cluster={kind} needs each worker type's {machine}")
        if self.kind is ClusterKind.gcp:
            require(bool(cl.zone), "cluster.cloud.zone", "cluster=gcp needs a zone")
            require(bool(cl.project), "cluster.cloud.project", "cluster=gcp needs the project id")
            require(bool(h.vm_image), "cluster.head.vm_image", "cluster=gcp needs a boot disk image")
            for name, w in workers.items():
                key = f"cluster.autoscaling.worker_types.{name}"
                require(bool(w.vm_image), f"{key}.vm_image", "cluster=gcp needs a boot disk image")
                if w.gpus > 0:
                    require(bool(w.accelerator), f"{key}.accelerator",
                            "a GPU worker type on gcp needs the accelerator type, e.g. nvidia-tesla-t4")

    def _validate_project_images(self) -> None:
        """Nodes that install nothing (kuberay pods, install.source=image) need images with Foundry in them:
        Ray's own images would start Ray and then fail every job and Serve replica on `import foundry`."""
        used = [("cluster.head.image" if self.head.image else "cluster.image", self.head.image or self.image)]
        for name, w in self.autoscaling.worker_types.items():
            fallback = "cluster.gpu_image" if w.gpus > 0 else "cluster.image"
            used.append((f"cluster.autoscaling.worker_types.{name}.image" if w.image else fallback,
                         w.image or (self.gpu_image if w.gpus > 0 else self.image)))
        instead = ("" if self.kind is ClusterKind.kuberay
                   else ", or set cluster.install.source=git|upload to pip-install the project at node setup")
        for key, image in used:
            require(not _STOCK_RAY_IMAGE.match(image or ""), key,
                    f"{image} is Ray's own image, without Foundry: build this project's image (the Dockerfile at "
                    f"the repository root), push it and name it here{instead}")

    def _validate_kuberay(self) -> None:
        k = self.kuberay
        require(self.dashboard_host == "0.0.0.0", "cluster.dashboard_host",
                "cluster=kuberay: the dashboard must listen on the pod's address (0.0.0.0) for the operator and "
                f"`kubectl port-forward` to reach it (the head Service stays cluster-internal), got {self.dashboard_host!r}")
        require(self.auth.token_source is TokenSource.secret, "cluster.auth.token_source",
                "cluster=kuberay reads the token from a Kubernetes Secret: use 'secret'")
        require(bool(K8S_NAME.fullmatch(self.auth.secret_name)), "cluster.auth.secret_name",
                f"must be a Kubernetes object name, got {self.auth.secret_name!r}")
        k.validate()
        known = sorted(self.autoscaling.worker_types)
        groups: dict[str, str] = {}
        for n in known:
            group = n.replace("_", "-").lower()
            key = f"cluster.autoscaling.worker_types.{n}"
            require(bool(K8S_NAME.fullmatch(group)) and len(group) <= 30, key,
                    f"names a KubeRay worker group ({group!r}): use at most 30 letters, digits, '-' or '_'")
            require(group not in groups, key, f"becomes the same worker group name as {groups.get(group)!r}")
            groups[group] = n
        for key, names in (("cluster.kuberay.job.worker_types", k.job.worker_types),
                           ("cluster.kuberay.service.worker_types", k.service.worker_types)):
            for n in names or []:
                require(n in self.autoscaling.worker_types, key, f"unknown worker type {n!r} (known: {', '.join(known)})")
        nodes = [("cluster.head.k8s", self.head.k8s)] + [
            (f"cluster.autoscaling.worker_types.{n}.k8s", w.k8s) for n, w in self.autoscaling.worker_types.items()]
        for key, r in nodes:
            r.validate(key)
