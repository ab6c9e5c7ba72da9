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
from typing import TYPE_CHECKING, Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from foundry.config_sources import bundled_conf_dir
from foundry.errors import ConfigError

if TYPE_CHECKING:
    from foundry.layout import StorageLayout

CONF_DIR = bundled_conf_dir()



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
    # A file, a folder (every data file below it), a glob, or a list of those (foundry/data/sources.py).
    # Typed Any: OmegaConf has no str | list[str]; _check_data checks the shape.
    path: Any = MISSING
    format: SourceFormat = SourceFormat.parquet
    delimiter: str = ","  # CSV only
    null_values: list[str] = field(default_factory=lambda: ["", "NA", "N/A", "null", "NULL", "NaN"])  # CSV only
    synthetic: SyntheticSourceConfig | None = None


@dataclass
class SplitConfig:
    train: float = 0.8
    val: float = 0.1
    test: float = 0.1
    seed: int = 0
    # The column (or list of columns, a composite key) whose rows always share a split; null: the whole row.
    key: Any = None


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
    execution_retries: int = 2  # a Ray Data step that lost a node or actor runs again (foundry/node_loss.py)


@dataclass
class ModelConfig:
    arch: str = "mlp"
    hidden_sizes: list[int] = field(default_factory=lambda: [128, 64])
    dropout: float = 0.1
    activation: str = "relu"
    max_embedding_dim: int = 16


@dataclass
class TrainerConfig:
    # 1: on CPU a second worker pays only past a crossover (benchmarks/README.md, "Training"); set it per job.
    num_workers: int = 1
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
    # A checkpoint at the end of an epoch once this many seconds have passed since the last one, and always
    # after the last epoch (0: every epoch). What a worker failure can cost; see foundry/train/loop.py.
    checkpoint_every_s: float = 10.0
    # A split whose share per worker is at most this many MiB (of the object store's bytes) is held by each
    # worker as tensors, not streamed through Ray Data (0: always stream); see foundry/train/shards.py.
    in_memory_max_mb: float = 512.0
    # How often Ray Train's controller polls its workers (RAY_TRAIN_HEALTH_CHECK_INTERVAL_S, Ray's default 2 s):
    # it takes each report then, and notices the end of the run then; see foundry/train/trainer.py.
    controller_poll_s: float = 0.2
    amp: bool = True
    seed: int = 0
    # Start from a registered version's preprocessor and weights ("MODEL@VERSION" or "MODEL@ALIAS"):
    # a retrain then refines what the champion knows instead of relearning it from the recent rows alone.
    warm_start_from: str | None = None


@dataclass
class StorageTablesConfig:
    """The append-heavy tables (live rows, labels, events; foundry/tables.py): how often they are written
    and merged."""

    live_flush_s: float = 10.0  # the monitor writes the live rows it took in one file this often
    compact_after_s: float = 300.0  # files older than this are merged, one file per hour partition
    maintain_every_s: float = 300.0  # how often the monitor compacts and expires (0: never; see `foundry.maintain`)


@dataclass
class StorageRetentionConfig:
    """How long each store keeps data, in days (0: forever). Enforced by the monitor's maintenance."""

    live_days: float = 30.0
    feedback_days: float = 180.0
    events_days: float = 365.0
    ledger_days: float = 2.0  # answered request ids (the label ledger needs serve.feedback.window_s of them)
    rejected_versions_days: float = 30.0  # versions that lost the gate and no alias ever pointed at
    checkpoints_days: float = 30.0  # training checkpoints of runs that ended
    retrain_sets_days: float = 90.0  # the data sets retrain episodes trained on


@dataclass
class StorageConfig:
    root: str = MISSING
    tables: StorageTablesConfig = field(default_factory=StorageTablesConfig)
    retention: StorageRetentionConfig = field(default_factory=StorageRetentionConfig)

    @property
    def layout(self) -> StorageLayout:
        """Every path under ``root`` (``foundry.layout.StorageLayout``, normalized)."""
        from foundry.layout import StorageLayout

        return StorageLayout(self.root)


class RolloutMode(str, Enum):
    """How a version that passed the gate reaches users (foundry/rollout/)."""

    direct = "direct"  # it takes 100% at once (then the post-rollout guard watches it)
    shadow = "shadow"  # it answers a copy of live traffic; users only see the champion's answers
    canary = "canary"  # a hash-chosen fraction of requests, stepped up as live evidence accrues


@dataclass
class LiveRolloutConfig:
    """The live decision (foundry/rollout/paired.py): anytime-valid paired tests on labelled live rows.

    Losses are bounded per row (classification: half the Brier score; regression: the squared error in
    units of ``regression_scale_sd`` label standard deviations, capped at 1), so the tests are exact."""

    confidence: float = 0.95  # each test's error bound: a truly better challenger is rolled back w.p. <= 5%
    min_effect: float = 0.0  # relative loss reduction the challenger must show to take 100%
    non_inferiority_margin: float = 0.02  # a canary steps up once it is shown no worse than this (relative)
    rollback_margin: float = 0.0  # rolled back once shown worse than the champion by more than this
    canary_steps: list[float] = field(default_factory=lambda: [0.05, 0.25, 1.0])
    min_rows_per_step: int = 100  # labelled rows at each canary step before the next one
    max_labelled_rows: int = 5000  # undecided after this many labelled rows: the champion stays
    max_seconds: float = 3600.0  # undecided after this long: the champion stays
    guard: bool = True  # after any version takes 100%, the previous one shadows it until it is shown no worse
    guard_rows: int = 2000  # labelled rows after which a guard that saw no harm ends
    max_error_rate: float = 0.01  # the challenger's failed predictions (it falls back to the champion)
    max_latency_ratio: float = 3.0  # challenger p99 compute time / champion's
    min_health_rows: int = 200  # answered rows before latency and errors are judged
    bets: list[float] = field(default_factory=lambda: [0.05, 0.1, 0.2, 0.4, 0.8])
    regression_scale_sd: float = 3.0
    poll_s: float = 2.0  # how often the monitor looks at the candidate alias


@dataclass
class PromotionConfig:
    """The promotion gate (foundry/train/gate.py): a paired bootstrap on per-row losses; then the
    roll-out (``rollout``): how the version that passed reaches users, decided on live labels."""

    policy: PromotionPolicy = PromotionPolicy.if_better
    alias: str = "production"
    min_improvement: float = 0.0  # required relative loss reduction (lower confidence bound), 0.01 = 1%
    confidence: float = 0.95
    bootstrap_samples: int = 2000
    gate_seed: int = 0
    max_accuracy_drop: float = 0.0  # classification: the challenger's accuracy may not drop by more
    max_forgetting: float | None = None  # relative loss increase allowed on the champion's reference sample
    rollout: RolloutMode = RolloutMode.direct
    candidate_alias: str = "candidate"  # where a gate-passed version waits for its shadow/canary roll-out
    live: LiveRolloutConfig = field(default_factory=LiveRolloutConfig)


@dataclass
class RayConfig:
    address: str | None = None
    data_progress_bars: bool = False  # Ray Data's redrawn bars: megabytes in a job log; stages print one line each


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
    """The API keys required on /predict, /model and /feedback; turning them off must be explicit.
    A feedback key (``feedback_key_env`` or ``feedback_key_file``) makes /feedback take only it."""

    enabled: bool = True
    api_key_env: str | None = "FOUNDRY_API_KEY"
    api_key_file: str | None = None
    api_key_sha256_env: str | None = "FOUNDRY_API_KEY_SHA256"  # carries salted digests (foundry.serving.keys)
    feedback_key_env: str | None = None
    feedback_key_file: str | None = None
    feedback_key_sha256_env: str | None = "FOUNDRY_FEEDBACK_KEY_SHA256"


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
    feedback: ServeFeedbackConfig = field(default_factory=ServeFeedbackConfig)
    input_policy: ServeInputPolicyConfig = field(default_factory=ServeInputPolicyConfig)


class ClusterKind(str, Enum):
    """Where the cluster runs; all kinds are rendered from the same ``cluster`` config."""

    local = "local"  # this machine: `python -m cluster up` (Ray's fake multi-node autoscaler)
    aws = "aws"  # Ray cluster launcher YAML for `ray up` (EC2)
    gcp = "gcp"  # Ray cluster launcher YAML for `ray up` (Compute Engine)
    kuberay = "kuberay"  # KubeRay manifests: RayCluster, RayService, RayJob


class TokenSource(str, Enum):
    """Where the nodes of a cloud cluster get the Ray auth token from (it is never written in a file we render)."""

    file = "file"  # aws/gcp: `ray up` copies cluster.token_path from this machine to every node
    secret = "secret"  # aws Secrets Manager / gcp Secret Manager / a Kubernetes Secret named cluster.auth.secret_name


class InstallSource(str, Enum):
    """How the nodes of a cloud cluster get this project. ``image``: built into the container image
    (the Dockerfile), so a node added at scale-up starts Ray at once; git/upload `pip install -e` it
    (with torch) on every node at setup, for trying a branch on stock Ray images."""

    image = "image"  # cluster.image / gpu_image hold the project already: nothing is installed at setup
    git = "git"  # clone cluster.install.git_url at git_ref
    upload = "upload"  # `ray up` uploads this working tree (file_mounts)


@dataclass
class K8sResourcesConfig:
    """The Ray container's Kubernetes resources (quantities: "4", "500m", "16Gi") and placement.

    KubeRay derives the node's Ray CPUs and memory from them; ``limits`` empty falls back to
    ``requests`` and vice versa. A GPU worker type's ``gpus`` is added as ``nvidia.com/gpu``.
    """

    requests: dict[str, str] = field(default_factory=dict)
    limits: dict[str, str] = field(default_factory=dict)
    # "label=value" items (label keys hold dots, which Hydra keys cannot), e.g.
    # cloud.google.com/gke-accelerator=nvidia-tesla-t4
    node_selector: list[str] = field(default_factory=list)


@dataclass
class HeadNodeConfig:
    """The head node of a cloud or Kubernetes cluster (cluster=local runs it on this machine).
    Its logical CPUs are ``cluster.head_num_cpus`` (0: it only coordinates)."""

    instance_type: str | None = None  # aws EC2 instance type
    machine_type: str | None = None  # gcp machine type
    vm_image: str | None = None  # aws AMI id (null: Ray's default Deep Learning AMI) / gcp boot disk image
    disk_gb: int = 100
    image: str | None = None  # container image; null: cluster.image
    k8s: K8sResourcesConfig = field(default_factory=K8sResourcesConfig)


@dataclass
class WorkerTypeConfig:
    """One kind of worker node the autoscaler may add (and remove when idle).

    ``cpus``/``gpus``/``object_store_gb`` are what the node offers Ray; the other fields say what it
    is on each kind of cluster (cluster=local uses none of them).
    """

    cpus: float = 2.0
    gpus: int = 0
    object_store_gb: float = 1.0
    min_workers: int = 0
    max_workers: int = 2
    instance_type: str | None = None  # aws EC2 instance type, e.g. g5.xlarge
    machine_type: str | None = None  # gcp machine type, e.g. n1-standard-8
    accelerator: str | None = None  # gcp accelerator type attached per node, e.g. nvidia-tesla-t4
    vm_image: str | None = None  # aws AMI id / gcp boot disk image (see HeadNodeConfig)
    disk_gb: int = 100
    spot: bool = False  # aws spot / gcp preemptible instances
    image: str | None = None  # container image; null: cluster.gpu_image for GPU types, else cluster.image
    k8s: K8sResourcesConfig = field(default_factory=K8sResourcesConfig)


@dataclass
class AutoscalingConfig:
    """Ray's autoscaler. cluster=local: the fake multi-node provider (worker 'nodes' are extra
    raylets on this machine, added on demand and removed when idle); aws/gcp: the cluster
    launcher's autoscaler; kuberay: KubeRay's in-tree autoscaler."""

    enabled: bool = False
    max_workers: int = 4
    idle_timeout_minutes: float = 1.0
    upscaling_speed: float = 1.0
    update_interval_s: int = 1
    worker_types: dict[str, WorkerTypeConfig] = field(default_factory=dict)


@dataclass
class CloudConfig:
    """cluster=aws|gcp: where `ray up` creates the nodes."""

    region: str | None = None  # aws region / gcp region
    zone: str | None = None  # aws availability zone(s), comma-separated / gcp zone
    project: str | None = None  # gcp project id
    ssh_user: str = "ubuntu"
    # Identity of the WORKER nodes (the head gets the launcher's default role unless set here too):
    # they read and write storage.root and, with cluster.auth.token_source=secret, read the token.
    iam_instance_profile: str | None = None  # aws instance profile ARN
    service_account: str | None = None  # gcp service account e-mail


@dataclass
class ClusterAuthConfig:
    token_source: TokenSource = TokenSource.file
    # aws Secrets Manager secret id / gcp Secret Manager secret / Kubernetes Secret (key `auth_token`).
    secret_name: str = "foundry-ray-auth-token"


@dataclass
class InstallConfig:
    """How aws/gcp nodes get this project; on kuberay the images must contain it already."""

    source: InstallSource = InstallSource.image
    git_url: str | None = None
    git_ref: str = "main"
    dir: str = "~/foundry"  # where the project lives on every node
    extras: list[str] = field(default_factory=list)


@dataclass
class KubeRayJobConfig:
    """The RayJob that runs training on a cluster of its own (deleted when the job ends)."""

    name: str = "foundry-train"
    overrides: list[str] = field(default_factory=list)  # Hydra overrides after `python -m jobs.train`
    worker_types: list[str] | None = None  # worker groups of its cluster (null: all)
    shutdown_after_job_finishes: bool = True
    ttl_seconds_after_finished: int = 300
    active_deadline_seconds: int | None = None
    backoff_limit: int = 0


@dataclass
class KubeRayServiceConfig:
    """The RayService that runs the Serve application (``serveConfigV2``)."""

    name: str = "foundry-serve"
    worker_types: list[str] | None = None  # worker groups of its cluster (null: all)
    api_key_secret: str | None = "foundry-api-key"  # Kubernetes Secret (key `api_key`) for serve.auth


class IngressKind(str, Enum):
    haproxy = "haproxy"  # Ray Serve's HAProxy ingress, admin listeners on loopback (foundry/serving/haproxy_ingress.py)
    python = "python"  # Serve's own Python proxy: slower (6-11 ms a request on 2 cores), no extra process


@dataclass
class IngressConfig:
    """How HTTP requests reach the Serve replicas on every node of the cluster."""

    kind: IngressKind = IngressKind.haproxy
    # Where HAProxy's read-only stats page (8404) and Prometheus exporter (9101) listen; Ray binds them to
    # every interface, the wrapper to this address.
    admin_host: str = "127.0.0.1"
    # The foundry-haproxy console script on the nodes (null: next to the Python that starts Ray; rendered
    # aws/gcp nodes look it up on PATH, kuberay images need the path of their install).
    wrapper: str | None = None


class PlaceholderPolicy(str, Enum):
    """What rendering does with a value that only stands in for the user's own (an example account id,
    image, project or bucket; cluster/placeholders.py): such a cluster cannot start."""

    warn = "warn"  # render, with a warning naming each key (the shipped configs render for a look)
    fail = "fail"  # ConfigError naming the first key; nothing is written (`python -m cluster render --strict`)


@dataclass
class KubeRayConfig:
    namespace: str = "default"
    service_type: str = "ClusterIP"  # the head Service; reach the dashboard with kubectl port-forward
    upscaling_mode: str = "Default"  # Conservative | Default | Aggressive
    job: KubeRayJobConfig = field(default_factory=KubeRayJobConfig)
    service: KubeRayServiceConfig = field(default_factory=KubeRayServiceConfig)


@dataclass
class ClusterConfig:
    name: str = "local"
    kind: ClusterKind = ClusterKind.local
    head_host: str = "127.0.0.1"
    gcs_port: int = 6379
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8265
    head_num_cpus: int | None = None
    token_path: str = "~/.ray/auth_token"
    env: dict[str, str] = field(default_factory=dict)
    # Environment of the *drivers* that connect to it (jobs, tests): Ray Data plans and lists files there.
    driver_env: dict[str, str] = field(default_factory=dict)
    autoscaling: AutoscalingConfig = field(default_factory=AutoscalingConfig)
    ray_version: str = "2.60.0"
    image: str | None = None  # container image of the head and CPU workers (aws/gcp: docker; kuberay: pods)
    gpu_image: str | None = None  # default image of worker types with gpus > 0 (CUDA)
    head: HeadNodeConfig = field(default_factory=HeadNodeConfig)
    cloud: CloudConfig = field(default_factory=CloudConfig)
    auth: ClusterAuthConfig = field(default_factory=ClusterAuthConfig)
    install: InstallConfig = field(default_factory=InstallConfig)
    kuberay: KubeRayConfig = field(default_factory=KubeRayConfig)
    ingress: IngressConfig = field(default_factory=IngressConfig)
    placeholders: PlaceholderPolicy = PlaceholderPolicy.warn


class MultivariateMethod(str, Enum):
    lsdd = "lsdd"  # least-squares density difference: sensitive; 7-66 ms per window on a 1,000-row reference here
    mmd = "mmd"  # maximum mean discrepancy: a permutation test, seconds per window on CPU


class ConceptMethod(str, Enum):
    fet = "fet"  # windowed Fisher exact test on the error rate (classification)
    fet_online = "fet_online"  # FETDriftOnline on the error stream, calibrated to an expected run time


class OnlineMethod(str, Enum):
    cvm = "cvm"  # CVMDriftOnline per feature
    mmd = "mmd"  # MMDDriftOnline (torch): minutes to calibrate on CPU


class RetrainDataPolicy(str, Enum):
    recent = "recent"  # the most recent labelled live rows only
    reference_plus_recent = "reference_plus_recent"  # the served version's reference sample plus recent rows


class Correction(str, Enum):
    bonferroni = "bonferroni"
    fdr = "fdr"


@dataclass
class TabularDriftConfig:
    enabled: bool = True
    p_val: float = 0.05
    correction: Correction = Correction.bonferroni
    vote: bool = True


@dataclass
class MultivariateDriftConfig:
    enabled: bool = True
    method: MultivariateMethod = MultivariateMethod.lsdd
    p_val: float = 0.05
    n_permutations: int = 100
    reference_rows: int = 1000
    vote: bool = True


@dataclass
class PredictionDriftConfig:
    enabled: bool = True
    p_val: float = 0.05
    vote: bool = False


@dataclass
class ConceptDriftConfig:
    enabled: bool = True
    method: ConceptMethod = ConceptMethod.fet
    p_val: float = 0.01
    window_rows: int = 500
    ert: float = 5000.0
    window_sizes: list[int] = field(default_factory=lambda: [200])
    n_bootstraps: int = 20000
    vote: bool = True


@dataclass
class OnlineDriftConfig:
    enabled: bool = False
    method: OnlineMethod = OnlineMethod.cvm
    ert: float = 5000.0
    window_sizes: list[int] = field(default_factory=lambda: [200])
    n_bootstraps: int = 20000
    reference_rows: int = 1000
    vote: bool = True


@dataclass
class DriftDetectorsConfig:
    tabular: TabularDriftConfig = field(default_factory=TabularDriftConfig)
    multivariate: MultivariateDriftConfig = field(default_factory=MultivariateDriftConfig)
    prediction: PredictionDriftConfig = field(default_factory=PredictionDriftConfig)
    concept: ConceptDriftConfig = field(default_factory=ConceptDriftConfig)
    online: OnlineDriftConfig = field(default_factory=OnlineDriftConfig)


class AlarmMethod(str, Enum):
    sequential = "sequential"  # anytime-valid e-detectors row by row, one false-alarm budget (foundry/drift/alarm.py)
    windows = "windows"  # the windowed detectors vote every test_every_rows rows (false alarms grow with traffic)


class AlarmPolicy(str, Enum):
    harm = "harm"  # an episode starts when the model is harmed (estimated or labelled); input drift alone is reported
    # harm, and also input drift whose watch saw no label at all (labels late: harm could not be ruled out by them)
    harm_or_unlabelled_drift = "harm_or_unlabelled_drift"
    drift = "drift"  # any alarm, input drift included, starts an episode


@dataclass
class AlarmWeights:
    """How the false-alarm budget is split across signal families (normalised over the families present)."""

    labelled: float = 0.5  # the labelled error stream (concept and label shift; needs /feedback labels)
    estimated: float = 0.25  # harm without labels: calibrated expected error (classification), prediction drift (regression)
    input: float = 0.25  # each input column, missing-value indicator and category, and (classification) the scores


@dataclass
class DriftAlarmConfig:
    method: AlarmMethod = AlarmMethod.sequential
    # The budget: on clean traffic a false alarm comes no more often than once per this many live rows
    # (the expected run length), whatever the traffic rate, cadence and number of signals.
    expected_rows_between_false_episodes: float = 1_000_000.0
    # Probability that the reference sample's own error stays within the margins the bounds allow for.
    reference_confidence: float = 0.99
    policy: AlarmPolicy = AlarmPolicy.harm
    # Harm = the error rate (expected or labelled) above the reference's by more than this (0.01 = 1 point).
    harm_tolerance: float = 0.01
    # After an input-drift alarm, rows to wait for harm evidence before calling the shift benign.
    benign_after_rows: int = 2000
    weights: AlarmWeights = field(default_factory=AlarmWeights)
    # The bets each signal places, as fractions of the largest safe bet (a mixture: strong shifts are
    # caught by the large bets within rows, weak ones by the small bets later).
    bets: list[float] = field(default_factory=lambda: [0.05, 0.15, 0.4, 0.9])
    # Run the windowed alibi-detect tests on the rows of an alarm, to name the drifted columns in its event.
    diagnose: bool = True


@dataclass
class DriftWindowConfig:
    size: int = 1000
    test_every_rows: int = 500
    consecutive: int = 2
    votes_required: int = 1


@dataclass
class RetrainConfig:
    enabled: bool = True
    data_policy: RetrainDataPolicy = RetrainDataPolicy.recent
    min_labelled_rows: int = 2000
    max_rows: int = 20000
    label_recheck_s: float = 60.0  # an episode short of labels re-reads the stored ones at least this often
    min_improvement: float = 0.01
    warm_start: bool = True  # the retrain starts from production's weights (trainer.warm_start_from)
    cooldown_s: float = 600.0  # after a promotion (and after accepting a new normal)
    rejection_wait_s: float = 60.0  # after a rejected challenger: then the same episode tries again ...
    more_rows_after_rejection: int = 1000  # ... on a new data set with this many new labelled live rows
    stop_on_no_gain: bool = True  # a conclusive rejection (gate upper bound <= margin): give up at once
    max_attempts: int = 3  # per episode, rejected and failed together; then gave_up and the new normal
    max_episodes: int = 3  # per episode_period_s; one more drift in the period: gave_up and the new normal
    episode_period_s: float = 86400.0
    max_retries: int = 2
    backoff_s: float = 30.0
    backoff_factor: float = 2.0
    job_timeout_s: float = 1800.0
    rollout: bool = True
    overrides: list[str] = field(default_factory=list)


@dataclass
class DriftSinkConfig:
    buffer_rows: int = 20000
    flush_interval_s: float = 0.5
    max_in_flight: int = 4
    lookup_interval_s: float = 5.0


@dataclass
class MonitorActorConfig:
    name_prefix: str = "foundry-monitor"
    namespace: str = "foundry"
    num_cpus: float = 0.5
    max_restarts: int = -1
    poll_interval_s: float = 1.0
    retain_rows: int = 50000
    # Rows (and labels, and roll-out answers) waiting for a round, each: beyond it ``ingest`` takes a
    # uniform sample of what fits, counts the rest (``rows_dropped``) and tells the sink, which backs off.
    max_queued_rows: int = 20000
    history_rounds: int = 2000  # test rounds kept in memory for DriftMonitor.rounds() (plots, the demo)
    follow_served_version: bool = True  # re-base when Serve answers with another version (swapped outside)


@dataclass
class DriftConfig:
    enabled: bool = True
    alarm: DriftAlarmConfig = field(default_factory=DriftAlarmConfig)
    window: DriftWindowConfig = field(default_factory=DriftWindowConfig)
    detectors: DriftDetectorsConfig = field(default_factory=DriftDetectorsConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    sink: DriftSinkConfig = field(default_factory=DriftSinkConfig)
    monitor: MonitorActorConfig = field(default_factory=MonitorActorConfig)


class SearchKind(str, Enum):
    choice = "choice"  # one of ``values``, sampled
    grid = "grid"  # every one of ``values`` (multiplies num_samples)
    uniform = "uniform"  # a float in [low, high]
    loguniform = "loguniform"  # a float in [low, high], uniform in log space (learning rates)
    randint = "randint"  # an int in [low, high)


@dataclass
class SearchDimension:
    kind: SearchKind = MISSING
    values: list[Any] | None = None  # choice/grid: the candidates (lists allowed, e.g. hidden_sizes)
    low: float | None = None
    high: float | None = None


@dataclass
class AshaSchedulerConfig:
    max_t: int | None = None  # epochs a trial may reach (null: trainer.epochs)
    grace_period: int = 1  # epochs every trial gets before it can be stopped
    reduction_factor: float = 2.0  # 1/reduction_factor of the trials go on at each rung


@dataclass
class TuneSpaceConfig:
    """What a trial may change: the model and the optimiser, never the data, storage or cluster."""

    model: dict[str, SearchDimension] = field(default_factory=dict)  # key of ModelConfig -> dimension
    trainer: dict[str, SearchDimension] = field(default_factory=dict)  # key of TrainerConfig -> dimension


@dataclass
class TuneConfig:
    enabled: bool = False
    num_samples: int = 4  # trials (times every grid value)
    max_concurrent_trials: int = 2  # Train runs in flight at once (each takes trial_num_workers workers)
    trial_num_workers: int | None = None  # Ray Train workers per trial (null: trainer.num_workers)
    trial_driver_cpus: float = 0.01  # CPUs of each trial's driver (it only launches and watches the Train run)
    metric: str = "best_val_loss"  # reported by the training loop every epoch
    mode: str = "min"
    seed: int = 0
    scheduler: AshaSchedulerConfig = field(default_factory=AshaSchedulerConfig)
    space: TuneSpaceConfig = field(default_factory=TuneSpaceConfig)


@dataclass
class MlflowTrackingConfig:
    """Training runs and Tune trials logged to MLflow (foundry/train/tracking.py): parameters, metrics and
    tags only, never a model. The registry stays the record of what was trained and what serves."""

    enabled: bool = False
    # A local folder, file://, http(s):// (a tracking server) or any MLflow tracking URI; null: <storage.root>/mlruns.
    uri: str | None = None
    experiment: str | None = None  # null: model_name


@dataclass
class TrackingConfig:
    mlflow: MlflowTrackingConfig = field(default_factory=MlflowTrackingConfig)


@dataclass
class DemoTrafficConfig:
    rows_per_request: int = 20
    concurrency: int = 4
    rate_rows_per_s: float = 250.0  # rows per second, with labels on /feedback
    baseline_rows: int = 3000  # in-distribution rows before the world changes
    drift_scenario: str = "concept_shift"  # a scenario of the bundled data set (foundry.datasets)
    after_rows: int = 2000  # drifted rows sent after the healed model is serving
    seed: int = 1000


@dataclass
class DemoConfig:
    traffic: DemoTrafficConfig = field(default_factory=DemoTrafficConfig)
    pipeline_timeout_s: float = 1200.0
    heal_timeout_s: float = 900.0  # from the drift onset to the new version serving
    report_dir: str = "outputs/demo"  # one folder per run: <report_dir>/<UTC time>/
    fresh_start: bool = True  # forget this model's registry and monitoring state first (reproducible runs)
    down_at_end: bool = False  # stop the local cluster when the demo ends (make demo-down does it later)
    progress_every_s: float = 5.0


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
    drift: DriftConfig = field(default_factory=DriftConfig)
    tune: TuneConfig = field(default_factory=TuneConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    trigger: str = "manual"
    drift_episode: str | None = None


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
    key_ok = s.key is None or (isinstance(s.key, str) and s.key) or (
        isinstance(s.key, (list, tuple)) and s.key and all(isinstance(k, str) and k for k in s.key))
    _require(bool(key_ok), "data.split.key", f"a column name, a list of column names, or null; got {s.key!r}")
    for name in ("train", "val", "test"):
        _require(0.0 < getattr(s, name) < 1.0, f"data.split.{name}", f"must be in (0, 1), got {getattr(s, name)}")
    _require(abs(s.train + s.val + s.test - 1.0) < 1e-6, "data.split",
             f"train + val + test must be 1.0, got {s.train + s.val + s.test:.4f}")
    _require(data.validation.min_rows >= 1, "data.validation.min_rows", "must be >= 1")
    _require(0.0 <= data.validation.max_null_fraction <= 1.0, "data.validation.max_null_fraction",
             f"must be in [0, 1], got {data.validation.max_null_fraction}")
    _require(data.execution_retries >= 0, "data.execution_retries", f"must be >= 0, got {data.execution_retries}")
    _require(data.reference_rows >= 100, "data.reference_rows", f"must be >= 100, got {data.reference_rows}")
    src = data.source
    path_ok = (isinstance(src.path, str) and src.path.strip()) or (
        isinstance(src.path, (list, tuple)) and src.path and all(isinstance(p, str) and p.strip() for p in src.path))
    _require(bool(path_ok), "data.source.path",
             f"a file, a folder, a glob, or a non-empty list of them; got {src.path!r}")
    _require(len(src.delimiter) == 1, "data.source.delimiter",
             f"must be exactly one character, got {src.delimiter!r} (a tab: \"\\t\" in YAML, double-quoted)")
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
    _require(t.checkpoint_every_s >= 0, "trainer.checkpoint_every_s", f"must be >= 0, got {t.checkpoint_every_s}")
    _require(t.in_memory_max_mb >= 0, "trainer.in_memory_max_mb", f"must be >= 0, got {t.in_memory_max_mb}")
    _require(t.controller_poll_s > 0, "trainer.controller_poll_s", f"must be > 0, got {t.controller_poll_s}")


def _check_cluster(c: ClusterConfig) -> None:
    for key in ("gcs_port", "dashboard_port"):
        _require(0 < getattr(c, key) < 65536, f"cluster.{key}", f"must be a TCP port, got {getattr(c, key)}")
    _require(c.head_num_cpus is None or c.head_num_cpus >= 0, "cluster.head_num_cpus", "must be >= 0")
    for key in ("RAY_SERVE_ENABLE_HA_PROXY", "RAY_SERVE_HAPROXY_BINARY_PATH", "FOUNDRY_HAPROXY_ADMIN_HOST"):
        _require(key not in (c.env or {}), f"cluster.env.{key}",
                 "set by cluster.ingress (kind: haproxy | python, admin_host, wrapper); use those keys")
    _require(bool(c.ingress.admin_host), "cluster.ingress.admin_host", "must name an address (127.0.0.1: loopback)")
    a = c.autoscaling
    remote = c.kind is not ClusterKind.local
    if remote:
        # A cloud or Kubernetes cluster always runs Ray's autoscaler over its worker types.
        _require(a.enabled, "cluster.autoscaling.enabled", f"cluster={c.kind.value} always autoscales; set it true")
    if not a.enabled:
        return
    _require(bool(a.worker_types), "cluster.autoscaling.worker_types", "autoscaling needs at least one worker type")
    _require(a.max_workers >= 1, "cluster.autoscaling.max_workers", f"must be >= 1, got {a.max_workers}")
    _require(a.idle_timeout_minutes > 0, "cluster.autoscaling.idle_timeout_minutes",
             f"must be > 0, got {a.idle_timeout_minutes}")
    _require(a.upscaling_speed > 0, "cluster.autoscaling.upscaling_speed", f"must be > 0, got {a.upscaling_speed}")
    _require(a.update_interval_s >= 1, "cluster.autoscaling.update_interval_s", f"must be >= 1, got {a.update_interval_s}")
    for name, w in a.worker_types.items():
        key = f"cluster.autoscaling.worker_types.{name}"
        _require(name != "ray.head.default", key, "this name is reserved for the head node")
        _require(bool(_NODE_TYPE_NAME.fullmatch(name)), key,
                 "a worker type name uses letters, digits, '.', '_' or '-' (it names node types and worker groups)")
        _require(w.cpus >= 0, f"{key}.cpus", f"must be >= 0, got {w.cpus}")
        _require(w.gpus >= 0, f"{key}.gpus", f"must be >= 0, got {w.gpus}")
        _require(w.cpus > 0 or w.gpus > 0, key, "a worker type needs cpus or gpus")
        _require(w.object_store_gb > 0, f"{key}.object_store_gb", f"must be > 0, got {w.object_store_gb}")
        _require(w.min_workers >= 0, f"{key}.min_workers", f"must be >= 0, got {w.min_workers}")
        _require(w.max_workers >= 0, f"{key}.max_workers", f"must be >= 0, got {w.max_workers}")
        _require(w.min_workers <= w.max_workers, f"{key}.min_workers",
                 f"min_workers ({w.min_workers}) is greater than max_workers ({w.max_workers})")
        _require(w.disk_gb >= 1, f"{key}.disk_gb", f"must be >= 1, got {w.disk_gb}")
    total_min = sum(w.min_workers for w in a.worker_types.values())
    _require(total_min <= a.max_workers, "cluster.autoscaling.max_workers",
             f"the worker types' min_workers add up to {total_min}, more than max_workers ({a.max_workers})")
    if remote:
        _check_remote_cluster(c)


def _check_remote_cluster(c: ClusterConfig) -> None:
    """What cluster=aws|gcp|kuberay need on top of the local checks: machines, images, and names that exist."""
    kind = c.kind.value
    h = c.head
    workers = c.autoscaling.worker_types
    _require(bool(_CLUSTER_NAME.fullmatch(c.name)), "cluster.name",
             f"use lower-case letters, digits and '-' (it names cloud and Kubernetes objects), got {c.name!r}")
    _require(h.disk_gb >= 1, "cluster.head.disk_gb", f"must be >= 1, got {h.disk_gb}")
    version = re.fullmatch(r"(\d+)\.(\d+)(\.\d+)?", c.ray_version or "")
    _require(version is not None, "cluster.ray_version", f"must be a Ray version such as 2.60.0, got {c.ray_version!r}")
    _require((int(version[1]), int(version[2])) >= (2, 52), "cluster.ray_version",
             f"token auth needs Ray 2.52 or later, got {c.ray_version}")
    for name, w in workers.items():
        _require(float(w.cpus).is_integer(), f"cluster.autoscaling.worker_types.{name}.cpus",
                 f"a node offers whole CPUs on cluster={kind}, got {w.cpus}")
    _require(bool(h.image or c.image), "cluster.image",
             f"cluster={kind} runs Ray in a container: set cluster.image (or cluster.head.image)")
    for name, w in workers.items():
        key = f"cluster.autoscaling.worker_types.{name}"
        if w.gpus > 0:
            _require(bool(w.image or c.gpu_image), f"{key}.image",
                     f"a GPU worker type needs a GPU (CUDA) image: set cluster.gpu_image or {key}.image")
        else:
            _require(bool(w.image or c.image), f"{key}.image", "no image: set cluster.image or this key")
    if c.kind is ClusterKind.kuberay or c.install.source is InstallSource.image:
        _check_project_images(c)
    _require(bool(c.auth.secret_name) or c.auth.token_source is TokenSource.file, "cluster.auth.secret_name",
             "token_source=secret needs the secret's name")
    for secret in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE"):
        _require(secret not in (c.env or {}), f"cluster.env.{secret}",
                 "rendered clusters always run token auth, and the token never goes into a rendered file: "
                 "use cluster.auth.token_source and cluster.auth.secret_name")
    if c.kind is ClusterKind.kuberay:
        _check_kuberay(c)
        return
    # aws / gcp: the Ray cluster launcher
    cl = c.cloud
    _require(bool(cl.region), "cluster.cloud.region", f"cluster={kind} needs a region")
    _require(bool(cl.ssh_user), "cluster.cloud.ssh_user", "must not be empty")
    if c.install.source is InstallSource.git:
        _require(bool(c.install.git_url), "cluster.install.git_url",
                 "install.source=git needs the repository URL (or use install.source=upload)")
    _require(bool(_INSTALL_DIR.fullmatch(c.install.dir)), "cluster.install.dir",
             f"must be a plain path (letters, digits, '._-/', may start with '~/'), got {c.install.dir!r}")
    _require("ray_head" not in workers, "cluster.autoscaling.worker_types.ray_head",
             "this name is the head's node type in the launcher config; pick another")
    machine = "instance_type" if c.kind is ClusterKind.aws else "machine_type"
    _require(bool(getattr(h, machine)), f"cluster.head.{machine}", f"cluster={kind} needs the head's {machine}")
    for name, w in workers.items():
        key = f"cluster.autoscaling.worker_types.{name}"
        _require(bool(getattr(w, machine)), f"{key}.{machine}", f"cluster={kind} needs each worker type's {machine}")
    if c.kind is ClusterKind.gcp:
        _require(bool(cl.zone), "cluster.cloud.zone", "cluster=gcp needs a zone")
        _require(bool(cl.project), "cluster.cloud.project", "cluster=gcp needs the project id")
        _require(bool(h.vm_image), "cluster.head.vm_image", "cluster=gcp needs a boot disk image")
        for name, w in workers.items():
            key = f"cluster.autoscaling.worker_types.{name}"
            _require(bool(w.vm_image), f"{key}.vm_image", "cluster=gcp needs a boot disk image")
            if w.gpus > 0:
                _require(bool(w.accelerator), f"{key}.accelerator",
                         "a GPU worker type on gcp needs the accelerator type, e.g. nvidia-tesla-t4")


def _check_project_images(c: ClusterConfig) -> None:
    """Nodes that install nothing (kuberay pods, install.source=image) need images with Foundry in them:
    Ray's own images would start Ray and then fail every job and Serve replica on `import foundry`."""
    used = [("cluster.head.image" if c.head.image else "cluster.image", c.head.image or c.image)]
    for name, w in c.autoscaling.worker_types.items():
        fallback = "cluster.gpu_image" if w.gpus > 0 else "cluster.image"
        used.append((f"cluster.autoscaling.worker_types.{name}.image" if w.image else fallback,
                     w.image or (c.gpu_image if w.gpus > 0 else c.image)))
    instead = ("" if c.kind is ClusterKind.kuberay
               else ", or set cluster.install.source=git|upload to pip-install the project at node setup")
    for key, image in used:
        _require(not _STOCK_RAY_IMAGE.match(image or ""), key,
                 f"{image} is Ray's own image, without Foundry: build this project's image (the Dockerfile at "
                 f"the repository root), push it and name it here{instead}")


def _check_kuberay(c: ClusterConfig) -> None:
    k = c.kuberay
    _require(c.dashboard_host == "0.0.0.0", "cluster.dashboard_host",
             "cluster=kuberay: the dashboard must listen on the pod's address (0.0.0.0) for the operator and "
             f"`kubectl port-forward` to reach it (the head Service stays cluster-internal), got {c.dashboard_host!r}")
    _require(c.auth.token_source is TokenSource.secret, "cluster.auth.token_source",
             "cluster=kuberay reads the token from a Kubernetes Secret: use 'secret'")
    _require(bool(_K8S_NAME.fullmatch(c.auth.secret_name)), "cluster.auth.secret_name",
             f"must be a Kubernetes object name, got {c.auth.secret_name!r}")
    _require(bool(_K8S_NAME.fullmatch(k.namespace)), "cluster.kuberay.namespace",
             f"must be a Kubernetes namespace name, got {k.namespace!r}")
    _require(k.service_type in ("ClusterIP", "NodePort", "LoadBalancer"), "cluster.kuberay.service_type",
             f"must be ClusterIP, NodePort or LoadBalancer, got {k.service_type!r}")
    _require(k.upscaling_mode in ("Conservative", "Default", "Aggressive"), "cluster.kuberay.upscaling_mode",
             f"must be Conservative, Default or Aggressive, got {k.upscaling_mode!r}")
    for key, name in (("cluster.kuberay.job.name", k.job.name), ("cluster.kuberay.service.name", k.service.name)):
        _require(bool(_K8S_NAME.fullmatch(name)) and len(name) <= 47, key,
                 f"must be a Kubernetes name of at most 47 characters, got {name!r}")
    if k.service.api_key_secret is not None:
        _require(bool(_K8S_NAME.fullmatch(k.service.api_key_secret)), "cluster.kuberay.service.api_key_secret",
                 f"must be a Kubernetes object name, got {k.service.api_key_secret!r}")
    _require(k.job.ttl_seconds_after_finished >= 0, "cluster.kuberay.job.ttl_seconds_after_finished",
             f"must be >= 0, got {k.job.ttl_seconds_after_finished}")
    _require(k.job.backoff_limit >= 0, "cluster.kuberay.job.backoff_limit", f"must be >= 0, got {k.job.backoff_limit}")
    _require(k.job.active_deadline_seconds is None or k.job.active_deadline_seconds > 0,
             "cluster.kuberay.job.active_deadline_seconds", "must be > 0 (or null)")
    known = sorted(c.autoscaling.worker_types)
    groups: dict[str, str] = {}
    for n in known:
        group = n.replace("_", "-").lower()
        key = f"cluster.autoscaling.worker_types.{n}"
        _require(bool(_K8S_NAME.fullmatch(group)) and len(group) <= 30, key,
                 f"names a KubeRay worker group ({group!r}): use at most 30 letters, digits, '-' or '_'")
        _require(group not in groups, key, f"becomes the same worker group name as {groups.get(group)!r}")
        groups[group] = n
    for key, names in (("cluster.kuberay.job.worker_types", k.job.worker_types),
                       ("cluster.kuberay.service.worker_types", k.service.worker_types)):
        for n in names or []:
            _require(n in c.autoscaling.worker_types, key, f"unknown worker type {n!r} (known: {', '.join(known)})")
    nodes = [("cluster.head.k8s", c.head.k8s)] + [
        (f"cluster.autoscaling.worker_types.{n}.k8s", w.k8s) for n, w in c.autoscaling.worker_types.items()]
    for key, r in nodes:
        for res in ("cpu", "memory"):
            _require(res in r.limits or res in r.requests, f"{key}.limits",
                     f"cluster=kuberay needs the Ray container's {res} (limits or requests)")
        for item in r.node_selector:
            label, sep, value = str(item).partition("=")
            _require(bool(sep) and bool(_K8S_LABEL.fullmatch(label)) and bool(_K8S_LABEL_VALUE.fullmatch(value)),
                     f"{key}.node_selector", f"items are label=value, got {item!r}")
        for part, values in (("requests", r.requests), ("limits", r.limits)):
            for res, q in values.items():
                _require(bool(_K8S_QUANTITY.fullmatch(str(q))), f"{key}.{part}.{res}",
                         f"not a Kubernetes quantity: {q!r} (e.g. 4, 500m, 16Gi)")


_CLUSTER_NAME = re.compile(r"[a-z]([-a-z0-9]{0,38}[a-z0-9])?")
_NODE_TYPE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_K8S_NAME = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_K8S_LABEL = re.compile(r"([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")
_K8S_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
_INSTALL_DIR = re.compile(r"(~/)?[A-Za-z0-9._/-]+")
# Ray's published images (any tag): Ray and its dependencies, no Foundry.
_STOCK_RAY_IMAGE = re.compile(r"(docker\.io/)?(rayproject|anyscale)/ray(-ml)?([:@]|$)")
_K8S_QUANTITY = re.compile(r"(\d+(\.\d+)?|\.\d+)([eE][-+]?\d+|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?")


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
        _require(bool(s.auth.api_key_file) or bool(s.auth.api_key_sha256_env), "serve.auth.api_key_sha256_env",
                 "must name the variable that carries the key's digests to the replicas (or set api_key_file)")
        fa = s.auth
        if fa.feedback_key_env or fa.feedback_key_file:
            _require(bool(fa.feedback_key_file) or bool(fa.feedback_key_sha256_env), "serve.auth.feedback_key_sha256_env",
                     "must name the variable that carries the feedback key's digests to the replicas "
                     "(or set feedback_key_file)")
            for name in ("env", "file", "sha256_env"):
                mine, theirs = getattr(fa, f"feedback_key_{name}"), getattr(fa, f"api_key_{name}")
                _require(not mine or mine != theirs, f"serve.auth.feedback_key_{name}",
                         f"must differ from serve.auth.api_key_{name} ({theirs}): the feedback key is a separate key")
    _require(s.limits.max_rows >= 1, "serve.limits.max_rows", f"must be >= 1, got {s.limits.max_rows}")
    _require(s.limits.max_body_bytes >= 1024, "serve.limits.max_body_bytes",
             f"must be >= 1024, got {s.limits.max_body_bytes}")
    f = s.feedback
    _require(f.window_s > 0, "serve.feedback.window_s", f"must be > 0, got {f.window_s}")
    _require(f.max_ids >= 1000, "serve.feedback.max_ids", f"must be >= 1000, got {f.max_ids}")
    _require(0 <= f.grace_s <= 60, "serve.feedback.grace_s", f"must be in [0, 60], got {f.grace_s}")
    _require(0 < f.handover_s <= f.grace_s or f.grace_s == 0, "serve.feedback.handover_s",
             f"must be > 0 and <= grace_s ({f.grace_s}), got {f.handover_s}: else a label sent right after its "
             "answer finds its id not handed over yet")
    _require(0 < f.flush_s <= 60, "serve.feedback.flush_s", f"must be in (0, 60], got {f.flush_s}")


def _check_storage(st: StorageConfig) -> None:
    _require(bool(st.root), "storage.root", "must not be empty")
    t = st.tables
    _require(0 < t.live_flush_s <= 600, "storage.tables.live_flush_s", f"must be in (0, 600], got {t.live_flush_s}")
    _require(t.compact_after_s >= 10, "storage.tables.compact_after_s", f"must be >= 10, got {t.compact_after_s}")
    _require(t.maintain_every_s >= 0, "storage.tables.maintain_every_s", f"must be >= 0, got {t.maintain_every_s}")
    for key, days in vars(st.retention).items():
        _require(days >= 0, f"storage.retention.{key}", f"must be >= 0 days (0 keeps forever), got {days}")


_SERVE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _check_promotion(p: PromotionConfig) -> None:
    _require(0 <= p.min_improvement <= 1, "promotion.min_improvement",
             "must be in [0, 1] (a relative reduction of the loss: 0.01 = 1% lower)")
    _require(0.5 <= p.confidence < 1, "promotion.confidence", "must be in [0.5, 1)")
    _require(p.bootstrap_samples >= 100, "promotion.bootstrap_samples", "must be >= 100")
    _require(0 <= p.max_accuracy_drop <= 1, "promotion.max_accuracy_drop", "must be in [0, 1]")
    _require(p.max_forgetting is None or p.max_forgetting >= 0, "promotion.max_forgetting", "must be >= 0 or null")
    _require(p.candidate_alias != p.alias, "promotion.candidate_alias", f"must differ from promotion.alias ({p.alias})")
    live = p.live
    _require(0.5 <= live.confidence < 1, "promotion.live.confidence", "must be in [0.5, 1)")
    for key in ("min_effect", "non_inferiority_margin", "rollback_margin"):
        _require(0 <= getattr(live, key) < 1, f"promotion.live.{key}", f"must be in [0, 1), got {getattr(live, key)}")
    steps = list(live.canary_steps)
    _require(bool(steps) and all(0 < a < b for a, b in zip(steps, steps[1:], strict=False)) and steps[0] > 0
             and steps[-1] == 1.0, "promotion.live.canary_steps",
             f"must increase strictly from above 0 and end at 1.0, got {steps}")
    _require(all(0 < b < 1 for b in live.bets) and bool(live.bets), "promotion.live.bets",
             "must be fractions in (0, 1) of the largest safe bet")
    for key in ("min_rows_per_step", "max_labelled_rows", "guard_rows", "min_health_rows"):
        _require(getattr(live, key) >= 1, f"promotion.live.{key}", f"must be >= 1, got {getattr(live, key)}")
    _require(live.max_seconds > 0 and live.poll_s > 0, "promotion.live.max_seconds", "max_seconds and poll_s must be > 0")
    _require(0 <= live.max_error_rate < 1, "promotion.live.max_error_rate", "must be in [0, 1)")
    _require(live.max_latency_ratio >= 1, "promotion.live.max_latency_ratio", "must be >= 1")
    _require(live.regression_scale_sd > 0, "promotion.live.regression_scale_sd", "must be > 0")


def _check_drift(d: DriftConfig, task: Task) -> None:
    det = d.detectors
    for key, p in (("tabular", det.tabular.p_val), ("multivariate", det.multivariate.p_val),
                   ("prediction", det.prediction.p_val), ("concept", det.concept.p_val)):
        _require(0 < p < 1, f"drift.detectors.{key}.p_val", f"must be in (0, 1), got {p}")
    _require(det.multivariate.n_permutations >= 10, "drift.detectors.multivariate.n_permutations", "must be >= 10")
    for key, rows in (("multivariate", det.multivariate.reference_rows), ("online", det.online.reference_rows)):
        _require(rows >= 50, f"drift.detectors.{key}.reference_rows", f"must be >= 50, got {rows}")
    for key, c in (("concept", det.concept), ("online", det.online)):
        _require(c.ert > 1, f"drift.detectors.{key}.ert", f"must be > 1 (rows), got {c.ert}")
        _require(bool(c.window_sizes) and all(w >= 1 for w in c.window_sizes), f"drift.detectors.{key}.window_sizes",
                 f"must be a non-empty list of positive sizes, got {list(c.window_sizes)}")
        _require(c.n_bootstraps >= 100, f"drift.detectors.{key}.n_bootstraps", "must be >= 100")
    _require(det.concept.window_rows >= 10, "drift.detectors.concept.window_rows", "must be >= 10")
    if det.concept.enabled and task is Task.regression:
        _require(det.concept.method is ConceptMethod.fet, "drift.detectors.concept.method",
                 "fet_online needs a binary error stream; regression models use the windowed test (fet)")
    w = d.window
    _require(w.size >= 20, "drift.window.size", f"must be >= 20 rows, got {w.size}")
    _require(w.test_every_rows >= 1, "drift.window.test_every_rows", f"must be >= 1, got {w.test_every_rows}")
    _require(w.consecutive >= 1, "drift.window.consecutive", f"must be >= 1, got {w.consecutive}")
    _require(w.votes_required >= 1, "drift.window.votes_required", f"must be >= 1, got {w.votes_required}")
    voters = [name for name in ("tabular", "multivariate", "prediction", "concept", "online")
              if getattr(det, name).enabled and getattr(det, name).vote]
    a = d.alarm
    _require(a.expected_rows_between_false_episodes >= 100, "drift.alarm.expected_rows_between_false_episodes",
             f"must be >= 100 rows, got {a.expected_rows_between_false_episodes}")
    _require(0 < a.reference_confidence < 1, "drift.alarm.reference_confidence",
             f"must be in (0, 1), got {a.reference_confidence}")
    _require(0 <= a.harm_tolerance < 1, "drift.alarm.harm_tolerance", f"must be in [0, 1), got {a.harm_tolerance}")
    _require(a.benign_after_rows >= 100, "drift.alarm.benign_after_rows", f"must be >= 100, got {a.benign_after_rows}")
    weights = [a.weights.labelled, a.weights.estimated, a.weights.input]
    _require(min(weights) >= 0 and sum(weights) > 0, "drift.alarm.weights",
             f"must be >= 0 with a positive sum, got {weights}")
    _require(bool(a.bets) and all(0 < b < 1 for b in a.bets), "drift.alarm.bets",
             f"must be a non-empty list of fractions in (0, 1), got {list(a.bets)}")
    if d.enabled and d.retrain.enabled and a.method is AlarmMethod.windows:
        _require(len(voters) >= w.votes_required, "drift.window.votes_required",
                 f"{w.votes_required} votes needed but only {len(voters)} enabled detector(s) vote ({voters})")
    r = d.retrain
    _require(r.min_labelled_rows >= 100, "drift.retrain.min_labelled_rows", f"must be >= 100, got {r.min_labelled_rows}")
    _require(r.max_rows >= r.min_labelled_rows, "drift.retrain.max_rows",
             f"must be >= min_labelled_rows ({r.min_labelled_rows}), got {r.max_rows}")
    _require(0 <= r.min_improvement <= 1, "drift.retrain.min_improvement",
             "must be in [0, 1] (a relative reduction of the loss: 0.01 = 1% lower)")
    for key in ("cooldown_s", "backoff_s", "rejection_wait_s", "more_rows_after_rejection"):
        _require(getattr(r, key) >= 0, f"drift.retrain.{key}", "must be >= 0")
    for key in ("max_attempts", "max_episodes"):
        _require(getattr(r, key) >= 1, f"drift.retrain.{key}", f"must be >= 1, got {getattr(r, key)}")
    _require(r.episode_period_s > 0, "drift.retrain.episode_period_s", "must be > 0")
    _require(r.backoff_factor >= 1, "drift.retrain.backoff_factor", "must be >= 1")
    _require(r.max_retries >= 0, "drift.retrain.max_retries", f"must be >= 0, got {r.max_retries}")
    _require(r.job_timeout_s > 0, "drift.retrain.job_timeout_s", "must be > 0")
    _require(r.label_recheck_s > 0, "drift.retrain.label_recheck_s", "must be > 0")
    s = d.sink
    _require(s.buffer_rows >= 1, "drift.sink.buffer_rows", f"must be >= 1, got {s.buffer_rows}")
    _require(s.flush_interval_s > 0, "drift.sink.flush_interval_s", "must be > 0")
    _require(s.max_in_flight >= 1, "drift.sink.max_in_flight", f"must be >= 1, got {s.max_in_flight}")
    m = d.monitor
    _require(bool(_SERVE_NAME.fullmatch(m.name_prefix)), "drift.monitor.name_prefix",
             f"use letters, digits, '.', '-' or '_', got {m.name_prefix!r}")
    _require(m.num_cpus >= 0, "drift.monitor.num_cpus", "must be >= 0")
    _require(m.max_restarts >= -1, "drift.monitor.max_restarts", "must be >= -1 (-1: restart forever)")
    _require(m.poll_interval_s > 0, "drift.monitor.poll_interval_s", "must be > 0")
    _require(m.history_rounds >= 1, "drift.monitor.history_rounds", f"must be >= 1, got {m.history_rounds}")
    _require(m.retain_rows >= w.size, "drift.monitor.retain_rows", f"must be >= drift.window.size ({w.size})")


TUNABLE_SECTIONS = {"model": ModelConfig, "trainer": TrainerConfig}
# Trainer keys that are not hyperparameters of the search.
_UNTUNABLE_TRAINER_KEYS = {"num_workers", "use_gpu", "cpus_per_worker", "gpus_per_worker", "max_failures",
                           "checkpoints_to_keep", "checkpoint_every_s", "in_memory_max_mb", "controller_poll_s"}
_TUNE_METRICS = ("best_val_loss", "val_loss", "train_loss")


def _check_tune(t: TuneConfig, trainer: TrainerConfig) -> None:
    if not t.enabled:
        return
    _require(t.num_samples >= 1, "tune.num_samples", f"must be >= 1, got {t.num_samples}")
    _require(t.max_concurrent_trials >= 1, "tune.max_concurrent_trials", f"must be >= 1, got {t.max_concurrent_trials}")
    _require(t.trial_num_workers is None or t.trial_num_workers >= 1, "tune.trial_num_workers", "must be >= 1")
    _require(t.trial_driver_cpus > 0, "tune.trial_driver_cpus",
             "must be > 0 (Ray Tune cannot place a trial that asks for nothing; a token 0.01 is enough)")
    _require(t.metric in _TUNE_METRICS, "tune.metric", f"unknown metric {t.metric!r} (known: {', '.join(_TUNE_METRICS)})")
    _require(t.mode in ("min", "max"), "tune.mode", f"must be min or max, got {t.mode!r}")
    a = t.scheduler
    max_t = a.max_t if a.max_t is not None else trainer.epochs
    _require(max_t >= 1, "tune.scheduler.max_t", f"must be >= 1, got {max_t}")
    _require(1 <= a.grace_period <= max_t, "tune.scheduler.grace_period", f"must be in [1, max_t={max_t}]")
    _require(a.reduction_factor > 1, "tune.scheduler.reduction_factor", f"must be > 1, got {a.reduction_factor}")
    _require(bool(t.space.model or t.space.trainer), "tune.space",
             "is empty: name at least one model.* or trainer.* key to search")
    for section in TUNABLE_SECTIONS:
        dims = getattr(t.space, section)
        known = set(TUNABLE_SECTIONS[section].__dataclass_fields__)
        for key, dim in dims.items():
            name = f"tune.space.{section}.{key}"
            _require(key in known, name, f"{section} has no key {key!r}")
            _require(not (section == "trainer" and key in _UNTUNABLE_TRAINER_KEYS), name,
                     "is a resource/fault-tolerance setting, not a hyperparameter (set tune.trial_num_workers instead)")
            if dim.kind in (SearchKind.choice, SearchKind.grid):
                _require(bool(dim.values), name, f"{dim.kind.value} needs a non-empty values list")
            else:
                _require(dim.low is not None and dim.high is not None and dim.low < dim.high, name,
                         f"{dim.kind.value} needs low < high, got low={dim.low} high={dim.high}")
                _require(dim.kind is not SearchKind.loguniform or dim.low > 0, name, "loguniform needs low > 0")


# Object stores hold MLflow's artifacts, never its tracking store (runs, params, metrics).
_NOT_TRACKING_STORES = ("s3", "gs", "gcs", "abfs", "abfss", "az", "wasb", "wasbs", "hdfs", "viewfs")


def _check_tracking(m: MlflowTrackingConfig, storage_root: str) -> None:
    if not m.enabled:
        return
    _require(m.experiment is None or bool(m.experiment.strip()), "tracking.mlflow.experiment",
             "must be a non-empty name, or null for model_name")
    uri = m.uri if m.uri is not None else storage_root
    key = "tracking.mlflow.uri"
    _require(bool(uri.strip()), key, "must not be empty (null: <storage.root>/mlruns)")
    scheme = uri.split("://", 1)[0].lower() if "://" in uri else ""
    if m.uri is None:
        _require(scheme in ("", "file"), key,
                 f"is null, so runs would go under storage.root ({storage_root}), which MLflow cannot track "
                 "into: set a tracking server (http(s)://...) or a local folder")
    _require(scheme not in _NOT_TRACKING_STORES, key,
             f"{uri!r} is an object store, which MLflow cannot track into: set a tracking server "
             "(http(s)://...), a database URI or a local folder")


def _check_demo(d: DemoConfig) -> None:
    t = d.traffic
    for key in ("rows_per_request", "concurrency", "baseline_rows", "after_rows"):
        _require(getattr(t, key) >= 1, f"demo.traffic.{key}", f"must be >= 1, got {getattr(t, key)}")
    _require(t.rate_rows_per_s > 0, "demo.traffic.rate_rows_per_s", "must be > 0")
    for key in ("pipeline_timeout_s", "heal_timeout_s", "progress_every_s"):
        _require(getattr(d, key) > 0, f"demo.{key}", "must be > 0")


def validate(cfg: FoundryConfig) -> FoundryConfig:
    """Check what types cannot: ranges, sums and cross-field rules. Raises ConfigError naming the key."""
    _require(bool(cfg.model_name) and "/" not in cfg.model_name, "model_name",
             f"must be a non-empty name without '/', got {cfg.model_name!r}")
    _check_storage(cfg.storage)
    _check_data(cfg.data)
    _check_model(cfg.model)
    _check_trainer(cfg.trainer)
    _check_serve(cfg.serve)
    ledger_days = cfg.storage.retention.ledger_days
    _require(ledger_days == 0 or ledger_days * 86_400 >= cfg.serve.feedback.window_s, "storage.retention.ledger_days",
             f"keeps answered ids {ledger_days} days, less than serve.feedback.window_s "
             f"({cfg.serve.feedback.window_s:g} s): labels in between would be refused after a restart")
    _check_cluster(cfg.cluster)
    _check_promotion(cfg.promotion)
    _check_drift(cfg.drift, cfg.data.task)
    _check_tune(cfg.tune, cfg.trainer)
    _check_demo(cfg.demo)
    _check_tracking(cfg.tracking.mlflow, cfg.storage.root)
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
    """Compose the bundled ``conf/`` outside of any command line (tests, Ray actors); commands use
    ``foundry.config_sources`` for ``--config-dir`` / ``--from-version``."""
    from foundry.config_sources import ConfigSources
    from foundry.config_sources import compose as compose_sources

    return compose_sources(ConfigSources(tuple(overrides or ()), config_name=config_name))


def load(overrides: list[str] | None = None) -> FoundryConfig:
    return to_typed(compose(overrides))


def to_yaml(cfg: Any) -> str:
    """The resolved config as YAML, as stored with every model version."""
    return OmegaConf.to_yaml(OmegaConf.structured(cfg) if not isinstance(cfg, DictConfig) else cfg, resolve=True)
