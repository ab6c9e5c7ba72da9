"""The serve config group and the Serve config built from it, without a cluster: valid against
Ray Serve's own schema, a model swap that is a user_config-only change, and values checked by key."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
import yaml
from ray.serve._private.deploy_utils import get_app_code_version
from ray.serve.schema import ServeApplicationSchema, ServeDeploySchema

from foundry import config
from foundry.drift import monitor_name
from foundry.errors import ConfigError
from foundry.serving.deploy_config import (
    DEPLOYMENT_NAME,
    IMPORT_PATH,
    app_config,
    build_serve_config,
    replica_config,
    with_user_config,
)
from foundry.serving.keys import parse_digests
from foundry.serving.replica_config import ReplicaConfig
from serve_apps import deploy

VERSION = "v20261124-203558-933-b9e579"


@pytest.fixture
def cfg(tmp_path):
    return config.load([f"storage.root={tmp_path}"])


def _app(serve_config: dict) -> dict:
    return app_config(serve_config, serve_config["applications"][0]["name"])


def test_default_config_is_a_valid_serve_config(cfg, tmp_path):
    built = build_serve_config(cfg, version=VERSION)
    schema = ServeDeploySchema.model_validate(built)
    assert schema.http_options.host == "127.0.0.1" and schema.http_options.port == cfg.serve.http.port
    app = _app(built)
    assert app["import_path"] == IMPORT_PATH and app["route_prefix"] == cfg.serve.route_prefix
    (dep,) = app["deployments"]
    assert dep["name"] == DEPLOYMENT_NAME
    assert dep["user_config"] == {"model": "churn", "ref": "production", "version": VERSION,
                                  "storage_root": str(tmp_path)}
    assert dep["max_ongoing_requests"] == cfg.serve.max_ongoing_requests
    a = cfg.serve.autoscaling
    assert dep["autoscaling_config"]["min_replicas"] == a.min_replicas
    assert dep["autoscaling_config"]["max_replicas"] == a.max_replicas
    assert dep["autoscaling_config"]["target_ongoing_requests"] == a.target_ongoing_requests
    assert dep["ray_actor_options"] == {"num_cpus": cfg.serve.num_cpus}
    assert "runtime_env" not in app


def test_the_replicas_rebuild_the_same_config(cfg):
    args = _app(build_serve_config(cfg))["args"]["config"]
    assert "model_ref" not in args["serve"]  # the model travels in user_config only
    rebuilt = ReplicaConfig.from_container(args)
    assert rebuilt.data == cfg.data
    assert rebuilt.serve == dataclasses.replace(cfg.serve, model_ref=rebuilt.serve.model_ref)
    assert rebuilt.model_name == cfg.model_name and rebuilt.storage_root == cfg.storage.root
    assert rebuilt.monitor_name == monitor_name(cfg.drift.monitor.name_prefix, cfg.model_name)
    assert rebuilt.monitor_namespace == cfg.drift.monitor.namespace
    assert rebuilt.sink == cfg.drift.sink
    assert rebuilt == replica_config(cfg)  # serve.model_ref is the default here, so nothing differs
    assert ReplicaConfig.from_container(rebuilt.to_container()) == rebuilt


def test_a_replicas_config_carries_no_other_section(cfg):
    """A replica gets the data and serve sections and the few settings it reads, nothing else."""
    args = _app(build_serve_config(cfg))["args"]["config"]
    assert set(args) == {"model_name", "storage_root", "monitor_name", "monitor_namespace", "sink", "data", "serve"}
    for section in ("model", "trainer", "storage", "cluster", "promotion", "ray", "drift", "tune", "demo",
                    "tracking"):
        assert section not in args
    with pytest.raises(ConfigError, match="demo"):  # a replica refuses a whole tree instead of ignoring it
        ReplicaConfig.from_container({**args, "demo": config.to_container(cfg)["demo"]})


@pytest.mark.parametrize("override", ["demo.traffic.rate_rows_per_s=7", "trainer.epochs=3", "tune=quick",
                                      "drift.window.size=300", "drift.retrain.enabled=false",
                                      "promotion.min_improvement=0.5", "storage.retention.live_days=3"])
def test_an_edit_to_another_section_leaves_the_application_args_unchanged(tmp_path, override):
    """Serve restarts the replicas when an application's args change: edits to sections the replicas do
    not read must leave them (and the whole application's code version) exactly as they were."""
    base = config.load([f"storage.root={tmp_path}"])
    edited = config.load([f"storage.root={tmp_path}", override])
    assert edited != base  # the override did change the config
    apps = [_app(build_serve_config(c, VERSION)) for c in (base, edited)]
    assert apps[0]["args"] == apps[1]["args"]
    a, b = (ServeApplicationSchema.model_validate(app) for app in apps)
    assert get_app_code_version(a) == get_app_code_version(b)


@pytest.mark.parametrize(("override", "changed"), [
    ("serve.limits.max_rows=7", "serve"), ("drift.sink.buffer_rows=7", "sink"),
    ("drift.monitor.namespace=elsewhere", "monitor_namespace"), ("drift.enabled=false", "sink"),
])
def test_an_edit_a_replica_reads_changes_its_args(tmp_path, override, changed):
    base = replica_config(config.load([f"storage.root={tmp_path}"])).to_container()
    edited = replica_config(config.load([f"storage.root={tmp_path}", override])).to_container()
    assert {k for k in base if base[k] != edited[k]} == {changed}
    if override == "drift.enabled=false":
        assert edited["sink"] is None and ReplicaConfig.from_container(edited).sink is None


def test_a_replica_checks_what_it_holds(cfg):
    args = replica_config(cfg).to_container()
    for key, value, named in [("serve", {**args["serve"], "torch_threads": 0}, "serve.torch_threads"),
                              ("sink", {**args["sink"], "buffer_rows": 0}, "drift.sink.buffer_rows"),
                              ("model_name", "a/b", "model_name"), ("storage_root", "", "storage.root"),
                              ("serve", {**args["serve"], "unknown": 1}, "unknown")]:
        with pytest.raises(ConfigError, match=named):
            ReplicaConfig.from_container({**args, key: value})


def test_a_new_model_ref_changes_only_user_config(tmp_path):
    """Serve reconfigures live replicas (no restart) exactly when the code version is unchanged."""
    a = build_serve_config(config.load([f"storage.root={tmp_path}", "serve.model_ref=production"]), VERSION)
    b = build_serve_config(config.load([f"storage.root={tmp_path}", f"serve.model_ref={VERSION}"]),
                           "v20261125-000000-000-aaaaaa")
    app_a, app_b = (ServeApplicationSchema.model_validate(_app(x)) for x in (a, b))
    assert get_app_code_version(app_a) == get_app_code_version(app_b)
    assert _app(a)["deployments"][0]["user_config"] != _app(b)["deployments"][0]["user_config"]
    swapped = with_user_config(_app(a), _app(b)["deployments"][0]["user_config"])
    assert swapped == _app(b)


def test_gpu_option(tmp_path):
    gpu = config.load([f"storage.root={tmp_path}", "serve=gpu"])
    dep = _app(build_serve_config(gpu))["deployments"][0]
    assert dep["ray_actor_options"]["num_gpus"] == gpu.serve.gpus_per_replica
    assert gpu.serve.batching.max_batch_size > config.load([f"storage.root={tmp_path}"]).serve.batching.max_batch_size


def test_runtime_env_only_when_given(cfg):
    app = _app(build_serve_config(cfg, runtime_env={"env_vars": {"FOUNDRY_API_KEY": "x" * 20}}))
    assert app["runtime_env"]["env_vars"]["FOUNDRY_API_KEY"] == "x" * 20


def test_the_replicas_runtime_env_carries_only_the_keys_digest(cfg, monkeypatch):
    """Ray writes every runtime_env to its logs: the key must not be in it, a salted digest of it is."""
    secret = "never-in-a-runtime-env-" + "Tq0Zk2Wv8yQh1XcB5nLd"
    monkeypatch.setenv("FOUNDRY_API_KEY", secret)
    monkeypatch.delenv("FOUNDRY_API_KEY_SHA256", raising=False)
    env = deploy.api_key_runtime_env(cfg.serve)
    assert set(env) == {"env_vars"} and set(env["env_vars"]) == {"FOUNDRY_API_KEY_SHA256"}
    carried = env["env_vars"]["FOUNDRY_API_KEY_SHA256"]
    assert secret not in carried and hashlib.sha256(secret.encode()).hexdigest() not in carried
    (digest,) = parse_digests(carried, "test")
    assert digest.matches(secret.encode())
    monkeypatch.delenv("FOUNDRY_API_KEY")  # a job given only the digest passes it on
    monkeypatch.setenv("FOUNDRY_API_KEY_SHA256", carried)
    assert deploy.api_key_runtime_env(cfg.serve) == env


def test_a_redeploy_with_the_same_keys_keeps_the_runtime_env(cfg, monkeypatch):
    """A fresh salt would change the runtime_env and restart every replica: the running application's
    digests are kept while they stand for exactly the configured keys, and replaced otherwise."""
    old, new = "redeploy-old-" + "mI3lw9D1fP0sQ7aZkE2uYv", "redeploy-new-" + "Hq5nR8cT2xJ6vB0pLw4gZs"
    monkeypatch.delenv("FOUNDRY_API_KEY_SHA256", raising=False)
    monkeypatch.setenv("FOUNDRY_API_KEY", old)
    running = deploy.api_key_runtime_env(cfg.serve)["env_vars"]
    assert deploy.api_key_runtime_env(cfg.serve)["env_vars"] != running  # salted: a new digest each time
    assert deploy.api_key_runtime_env(cfg.serve, running)["env_vars"] == running
    monkeypatch.setenv("FOUNDRY_API_KEY", f"{new},{old}")  # rotation: both listed -> new digests for both
    rotating = deploy.api_key_runtime_env(cfg.serve, running)["env_vars"]["FOUNDRY_API_KEY_SHA256"]
    digests = parse_digests(rotating, "test")
    assert len(digests) == 2 and all(any(d.matches(k.encode()) for d in digests) for k in (old, new))
    monkeypatch.setenv("FOUNDRY_API_KEY", new)  # the old one removed: not kept from the running list
    done = parse_digests(deploy.api_key_runtime_env(cfg.serve, {"FOUNDRY_API_KEY_SHA256": rotating})["env_vars"]
                         ["FOUNDRY_API_KEY_SHA256"], "test")
    assert len(done) == 1 and done[0].matches(new.encode()) and not done[0].matches(old.encode())


def test_a_feedback_key_travels_as_its_own_digests(tmp_path, monkeypatch):
    cfg = config.load([f"storage.root={tmp_path}", "serve.auth.feedback_key_env=MY_FEEDBACK_KEY"])
    predict, feedback = "predict-key-" + "u7Gk1Qz9Lr3Xw5Ny0Tb8", "feedback-key-" + "c2Vn6Hj4Pm8Sd1Fq7Ka3"
    monkeypatch.setenv("FOUNDRY_API_KEY", predict)
    monkeypatch.delenv("FOUNDRY_API_KEY_SHA256", raising=False)
    monkeypatch.delenv("FOUNDRY_FEEDBACK_KEY_SHA256", raising=False)
    monkeypatch.delenv("MY_FEEDBACK_KEY", raising=False)
    with pytest.raises(ConfigError, match="MY_FEEDBACK_KEY"):  # configured but missing: the deploy fails
        deploy.api_key_runtime_env(cfg.serve)
    monkeypatch.setenv("MY_FEEDBACK_KEY", feedback)
    env = deploy.api_key_runtime_env(cfg.serve)["env_vars"]
    assert set(env) == {"FOUNDRY_API_KEY_SHA256", "FOUNDRY_FEEDBACK_KEY_SHA256"}
    assert feedback not in repr(env) and predict not in repr(env)
    (fd,) = parse_digests(env["FOUNDRY_FEEDBACK_KEY_SHA256"], "test")
    assert fd.matches(feedback.encode()) and not fd.matches(predict.encode())


def test_write_never_contains_the_key(tmp_path, monkeypatch, capsys):
    secret = "do-not-write-me-0123456789"
    monkeypatch.setenv("FOUNDRY_API_KEY", secret)
    out = tmp_path / "serve.yaml"
    assert deploy.main([f"storage.root={tmp_path}", "--no-pin", "--write", str(out)]) == 0
    text = out.read_text()
    assert secret not in text
    written = yaml.safe_load(text)
    ServeDeploySchema.model_validate(written)
    assert _app(written)["deployments"][0]["user_config"]["version"] is None
    assert "serve deploy" in capsys.readouterr().out


def test_write_with_pin_needs_the_version_in_the_registry(tmp_path):
    with pytest.raises(SystemExit) as info:
        deploy.main([f"storage.root={tmp_path}", "--write", str(tmp_path / "x.yaml")])
    assert info.value.code == 4  # RegistryError: unknown model


def test_deploy_without_a_key_fails_before_touching_the_cluster(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("FOUNDRY_API_KEY", raising=False)
    monkeypatch.delenv("FOUNDRY_API_KEY_SHA256", raising=False)
    with pytest.raises(SystemExit) as info:
        deploy.main([f"storage.root={tmp_path}", "ray.address=127.0.0.1:1"])
    assert info.value.code == 2
    assert "FOUNDRY_API_KEY" in capsys.readouterr().err


@pytest.mark.parametrize(("overrides", "key"), [
    (["serve.http.port=0"], "serve.http.port"),
    (["serve.http.port=70000"], "serve.http.port"),
    (["serve.route_prefix=api"], "serve.route_prefix"),
    (["serve.route_prefix=/api/"], "serve.route_prefix"),
    (["serve.app_name=has/slash"], "serve.app_name"),
    (["serve.model_ref=../etc"], "serve.model_ref"),
    (["serve.batching.max_batch_size=0"], "serve.batching.max_batch_size"),
    (["serve.batching.batch_wait_timeout_s=-1"], "serve.batching.batch_wait_timeout_s"),
    (["serve.max_ongoing_requests=8", "serve.batching.max_batch_size=32"], "serve.max_ongoing_requests"),
    (["serve.autoscaling.min_replicas=3", "serve.autoscaling.max_replicas=2"], "serve.autoscaling.max_replicas"),
    (["serve.autoscaling.initial_replicas=5"], "serve.autoscaling.initial_replicas"),
    (["serve.autoscaling.target_ongoing_requests=0"], "serve.autoscaling.target_ongoing_requests"),
    (["serve.autoscaling.downscale_delay_s=-1"], "serve.autoscaling.downscale_delay_s"),
    (["serve.torch_threads=0"], "serve.torch_threads"),
    (["serve.num_cpus=-1"], "serve.num_cpus"),
    (["serve.limits.max_rows=0"], "serve.limits.max_rows"),
    (["serve.limits.max_body_bytes=10"], "serve.limits.max_body_bytes"),
    (["serve.auth.api_key_env=null"], "serve.auth"),
    (["serve.auth.feedback_key_env=FOUNDRY_API_KEY"], "serve.auth.feedback_key_env"),
    (["serve.auth.feedback_key_env=FB", "serve.auth.feedback_key_sha256_env=null"], "serve.auth.feedback_key_sha256_env"),
    (["serve.auth.feedback_key_env=FB", "serve.auth.feedback_key_sha256_env=FOUNDRY_API_KEY_SHA256"],
     "serve.auth.feedback_key_sha256_env"),
    (["serve.input_policy.out_of_range=ignore"], "serve.input_policy.out_of_range"),
    (["serve.proxy_location=Nowhere"], "serve.proxy_location"),
    (["serve.http.prot=1"], "serve.http.prot"),
])
def test_bad_serve_values_name_their_key(tmp_path, overrides, key):
    with pytest.raises(ConfigError) as info:
        config.load([f"storage.root={tmp_path}", *overrides])
    assert key in str(info.value)


def test_auth_off_and_file_only_are_valid(tmp_path):
    assert not config.load([f"storage.root={tmp_path}", "serve.auth.enabled=false",
                            "serve.auth.api_key_env=null"]).serve.auth.enabled
    cfg = config.load([f"storage.root={tmp_path}", "serve.auth.api_key_env=null",
                       f"serve.auth.api_key_file={tmp_path}/key"])
    assert cfg.serve.auth.api_key_file == f"{tmp_path}/key"
