"""The ``drift`` section (``conf/drift/``): the alarm, the detectors, the retrain policy, the sink that
feeds the monitor and the monitor actor itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from foundry.config.common import SERVE_NAME, bounded, check_bounds, require
from foundry.config.data import Task


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
    p_val: float = bounded(0.05, gt=0, lt=1)
    correction: Correction = Correction.bonferroni
    vote: bool = True


@dataclass
class MultivariateDriftConfig:
    enabled: bool = True
    method: MultivariateMethod = MultivariateMethod.lsdd
    p_val: float = bounded(0.05, gt=0, lt=1)
    n_permutations: int = bounded(100, ge=10)
    reference_rows: int = bounded(1000, ge=50)
    vote: bool = True


@dataclass
class PredictionDriftConfig:
    enabled: bool = True
    p_val: float = bounded(0.05, gt=0, lt=1)
    vote: bool = False


@dataclass
class ConceptDriftConfig:
    enabled: bool = True
    method: ConceptMethod = ConceptMethod.fet
    p_val: float = bounded(0.01, gt=0, lt=1)
    window_rows: int = bounded(500, ge=10)
    ert: float = 5000.0
    window_sizes: list[int] = field(default_factory=lambda: [200])
    n_bootstraps: int = bounded(20000, ge=100)
    vote: bool = True


@dataclass
class OnlineDriftConfig:
    enabled: bool = False
    method: OnlineMethod = OnlineMethod.cvm
    ert: float = 5000.0
    window_sizes: list[int] = field(default_factory=lambda: [200])
    n_bootstraps: int = bounded(20000, ge=100)
    reference_rows: int = bounded(1000, ge=50)
    vote: bool = True


@dataclass
class DriftDetectorsConfig:
    tabular: TabularDriftConfig = field(default_factory=TabularDriftConfig)
    multivariate: MultivariateDriftConfig = field(default_factory=MultivariateDriftConfig)
    prediction: PredictionDriftConfig = field(default_factory=PredictionDriftConfig)
    concept: ConceptDriftConfig = field(default_factory=ConceptDriftConfig)
    online: OnlineDriftConfig = field(default_factory=OnlineDriftConfig)

    def validate(self, task: Task) -> None:
        for key in ("tabular", "multivariate", "prediction", "concept", "online"):
            check_bounds(getattr(self, key), f"drift.detectors.{key}")
        for key, c in (("concept", self.concept), ("online", self.online)):
            require(c.ert > 1, f"drift.detectors.{key}.ert", f"must be > 1 (rows), got {c.ert}")
            require(bool(c.window_sizes) and all(w >= 1 for w in c.window_sizes), f"drift.detectors.{key}.window_sizes",
                    f"must be a non-empty list of positive sizes, got {list(c.window_sizes)}")
        if self.concept.enabled and task is Task.regression:
            require(self.concept.method is ConceptMethod.fet, "drift.detectors.concept.method",
                    "fet_online needs a binary error stream; regression models use the windowed test (fet)")


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
    reference_confidence: float = bounded(0.99, gt=0, lt=1)
    policy: AlarmPolicy = AlarmPolicy.harm
    # Harm = the error rate (expected or labelled) above the reference's by more than this (0.01 = 1 point).
    harm_tolerance: float = bounded(0.01, ge=0, lt=1)
    # After an input-drift alarm, rows to wait for harm evidence before calling the shift benign.
    benign_after_rows: int = bounded(2000, ge=100)
    weights: AlarmWeights = field(default_factory=AlarmWeights)
    # The bets each signal places, as fractions of the largest safe bet (a mixture: strong shifts are
    # caught by the large bets within rows, weak ones by the small bets later).
    bets: list[float] = field(default_factory=lambda: [0.05, 0.15, 0.4, 0.9])
    # Run the windowed alibi-detect tests on the rows of an alarm, to name the drifted columns in its event.
    diagnose: bool = True

    def validate(self) -> None:
        check_bounds(self, "drift.alarm")
        require(self.expected_rows_between_false_episodes >= 100, "drift.alarm.expected_rows_between_false_episodes",
                f"must be >= 100 rows, got {self.expected_rows_between_false_episodes}")
        weights = [self.weights.labelled, self.weights.estimated, self.weights.input]
        require(min(weights) >= 0 and sum(weights) > 0, "drift.alarm.weights",
                f"must be >= 0 with a positive sum, got {weights}")
        require(bool(self.bets) and all(0 < b < 1 for b in self.bets), "drift.alarm.bets",
                f"must be a non-empty list of fractions in (0, 1), got {list(self.bets)}")


@dataclass
class DriftWindowConfig:
    size: int = 1000
    test_every_rows: int = bounded(500, ge=1)
    consecutive: int = bounded(2, ge=1)
    votes_required: int = bounded(1, ge=1)

    def validate(self) -> None:
        check_bounds(self, "drift.window")
        require(self.size >= 20, "drift.window.size", f"must be >= 20 rows, got {self.size}")


@dataclass
class RetrainConfig:
    enabled: bool = True
    data_policy: RetrainDataPolicy = RetrainDataPolicy.recent
    min_labelled_rows: int = bounded(2000, ge=100)
    max_rows: int = 20000
    label_recheck_s: float = bounded(60.0, gt=0)  # an episode short of labels re-reads the stored ones at least this often
    min_improvement: float = 0.01
    warm_start: bool = True  # the retrain starts from production's weights (trainer.warm_start_from)
    cooldown_s: float = bounded(600.0, ge=0)  # after a promotion (and after accepting a new normal)
    rejection_wait_s: float = bounded(60.0, ge=0)  # after a rejected challenger: then the same episode tries again ...
    more_rows_after_rejection: int = bounded(1000, ge=0)  # ... on a new data set with this many new labelled live rows
    stop_on_no_gain: bool = True  # a conclusive rejection (gate upper bound <= margin): give up at once
    max_attempts: int = bounded(3, ge=1)  # per episode, rejected and failed together; then gave_up and the new normal
    max_episodes: int = bounded(3, ge=1)  # per episode_period_s; one more drift in the period: gave_up and the new normal
    episode_period_s: float = bounded(86400.0, gt=0)
    max_retries: int = bounded(2, ge=0)
    backoff_s: float = bounded(30.0, ge=0)
    backoff_factor: float = bounded(2.0, ge=1)
    job_timeout_s: float = bounded(1800.0, gt=0)
    rollout: bool = True
    overrides: list[str] = field(default_factory=list)

    def validate(self) -> None:
        check_bounds(self, "drift.retrain")
        require(self.max_rows >= self.min_labelled_rows, "drift.retrain.max_rows",
                f"must be >= min_labelled_rows ({self.min_labelled_rows}), got {self.max_rows}")
        require(0 <= self.min_improvement <= 1, "drift.retrain.min_improvement",
                "must be in [0, 1] (a relative reduction of the loss: 0.01 = 1% lower)")


@dataclass
class DriftSinkConfig:
    buffer_rows: int = bounded(20000, ge=1)
    flush_interval_s: float = bounded(0.5, gt=0)
    max_in_flight: int = bounded(4, ge=1)
    lookup_interval_s: float = 5.0

    def validate(self) -> None:
        check_bounds(self, "drift.sink")


@dataclass
class MonitorActorConfig:
    name_prefix: str = "foundry-monitor"
    namespace: str = "foundry"
    num_cpus: float = bounded(0.5, ge=0)
    max_restarts: int = -1
    poll_interval_s: float = bounded(1.0, gt=0)
    retain_rows: int = 50000
    # Rows (and labels, and roll-out answers) waiting for a round, each: beyond it ``ingest`` takes a
    # uniform sample of what fits, counts the rest (``rows_dropped``) and tells the sink, which backs off.
    max_queued_rows: int = 20000
    history_rounds: int = bounded(2000, ge=1)  # test rounds kept in memory for DriftMonitor.rounds() (plots, the demo)
    follow_served_version: bool = True  # re-base when Serve answers with another version (swapped outside)

    def validate(self, window: DriftWindowConfig) -> None:
        check_bounds(self, "drift.monitor")
        require(bool(SERVE_NAME.fullmatch(self.name_prefix)), "drift.monitor.name_prefix",
                f"use letters, digits, '.', '-' or '_', got {self.name_prefix!r}")
        require(self.max_restarts >= -1, "drift.monitor.max_restarts", "must be >= -1 (-1: restart forever)")
        require(self.retain_rows >= window.size, "drift.monitor.retain_rows", f"must be >= drift.window.size ({window.size})")


@dataclass
class DriftConfig:
    enabled: bool = True
    alarm: DriftAlarmConfig = field(default_factory=DriftAlarmConfig)
    window: DriftWindowConfig = field(default_factory=DriftWindowConfig)
    detectors: DriftDetectorsConfig = field(default_factory=DriftDetectorsConfig)
    retrain: RetrainConfig = field(default_factory=RetrainConfig)
    sink: DriftSinkConfig = field(default_factory=DriftSinkConfig)
    monitor: MonitorActorConfig = field(default_factory=MonitorActorConfig)

    def validate(self, task: Task) -> None:
        self.detectors.validate(task)
        self.window.validate()
        voters = [name for name in ("tabular", "multivariate", "prediction", "concept", "online")
                  if getattr(self.detectors, name).enabled and getattr(self.detectors, name).vote]
        self.alarm.validate()
        if self.enabled and self.retrain.enabled and self.alarm.method is AlarmMethod.windows:
            require(len(voters) >= self.window.votes_required, "drift.window.votes_required",
                    f"{self.window.votes_required} votes needed but only {len(voters)} enabled detector(s) vote ({voters})")
        self.retrain.validate()
        self.sink.validate()
        self.monitor.validate(self.window)
