"""Typed configuration: the schema that every Hydra config and override is checked against.

Hydra composes YAML from ``conf/``; the dataclasses here are registered in Hydra's ConfigStore as
the schema of the composed tree, so an unknown key or a wrong type fails while composing (Hydra
names the key), and ``to_typed`` then checks values that a type cannot express (ranges, sums,
cross-field rules), naming the key too. Both happen before any Ray work starts.

One module per section, mirroring ``conf/``'s groups, each dataclass with its own ``validate()``
next to it: ``data``, ``model``, ``trainer``, ``tune``, ``storage``, ``promotion``, ``serve``,
``cluster`` (with ``nodes`` and ``kuberay``), ``drift``, ``tracking``, ``demo``; ``root`` holds
``FoundryConfig`` and the rules that cross sections, ``loading`` composes and converts. Code that needs
one section imports it from here (``from foundry.config import ServeConfig``) and takes only that.

The defaults shown here are only fallbacks for keys a YAML file leaves out; the YAML files in
``conf/`` are the single source of truth for the values the platform runs with.
"""

from foundry.config.cluster import (
    CloudConfig,
    ClusterAuthConfig,
    ClusterConfig,
    ClusterKind,
    IngressConfig,
    IngressKind,
    InstallConfig,
    InstallSource,
    PlaceholderPolicy,
    TokenSource,
)
from foundry.config.data import (
    DataConfig,
    FeatureSpec,
    FeatureType,
    SourceConfig,
    SourceFormat,
    SplitConfig,
    SyntheticSourceConfig,
    Task,
    UnknownCategoryPolicy,
    ValidationConfig,
)
from foundry.config.demo import DemoConfig, DemoTrafficConfig
from foundry.config.drift import (
    AlarmMethod,
    AlarmPolicy,
    AlarmWeights,
    ConceptDriftConfig,
    ConceptMethod,
    Correction,
    DriftAlarmConfig,
    DriftConfig,
    DriftDetectorsConfig,
    DriftSinkConfig,
    DriftWindowConfig,
    MonitorActorConfig,
    MultivariateDriftConfig,
    MultivariateMethod,
    OnlineDriftConfig,
    OnlineMethod,
    PredictionDriftConfig,
    RetrainConfig,
    RetrainDataPolicy,
    TabularDriftConfig,
)
from foundry.config.kuberay import K8sResourcesConfig, KubeRayConfig, KubeRayJobConfig, KubeRayServiceConfig
from foundry.config.model import ModelConfig
from foundry.config.nodes import AutoscalingConfig, HeadNodeConfig, WorkerTypeConfig
from foundry.config.promotion import LiveRolloutConfig, PromotionConfig, PromotionPolicy, RolloutMode
from foundry.config.root import FoundryConfig, RayConfig, register_schema, validate
from foundry.config.serve import (
    OutOfRangePolicy,
    ProxyLocation,
    RepeatLabelPolicy,
    ServeAuthConfig,
    ServeAutoscalingConfig,
    ServeBatchingConfig,
    ServeConfig,
    ServeFeedbackConfig,
    ServeHttpConfig,
    ServeInputPolicyConfig,
    ServeLimitsConfig,
    UnknownCategoryServePolicy,
)
from foundry.config.storage import StorageConfig, StorageRetentionConfig, StorageTablesConfig
from foundry.config.tracking import MlflowTrackingConfig, TrackingConfig
from foundry.config.trainer import TrainerConfig
from foundry.config.tune import (
    TUNABLE_SECTIONS,
    AshaSchedulerConfig,
    SearchDimension,
    SearchKind,
    TuneConfig,
    TuneSpaceConfig,
)

# Composing and converting (foundry/config/loading.py) needs Hydra and OmegaConf (~0.3 s of import);
# the schema does not. So these names are imported on first use: a training worker, which only
# unpickles its TrainerConfig and Task, starts without either (tests/unit/test_config_imports.py).
_FROM_LOADING = ("CONF_DIR", "_describe", "compose", "from_container", "load", "to_container", "to_typed", "to_yaml")


def __getattr__(name: str):
    if name in _FROM_LOADING:
        from foundry.config import loading

        return getattr(loading, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "_describe", "AlarmMethod", "AlarmPolicy", "AlarmWeights", "AshaSchedulerConfig",
    "AutoscalingConfig", "CloudConfig", "ClusterAuthConfig", "ClusterConfig", "ClusterKind", "compose",
    "ConceptDriftConfig", "ConceptMethod", "CONF_DIR", "Correction", "DataConfig", "DemoConfig",
    "DemoTrafficConfig", "DriftAlarmConfig", "DriftConfig", "DriftDetectorsConfig", "DriftSinkConfig",
    "DriftWindowConfig", "FeatureSpec", "FeatureType", "FoundryConfig", "from_container",
    "HeadNodeConfig", "IngressConfig", "IngressKind", "InstallConfig", "InstallSource",
    "K8sResourcesConfig", "KubeRayConfig", "KubeRayJobConfig", "KubeRayServiceConfig",
    "LiveRolloutConfig", "load", "MlflowTrackingConfig", "ModelConfig", "MonitorActorConfig",
    "MultivariateDriftConfig", "MultivariateMethod", "OnlineDriftConfig", "OnlineMethod",
    "OutOfRangePolicy", "PlaceholderPolicy", "PredictionDriftConfig", "PromotionConfig",
    "PromotionPolicy", "ProxyLocation", "RayConfig", "register_schema", "RepeatLabelPolicy",
    "RetrainConfig", "RetrainDataPolicy", "RolloutMode", "SearchDimension", "SearchKind",
    "ServeAuthConfig", "ServeAutoscalingConfig", "ServeBatchingConfig", "ServeConfig",
    "ServeFeedbackConfig", "ServeHttpConfig", "ServeInputPolicyConfig", "ServeLimitsConfig",
    "SourceConfig", "SourceFormat", "SplitConfig", "StorageConfig", "StorageRetentionConfig",
    "StorageTablesConfig", "SyntheticSourceConfig", "TabularDriftConfig", "Task", "to_container",
    "to_typed", "to_yaml", "TokenSource", "TrackingConfig", "TrainerConfig", "TUNABLE_SECTIONS",
    "TuneConfig", "TuneSpaceConfig", "UnknownCategoryPolicy", "UnknownCategoryServePolicy", "validate",
    "ValidationConfig", "WorkerTypeConfig",
]
