"""The ``demo`` section (``conf/demo/``): ``make demo``'s traffic, time limits and report."""

from __future__ import annotations

from dataclasses import dataclass, field

from foundry.config.common import bounded, check_bounds


@dataclass
class DemoTrafficConfig:
    rows_per_request: int = bounded(20, ge=1)
    concurrency: int = bounded(4, ge=1)
    rate_rows_per_s: float = bounded(250.0, gt=0)  # rows per second, with labels on /feedback
    baseline_rows: int = bounded(3000, ge=1)  # in-distribution rows before the world changes
    drift_scenario: str = "concept_shift"  # a scenario of the bundled data set (foundry.datasets)
    after_rows: int = bounded(2000, ge=1)  # drifted rows sent after the healed model is serving
    seed: int = 1000

    def validate(self) -> None:
        check_bounds(self, "demo.traffic")


@dataclass
class DemoConfig:
    traffic: DemoTrafficConfig = field(default_factory=DemoTrafficConfig)
    pipeline_timeout_s: float = bounded(1200.0, gt=0)
    heal_timeout_s: float = bounded(900.0, gt=0)  # from the drift onset to the new version serving
    report_dir: str = "outputs/demo"  # one folder per run: <report_dir>/<UTC time>/
    fresh_start: bool = True  # forget this model's registry and monitoring state first (reproducible runs)
    down_at_end: bool = False  # stop the local cluster when the demo ends (make demo-down does it later)
    progress_every_s: float = bounded(5.0, gt=0)

    def validate(self) -> None:
        check_bounds(self, "demo")
        self.traffic.validate()
