"""A version's training figures as Prometheus publishes them: its test metrics and stage seconds.

Why they are not exported by the training job: its driver is short-lived. Ray's metrics agent keeps a
gauge only while the process that set it keeps re-reporting it (about two report intervals), and a
driver that exits seconds after ``record`` may never be scraped at all. So the job only writes the
figures into the version's registry metadata (``metrics``, ``timings_s``), and the long-lived process
that loads the version, the Serve replica, publishes them as gauges for as long as it serves it
(``foundry.serving.metrics.RayServeMetrics.serving``). The registry stays the source of truth; the
dashboard shows the figures of every version a live replica serves or served. Retrain runs and their
outcomes are counted by the other long-lived process, the drift monitor (``foundry_retrains``).
"""

from __future__ import annotations

import math


def version_figures(metadata: dict) -> tuple[dict[str, float], dict[str, float]]:
    """``(test metrics, stage seconds)`` of a version from its registry metadata: finite numbers only
    (a row count or a missing figure is not a gauge)."""
    def numbers(section) -> dict[str, float]:
        if not isinstance(section, dict):
            return {}
        return {str(k): float(v) for k, v in section.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and k != "rows"}

    return numbers(metadata.get("metrics")), numbers(metadata.get("timings_s"))
