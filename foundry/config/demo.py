"""The ``demo`` section (``conf/demo/``): ``make demo``'s traffic, time limits and report."""

from __future__ import annotations

from dataclasses import dataclass, field

from foundry.config.common import require


@dataclass
class DemoTrafficConfig:
    rows_per_request: int = 20
    concurrency: int = 4
    rate_rows_per_s: float = 250.0  # rows per second, with labels on /feedback
    baseline_rows: int = 3000  # in-distribution rows before the world changes
    drift_scenario: str = "concept_shift"  # a scenario of the bundled data set (foundry.datasets)
    after_rows: int = 2000  # drifted rows sent after the healed model is serving
    seed: int = 1000

    def validate(self) -> None:
        for key in ("rows_per_request", "concurrency", "baseline_rows", "after_rows"):
            require(getattr(self, key) >= 1, f"demo.traffic.{key}", f"must be >= 1, got {getattr(self, key)}")
        require(self.rate_rows_per_s > 0, "demo.traffic.rate_rows_per_s", "must be > 0")


@dataclass
class DemoConfig:
    traffic: DemoTrafficConfig = field(default_factory=DemoTrafficConfig)
    pipeline_timeout_s: float = 1200.0
    heal_timeout_s: float = 900.0  # from the drift onset to the new version serving
    report_dir: str = "outputs/demo"  # one folder per run: <report_dir>/<UTC time>/
    fresh_start: bool = True  # forget this model's registry and monitoring state first (reproducible runs)
    down_at_end: bool = False  # stop the local cluster when the demo ends (make demo-down does it later)
    progress_every_s: float = 5.0

    def validate(self) -> None:
        self.traffic.validate()
        for key in ("pipeline_timeout_s", "heal_timeout_s", "progress_every_s"):
            require(getattr(self, key) > 0, f"demo.{key}", "must be > 0")
