"""Typed configuration: the schema that every Hydra config and override is checked against.

Hydra composes YAML from ``conf/``; the dataclasses here are registered in Hydra's ConfigStore as
the schema of the composed tree, so an unknown key or a wrong type fails while composing (Hydra
names the key), and ``to_typed`` then checks values that a type cannot express (ranges, sums,
cross-field rules), naming the key too. Both happen before any Ray work starts.

The defaults shown here are only fallbacks for keys a YAML file leaves out; the YAML files in
``conf/`` are the single source of truth for the values the platform runs with.
"""

from __future__ import annotations

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


@dataclass
class PromotionConfig:
    policy: PromotionPolicy = PromotionPolicy.if_better
    alias: str = "production"
    min_improvement: float = 0.0


@dataclass
class RayConfig:
    address: str | None = None


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


@dataclass
class FoundryConfig:
    model_name: str = MISSING
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    promotion: PromotionConfig = field(default_factory=PromotionConfig)
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


def validate(cfg: FoundryConfig) -> FoundryConfig:
    """Check what types cannot: ranges, sums and cross-field rules. Raises ConfigError naming the key."""
    _require(bool(cfg.model_name) and "/" not in cfg.model_name, "model_name",
             f"must be a non-empty name without '/', got {cfg.model_name!r}")
    _require(bool(cfg.storage.root), "storage.root", "must not be empty")
    _check_data(cfg.data)
    _check_model(cfg.model)
    _check_trainer(cfg.trainer)
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
