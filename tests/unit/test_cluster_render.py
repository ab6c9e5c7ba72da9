"""``python -m cluster render``: cloud and Kubernetes cluster definitions rendered from the Hydra config.

No Ray cluster needed. The rendered files are checked against the schemas of the tools that consume
them: Ray's own cluster-launcher schema (``ray/autoscaler/ray-schema.json``) for aws/gcp, and KubeRay
v1.7.0's CRD schemas (``../shared/schemas/kuberay-v1.7.0/``) for the RayCluster, RayService and
RayJob, made strict (an unknown field is an error, where the API server would silently drop it).
The shipped configs hold placeholder values (example images, accounts, buckets): rendering them warns,
which the tests about their shape ignore; the placeholder tests at the end check the warnings.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from cluster import autoscaling, kuberay, launcher, placeholders, render
from foundry import config
from foundry.errors import ConfigError
from foundry.runtime import connection

pytestmark = pytest.mark.filterwarnings("ignore::cluster.placeholders.PlaceholderWarning")

REPO_ROOT = Path(__file__).resolve().parents[2]
KUBERAY_SCHEMAS = REPO_ROOT.parent / "shared" / "schemas" / "kuberay-v1.7.0"
CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayService": "ray.io_rayservices.yaml",
             "RayJob": "ray.io_rayjobs.yaml"}
SENTINEL = "tok-3f9c1e-never-in-a-rendered-file"


# ----- helpers

@pytest.fixture(autouse=True)
def _token_everywhere(monkeypatch, tmp_path):
    """A token in the environment and in the configured token file: neither may leak into a file."""
    token_file = tmp_path / "auth_token"
    token_file.write_text(SENTINEL)
    monkeypatch.setenv(connection.TOKEN_ENV, SENTINEL)
    monkeypatch.setenv(connection.TOKEN_PATH_ENV, str(token_file))
    return token_file


def _load(kind: str, *overrides: str):
    return config.load([f"cluster={kind}", *overrides])


def _ray_schema() -> dict:
    import ray

    return json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())


def _strict(schema):
    """Kubernetes prunes unknown fields of a structural schema instead of rejecting them, so a typo
    would vanish silently on `kubectl apply`; forbid them here so the tests catch it."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (out.get("type") == "object" and "properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def _crd_schema(kind: str) -> dict:
    # shared/ sits beside every clone (CI included); without it this validation cannot run, so fail loudly.
    assert KUBERAY_SCHEMAS.is_dir(), f"KubeRay CRD schemas not found at {KUBERAY_SCHEMAS} (../shared beside the repo)"
    crd = yaml.safe_load((KUBERAY_SCHEMAS / CRD_FILES[kind]).read_text())
    assert crd["spec"]["names"]["kind"] == kind
    storage = [v for v in crd["spec"]["versions"] if v.get("storage")]
    assert len(storage) == 1 and storage[0]["name"] == "v1"
    return _strict(storage[0]["schema"]["openAPIV3Schema"])


def _errors(schema: dict, doc: dict) -> list[str]:
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in validator.iter_errors(doc)]


def _kuberay_docs(*overrides: str) -> dict[str, dict]:
    return {doc["kind"]: doc for doc in render.render(_load("kuberay", *overrides)).values()}


def _cluster_specs(docs: dict[str, dict]) -> list[dict]:
    return [docs["RayCluster"]["spec"], docs["RayService"]["spec"]["rayClusterConfig"],
            docs["RayJob"]["spec"]["rayClusterSpec"]]


def _containers(spec: dict) -> list[dict]:
    pods = [spec["headGroupSpec"]["template"]] + [g["template"] for g in spec["workerGroupSpecs"]]
    return [c for p in pods for c in p["spec"]["containers"]]


def _config_error(fn) -> str:
    with pytest.raises(ConfigError) as info:
        fn()
    return str(info.value)


# ----- aws / gcp: the Ray cluster launcher

@pytest.mark.parametrize("kind", ["aws", "gcp"])
def test_launcher_yaml_validates_against_rays_schema(kind):
    docs = render.render(_load(kind))
    assert list(docs) == ["cluster.yaml"]
    doc = yaml.safe_load(render.to_yaml(docs["cluster.yaml"]))  # exactly what the file holds
    assert _errors(_ray_schema(), doc) == []
    # Ray's own check, as `ray up` runs it (the same schema plus its cross-field rules).
    from ray.autoscaler._private.util import validate_config

    validate_config(doc)


@pytest.mark.parametrize("kind", ["aws", "gcp"])
def test_launcher_yaml_describes_the_configured_cluster(kind):
    cfg = _load(kind)
    doc = launcher.launcher_config(cfg)
    c = cfg.cluster
    assert doc["provider"]["type"] == kind and doc["provider"]["region"] == c.cloud.region
    assert doc["idle_timeout_minutes"] == c.autoscaling.idle_timeout_minutes
    assert doc["max_workers"] == c.autoscaling.max_workers
    types = doc["available_node_types"]
    assert doc["head_node_type"] in types
    assert types[doc["head_node_type"]]["resources"] == {"CPU": 0}  # the head only coordinates
    machine = "InstanceType" if kind == "aws" else "machineType"
    for name, w in c.autoscaling.worker_types.items():
        t = types[name]
        assert (t["min_workers"], t["max_workers"]) == (w.min_workers, w.max_workers)
        assert t["resources"]["CPU"] == w.cpus
        assert t["node_config"][machine] == (w.instance_type if kind == "aws" else w.machine_type)
    gpu = types["gpu_worker"]
    assert gpu["resources"]["GPU"] == 1
    assert gpu["docker"]["worker_image"] == c.gpu_image  # CUDA image on GPU nodes only
    assert "docker" not in types["cpu_worker"]
    assert doc["docker"]["image"] == c.image
    if kind == "aws":
        assert gpu["node_config"]["InstanceType"] == "g5.xlarge"
    else:
        assert gpu["node_config"]["guestAccelerators"] == [{"acceleratorType": "nvidia-tesla-t4", "acceleratorCount": 1}]
        assert gpu["node_config"]["scheduling"]["onHostMaintenance"] == "TERMINATE"
    assert cfg.storage.root.startswith("s3://" if kind == "aws" else "gs://")


@pytest.mark.parametrize("kind", ["aws", "gcp"])
def test_launcher_nodes_run_the_image_with_token_auth(kind):
    cfg = _load(kind)
    assert cfg.cluster.install.source is config.InstallSource.image
    doc = launcher.launcher_config(cfg)
    setup = "\n".join(doc["setup_commands"])
    # The image holds the project and the cloud SDKs: a node added at scale-up installs nothing.
    assert "pip install" not in setup and "git clone" not in setup
    assert doc["head_setup_commands"] == [] and doc["worker_setup_commands"] == []
    assert len(doc["setup_commands"]) == 4  # env file, .bashrc line, token from the secret, token check
    assert doc["docker"]["image"] == cfg.cluster.image == "ghcr.io/example-org/foundry:0.1.0"
    # Every node's Ray runs with the environment file: token auth, the bucket, cluster.env.
    env_line = launcher.env_file_command(cfg)
    assert env_line in doc["setup_commands"]
    for expected in ("export RAY_AUTH_MODE=token", f"export FOUNDRY_STORAGE={cfg.storage.root}",
                     "export RAY_SERVE_THROUGHPUT_OPTIMIZED=1"):
        assert expected in env_line
    starts = doc["head_start_ray_commands"][-1], doc["worker_start_ray_commands"][-1]
    assert all(f"source {launcher.ENV_FILE}; ray start" in s for s in starts)
    # The token comes from the cloud's secret manager into Ray's default path, readable by its owner only.
    assert "secretsmanager" in setup if kind == "aws" else "secretmanager" in setup
    assert "umask 077" in setup and "> ~/.ray/auth_token" in setup
    head = starts[0]
    assert "--dashboard-host=127.0.0.1" in head and "--num-cpus=0" in head  # dashboard via SSH tunnel only


def test_launcher_token_from_a_file_is_copied_not_inlined(_token_everywhere):
    doc = launcher.launcher_config(_load("aws", "cluster.auth.token_source=file"))
    assert doc["file_mounts"] == {"~/.ray/auth_token": str(_token_everywhere)}
    assert SENTINEL not in render.to_yaml(doc)


@pytest.mark.parametrize("kind", ["aws", "gcp"])
def test_launcher_can_install_from_git_on_rays_own_images(kind):
    """install.source=git: a branch on stock rayproject/ray images, pip-installed on every node at setup."""
    cfg = _load(kind, "cluster.install.source=git", "cluster.install.git_url=https://github.com/acme/foundry.git",
                "cluster.image=rayproject/ray:2.60.0-py311-cpu", "cluster.gpu_image=rayproject/ray:2.60.0-py311-gpu")
    doc = launcher.launcher_config(cfg)
    setup = "\n".join(doc["setup_commands"])
    assert "git clone --quiet https://github.com/acme/foundry.git" in setup
    assert 'pip install --quiet --upgrade-strategy only-if-needed -e "$HOME/foundry"' in setup
    assert "pip install --quiet " + ("boto3" if kind == "aws" else "google-cloud-secret-manager") in setup
    assert doc["head_setup_commands"] and doc["docker"]["image"] == "rayproject/ray:2.60.0-py311-cpu"


def test_launcher_can_upload_this_working_tree():
    doc = launcher.launcher_config(_load("gcp", "cluster.install.source=upload", "cluster.install.git_url=null"))
    assert doc["file_mounts"]["~/foundry"] == str(REPO_ROOT)
    assert ".venv" in doc["rsync_exclude"]
    assert not any("git clone" in c for c in doc["setup_commands"])


# ----- kuberay

@pytest.mark.parametrize("kind", ["RayCluster", "RayService", "RayJob"])
def test_kuberay_manifest_validates_against_the_crd(kind):
    schema = _crd_schema(kind)
    doc = yaml.safe_load(render.to_yaml(_kuberay_docs()[kind]))
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == kind
    assert _errors(schema, doc) == []
    assert _errors(schema["properties"]["spec"], doc["spec"]) == []


def test_strict_crd_validation_catches_a_misspelt_field():
    schema = _crd_schema("RayCluster")
    doc = _kuberay_docs()["RayCluster"]
    doc["spec"]["authOption"] = doc["spec"].pop("authOptions")
    assert any("authOption" in e for e in _errors(schema, doc))
    doc = _kuberay_docs()["RayCluster"]
    doc["spec"]["authOptions"]["mode"] = "password"
    assert any("authOptions/mode" in e for e in _errors(schema, doc))


def test_kuberay_cluster_autoscales_with_a_gpu_group_and_token_auth():
    cfg = _load("kuberay")
    c = cfg.cluster
    docs = _kuberay_docs()
    for spec in _cluster_specs(docs):
        assert spec["enableInTreeAutoscaling"] is True
        assert spec["autoscalerOptions"]["idleTimeoutSeconds"] == round(c.autoscaling.idle_timeout_minutes * 60)
        assert spec["authOptions"] == {"mode": "token", "secretName": c.auth.secret_name}
        assert spec["rayVersion"] == c.ray_version
        head = spec["headGroupSpec"]
        assert head["serviceType"] == "ClusterIP"  # not exposed; kubectl port-forward
        assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"
        assert head["rayStartParams"]["num-cpus"] == "0"
        for container in _containers(spec):
            env = {e["name"]: e for e in container["env"]}
            assert env["RAY_AUTH_MODE"]["value"] == "token"
            assert env["RAY_AUTH_TOKEN"] == {"name": "RAY_AUTH_TOKEN", "valueFrom": {"secretKeyRef": {
                "name": c.auth.secret_name, "key": kuberay.TOKEN_SECRET_KEY}}}
            assert env["FOUNDRY_STORAGE"]["value"] == cfg.storage.root
            assert env["RAY_SERVE_THROUGHPUT_OPTIMIZED"]["value"] == "1"
            assert container["resources"]["requests"] and container["resources"]["limits"]
    groups = {g["groupName"]: g for g in docs["RayCluster"]["spec"]["workerGroupSpecs"]}
    assert set(groups) == {"cpu-worker", "gpu-worker"}
    gpu = groups["gpu-worker"]
    w = c.autoscaling.worker_types["gpu_worker"]
    assert (gpu["minReplicas"], gpu["maxReplicas"]) == (w.min_workers, w.max_workers)
    pod = gpu["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == c.gpu_image
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["limits"]["memory"] == "16Gi"
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    cpu_container = groups["cpu-worker"]["template"]["spec"]["containers"][0]
    assert cpu_container["image"] == c.image and "nvidia.com/gpu" not in cpu_container["resources"]["limits"]


def test_rayservice_serves_the_serving_config():
    from serve_apps.deploy import build_serve_config

    cfg = _load("kuberay")
    svc = _kuberay_docs()["RayService"]
    assert isinstance(svc["spec"]["serveConfigV2"], str)
    served = yaml.safe_load(svc["spec"]["serveConfigV2"])
    # The serving config as is, except that Serve's proxy listens on the pod's address (reachable
    # through the RayService's Service) instead of the loopback default.
    expected = json.loads(json.dumps(build_serve_config(cfg)))
    assert expected["http_options"]["host"] == "127.0.0.1"
    expected["http_options"]["host"] = "0.0.0.0"
    expected["applications"][0]["args"]["config"]["serve"]["http"]["host"] = "0.0.0.0"
    assert served == expected
    from ray.serve.schema import ServeDeploySchema

    ServeDeploySchema.model_validate(served)  # what Serve itself accepts
    # The replicas read the API key from a Secret; only the service's cluster gets it.
    groups = [g["groupName"] for g in svc["spec"]["rayClusterConfig"]["workerGroupSpecs"]]
    assert groups == ["cpu-worker"]
    for container in _containers(svc["spec"]["rayClusterConfig"]):
        env = {e["name"]: e for e in container["env"]}
        assert env[cfg.serve.auth.api_key_env]["valueFrom"]["secretKeyRef"]["name"] == "foundry-api-key"
    for container in _containers(_kuberay_docs()["RayCluster"]["spec"]):
        assert cfg.serve.auth.api_key_env not in {e["name"] for e in container["env"]}


def test_rayjob_runs_training_with_job_metadata():
    cfg = _load("kuberay")
    job = _kuberay_docs()["RayJob"]
    spec = job["spec"]
    assert spec["entrypoint"] == "python -m jobs.train trainer=gpu trainer.num_workers=2"
    assert spec["metadata"] == {"job_name": "train", "model": cfg.model_name, "trigger": "manual"}
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] == cfg.cluster.kuberay.job.ttl_seconds_after_finished
    assert job["metadata"] == {"name": "foundry-train", "namespace": "foundry",
                               "labels": job["metadata"]["labels"]}
    assert {g["groupName"] for g in spec["rayClusterSpec"]["workerGroupSpecs"]} == {"cpu-worker", "gpu-worker"}
    only_gpu = _kuberay_docs("cluster.kuberay.job.worker_types=[gpu_worker]")["RayJob"]
    assert [g["groupName"] for g in only_gpu["spec"]["rayClusterSpec"]["workerGroupSpecs"]] == ["gpu-worker"]


# ----- wrong values fail, naming the key

@pytest.mark.parametrize(("kind", "overrides", "key", "words"), [
    ("aws", ["cluster.autoscaling.worker_types.gpu_worker.min_workers=5"],
     "cluster.autoscaling.worker_types.gpu_worker.min_workers", "greater than max_workers"),
    ("kuberay", ["cluster.autoscaling.worker_types.cpu_worker.min_workers=7"],
     "cluster.autoscaling.worker_types.cpu_worker.min_workers", "greater than max_workers"),
    ("aws", ["cluster.gpu_image=null"], "cluster.autoscaling.worker_types.gpu_worker.image", "GPU"),
    ("gcp", ["cluster.gpu_image=null"], "cluster.autoscaling.worker_types.gpu_worker.image", "GPU"),
    ("kuberay", ["cluster.gpu_image=null"], "cluster.autoscaling.worker_types.gpu_worker.image", "GPU"),
    ("kuberay", ["cluster.kuberay.job.worker_types=[gpu_wrker]"], "cluster.kuberay.job.worker_types",
     "unknown worker type 'gpu_wrker'"),
    ("kuberay", ["cluster.kuberay.service.worker_types=[cpu_worker,tpu_worker]"],
     "cluster.kuberay.service.worker_types", "unknown worker type 'tpu_worker'"),
    ("aws", ["cluster.autoscaling.worker_types.cpu_worker.max_workers=-1"],
     "cluster.autoscaling.worker_types.cpu_worker.max_workers", ">= 0"),
    ("aws", ["cluster.autoscaling.worker_types.cpu_worker.disk_gb=-10"],
     "cluster.autoscaling.worker_types.cpu_worker.disk_gb", ">= 1"),
    ("gcp", ["cluster.autoscaling.worker_types.gpu_worker.gpus=-1"],
     "cluster.autoscaling.worker_types.gpu_worker.gpus", ">= 0"),
    ("aws", ["cluster.head.disk_gb=0"], "cluster.head.disk_gb", ">= 1"),
    ("aws", ["cluster.autoscaling.idle_timeout_minutes=-1"], "cluster.autoscaling.idle_timeout_minutes", "> 0"),
    ("kuberay", ["cluster.kuberay.job.ttl_seconds_after_finished=-5"],
     "cluster.kuberay.job.ttl_seconds_after_finished", ">= 0"),
    ("aws", ["cluster.autoscaling.max_workers=1", "cluster.autoscaling.worker_types.cpu_worker.min_workers=1",
             "cluster.autoscaling.worker_types.gpu_worker.min_workers=1"], "cluster.autoscaling.max_workers", "add up"),
    ("aws", ["cluster.head.instance_type=null"], "cluster.head.instance_type", "needs"),
    ("gcp", ["cluster.autoscaling.worker_types.gpu_worker.accelerator=null"],
     "cluster.autoscaling.worker_types.gpu_worker.accelerator", "accelerator"),
    ("gcp", ["cluster.cloud.project=null"], "cluster.cloud.project", "project"),
    ("aws", ["cluster.autoscaling.worker_types.cpu_worker.cpus=2.5"],
     "cluster.autoscaling.worker_types.cpu_worker.cpus", "whole"),
    ("aws", ["cluster.install.source=git", "cluster.install.git_url=null"], "cluster.install.git_url", "URL"),
    # Nodes that install nothing need this project's image, not Ray's own.
    ("aws", ["cluster.image=rayproject/ray:2.60.0-py311-cpu"], "cluster.image", "Ray's own image"),
    ("gcp", ["cluster.autoscaling.worker_types.cpu_worker.image=docker.io/rayproject/ray:2.60.0"],
     "cluster.autoscaling.worker_types.cpu_worker.image", "install.source=git|upload"),
    ("kuberay", ["cluster.gpu_image=rayproject/ray:2.60.0-py311-gpu"], "cluster.gpu_image", "Dockerfile"),
    ("kuberay", ["cluster.head.image=rayproject/ray:2.60.0-py311"], "cluster.head.image", "without Foundry"),
    ("aws", ["+cluster.env.RAY_AUTH_TOKEN=abc"], "cluster.env.RAY_AUTH_TOKEN", "token"),
    ("kuberay", ["cluster.dashboard_host=127.0.0.1"], "cluster.dashboard_host", "0.0.0.0"),
    ("kuberay", ["cluster.auth.token_source=file"], "cluster.auth.token_source", "Kubernetes Secret"),
    ("kuberay", ["~cluster.autoscaling.worker_types.cpu_worker.k8s.limits.memory",
                 "~cluster.autoscaling.worker_types.cpu_worker.k8s.requests.memory"],
     "cluster.autoscaling.worker_types.cpu_worker.k8s.limits", "memory"),
    ("kuberay", ["cluster.head.k8s.limits.memory=lots"], "cluster.head.k8s.limits.memory", "quantity"),
    ("kuberay", ["cluster.autoscaling.worker_types.gpu_worker.k8s.node_selector=[gpu]"],
     "cluster.autoscaling.worker_types.gpu_worker.k8s.node_selector", "label=value"),
    ("aws", ["cluster.autoscaling.enabled=false"], "cluster.autoscaling.enabled", "always autoscales"),
    ("aws", ["cluster.name=Foundry_Prod"], "cluster.name", "lower-case"),
    ("aws", ["cluster.ray_version=2.40.0"], "cluster.ray_version", "2.52"),
])
def test_wrong_cluster_values_name_the_key(kind, overrides, key, words):
    msg = _config_error(lambda: render.render(_load(kind, *overrides)))
    assert msg.startswith(f"{key}:"), msg
    assert words in msg, msg


def test_render_checks_a_config_built_in_code_too():
    """render validates again: a config changed after loading cannot slip through."""
    import dataclasses

    cfg = _load("aws")
    gpu = dataclasses.replace(cfg.cluster.autoscaling.worker_types["gpu_worker"], min_workers=9)
    cfg.cluster.autoscaling.worker_types["gpu_worker"] = gpu
    assert "cluster.autoscaling.worker_types.gpu_worker.min_workers" in _config_error(lambda: render.render(cfg))


@pytest.mark.parametrize("kind", ["aws", "gcp", "kuberay"])
def test_remote_clusters_need_shared_storage(kind, tmp_path):
    msg = _config_error(lambda: render.render(_load(kind, f"storage.root={tmp_path}")))
    assert msg.startswith("storage.root:") and "every node" in msg


def test_gpu_training_needs_a_gpu_group_in_the_rayjob():
    msg = _config_error(lambda: render.render(_load("kuberay", "trainer=gpu",
                                                    "cluster.kuberay.job.worker_types=[cpu_worker]")))
    assert msg.startswith("cluster.kuberay.job.worker_types:") and "trainer.use_gpu" in msg
    render.render(_load("kuberay", "trainer=gpu"))  # all groups, the GPU one included: fine


# ----- local, tokens, the CLI

def test_local_renders_the_fake_multinode_config():
    cfg = config.load([])
    docs = render.render(cfg)
    assert docs == {"autoscaling.yaml": autoscaling.fake_multinode_config(
        cfg.cluster, connection.gcs_address(cfg.cluster))}
    provider = docs["autoscaling.yaml"]["provider"]
    assert (provider["type"], provider["module"]) == ("external", autoscaling.PROVIDER)
    assert _errors(_ray_schema(), docs["autoscaling.yaml"]) == []


def test_the_local_provider_is_rays_fake_one_whose_worker_nodes_have_no_log_monitor_and_their_own_runtime_env_folder(
        monkeypatch):
    """What cluster/fake_nodes.py relies on in Ray: the provider class the config names loads, the fake
    provider builds its nodes' ``RayParams`` inline in the method overridden, a node started with
    ``include_log_monitor=False`` keeps it (Node fills in only what is absent), and a node's runtime-env
    agent works in ``<session>/<runtime_env_dir_name>``."""
    import inspect

    import ray._private.node as ray_node
    import ray._private.parameter as ray_parameter
    from ray.autoscaler._private.fake_multi_node.node_provider import FakeMultiNodeProvider
    from ray.autoscaler._private.providers import _get_node_provider_cls

    from cluster import fake_nodes

    cls = _get_node_provider_cls({"type": "external", "module": autoscaling.PROVIDER})
    assert cls is fake_nodes.SharedHostProvider and issubclass(cls, FakeMultiNodeProvider)
    created = inspect.getsource(FakeMultiNodeProvider._create_node_with_resources_and_labels)
    assert "ray._private.parameter.RayParams(" in created and '"RAY_OVERRIDE_NODE_ID_FOR_TESTING": next_id' in created
    node_init = inspect.getsource(ray_node.Node.__init__)
    assert "include_log_monitor=True" in node_init  # update_if_absent
    assert "self._session_dir, self._ray_params.runtime_env_dir_name" in inspect.getsource(ray_node.Node)
    made = []

    def create(self, *args):
        for node_id in ("f" * 51 + "00001", "f" * 51 + "00002"):
            made.append(ray_parameter.RayParams(num_cpus=2, env_vars={"RAY_OVERRIDE_NODE_ID_FOR_TESTING": node_id}))

    monkeypatch.setattr(FakeMultiNodeProvider, "_create_node_with_resources_and_labels", create)
    real = ray_parameter.RayParams
    cls._create_node_with_resources_and_labels(object.__new__(cls), {}, {}, 1, {}, {})
    assert [p.include_log_monitor for p in made] == [False, False] and made[0].num_cpus == 2
    folders = [p.runtime_env_dir_name for p in made]
    assert len(set(folders)) == 2 and real().runtime_env_dir_name not in folders, folders  # not the head's
    assert folders[0].endswith("_00001")
    assert ray_parameter.RayParams is real  # swapped back


@pytest.mark.parametrize(("kind", "overrides"), [
    ("aws", []), ("gcp", []), ("kuberay", []), ("local", []),
    ("aws", ["cluster.auth.token_source=file"]), ("gcp", ["cluster.auth.token_source=file"]),
])
def test_no_token_in_any_rendered_file(kind, overrides, tmp_path):
    assert connection.read_token() == SENTINEL  # the token is right there for a careless renderer to copy
    written = render.write(_load(kind, *overrides), tmp_path / "out")
    assert written
    for path in written:
        text = path.read_text()
        assert SENTINEL not in text, path
        assert "no auth token" in text.splitlines()[1]


def test_write_one_file_or_a_directory(tmp_path):
    cfg = _load("kuberay")
    one = render.write(cfg, tmp_path / "all.yaml")
    assert one == [tmp_path / "all.yaml"]
    assert [d["kind"] for d in yaml.safe_load_all(one[0].read_text())] == ["RayCluster", "RayService", "RayJob"]
    many = render.write(cfg, tmp_path / "dir")
    assert sorted(p.name for p in many) == ["raycluster.yaml", "rayjob.yaml", "rayservice.yaml"]
    as_json = render.write(_load("aws"), tmp_path / "cluster.json")
    assert json.loads(as_json[0].read_text())["provider"]["type"] == "aws"
    with pytest.raises(ConfigError):
        render.write(cfg, tmp_path / "three.json")


def _cli(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS",)}
    return subprocess.run([sys.executable, "-m", "cluster", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120)


def test_cli_render_writes_the_files(tmp_path):
    out = tmp_path / "aws.yaml"
    proc = _cli("render", "cluster=aws", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert str(out) in proc.stdout and "ray up" in proc.stdout
    assert "warning: cluster.cloud.iam_instance_profile: 'arn:aws:iam::123456789012:" in proc.stderr
    assert _errors(_ray_schema(), yaml.safe_load(out.read_text())) == []

    proc = _cli("render", "cluster=kuberay", "--out", str(tmp_path / "k8s"))
    assert proc.returncode == 0, proc.stderr
    for name in ("raycluster.yaml", "rayservice.yaml", "rayjob.yaml"):
        assert (tmp_path / "k8s" / name).is_file()
        assert str(tmp_path / "k8s" / name) in proc.stdout
    assert "kubectl apply" in proc.stdout


def test_cli_render_bad_value_exits_2_naming_the_key(tmp_path):
    proc = _cli("render", "cluster=gcp", "cluster.autoscaling.worker_types.gpu_worker.min_workers=9",
                "--out", str(tmp_path / "x"))
    assert proc.returncode == 2
    assert "cluster.autoscaling.worker_types.gpu_worker.min_workers" in proc.stderr
    assert not (tmp_path / "x").exists()


def test_cli_up_refuses_a_remote_cluster():
    proc = _cli("up", "cluster=aws")
    assert proc.returncode == 2 and "python -m cluster render cluster=aws" in proc.stderr


# ----- placeholders: warn by default, fail with --strict / cluster.placeholders=fail

SHIPPED_PLACEHOLDERS = {
    "aws": {"storage.root", "cluster.image", "cluster.gpu_image", "cluster.cloud.iam_instance_profile"},
    "gcp": {"storage.root", "cluster.image", "cluster.gpu_image", "cluster.cloud.project",
            "cluster.cloud.service_account"},
    "kuberay": {"storage.root", "cluster.image", "cluster.gpu_image"},
}
OWN_VALUES = {
    "aws": ["storage.root=s3://acme-ml/foundry", "cluster.image=123.dkr.ecr.us-west-2.amazonaws.com/foundry:0.1.0",
            "cluster.gpu_image=123.dkr.ecr.us-west-2.amazonaws.com/foundry:0.1.0-gpu",
            "cluster.cloud.iam_instance_profile=arn:aws:iam::210987654321:instance-profile/foundry-ray-worker"],
    "gcp": ["storage.root=gs://acme-ml/foundry", "cluster.image=europe-docker.pkg.dev/acme-ml/foundry/foundry:0.1.0",
            "cluster.gpu_image=europe-docker.pkg.dev/acme-ml/foundry/foundry:0.1.0-gpu", "cluster.cloud.project=acme-ml",
            "cluster.cloud.service_account=foundry-ray-worker@acme-ml.iam.gserviceaccount.com"],
    "kuberay": ["storage.root=gs://acme-ml/foundry", "cluster.image=ghcr.io/acme/foundry:0.1.0",
                "cluster.gpu_image=ghcr.io/acme/foundry:0.1.0-gpu"],
}


@pytest.mark.parametrize("kind", ["aws", "gcp", "kuberay"])
def test_shipped_placeholders_render_with_a_warning_per_key(kind):
    with pytest.warns(placeholders.PlaceholderWarning) as record:
        docs = render.render(_load(kind))
    assert docs  # rendered all the same, for a look
    keys = {str(w.message).split(":", 1)[0] for w in record if w.category is placeholders.PlaceholderWarning}
    # Exactly the keys the rendered files use: aws's example git_url is not cloned (install.source=image),
    # kuberay has no cloud section, and the default storage root is not a placeholder.
    assert keys == SHIPPED_PLACEHOLDERS[kind]


@pytest.mark.parametrize("kind", ["aws", "gcp", "kuberay"])
def test_placeholders_fail_when_strict(kind, tmp_path):
    msg = _config_error(lambda: render.render(_load(kind), strict=True))
    assert msg.startswith("storage.root: ") and "--strict" in msg
    assert all(key in msg for key in SHIPPED_PLACEHOLDERS[kind])
    # The config field does the same, and nothing is written.
    strict_cfg = _load(kind, "cluster.placeholders=fail")
    assert msg == _config_error(lambda: render.write(strict_cfg, tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    # strict=False overrides the field: a look at the files is always possible.
    with pytest.warns(placeholders.PlaceholderWarning):
        assert render.render(strict_cfg, strict=False)


@pytest.mark.parametrize("kind", ["aws", "gcp", "kuberay"])
def test_own_values_render_quietly_even_when_strict(kind, recwarn):
    docs = render.render(_load(kind, *OWN_VALUES[kind]), strict=True)
    assert docs and not [w for w in recwarn if w.category is placeholders.PlaceholderWarning]


def test_only_used_keys_are_scanned():
    cfg = _load("aws", *OWN_VALUES["aws"], "cluster.install.source=git")
    assert [p.key for p in placeholders.find(cfg)] == ["cluster.install.git_url"]  # cloned now
    cfg = _load("kuberay", *OWN_VALUES["kuberay"], "cluster.cloud.project=example-project")
    assert placeholders.find(cfg) == []  # kuberay renders nothing from cluster.cloud
    assert placeholders.find(config.load([])) == []  # cluster=local renders no cloud resources


@pytest.mark.parametrize(("value", "placeholder"), [
    ("arn:aws:iam::123456789012:role/x", True), ("ghcr.io/example-org/foundry:1", True),
    ("s3://<your-bucket>/foundry", True), ("gs://changeme/foundry", True), ("gs://your-bucket/x", True),
    ("https://example.com/foundry.git", True), ("gs://acme-examples/foundry", False),
    ("counterexample", False), ("arn:aws:iam::1234567890123:role/x", False), ("us-west-2", False),
])
def test_placeholder_patterns(value, placeholder):
    assert any(p.search(value) for p, _ in placeholders.PATTERNS) is placeholder


def test_a_wrong_placeholder_policy_names_the_key():
    msg = _config_error(lambda: _load("aws", "cluster.placeholders=maybe"))
    assert "cluster.placeholders" in msg and "warn, fail" in msg


def test_cli_render_strict_exits_2_on_placeholders(tmp_path):
    proc = _cli("render", "cluster=kuberay", "--strict", "--out", str(tmp_path / "k8s"))
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: storage.root: ") and "cluster.image" in proc.stderr
    assert not (tmp_path / "k8s").exists()
