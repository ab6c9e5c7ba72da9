"""The ``serve`` section (``conf/serve/``): the Serve application, its HTTP limits, auth, feedback and autoscaling."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from foundry.config.common import SERVE_NAME, require
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
    max_batch_size: int = 32
    batch_wait_timeout_s: float = 0.002

    def validate(self) -> None:
        require(self.max_batch_size >= 1, "serve.batching.max_batch_size", f"must be >= 1, got {self.max_batch_size}")
        require(self.batch_wait_timeout_s >= 0, "serve.batching.batch_wait_timeout_s", "must be >= 0")


@dataclass
class ServeAutoscalingConfig:
    min_replicas: int = 1
    initial_replicas: int | None = None
    max_replicas: int = 1
    target_ongoing_requests: float = 8.0
    upscale_delay_s: float = 5.0
    downscale_delay_s: float = 60.0

    def validate(self) -> None:
        require(self.min_replicas >= 0, "serve.autoscaling.min_replicas", f"must be >= 0, got {self.min_replicas}")
        require(self.max_replicas >= max(1, self.min_replicas), "serve.autoscaling.max_replicas",
                f"must be >= 1 and >= min_replicas ({self.min_replicas}), got {self.max_replicas}")
        if self.initial_replicas is not None:
            require(self.min_replicas <= self.initial_replicas <= self.max_replicas, "serve.autoscaling.initial_replicas",
                    f"must be within [min_replicas, max_replicas], got {self.initial_replicas}")
        require(self.target_ongoing_requests > 0, "serve.autoscaling.target_ongoing_requests", "must be > 0")
        for key in ("upscale_delay_s", "downscale_delay_s"):
            require(getattr(self, key) >= 0, f"serve.autoscaling.{key}", "must be >= 0")


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
    window_s: float = 86_400.0  # a label later than this after its answer is refused (404)
    on_repeat: RepeatLabelPolicy = RepeatLabelPolicy.refuse
    max_ids: int = 20_000_000  # answered ids remembered (8 bytes each); the oldest go first beyond it
    handover_s: float = 0.2  # replicas hand the ids they answered to the ledger this often (one call each)
    grace_s: float = 2.0  # how long an id not yet handed over by the replica that answered it is waited for
    flush_s: float = 0.5  # labels are written in one file per replica per flush; /feedback answers after it

    def validate(self) -> None:
        require(self.window_s > 0, "serve.feedback.window_s", f"must be > 0, got {self.window_s}")
        require(self.max_ids >= 1000, "serve.feedback.max_ids", f"must be >= 1000, got {self.max_ids}")
        require(0 <= self.grace_s <= 60, "serve.feedback.grace_s", f"must be in [0, 60], got {self.grace_s}")
        require(0 < self.handover_s <= self.grace_s or self.grace_s == 0, "serve.feedback.handover_s",
                f"must be > 0 and <= grace_s ({self.grace_s}), got {self.handover_s}: else a label sent right after its "
                "answer finds its id not handed over yet")
        require(0 < self.flush_s <= 60, "serve.feedback.flush_s", f"must be in (0, 60], got {self.flush_s}")


@dataclass
class ServeLimitsConfig:
    max_rows: int = 1000
    max_body_bytes: int = 1_048_576

    def validate(self) -> None:
        require(self.max_rows >= 1, "serve.limits.max_rows", f"must be >= 1, got {self.max_rows}")
        require(self.max_body_bytes >= 1024, "serve.limits.max_body_bytes",
                f"must be >= 1024, got {self.max_body_bytes}")


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
    feedback: ServeFeedbackConfig = field(default_factory=ServeFeedbackConfig)
    input_policy: ServeInputPolicyConfig = field(default_factory=ServeInputPolicyConfig)

    def validate(self) -> None:
        from foundry.errors import RegistryError
        from foundry.registry.names import LATEST, check_alias, is_version_id

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
        require(self.max_ongoing_requests >= 1, "serve.max_ongoing_requests", f"must be >= 1, got {self.max_ongoing_requests}")
        if self.batching.enabled:
            require(self.max_ongoing_requests >= self.batching.max_batch_size, "serve.max_ongoing_requests",
                    f"must be >= serve.batching.max_batch_size ({self.batching.max_batch_size}), or a batch can never fill")
        self.autoscaling.validate()
        require(self.num_cpus >= 0, "serve.num_cpus", f"must be >= 0, got {self.num_cpus}")
        require(self.torch_threads >= 1, "serve.torch_threads", f"must be >= 1, got {self.torch_threads}")
        require(self.gpus_per_replica > 0, "serve.gpus_per_replica", f"must be > 0, got {self.gpus_per_replica}")
        self.auth.validate()
        self.limits.validate()
        self.feedback.validate()
