"""``python -m cluster render``: the files that describe ``cfg.cluster`` to the tool that starts it.

- ``cluster=local``: the fake multi-node autoscaler config that ``python -m cluster up`` hands Ray
  (``cluster/autoscaling.py``), for inspection.
- ``cluster=aws`` / ``cluster=gcp``: a Ray cluster-launcher config for ``ray up``
  (``cluster/launcher.py``).
- ``cluster=kuberay``: a RayCluster, a RayService and a RayJob for ``kubectl apply``
  (``cluster/kuberay.py``).

``render`` is pure (config in, documents out) and checks the config first, so a wrong value fails
here with a ConfigError naming the key, before any file is written. Values that only stand in for
the user's own (example account ids, images, projects, buckets; ``cluster/placeholders.py``) render
with a PlaceholderWarning per key, or fail like a wrong value with ``strict`` (``--strict``,
``cluster.placeholders=fail``). No rendered file contains the auth token: nodes get it from a file
copied by the launcher, a cloud secret manager, or a Kubernetes Secret.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import yaml

from cluster import autoscaling, kuberay, launcher, nodes, placeholders
from foundry.config import ClusterConfig, ClusterKind, FoundryConfig, PlaceholderPolicy, validate
from foundry.errors import ConfigError
from foundry.runtime import connection

DEFAULT_OUT_DIR = nodes.REPO_ROOT / "outputs" / "cluster"
FILE_SUFFIXES = (".yaml", ".yml", ".json")


def render(cfg: FoundryConfig, strict: bool | None = None) -> dict[str, dict[str, Any]]:
    """File name -> document for this config's cluster kind. Raises ConfigError naming the key.

    ``strict``: placeholder values fail instead of warning (None: ``cluster.placeholders`` decides).
    """
    validate(cfg)
    c = cfg.cluster
    if c.kind is ClusterKind.local:
        if not c.autoscaling.enabled:
            raise ConfigError("cluster.autoscaling.enabled: cluster=local without autoscaling has no "
                              "autoscaler config to render (`python -m cluster up` starts a plain head)")
        return {"autoscaling.yaml": autoscaling.fake_multinode_config(c, connection.gcs_address(c))}
    nodes.check_shared_storage(cfg)
    check_placeholders(cfg, strict)
    if c.kind in (ClusterKind.aws, ClusterKind.gcp):
        return {"cluster.yaml": launcher.launcher_config(cfg)}
    k = c.kuberay
    all_types = list(c.autoscaling.worker_types)
    if cfg.trainer.use_gpu:
        nodes.check_gpu_workers(c, "cluster.kuberay.job.worker_types", k.job.worker_types or all_types)
    if cfg.serve.use_gpu:
        nodes.check_gpu_workers(c, "cluster.kuberay.service.worker_types", k.service.worker_types or all_types)
    return {
        "raycluster.yaml": kuberay.ray_cluster(cfg),
        "rayservice.yaml": kuberay.ray_service(cfg),
        "rayjob.yaml": kuberay.ray_job(cfg),
    }


def check_placeholders(cfg: FoundryConfig, strict: bool | None = None) -> list[placeholders.Placeholder]:
    """Warn about (or, strict, fail on) every placeholder value the rendered files would carry."""
    found = placeholders.find(cfg)
    if strict is None:
        strict = cfg.cluster.placeholders is PlaceholderPolicy.fail
    if found and strict:
        also = "".join(f"; also {p}" for p in found[1:])
        raise ConfigError(f"{found[0]} (placeholders fail with --strict / cluster.placeholders=fail){also}")
    for p in found:
        warnings.warn(str(p), placeholders.PlaceholderWarning, stacklevel=3)
    return found


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (``serveConfigV2``) as readable ``|`` blocks instead of escaped one-liners."""


def _str(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def to_yaml(doc: dict[str, Any]) -> str:
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=4096)


def header(c: ClusterConfig) -> str:
    kind = c.kind.value
    return (f"# Rendered by `python -m cluster render cluster={kind}` from conf/cluster/{kind}.yaml (Foundry).\n"
            "# Edit the config and render again rather than editing this file. It holds no auth token.\n")


def default_out(c: ClusterConfig) -> Path:
    return DEFAULT_OUT_DIR / c.kind.value


def write(cfg: FoundryConfig, out: str | Path | None = None, strict: bool | None = None) -> list[Path]:
    """Render and write. ``out``: a directory (one file per document; default ``outputs/cluster/<kind>``)
    or a file ending in .yaml/.yml (all documents in it, ``---``-separated) or .json (one document)."""
    docs = render(cfg, strict)
    target = Path(out).expanduser() if out is not None else default_out(cfg.cluster)
    if target.suffix in FILE_SUFFIXES and not target.is_dir():
        if target.suffix == ".json":
            if len(docs) != 1:
                raise ConfigError(f"--out {target}: cluster={cfg.cluster.kind.value} renders {len(docs)} documents; "
                                  "write them to a directory or a .yaml file")
            import json

            text = json.dumps(next(iter(docs.values())), indent=2) + "\n"
        else:
            text = header(cfg.cluster) + "---\n".join(to_yaml(d) for d in docs.values())
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        return [target]
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, doc in docs.items():
        path = target / name
        path.write_text(header(cfg.cluster) + to_yaml(doc))
        written.append(path)
    return written
