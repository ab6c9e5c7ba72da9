"""The ``serve`` section (``conf/serve/``): the Serve application, its HTTP limits, auth, feedback and autoscaling."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from foundry.config.common import SERVE_NAME, bounded, check_bounds, require
from foundry.errors import ConfigError


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

    def validate(self) -> None:
        require(bool(self.host), "serve.http.host", "must not be empty")
        require(0 < self.port < 65536, "serve.http.port", f"must be a TCP port, got {self.port}")
        require(self.request_timeout_s is None or self.request_timeout_s > 0, "serve.http.request_timeout_s",
                "must be > 0 (or null for no timeout)")


@dataclass
class ServeBatchingConfig:
    enabled: bool = True
    max_batch_size: int = bounded(32, ge=1)
    batch_wait_timeout_s: float = bounded(0.002, ge=0)

    def validate(self) -> None:
        check_bounds(self, "serve.batching")


@dataclass
class ServeAutoscalingConfig:
    min_replicas: int = bounded(1, ge=0)
    initial_replicas: int | None = None
    max_replicas: int = 1
    target_ongoing_requests: float = bounded(8.0, gt=0)
    upscale_delay_s: float = bounded(5.0, ge=0)
    downscale_delay_s: float = bounded(60.0, ge=0)

    def validate(self) -> None:
        check_bounds(self, "serve.autoscaling")
        require(self.max_replicas >= max(1, self.min_replicas), "serve.autoscaling.max_replicas",
                f"must be >= 1 and >= min_replicas ({self.min_replicas}), got {self.max_replicas}")
        if self.initial_replicas is not None:
            require(self.min_replicas <= self.initial_replicas <= self.max_replicas, "serve.autoscaling.initial_replicas",
                    f"must be within [min_replicas, max_replicas], got {self.initial_replicas}")


@dataclass
class ServeAuthConfig:
    """The API keys required on /predict, /model and /feedback; turning them off must be explicit.
    A feedback key (``feedback_key_env`` or ``feedback_key_file``) makes /feedback take only it."""

    enabled: bool = True
    api_key_env: str | None = "FOUNDRY_API_KEY"
    api_key_file: str | None = None
    api_key_sha256_env: str | None = "FOUNDRY_API_KEY_SHA256"  # carries salted digests (foundry.serving.keys)
    feedback_key_env: str | None = None
    feedback_key_file: str | None = None
    feedback_key_sha256_env: str | None = "FOUNDRY_FEEDBACK_KEY_SHA256"

    def validate(self) -> None:
        if self.enabled:
            require(bool(self.api_key_env) or bool(self.api_key_file), "serve.auth",
                    "auth is on but neither api_key_env nor api_key_file is set "
                    "(set serve.auth.enabled=false to run without a key, explicitly)")
            require(bool(self.api_key_file) or bool(self.api_key_sha256_env), "serve.auth.api_key_sha256_env",
                    "must name the variable that carries the key's digests to the replicas (or set api_key_file)")
            if self.feedback_key_env or self.feedback_key_file:
                require(bool(self.feedback_key_file) or bool(self.feedback_key_sha256_env), "serve.auth.feedback_key_sha256_env",
                        "must name the variable that carries the feedback key's digests to the replicas "
                        "(or set feedback_key_file)")
                for name in ("env", "file", "sha256_env"):
                    mine, theirs = getattr(self, f"feedback_key_{name}"), getattr(self, f"api_key_{name}")
                    require(not mine or mine != theirs, f"serve.auth.feedback_key_{name}",
                            f"must differ from serve.auth.api_key_{name} ({theirs}): the feedback key is a separate key")


class RepeatLabelPolicy(str, Enum):
    """A second label for a request id that already has one (foundry/serving/ledger.py)."""

    refuse = "refuse"  # 409: the first label stands
    correct = "correct"  # taken and stored as a correction (column ``correction``); readers take the newest


@dataclass
class ServeFeedbackConfig:
    """Labels with provenance: only for ids this model answered within ``window_s``, once."""

    provenance: bool = True
    window_s: float = bounded(86_400.0, gt=0)  # a label later than this after its answer is refused (404)
    on_repeat: RepeatLabelPolicy = RepeatLabelPolicy.refuse
    max_ids: int = bounded(20_000_000, ge=1000)  # answered ids remembered (8 bytes each); the oldest go first beyond it
    handover_s: float = 0.2  # replicas hand the ids they answered to the ledger this often (one call each)
    grace_s: float = bounded(2.0, ge=0, le=60)  # how long an id not yet handed over by the replica that answered it is waited for
    flush_s: float = bounded(0.5, gt=0, le=60)  # labels are written in one file per replica per flush; /feedback answers after it

    def validate(self) -> None:
        check_bounds(self, "serve.feedback")
        require(0 < self.handover_s <= self.grace_s or self.grace_s == 0, "serve.feedback.handover_s",
                f"must be > 0 and <= grace_s ({self.grace_s}), got {self.handover_s}: else a label sent right after its "
                "answer finds its id not handed over yet")


@dataclass
class ServeLimitsConfig:
    max_rows: int = bounded(1000, ge=1)
    max_body_bytes: int = bounded(1_048_576, ge=1024)

    def validate(self) -> None:
        check_bounds(self, "serve.limits")


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
    max_ongoing_requests: int = bounded(64, ge=1)
    num_cpus: float = bounded(1.0, ge=0)
    torch_threads: int = bounded(1, ge=1)
    use_gpu: bool = False
    gpus_per_replica: float = bounded(1.0, gt=0)
    access_log: bool = True
    auth: ServeAuthConfig = field(default_factory=ServeAuthConfig)
    limits: ServeLimitsConfig = field(default_factory=ServeLimitsConfig)
    feedback: ServeFeedbackConfig = field(default_factory=ServeFeedbackConfig)
    input_policy: ServeInputPolicyConfig = field(default_factory=ServeInputPolicyConfig)

    def validate(self) -> None:
        from foundry.errors import RegistryError
        from foundry.registry.names import LATEST, check_alias, is_version_id

        check_bounds(self, "serve")
        require(bool(SERVE_NAME.fullmatch(self.app_name)), "serve.app_name",
                f"use letters, digits, '.', '-' or '_', got {self.app_name!r}")
        require(self.route_prefix.startswith("/") and (self.route_prefix == "/" or not self.route_prefix.endswith("/")),
                "serve.route_prefix", f"must start with '/' and not end with one, got {self.route_prefix!r}")
        if not (self.model_ref == LATEST or is_version_id(self.model_ref)):
            try:
                check_alias(self.model_ref)
            except RegistryError as exc:
                raise ConfigError(f"serve.model_ref: not a version id, 'latest' or an alias name ({exc})") from exc
        self.http.validate()
        self.batching.validate()
        if self.batching.enabled:
            require(self.max_ongoing_requests >= self.batching.max_batch_size, "serve.max_ongoing_requests",
                    f"must be >= serve.batching.max_batch_size ({self.batching.max_batch_size}), or a batch can never fill")
        self.autoscaling.validate()
        self.auth.validate()
        self.limits.validate()
        self.feedback.validate()
