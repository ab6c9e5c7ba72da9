"""The ``tracking`` section (``conf/config.yaml``): optional MLflow experiment tracking."""

from __future__ import annotations

from dataclasses import dataclass, field

from foundry.config.common import require

# Object stores hold MLflow's artifacts, never its tracking store (runs, params, metrics).
_NOT_TRACKING_STORES = ("s3", "gs", "gcs", "abfs", "abfss", "az", "wasb", "wasbs", "hdfs", "viewfs")


@dataclass
class MlflowTrackingConfig:
    """Training runs and Tune trials logged to MLflow (foundry/train/tracking.py): parameters, metrics and
    tags only, never a model. The registry stays the record of what was trained and what serves."""

    enabled: bool = False
    # A local folder, file://, http(s):// (a tracking server) or any MLflow tracking URI; null: <storage.root>/mlruns.
    uri: str | None = None
    experiment: str | None = None  # null: model_name

    def validate(self, storage_root: str) -> None:
        if not self.enabled:
            return
        require(self.experiment is None or bool(self.experiment.strip()), "tracking.mlflow.experiment",
                "must be a non-empty name, or null for model_name")
        uri = self.uri if self.uri is not None else storage_root
        key = "tracking.mlflow.uri"
        require(bool(uri.strip()), key, "must not be empty (null: <storage.root>/mlruns)")
        scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
        if self.uri is None:
            require(scheme in ("", "file"), key,
                    f"is null, so runs would go under storage.root ({storage_root}), which MLflow cannot track "
                    "into: set a tracking server (http(s)://...) or a local folder")
        require(scheme not in _NOT_TRACKING_STORES, key,
                f"{uri!r} is an object store, which MLflow cannot track into: set a tracking server "
                "(http(s)://...), a database URI or a local folder")


@dataclass
class TrackingConfig:
    mlflow: MlflowTrackingConfig = field(default_factory=MlflowTrackingConfig)

    def validate(self, storage_root: str) -> None:
        self.mlflow.validate(storage_root)
