"""Rolling a promoted version out: Serve pointed at it in place, then the monitor's next reference loaded.

Why here and not in the monitor: pointing Serve at a version (``foundry.serving.control``: a new
``user_config``, replicas load it without a restart) waits until the application is RUNNING again (up
to ``control.DEFAULT_TIMEOUT_S``, 180 s), and loading the new version's detectors reads the registry.
``roll_out`` does both without the monitor's lock and returns what happened; the monitor then swaps
the loaded reference in (its re-base) and writes the events.

With ``drift.retrain.rollout=false`` nothing happens here: Serve still answers with the old version,
its traffic is still tested against its own reference, and the monitor re-bases once Serve answers
with the new one (``drift.monitor.follow_served_version``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from foundry.drift import reference
from foundry.drift.monitor_config import MonitorSections
from foundry.drift.reference import Reference

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rollout:
    version: str
    done: bool  # Serve answers with ``version`` now
    seconds: float = 0.0
    error: str | None = None  # why Serve could not be pointed at it
    reference: Reference | None = None  # the version's detectors: the re-base to apply
    load_error: Exception | None = None  # the version is served, but its reference failed to load


def roll_out(cfg: MonitorSections, version: str,
             load: Callable[[MonitorSections, str], Reference] | None = None) -> Rollout:
    """Point Serve at the promoted ``version`` and load its reference (``load``: ``reference.load``)."""
    if not cfg.drift.retrain.rollout:
        log.info("drift.retrain.rollout=false: %s promoted, Serve left as it is", version)
        return Rollout(version, done=False)
    from foundry.serving import control

    started = time.perf_counter()
    try:
        control.set_model_version(cfg.serve.app_name, version, cfg.data)
    except Exception as exc:
        return Rollout(version, done=False, error=str(exc))
    seconds = round(time.perf_counter() - started, 2)
    try:
        return Rollout(version, done=True, seconds=seconds, reference=(load or reference.load)(cfg, version))
    except Exception as exc:
        return Rollout(version, done=True, seconds=seconds, load_error=exc)


__all__ = ["Rollout", "roll_out"]
