"""KubeRay (v1.7) manifests for ``cluster=kuberay``: a RayCluster, a RayService and a RayJob.

Pure functions of the typed config; the tests validate the results against KubeRay v1.7.0's CRD
schemas. All three share one cluster spec:

- in-tree autoscaling (``enableInTreeAutoscaling``; ``idleTimeoutSeconds`` from
  ``cluster.autoscaling.idle_timeout_minutes``), one worker group per worker type, GPU groups with
  ``nvidia.com/gpu`` in their resources, the GPU image, and a toleration for GPU node taints;
- token auth: ``authOptions: {mode: token, secretName: ...}`` (KubeRay reads the token from that
  Secret's ``auth_token`` key instead of generating one per cluster, so the RayCluster, the
  RayService's and the RayJob's clusters all accept the same token), and every Ray container states
  ``RAY_AUTH_MODE=token`` with ``RAY_AUTH_TOKEN`` from that Secret itself (the operator leaves
  variables a container already has alone), so no rendered file holds a token;
- the dashboard on the pod's address behind a cluster-internal head Service (reach it with
  ``kubectl port-forward``).

The RayService's ``serveConfigV2`` is ``serve_apps.deploy.build_serve_config(cfg)`` as YAML, the
same config ``python -m serve_apps.deploy`` applies to a local cluster; the RayJob runs
``python -m jobs.train`` with the job metadata the Jobs page shows.
"""

from __future__ import annotations

import dataclasses
import shlex
from typing import Any

import yaml

from cluster import nodes
from foundry.config import (
    ClusterConfig,
    ClusterKind,
    FoundryConfig,
    HeadNodeConfig,
    K8sResourcesConfig,
    WorkerTypeConfig,
)
from foundry.runtime import jobs as job_submission

API_VERSION = "ray.io/v1"
TOKEN_SECRET_KEY = "auth_token"  # the key KubeRay expects in authOptions.secretName's Secret
API_KEY_SECRET_KEY = "api_key"
GPU_RESOURCE = "nvidia.com/gpu"
GIB = 1024**3


def _k8s_name(name: str) -> str:
    return name.replace("_", "-").lower()


def _labels(c: ClusterConfig, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": "foundry", "app.kubernetes.io/component": component,
            "app.kubernetes.io/part-of": c.name}


def _metadata(c: ClusterConfig, name: str, component: str) -> dict[str, Any]:
    return {"name": name, "namespace": c.kuberay.namespace, "labels": _labels(c, component)}


def _env(cfg: FoundryConfig, serve: bool) -> list[dict[str, Any]]:
    c = cfg.cluster
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in nodes.node_env(cfg).items()]
    env.append({"name": "RAY_AUTH_TOKEN",
                "valueFrom": {"secretKeyRef": {"name": c.auth.secret_name, "key": TOKEN_SECRET_KEY}}})
    auth = cfg.serve.auth
    secret = c.kuberay.service.api_key_secret
    if serve and auth.enabled and auth.api_key_env and not auth.api_key_file and secret:
        env.append({"name": auth.api_key_env,
                    "valueFrom": {"secretKeyRef": {"name": secret, "key": API_KEY_SECRET_KEY}}})
    return env


def _resources(r: K8sResourcesConfig, gpus: int) -> dict[str, dict[str, str]]:
    """Requests and limits (each defaults to the other, as KubeRay recommends them equal), plus GPUs."""
    requests = {k: str(v) for k, v in (r.requests or r.limits).items()}
    limits = {k: str(v) for k, v in (r.limits or r.requests).items()}
    if gpus:
        requests.setdefault(GPU_RESOURCE, str(gpus))
        limits.setdefault(GPU_RESOURCE, str(gpus))
    return {"requests": requests, "limits": limits}


def _selector(r: K8sResourcesConfig) -> dict[str, str]:
    return dict(str(item).split("=", 1) for item in r.node_selector)


def _container(cfg: FoundryConfig, name: str, image: str | None, resources: dict, serve: bool,
               head: bool) -> dict[str, Any]:
    c = cfg.cluster
    container: dict[str, Any] = {
        "name": name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "env": _env(cfg, serve),
        "resources": resources,
    }
    if head:
        container["ports"] = [
            {"containerPort": c.gcs_port, "name": "gcs-server"},
            {"containerPort": c.dashboard_port, "name": "dashboard"},
            {"containerPort": 10001, "name": "client"},
            {"containerPort": cfg.serve.http.port, "name": "serve"},
        ]
    else:
        # Let in-flight work and Serve replicas drain before the pod goes (scale-down, rollout).
        container["lifecycle"] = {"preStop": {"exec": {"command": ["/bin/sh", "-c", "ray stop"]}}}
    return container


def _head_group(cfg: FoundryConfig, serve: bool) -> dict[str, Any]:
    c = cfg.cluster
    h: HeadNodeConfig = c.head
    params = {"dashboard-host": c.dashboard_host, "dashboard-port": str(c.dashboard_port),
              "port": str(c.gcs_port)}
    if c.head_num_cpus is not None:
        params["num-cpus"] = str(c.head_num_cpus)
    pod: dict[str, Any] = {"containers": [
        _container(cfg, "ray-head", h.image or c.image, _resources(h.k8s, 0), serve, head=True)]}
    if h.k8s.node_selector:
        pod["nodeSelector"] = _selector(h.k8s)
    return {
        "serviceType": c.kuberay.service_type,
        "rayStartParams": params,
        "template": {"metadata": {"labels": _labels(c, "ray-head")}, "spec": pod},
    }


def _worker_group(cfg: FoundryConfig, name: str, w: WorkerTypeConfig, serve: bool) -> dict[str, Any]:
    c = cfg.cluster
    params = {"num-cpus": str(int(w.cpus)), "object-store-memory": str(int(w.object_store_gb * GIB))}
    if w.gpus:
        params["num-gpus"] = str(w.gpus)
    pod: dict[str, Any] = {"containers": [
        _container(cfg, "ray-worker", nodes.image_of(c, w), _resources(w.k8s, w.gpus), serve, head=False)]}
    if w.k8s.node_selector:
        pod["nodeSelector"] = _selector(w.k8s)
    if w.gpus:
        # GPU node pools are usually tainted so that only GPU work lands there.
        pod["tolerations"] = [{"key": GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"}]
    return {
        "groupName": _k8s_name(name),
        "replicas": w.min_workers,
        "minReplicas": w.min_workers,
        "maxReplicas": w.max_workers,
        "rayStartParams": params,
        "template": {"metadata": {"labels": {**_labels(c, "ray-worker"), "foundry/worker-type": _k8s_name(name)}},
                     "spec": pod},
    }


def ray_cluster_spec(cfg: FoundryConfig, worker_types: list[str] | None = None, serve: bool = False) -> dict[str, Any]:
    """The RayCluster ``spec`` (also embedded in the RayService and the RayJob)."""
    c = cfg.cluster
    if c.kind is not ClusterKind.kuberay:
        raise ValueError(f"KubeRay manifests are rendered for cluster=kuberay, not {c.kind.value}")
    names = list(c.autoscaling.worker_types) if worker_types is None else list(worker_types)
    return {
        "rayVersion": c.ray_version,
        "enableInTreeAutoscaling": True,
        "autoscalerOptions": {
            "idleTimeoutSeconds": max(1, round(c.autoscaling.idle_timeout_minutes * 60)),
            "upscalingMode": c.kuberay.upscaling_mode,
        },
        "authOptions": {"mode": "token", "secretName": c.auth.secret_name},
        "headGroupSpec": _head_group(cfg, serve),
        "workerGroupSpecs": [_worker_group(cfg, n, c.autoscaling.worker_types[n], serve) for n in names],
    }


def ray_cluster(cfg: FoundryConfig) -> dict[str, Any]:
    """A long-lived RayCluster for interactive use and ``ray job submit`` (all worker types)."""
    return {"apiVersion": API_VERSION, "kind": "RayCluster",
            "metadata": _metadata(cfg.cluster, cfg.cluster.name, "ray-cluster"),
            "spec": ray_cluster_spec(cfg)}


def serve_config_for_kubernetes(cfg: FoundryConfig) -> dict[str, Any]:
    """``build_serve_config`` of the config, with Serve's HTTP proxy listening on the pod's address.

    A loopback host would make the proxy unreachable for the RayService's Kubernetes Service, so
    ``serve.http.host`` becomes 0.0.0.0 here (everything else is the serving config as is).
    """
    from serve_apps.deploy import build_serve_config

    serve = cfg.serve
    if serve.http.host in ("127.0.0.1", "localhost", "::1"):
        serve = dataclasses.replace(serve, http=dataclasses.replace(serve.http, host="0.0.0.0"))
        cfg = dataclasses.replace(cfg, serve=serve)
    return build_serve_config(cfg)


def ray_service(cfg: FoundryConfig) -> dict[str, Any]:
    """The Serve application on a cluster of its own; ``serveConfigV2`` is the serving config as YAML."""
    k = cfg.cluster.kuberay
    serve_config = serve_config_for_kubernetes(cfg)
    return {
        "apiVersion": API_VERSION, "kind": "RayService",
        "metadata": _metadata(cfg.cluster, k.service.name, "ray-service"),
        "spec": {
            "serveConfigV2": yaml.safe_dump(serve_config, sort_keys=False),
            "rayClusterConfig": ray_cluster_spec(cfg, k.service.worker_types, serve=True),
        },
    }


def train_entrypoint(c: ClusterConfig) -> str:
    return " ".join(["python", "-m", "jobs.train", *(shlex.quote(o) for o in c.kuberay.job.overrides)])


def ray_job(cfg: FoundryConfig) -> dict[str, Any]:
    """The training job, on a cluster KubeRay creates for it (and deletes when it is done)."""
    j = cfg.cluster.kuberay.job
    spec: dict[str, Any] = {
        "entrypoint": train_entrypoint(cfg.cluster),
        "metadata": job_submission.metadata("train", cfg.model_name, cfg.trigger),
        "submissionMode": "K8sJobMode",
        "shutdownAfterJobFinishes": j.shutdown_after_job_finishes,
        "ttlSecondsAfterFinished": j.ttl_seconds_after_finished,
        "backoffLimit": j.backoff_limit,
        "rayClusterSpec": ray_cluster_spec(cfg, j.worker_types),
    }
    if j.active_deadline_seconds is not None:
        spec["activeDeadlineSeconds"] = j.active_deadline_seconds
    return {"apiVersion": API_VERSION, "kind": "RayJob", "metadata": _metadata(cfg.cluster, j.name, "ray-job"), "spec": spec}
