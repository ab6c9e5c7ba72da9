"""The Ray cluster-launcher config (``ray up``) for ``cluster=aws`` and ``cluster=gcp``.

A pure function of the typed config: node types from ``cluster.head`` and
``cluster.autoscaling.worker_types``, Ray in the configured containers (GPU worker types in the GPU
image), token auth and the cluster's environment on every node. With ``cluster.install.source=image``
(the default) the images hold the project and the cloud SDKs (the Dockerfile), so a node added at
scale-up only writes its environment and token before Ray starts; git/upload pip-install the project
(with torch) on every node instead. The result validates against ``ray/autoscaler/ray-schema.json``
(the tests check it).

The auth token never appears in the file: with ``cluster.auth.token_source=file`` the launcher
copies the local token file to the nodes (``file_mounts``); with ``secret`` every node reads it from
AWS Secrets Manager / GCP Secret Manager at setup. Either way it lands in ``~/.ray/auth_token`` on
the node (mode 0600), where Ray looks by default.
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from cluster import nodes
from foundry.config import (
    ClusterConfig,
    ClusterKind,
    FoundryConfig,
    InstallSource,
    TokenSource,
    WorkerTypeConfig,
)
from foundry.runtime import connection
from foundry.serving import haproxy_ingress

HEAD_NODE_TYPE = "ray_head"
BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"  # where the launcher puts this config on the head
ENV_FILE = "~/.foundry_env"  # exports of the node environment, sourced by the start commands and shells
REMOTE_TOKEN = "~/.ray/auth_token"  # Ray's default token path, so nothing needs RAY_AUTH_TOKEN_PATH
OBJECT_MANAGER_PORT = 8076
# Never upload these with install.source=upload: local state, large, or machine-specific.
UPLOAD_EXCLUDES = ["**/.git", "**/.git/**", ".venv", "outputs", "multirun", "benchmarks/results",
                   "**/__pycache__", "*.egg-info"]
GIB = 1024**3


def launcher_config(cfg: FoundryConfig) -> dict[str, Any]:
    """The whole ``ray up`` config for cluster=aws|gcp."""
    c = cfg.cluster
    if c.kind not in (ClusterKind.aws, ClusterKind.gcp):
        raise ValueError(f"launcher_config renders cluster=aws|gcp, not {c.kind.value}")
    a = c.autoscaling
    node_types: dict[str, Any] = {HEAD_NODE_TYPE: _head_type(c)}
    for name, w in a.worker_types.items():
        node_types[name] = _worker_type(c, w)
    return {
        "cluster_name": c.name,
        "max_workers": a.max_workers,
        "upscaling_speed": a.upscaling_speed,
        "idle_timeout_minutes": a.idle_timeout_minutes,
        "provider": _provider(c),
        "auth": {"ssh_user": c.cloud.ssh_user},
        "docker": {
            "image": c.image or c.head.image,
            "head_image": c.head.image or c.image,
            "worker_image": c.image or c.head.image,
            "container_name": "ray_container",
            "pull_before_run": True,
            "run_options": ["--ulimit nofile=65536:65536"],
        },
        "available_node_types": node_types,
        "head_node_type": HEAD_NODE_TYPE,
        "file_mounts": _file_mounts(c),
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": list(UPLOAD_EXCLUDES),
        "rsync_filter": [".gitignore"],
        "initialization_commands": [],
        "setup_commands": setup_commands(cfg),
        "head_setup_commands": _head_setup_commands(c),
        "worker_setup_commands": [],
        "head_start_ray_commands": ["ray stop", head_start_command(c)],
        "worker_start_ray_commands": ["ray stop", worker_start_command(c)],
        "metadata": {"rendered_by": "python -m cluster render", "model": cfg.model_name,
                     "storage_root": cfg.storage.root},
    }


def _provider(c: ClusterConfig) -> dict[str, Any]:
    cl = c.cloud
    provider: dict[str, Any] = {"type": c.kind.value, "region": cl.region}
    if c.kind is ClusterKind.aws:
        if cl.zone:
            provider["availability_zone"] = cl.zone
        provider["cache_stopped_nodes"] = False  # idle nodes are terminated, not kept (and billed for disks)
    else:
        provider["availability_zone"] = cl.zone
        provider["project_id"] = cl.project
    return provider


def _head_type(c: ClusterConfig) -> dict[str, Any]:
    h = c.head
    resources = {} if c.head_num_cpus is None else {"CPU": int(c.head_num_cpus)}
    if c.kind is ClusterKind.aws:
        node_config = _aws_node(h.instance_type, h.vm_image, h.disk_gb, spot=False, profile=None)
    else:
        node_config = _gcp_node(c, h.machine_type, h.vm_image, h.disk_gb, accelerator=None, gpus=0, spot=False,
                                service_account=None)
    return {"resources": resources, "node_config": node_config, "min_workers": 0, "max_workers": 0}


def _worker_type(c: ClusterConfig, w: WorkerTypeConfig) -> dict[str, Any]:
    resources: dict[str, int] = {"CPU": int(w.cpus), "object_store_memory": int(w.object_store_gb * GIB)}
    if w.gpus:
        resources["GPU"] = int(w.gpus)
    if c.kind is ClusterKind.aws:
        node_config = _aws_node(w.instance_type, w.vm_image, w.disk_gb, spot=w.spot,
                                profile=c.cloud.iam_instance_profile)
    else:
        node_config = _gcp_node(c, w.machine_type, w.vm_image, w.disk_gb, accelerator=w.accelerator,
                                gpus=w.gpus, spot=w.spot, service_account=c.cloud.service_account)
    out: dict[str, Any] = {"resources": resources, "node_config": node_config,
                           "min_workers": w.min_workers, "max_workers": w.max_workers}
    image = nodes.image_of(c, w)
    if image != (c.image or c.head.image):
        out["docker"] = {"worker_image": image}
    return out


def _aws_node(instance_type: str | None, ami: str | None, disk_gb: int, spot: bool,
              profile: str | None) -> dict[str, Any]:
    node: dict[str, Any] = {
        "InstanceType": instance_type,
        "BlockDeviceMappings": [{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": disk_gb, "VolumeType": "gp3"}}],
    }
    if ami:
        node["ImageId"] = ami
    if profile:
        node["IamInstanceProfile"] = {"Arn": profile}
    if spot:
        node["InstanceMarketOptions"] = {"MarketType": "spot"}
    return node


def _gcp_node(c: ClusterConfig, machine_type: str | None, image: str | None, disk_gb: int,
              accelerator: str | None, gpus: int, spot: bool, service_account: str | None) -> dict[str, Any]:
    node: dict[str, Any] = {
        "machineType": machine_type,
        "disks": [{"boot": True, "autoDelete": True, "type": "PERSISTENT",
                   "initializeParams": {"diskSizeGb": disk_gb, "sourceImage": image}}],
        "labels": {"app": "foundry", "foundry-cluster": c.name},
    }
    scheduling: dict[str, Any] = {}
    if gpus:
        node["guestAccelerators"] = [{"acceleratorType": accelerator, "acceleratorCount": int(gpus)}]
        node["metadata"] = {"items": [{"key": "install-nvidia-driver", "value": "True"}]}
        scheduling["onHostMaintenance"] = "TERMINATE"  # VMs with GPUs cannot live-migrate
    if spot:
        scheduling.update({"provisioningModel": "SPOT", "instanceTerminationAction": "DELETE"})
    if scheduling:
        node["scheduling"] = scheduling
    if service_account:
        node["serviceAccounts"] = [{"email": service_account,
                                    "scopes": ["https://www.googleapis.com/auth/cloud-platform"]}]
    return node


def _file_mounts(c: ClusterConfig) -> dict[str, str]:
    mounts: dict[str, str] = {}
    if c.install.source is InstallSource.upload:
        mounts[c.install.dir] = str(nodes.REPO_ROOT)
    if c.auth.token_source is TokenSource.file:
        # The path of the local token file, never its content.
        mounts[REMOTE_TOKEN] = str(connection.token_path(c))
    return mounts


def _home_path(path: str) -> str:
    """A shell word for ``path`` in which a leading ``~/`` still expands (the config checks the rest is plain)."""
    return f'"$HOME/{path[2:]}"' if path.startswith("~/") else shlex.quote(path)


def setup_commands(cfg: FoundryConfig) -> list[str]:
    """Run on every node (inside its container): the environment file, the token, and (unless the image
    holds it) this project."""
    c = cfg.cluster
    cmds = [env_file_command(cfg),
            f"grep -qxF 'source {ENV_FILE}' ~/.bashrc || echo 'source {ENV_FILE}' >> ~/.bashrc"]
    cmds += _token_commands(c)
    if c.install.source is InstallSource.image:
        return cmds
    d = _home_path(c.install.dir)
    if c.install.source is InstallSource.git:
        url, ref = shlex.quote(c.install.git_url or ""), shlex.quote(c.install.git_ref)
        cmds += [
            f"test -d {d}/.git || git clone --quiet {url} {d}",
            f"git -C {d} fetch --quiet --depth 1 origin {ref} && git -C {d} checkout --quiet --force FETCH_HEAD",
        ]
    extras = f"[{','.join(c.install.extras)}]" if c.install.extras else ""
    target = f'"$HOME/{c.install.dir[2:]}{extras}"' if c.install.dir.startswith("~/") else \
        shlex.quote(f"{c.install.dir}{extras}")
    cmds.append(f"pip install --quiet --upgrade-strategy only-if-needed -e {target}")
    return cmds


def _token_commands(c: ClusterConfig) -> list[str]:
    if c.auth.token_source is TokenSource.file:
        return [f"chmod 700 ~/.ray && chmod 600 {REMOTE_TOKEN}"]
    # Python string literals in double quotes (json.dumps), so the command needs no nested single quotes.
    if c.kind is ClusterKind.aws:
        client = "boto3"
        read = (f"import boto3, sys; sys.stdout.write(boto3.client(\"secretsmanager\", "
                f"region_name={json.dumps(c.cloud.region)}).get_secret_value("
                f"SecretId={json.dumps(c.auth.secret_name)})[\"SecretString\"].strip())")
    else:
        client = "google-cloud-secret-manager"
        name = f"projects/{c.cloud.project}/secrets/{c.auth.secret_name}/versions/latest"
        read = ("import sys; from google.cloud import secretmanager; "
                "sys.stdout.write(secretmanager.SecretManagerServiceClient().access_secret_version("
                f"name={json.dumps(name)}).payload.data.decode().strip())")
    # The project's image carries the SDK (the `cloud` extra); a stock Ray image gets it here.
    install = [] if c.install.source is InstallSource.image else [f"pip install --quiet {client}"]
    return [
        *install,
        # umask first: the file is never readable by others, not even while it is written.
        f"mkdir -p ~/.ray && chmod 700 ~/.ray && (umask 077 && python -c {shlex.quote(read)} > {REMOTE_TOKEN})",
        f"test -s {REMOTE_TOKEN}",
    ]


def _head_setup_commands(c: ClusterConfig) -> list[str]:
    """The autoscaler on the head drives the cloud's API (the launcher's own requirement; the project's
    image has the clients already)."""
    if c.install.source is InstallSource.image:
        return []
    if c.kind is ClusterKind.aws:
        return ["pip install --quiet 'boto3>=1.4.8'"]
    return ["pip install --quiet google-api-python-client"]


def env_file_command(cfg: FoundryConfig) -> str:
    """Write the node environment (token auth, storage root, ``cluster.env``) as exports to ENV_FILE."""
    env = nodes.node_env(cfg)
    lines = [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    if env.get(haproxy_ingress.ENABLE_ENV) == "1" and haproxy_ingress.BINARY_ENV not in env:
        # The console script pip put on the node's PATH; a node without it fails HAProxy's start loudly
        # rather than run Ray's template with its listeners on every interface.
        lines.append(f'export {haproxy_ingress.BINARY_ENV}="$(command -v {haproxy_ingress.WRAPPER} '
                     f'|| echo /nonexistent/{haproxy_ingress.WRAPPER})"')
    return "printf '%s\\n' " + " ".join(shlex.quote(line) for line in lines) + f" > {ENV_FILE}"


def head_start_command(c: ClusterConfig) -> str:
    args = [
        "ray start --head",
        f"--port={c.gcs_port}",
        f"--object-manager-port={OBJECT_MANAGER_PORT}",
        f"--autoscaling-config={BOOTSTRAP_CONFIG}",
        "--include-dashboard=true",
        f"--dashboard-host={c.dashboard_host}",
        f"--dashboard-port={c.dashboard_port}",
    ]
    if c.head_num_cpus is not None:
        args.append(f"--num-cpus={c.head_num_cpus}")
    args.append("--disable-usage-stats")
    return f"ulimit -n 65536; source {ENV_FILE}; " + " ".join(args)


def worker_start_command(c: ClusterConfig) -> str:
    return (f"ulimit -n 65536; source {ENV_FILE}; ray start --address=$RAY_HEAD_IP:{c.gcs_port} "
            f"--object-manager-port={OBJECT_MANAGER_PORT} --disable-usage-stats")
