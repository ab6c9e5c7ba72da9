"""Typed configuration: the schema that every Hydra config and override is checked against.

Hydra composes YAML from ``conf/``; the dataclasses here are registered in Hydra's ConfigStore as
the schema of the composed tree, so an unknown key or a wrong type fails while composing (Hydra
names the key), and ``to_typed`` then checks values that a type cannot express (ranges, sums,
cross-field rules), naming the key too. Both happen before any Ray work starts.

The defaults shown here are only fallbacks for keys a YAML file leaves out; the YAML files in
``conf/`` are the single source of truth for the values the platform runs with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from foundry.errors import ConfigError

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"


class Task(str, Enum):
    binary = "binary"
    multiclass = "multiclass"
    regression = "regression"


class FeatureType(str, Enum):
    numeric = "numeric"
    categorical = "categorical"


class SourceFormat(str, Enum):
    parquet = "parquet"
    csv = "csv"


class UnknownCategoryPolicy(str, Enum):
    """What validation does with a categorical value outside the schema's ``values``."""

    error = "error"  # reject the data set
    allow = "allow"  # keep it; the preprocessor maps it to the shared 'unknown' embedding


class PromotionPolicy(str, Enum):
    never = "never"  # register only
    always = "always"  # move the alias to every new version
    if_better = "if_better"  # move it only if the new version beats the current one on the same test split


@dataclass
class FeatureSpec:
    name: str = MISSING
    type: FeatureType = MISSING
    min: float | None = None
    max: float | None = None
    values: list[str] | None = None
    nullable: bool = False
    on_unknown: UnknownCategoryPolicy = UnknownCategoryPolicy.error


@dataclass
class SyntheticSourceConfig:
    """Generate the bundled data set at ``source.path`` when the file is not there yet."""

    generator: str = "churn"
    scenario: str = "baseline"
    rows: int = 60_000
    seed: int = 0


@dataclass
class SourceConfig:
    path: str = MISSING
    format: SourceFormat = SourceFormat.parquet
    synthetic: SyntheticSourceConfig | None = None


@dataclass
class SplitConfig:
    train: float = 0.8
    val: float = 0.1
    test: float = 0.1
    seed: int = 0
    key: str | None = None


@dataclass
class ValidationConfig:
    min_rows: int = 100
    max_null_fraction: float = 0.05


@dataclass
class DataConfig:
    name: str = MISSING
    task: Task = MISSING
    label: str = MISSING
    classes: list[str] | None = None
    features: list[FeatureSpec] = MISSING
    source: SourceConfig = field(default_factory=SourceConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    reference_rows: int = 5_000
    materialize: bool = True


@dataclass
class ModelConfig:
    arch: str = "mlp"
    hidden_sizes: list[int] = field(default_factory=lambda: [128, 64])
    dropout: float = 0.1
    activation: str = "relu"
    max_embedding_dim: int = 16


@dataclass
class TrainerConfig:
    num_workers: int = 2
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 1.0
    epochs: int = 20
    batch_size: int = 512
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    early_stopping_patience: int = 3
    early_stopping_min_delta: float = 1e-4
    max_failures: int = 2
    checkpoints_to_keep: int = 2
    amp: bool = True
    seed: int = 0


@dataclass
class StorageConfig:
    root: str = MISSING

    @property
    def registry(self) -> str:
        return f"{self.root.rstrip('/')}/registry"

    @property
    def checkpoints(self) -> str:
        return f"{self.root.rstrip('/')}/checkpoints"

    @property
    def datasets(self) -> str:
        return f"{self.root.rstrip('/')}/datasets"

    @property
    def feedback(self) -> str:
        return f"{self.root.rstrip('/')}/feedback"


@dataclass
class PromotionConfig:
    policy: PromotionPolicy = PromotionPolicy.if_better
    alias: str = "production"
    min_improvement: float = 0.0


@dataclass
class RayConfig:
    address: str | None = None


class ProxyLocation(str, Enum):
    """Where Ray Serve runs its HTTP proxies (Ray's own ``ProxyLocation`` names)."""

    Disabled = "Disabled"
    HeadOnly = "HeadOnly"
    EveryNode = "EveryNode"


class UnknownCategoryServePolicy(str, Enum):
    """What /predict does with a categorical value outside the schema's ``values``."""

    schema = "schema"  # follow each feature's data.features[].on_unknown (error -> reject, allow -> allow)
    reject = "reject"  # 422 for every feature
    allow = "allow"  # accept for every feature; the model sees its 'unknown' embedding


class OutOfRangePolicy(str, Enum):
    """What /predict does with a numeric value outside the schema's min/max."""

    reject = "reject"  # 422 naming the field
    clip = "clip"  # clip to [min, max] before the model sees it
    allow = "allow"  # pass through (the model extrapolates)


@dataclass
class ServeHttpConfig:
    host: str = "127.0.0.1"
    port: int = 8000
    request_timeout_s: float | None = None


@dataclass
class ServeBatchingConfig:
    enabled: bool = True
    max_batch_size: int = 32
    batch_wait_timeout_s: float = 0.002


@dataclass
class ServeAutoscalingConfig:
    min_replicas: int = 1
    initial_replicas: int | None = None
    max_replicas: int = 1
    target_ongoing_requests: float = 8.0
    upscale_delay_s: float = 5.0
    downscale_delay_s: float = 60.0


@dataclass
class ServeAuthConfig:
    """The API key required on /predict, /feedback and /model; turning it off must be explicit."""

    enabled: bool = True
    api_key_env: str | None = "FOUNDRY_API_KEY"
    api_key_file: str | None = None


@dataclass
class ServeLimitsConfig:
    max_rows: int = 1000
    max_body_bytes: int = 1_048_576


@dataclass
class ServeInputPolicyConfig:
    unknown_category: UnknownCategoryServePolicy = UnknownCategoryServePolicy.schema
    out_of_range: OutOfRangePolicy = OutOfRangePolicy.reject


@dataclass
class ServeConfig:
    app_name: str = "foundry"
    route_prefix: str = "/"
    model_ref: str = "production"
    http: ServeHttpConfig = field(default_factory=ServeHttpConfig)
    proxy_location: ProxyLocation = ProxyLocation.HeadOnly
    batching: ServeBatchingConfig = field(default_factory=ServeBatchingConfig)
    autoscaling: ServeAutoscalingConfig = field(default_factory=ServeAutoscalingConfig)
    max_ongoing_requests: int = 64
    num_cpus: float = 1.0
    torch_threads: int = 1
    use_gpu: bool = False
    gpus_per_replica: float = 1.0
    access_log: bool = True
    auth: ServeAuthConfig = field(default_factory=ServeAuthConfig)
    limits: ServeLimitsConfig = field(default_factory=ServeLimitsConfig)
    input_policy: ServeInputPolicyConfig = field(default_factory=ServeInputPolicyConfig)


@dataclass
class WorkerTypeConfig:
    """One kind of worker node the autoscaler may add (and remove when idle)."""

    cpus: float = 2.0
    gpus: int = 0
    object_store_gb: float = 1.0
    min_workers: int = 0
    max_workers: int = 2


@dataclass
class AutoscalingConfig:
    """Ray's autoscaler for the local cluster (fake multi-node provider: worker 'nodes' are extra
    raylets on this machine, added on demand and removed when idle)."""

    enabled: bool = False
    max_workers: int = 4
    idle_timeout_minutes: float = 1.0
    upscaling_speed: float = 1.0
    update_interval_s: int = 1
    worker_types: dict[str, WorkerTypeConfig] = field(default_factory=dict)


@dataclass
class ClusterConfig:
    name: str = "local"
    head_host: str = "127.0.0.1"
    gcs_port: int = 6379
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8265
    head_num_cpus: int | None = None
    token_path: str = "~/.ray/auth_token"
    env: dict[str, str] = field(default_factory=dict)
    autoscaling: AutoscalingConfig = field(default_factory=AutoscalingConfig)


@dataclass
class FoundryConfig:
    model_name: str = MISSING
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    promotion: PromotionConfig = field(default_factory=PromotionConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    trigger: str = "manual"


def register_schema() -> None:
    """Make the schema known to Hydra; ``conf/config.yaml`` names it first in its defaults list."""
    ConfigStore.instance().store(name="foundry_schema", node=FoundryConfig)


register_schema()


def _require(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{key}: {message}")


def _check_data(data: DataConfig) -> None:
    _require(bool(data.features), "data.features", "at least one feature is required")
    names = [f.name for f in data.features]
    dupes = sorted({n for n in names if names.count(n) > 1})
    _require(not dupes, "data.features", f"duplicate feature names {dupes}")
    _require(data.label not in names, "data.label", f"label {data.label!r} is also listed as a feature")
    for i, f in enumerate(data.features):
        key = f"data.features[{i}] ({f.name})"
        if f.type is FeatureType.numeric:
            _require(f.values is None, key, "a numeric feature takes min/max, not values")
            if f.min is not None and f.max is not None:
                _require(f.min <= f.max, key, f"min {f.min} is greater than max {f.max}")
        else:
            _require(f.min is None and f.max is None, key, "a categorical feature takes values, not min/max")
            _require(f.values is None or len(f.values) > 0, key, "values, when given, must not be empty")
    if data.task is Task.regression:
        _require(data.classes is None, "data.classes", "a regression task has no classes")
    else:
        _require(data.classes is not None and len(data.classes) >= 2, "data.classes",
                 f"a {data.task.value} task needs the list of label values (at least 2)")
        dupes = sorted({c for c in data.classes if data.classes.count(c) > 1})
        _require(not dupes, "data.classes", f"duplicate classes {dupes}")
        if data.task is Task.binary:
            _require(len(data.classes) == 2, "data.classes",
                     f"a binary task needs exactly 2 classes, got {len(data.classes)}")
    s = data.split
    for name in ("train", "val", "test"):
        _require(0.0 < getattr(s, name) < 1.0, f"data.split.{name}", f"must be in (0, 1), got {getattr(s, name)}")
    _require(abs(s.train + s.val + s.test - 1.0) < 1e-6, "data.split",
             f"train + val + test must be 1.0, got {s.train + s.val + s.test:.4f}")
    _require(data.validation.min_rows >= 1, "data.validation.min_rows", "must be >= 1")
    _require(0.0 <= data.validation.max_null_fraction <= 1.0, "data.validation.max_null_fraction",
             f"must be in [0, 1], got {data.validation.max_null_fraction}")
    _require(data.reference_rows >= 100, "data.reference_rows", f"must be >= 100, got {data.reference_rows}")
    if data.source.synthetic is not None:
        _require(data.source.synthetic.rows >= 1, "data.source.synthetic.rows", "must be >= 1")


def _check_model(model: ModelConfig) -> None:
    _require(model.arch == "mlp", "model.arch", f"unknown architecture {model.arch!r} (known: mlp)")
    _require(len(model.hidden_sizes) >= 1 and all(h >= 1 for h in model.hidden_sizes), "model.hidden_sizes",
             f"needs one or more positive sizes, got {list(model.hidden_sizes)}")
    _require(0.0 <= model.dropout < 1.0, "model.dropout", f"must be in [0, 1), got {model.dropout}")
    _require(model.activation in ("relu", "gelu", "silu"), "model.activation",
             f"unknown activation {model.activation!r} (known: relu, gelu, silu)")
    _require(model.max_embedding_dim >= 1, "model.max_embedding_dim", "must be >= 1")


def _check_trainer(t: TrainerConfig) -> None:
    _require(t.num_workers >= 1, "trainer.num_workers", f"must be >= 1, got {t.num_workers}")
    _require(t.cpus_per_worker > 0, "trainer.cpus_per_worker", f"must be > 0, got {t.cpus_per_worker}")
    _require(t.gpus_per_worker > 0, "trainer.gpus_per_worker", f"must be > 0, got {t.gpus_per_worker}")
    _require(t.epochs >= 1, "trainer.epochs", f"must be >= 1, got {t.epochs}")
    _require(t.batch_size >= 1, "trainer.batch_size", f"must be >= 1, got {t.batch_size}")
    _require(t.optimizer in ("adam", "adamw", "sgd"), "trainer.optimizer",
             f"unknown optimizer {t.optimizer!r} (known: adam, adamw, sgd)")
    _require(t.lr > 0, "trainer.lr", f"must be > 0, got {t.lr}")
    _require(t.weight_decay >= 0, "trainer.weight_decay", f"must be >= 0, got {t.weight_decay}")
    _require(t.early_stopping_patience >= 1, "trainer.early_stopping_patience", "must be >= 1")
    _require(t.max_failures >= -1, "trainer.max_failures", "must be >= 0 (or -1 for unlimited)")
    _require(t.checkpoints_to_keep >= 1, "trainer.checkpoints_to_keep", "must be >= 1")


def _check_cluster(c: ClusterConfig) -> None:
    for key in ("gcs_port", "dashboard_port"):
        _require(0 < getattr(c, key) < 65536, f"cluster.{key}", f"must be a TCP port, got {getattr(c, key)}")
    _require(c.head_num_cpus is None or c.head_num_cpus >= 0, "cluster.head_num_cpus", "must be >= 0")
    a = c.autoscaling
    if not a.enabled:
        return
    _require(bool(a.worker_types), "cluster.autoscaling.worker_types", "autoscaling needs at least one worker type")
    _require(a.max_workers >= 1, "cluster.autoscaling.max_workers", f"must be >= 1, got {a.max_workers}")
    _require(a.idle_timeout_minutes > 0, "cluster.autoscaling.idle_timeout_minutes", "must be > 0")
    _require(a.upscaling_speed > 0, "cluster.autoscaling.upscaling_speed", "must be > 0")
    for name, w in a.worker_types.items():
        key = f"cluster.autoscaling.worker_types.{name}"
        _require(name != "ray.head.default", key, "this name is reserved for the head node")
        _require(w.cpus > 0 or w.gpus > 0, key, "a worker type needs cpus or gpus")
        _require(w.gpus >= 0 and w.object_store_gb > 0, key, "gpus must be >= 0 and object_store_gb > 0")
        _require(0 <= w.min_workers <= w.max_workers, key,
                 f"needs 0 <= min_workers <= max_workers, got {w.min_workers} > {w.max_workers}"
                 if w.min_workers > w.max_workers else f"min_workers must be >= 0, got {w.min_workers}")


def _check_serve(s: ServeConfig) -> None:
    from foundry.errors import RegistryError
    from foundry.registry.names import LATEST, check_alias, is_version_id

    _require(bool(_SERVE_NAME.fullmatch(s.app_name)), "serve.app_name",
             f"use letters, digits, '.', '-' or '_', got {s.app_name!r}")
    _require(s.route_prefix.startswith("/") and (s.route_prefix == "/" or not s.route_prefix.endswith("/")),
             "serve.route_prefix", f"must start with '/' and not end with one, got {s.route_prefix!r}")
    if not (s.model_ref == LATEST or is_version_id(s.model_ref)):
        try:
            check_alias(s.model_ref)
        except RegistryError as exc:
            raise ConfigError(f"serve.model_ref: not a version id, 'latest' or an alias name ({exc})") from exc
    _require(bool(s.http.host), "serve.http.host", "must not be empty")
    _require(0 < s.http.port < 65536, "serve.http.port", f"must be a TCP port, got {s.http.port}")
    _require(s.http.request_timeout_s is None or s.http.request_timeout_s > 0, "serve.http.request_timeout_s",
             "must be > 0 (or null for no timeout)")
    b = s.batching
    _require(b.max_batch_size >= 1, "serve.batching.max_batch_size", f"must be >= 1, got {b.max_batch_size}")
    _require(b.batch_wait_timeout_s >= 0, "serve.batching.batch_wait_timeout_s", "must be >= 0")
    _require(s.max_ongoing_requests >= 1, "serve.max_ongoing_requests", f"must be >= 1, got {s.max_ongoing_requests}")
    if b.enabled:
        _require(s.max_ongoing_requests >= b.max_batch_size, "serve.max_ongoing_requests",
                 f"must be >= serve.batching.max_batch_size ({b.max_batch_size}), or a batch can never fill")
    a = s.autoscaling
    _require(a.min_replicas >= 0, "serve.autoscaling.min_replicas", f"must be >= 0, got {a.min_replicas}")
    _require(a.max_replicas >= max(1, a.min_replicas), "serve.autoscaling.max_replicas",
             f"must be >= 1 and >= min_replicas ({a.min_replicas}), got {a.max_replicas}")
    if a.initial_replicas is not None:
        _require(a.min_replicas <= a.initial_replicas <= a.max_replicas, "serve.autoscaling.initial_replicas",
                 f"must be within [min_replicas, max_replicas], got {a.initial_replicas}")
    _require(a.target_ongoing_requests > 0, "serve.autoscaling.target_ongoing_requests", "must be > 0")
    for key in ("upscale_delay_s", "downscale_delay_s"):
        _require(getattr(a, key) >= 0, f"serve.autoscaling.{key}", "must be >= 0")
    _require(s.num_cpus >= 0, "serve.num_cpus", f"must be >= 0, got {s.num_cpus}")
    _require(s.torch_threads >= 1, "serve.torch_threads", f"must be >= 1, got {s.torch_threads}")
    _require(s.gpus_per_replica > 0, "serve.gpus_per_replica", f"must be > 0, got {s.gpus_per_replica}")
    if s.auth.enabled:
        _require(bool(s.auth.api_key_env) or bool(s.auth.api_key_file), "serve.auth",
                 "auth is on but neither api_key_env nor api_key_file is set "
                 "(set serve.auth.enabled=false to run without a key, explicitly)")
    _require(s.limits.max_rows >= 1, "serve.limits.max_rows", f"must be >= 1, got {s.limits.max_rows}")
    _require(s.limits.max_body_bytes >= 1024, "serve.limits.max_body_bytes",
             f"must be >= 1024, got {s.limits.max_body_bytes}")


_SERVE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def validate(cfg: FoundryConfig) -> FoundryConfig:
    """Check what types cannot: ranges, sums and cross-field rules. Raises ConfigError naming the key."""
    _require(bool(cfg.model_name) and "/" not in cfg.model_name, "model_name",
             f"must be a non-empty name without '/', got {cfg.model_name!r}")
    _require(bool(cfg.storage.root), "storage.root", "must not be empty")
    _check_data(cfg.data)
    _check_model(cfg.model)
    _check_trainer(cfg.trainer)
    _check_serve(cfg.serve)
    _check_cluster(cfg.cluster)
    _require(cfg.promotion.min_improvement >= 0, "promotion.min_improvement", "must be >= 0")
    return cfg


def to_typed(cfg: DictConfig) -> FoundryConfig:
    """Turn a composed Hydra config into validated dataclasses; every failure names the offending key."""
    try:
        typed = OmegaConf.to_object(cfg)
    except Exception as exc:  # omegaconf raises several error types; all mean "this config is wrong"
        raise ConfigError(_describe(exc)) from exc
    if not isinstance(typed, FoundryConfig):
        raise ConfigError("the composed config does not use foundry_schema; list it first in defaults")
    return validate(typed)


def to_container(cfg: FoundryConfig) -> dict[str, Any]:
    """The typed config as plain JSON-able data (enums as strings), e.g. to hand to a Serve deployment."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True, enum_to_str=True)


def from_container(data: dict[str, Any]) -> FoundryConfig:
    """The inverse of ``to_container``, checked exactly like a composed config."""
    try:
        merged = OmegaConf.merge(OmegaConf.structured(FoundryConfig), data)
    except Exception as exc:  # omegaconf raises several error types; all mean "this config is wrong"
        raise ConfigError(_describe(exc)) from exc
    return to_typed(merged)


def _describe(exc: BaseException) -> str:
    """Hydra often wraps the useful message (with the key) in a bare exception; surface the chain."""
    messages = []
    while exc is not None:
        text = str(exc).strip()
        if text and text not in messages:
            messages.append(text)
        exc = exc.__cause__ or exc.__context__
    return " <- ".join(messages) or "invalid configuration"


def compose(overrides: list[str] | None = None, config_name: str = "config") -> DictConfig:
    """Compose ``conf/`` outside of ``@hydra.main`` (tests, CLIs, Ray actors)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException

    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return hydra_compose(config_name=config_name, overrides=list(overrides or []))
    except HydraException as exc:
        raise ConfigError(_describe(exc)) from exc


def load(overrides: list[str] | None = None) -> FoundryConfig:
    return to_typed(compose(overrides))


def to_yaml(cfg: Any) -> str:
    """The resolved config as YAML, as stored with every model version."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg) if not isinstance(cfg, DictConfig) else cfg, resolve=True)
