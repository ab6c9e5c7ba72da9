"""Episode numbers never go back: the floor comes from every durable record of past episodes.

An episode id (``<model>-<reference version>-e<n>``) names the retrain job's submission id, its data set
and the registry lineage of what it trained; reusing one replays an old episode: the Jobs API answers
"already exists", the old job's version is read back as this episode's outcome and rolled out again,
with no training. The monitor persists its counter in ``state.json``, and floors it at start with
the highest number any of these name, so losing or wiping the monitoring folder cannot reuse an id:
- the stored events (``drift_detected``, ``retrain_submitted``, ... carry ``episode``);
- the registry: every version a retrain registered records ``lineage.drift_episode``;
- the Jobs API: every retrain submission id (``foundry-retrain-<episode id>-a<k>``) the cluster still
  knows, failed ones included.
A source that cannot be read (the Jobs API down at start) is skipped: the others still hold.
"""

from __future__ import annotations

import logging
import re

from foundry.drift.events import episode_number, last_episode_number

log = logging.getLogger(__name__)

SUBMISSION_PREFIX = "foundry-retrain-"


def from_registry(registry, model: str) -> int:
    try:
        versions = registry.versions(model)
    except Exception as exc:
        log.warning("episode floor: the registry could not be listed (%s)", exc)
        return 0
    return max((episode_number(((mv.metadata or {}).get("lineage") or {}).get("drift_episode"))
                for mv in versions), default=0)


def from_jobs(job_client, model: str) -> int:
    # Exactly this model's: "foundry-retrain-heal-v2026...-e1-a1", never "foundry-retrain-heal-restart-v...".
    mine = re.compile(rf"{re.escape(SUBMISSION_PREFIX + model)}-v\d{{8}}-\d{{6}}-\d{{3}}-[0-9a-f]{{6}}-e(\d+)-a\d+")
    try:
        jobs = job_client.list_jobs()
    except Exception as exc:
        log.warning("episode floor: the Jobs API could not be listed (%s)", exc)
        return 0
    return max((int(m.group(1)) for j in jobs if (m := mine.fullmatch(j.submission_id or ""))), default=0)


def episode_floor(storage_root: str, model: str, registry, job_client) -> int:
    """The highest episode number the events, the registry or the Jobs API name (0: none)."""
    return max(last_episode_number(storage_root, model), from_registry(registry, model),
               from_jobs(job_client, model) if job_client is not None else 0)
