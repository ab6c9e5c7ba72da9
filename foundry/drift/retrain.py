"""A retrain job for a drift episode: its data set, its Hydra overrides, and reading its outcome.

Data (``drift.retrain.data_policy``):
- ``recent``: the newest live rows received since the estimated drift onset (a change-point estimate
  on the monitor's live rows, ``foundry.drift.onset``) that have a label from ``/feedback`` (joined
  on ``request_id``), at most ``max_rows``; the job waits until ``min_labelled_rows`` of them exist;
- ``reference_plus_recent``: the same plus the served version's reference sample (its training
  rows), so a model forgets less of the old world.
The set is written once per episode and data generation to
``<storage.monitoring>/<model>/retrain/<episode>-d<n>.parquet`` (atomically): a retry after a failed
attempt reuses it (the same rows), an attempt after a rejection gets the next generation, which
must hold ``more_rows_after_rejection`` labelled rows the previous one did not. The job is
pointed at it with ``data.source.path``. Its split key becomes ``request_id``: the job
then holds out a test split of these recent rows, on which ``promotion.policy=if_better`` scores
the challenger AND the current production model row by row, and the promotion gate
(foundry/train/gate.py) promotes only on evidence of a lower loss by ``min_improvement``. With
``warm_start`` (the default) the challenger starts from the production version's weights.

Outcome: the job records the episode in the version's lineage (``drift_episode``) and its
promotion decision in the metadata, so the monitor reads what happened from the registry instead
of parsing logs.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from datetime import datetime, timezone

import pandas as pd

from foundry import storage
from foundry.config import RetrainDataPolicy, Task
from foundry.drift.live_store import LiveStore
from foundry.drift.monitor_config import MonitorSections
from foundry.rollout import target_alias
from foundry.serving.feedback import read_feedback
from foundry.storage.layout import StorageLayout

log = logging.getLogger(__name__)

REQUEST_ID = "request_id"
TRAIN_MODULE = "jobs.train"


@dataclass(frozen=True)
class RetrainData:
    uri: str
    rows: int
    labelled_live_rows: int
    reference_rows: int
    new_rows: int | None = None  # labelled live rows the previous generation's set did not have


def dataset_uri(storage_root: str, model: str, episode: str, generation: int = 1) -> str:
    return StorageLayout(storage_root).retrain_set(model, episode, generation)


def _request_ids(uri: str) -> set[str]:
    fs, path = storage.resolve(uri)
    if not storage.exists(fs, path):
        return set()
    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(storage.read_bytes(fs, path)), columns=[REQUEST_ID])
    return set(table.column(REQUEST_ID).to_pylist())


def labelled_live_rows(cfg: MonitorSections, since: float | None = None) -> pd.DataFrame:
    """The newest live rows with a label (at most ``drift.retrain.max_rows``), label in ``data.label``;
    with ``since`` (epoch seconds) only rows received from then on."""
    # Labels arrive after their rows, so those received since ``since`` (else all that retention keeps)
    # are the ones that can match: the read follows that range, not the length of the history.
    labels = read_feedback(cfg.storage.root, cfg.model_name,
                           since=None if since is None else datetime.fromtimestamp(since - 1, timezone.utc))
    if labels.empty:
        return pd.DataFrame()
    labels = labels.sort_values("received_at").drop_duplicates(REQUEST_ID, keep="last")[[REQUEST_ID, "label"]]
    labelled_ids = set(labels[REQUEST_ID])
    # 1 ms of slack: ``since`` went through float seconds, which can land a nanosecond after the row it names.
    cutoff = None if since is None else pd.Timestamp(since, unit="s", tz="UTC") - pd.Timedelta(milliseconds=1)

    def keep(frame: pd.DataFrame) -> pd.DataFrame:
        mask = frame[REQUEST_ID].isin(labelled_ids)
        if cutoff is not None:
            mask &= frame["received_at"] >= cutoff
        return frame[mask]

    live = LiveStore(cfg.storage.root, cfg.model_name).read_recent(cfg.drift.retrain.max_rows, where=keep)
    if live.empty:
        return live
    joined = live.merge(labels, on=REQUEST_ID, how="inner")
    label = joined.pop("label")
    joined[cfg.data.label] = label.astype("float64") if cfg.data.task is Task.regression else label.astype(str)
    return joined[[REQUEST_ID] + [f.name for f in cfg.data.features] + [cfg.data.label]]


def prepare_dataset(cfg: MonitorSections, episode: str, reference: pd.DataFrame | None,
                    since: float | None = None, generation: int = 1, min_new_rows: int = 0) -> RetrainData | None:
    """Write the episode's training set of ``generation`` (once) and describe it; None while too few
    rows are labelled, or (``min_new_rows``) too few of them are new to the previous generation's set.

    ``since``: the estimated drift onset. Rows from before it show the old world, which the model
    being replaced already knows; learning from them would dilute what changed.
    """
    uri = dataset_uri(cfg.storage.root, cfg.model_name, episode, generation)
    fs, path = storage.resolve(uri)
    if storage.exists(fs, path):  # a retry after a failed attempt: the same rows
        import pyarrow.parquet as pq

        meta = pq.read_metadata(io.BytesIO(storage.read_bytes(fs, path)))
        return RetrainData(uri, meta.num_rows, meta.num_rows, 0)
    recent = labelled_live_rows(cfg, since)
    if len(recent) < cfg.drift.retrain.min_labelled_rows:
        return None
    new_rows = None
    if generation > 1:  # after a rejection: only more evidence can change the verdict
        seen = _request_ids(dataset_uri(cfg.storage.root, cfg.model_name, episode, generation - 1))
        new_rows = int((~recent[REQUEST_ID].isin(seen)).sum())
        if new_rows < min_new_rows:
            return None
    parts = [recent]
    ref_rows = 0
    if cfg.drift.retrain.data_policy is RetrainDataPolicy.reference_plus_recent and reference is not None:
        ref = reference[[f.name for f in cfg.data.features] + [cfg.data.label]].copy()
        ref.insert(0, REQUEST_ID, [f"reference-{i}" for i in range(len(ref))])
        if cfg.data.task is not Task.regression:
            ref[cfg.data.label] = ref[cfg.data.label].astype(str)
        parts.insert(0, ref)
        ref_rows = len(ref)
    frame = pd.concat(parts, ignore_index=True)
    for f in cfg.data.features:  # one type per column, whatever the JSON of each request carried
        if f.type.value == "numeric":
            frame[f.name] = pd.to_numeric(frame[f.name], errors="coerce").astype("float64")
        else:
            frame[f.name] = frame[f.name].astype("string").astype(object).where(frame[f.name].notna(), None)
    storage.write_table_atomic(fs, path, frame)
    return RetrainData(uri, len(frame), len(recent), ref_rows, new_rows)


def job_arguments(cfg: MonitorSections, reference_version: str, data: RetrainData, episode: str) -> list[str]:
    """``jobs.train``'s arguments for the retrain of ``reference_version``.

    The job starts from that version's stored config (``--from-version``: its data schema, model,
    trainer and cluster settings, whatever config folder it was first composed from), so a user's
    own data set retrains on a cluster that never saw their config folder. On top: the episode's data
    set and the retrain's own keys, then ``drift.retrain.overrides`` (key=value only).
    """
    overrides = list(cfg.drift.retrain.overrides)
    # A retrain asked to search (``tune=...`` among the overrides) starts its trials from scratch; otherwise it
    # refines production's weights (warm start) with the hyperparameters stored with it, and a version
    # trained with a search stores ``tune.enabled: true`` (and its best trial's values): that search is off
    # in the retrain, which would otherwise fail at once ("warm_start_from does not combine with tune"),
    # attempt after attempt, and the model never healed.
    searches, own_start = overrides_set(overrides, "tune"), overrides_set(overrides, "trainer.warm_start_from")
    warm = cfg.drift.retrain.warm_start and not searches and not own_start
    # Refine what production knows (foundry/train/warm_start.py) rather than relearn it from the few
    # thousand recent rows alone; null: train from scratch on them. The user's own choice is sent once.
    start = [] if own_start else [
        f"trainer.warm_start_from={cfg.model_name}@{reference_version}" if warm else "trainer.warm_start_from=null"]
    search = ["tune.enabled=false"] if warm else []
    return ["--from-version", f"{cfg.model_name}@{reference_version}",
            f"model_name={cfg.model_name}",
            f"storage.root={cfg.storage.layout.root}",
            # Inside a job RAY_ADDRESS names the cluster; an address stored with the version may not.
            "ray.address=null",
            "data.source.synthetic=null",
            f"data.source.path={data.uri}",
            "data.source.format=parquet",
            f"data.split.key={REQUEST_ID}",
            "trigger=drift",
            f"drift_episode={episode}",
            "promotion.policy=if_better",
            f"promotion.alias={cfg.promotion.alias}",
            # The monitor reads the outcome from the alias its own config names (read_outcome): the job
            # moves the same one (production, or the candidate of a shadow/canary roll-out).
            f"promotion.rollout={cfg.promotion.rollout.value}",
            f"promotion.candidate_alias={cfg.promotion.candidate_alias}",
            f"promotion.min_improvement={cfg.drift.retrain.min_improvement}",
            *start, *search, *overrides]


def overrides_set(overrides: list[str], key: str) -> bool:
    """Whether Hydra ``overrides`` set ``key`` or anything under it (``key=``, ``key.sub=``, ``+key``, ``~key``)."""
    names = (o.lstrip("+~").split("=", 1)[0] for o in overrides)
    return any(name == key or name.startswith(f"{key}.") for name in names)


@dataclass(frozen=True)
class RetrainOutcome:
    outcome: str  # promoted | rejected | failed
    version: str | None
    detail: str
    metrics: dict | None = None
    champion_metrics: dict | None = None
    no_gain: bool = False  # rejected conclusively by the gate (foundry/train/gate.py GateResult.no_gain)


def _made_by(lineage: dict, episode: str, submission_id: str | None) -> bool:
    """Whether a version's lineage names this attempt: by its submission id, or (versions that do not
    record one) by the episode, whose ids are never reused."""
    if submission_id and lineage.get("submission_id"):
        return lineage["submission_id"] == submission_id
    return lineage.get("drift_episode") == episode


def read_outcome(cfg: MonitorSections, episode: str, job_status: str, submission_id: str | None = None
                 ) -> RetrainOutcome:
    """What a finished retrain attempt did, from the registry, whatever the job's status says: a job that
    failed after registering (or after moving the alias) did what the registry shows. "promoted" only
    when the alias history shows the move (a compare-and-set that lost leaves the metadata's intent
    behind, not the alias)."""
    registry = cfg.storage.layout.open_registry()
    for mv in reversed(registry.versions(cfg.model_name)):
        meta = mv.metadata or {}
        if not _made_by(meta.get("lineage") or {}, episode, submission_id):
            continue
        promotion = meta.get("promotion") or {}
        champion = (meta.get("champion_at_training") or {}).get("metrics_on_same_test_split")
        alias = target_alias(cfg.promotion)  # production, or the candidate alias of a shadow/canary roll-out
        moved = promotion.get("promoted") and any(
            r.get("version") == mv.version for r in registry.alias_history(cfg.model_name, alias))
        decision = promotion.get("decision", "")
        if promotion.get("promoted") and not moved:
            decision = f"not promoted: {alias} was moved by another writer ({decision})"
        no_gain = bool((promotion.get("gate") or {}).get("no_gain")) and not moved
        return RetrainOutcome("promoted" if moved else "rejected", mv.version, decision, meta.get("metrics"),
                              champion, no_gain)
    detail = f"job {job_status}" if job_status != "SUCCEEDED" else \
        "the job succeeded but registered no version for the episode"
    return RetrainOutcome("failed", None, detail)


def reference_frame(version_dir) -> pd.DataFrame | None:
    from pathlib import Path

    path = Path(version_dir) / "reference.parquet"
    return pd.read_parquet(path) if path.exists() else None


__all__ = ["RetrainData", "RetrainOutcome", "dataset_uri", "job_arguments", "labelled_live_rows", "overrides_set",
           "prepare_dataset", "read_outcome", "reference_frame"]
