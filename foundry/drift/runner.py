"""The retrain runner: every Jobs API and registry call of a retrain attempt, and nothing else.

``RetrainRunner`` writes the attempt's data set, submits the job, polls it, stops it on timeout, and
reads what it did (from the registry's lineage) and, when it failed, why (from its log). It returns
plain results; the monitor decides (``RetrainController``), writes events and keeps state. Why it is
separate: these are the monitor's slow calls (network round trips, storage reads of every stored
label), so the monitor makes them without its lock (``DriftMonitor``'s docstring), and a reader can
follow a job's life without the detectors around it.

Its own state, touched only by the thread running a round:
- ``status_errors``: status polls in a row the Jobs API did not answer. Such a job is *unknown*, never
  failed: a retry started now could run beside it and both could promote. At ``MAX_STATUS_ERRORS``
  the monitor says so once (``retrain_status_unknown``) and keeps waiting.
- ``stopping``: the timed-out job a stop was sent to; the attempt counts as failed only once the job
  is confirmed stopped (a retry waits for it), and its status then reads ``TIMEOUT ...``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import pandas as pd

from foundry.drift import retrain
from foundry.drift.controller import Decision
from foundry.drift.monitor_config import MonitorSections
from foundry.drift.retrain import RetrainData, RetrainOutcome
from foundry.errors import ConfigError

log = logging.getLogger(__name__)

MAX_STATUS_ERRORS = 5


@dataclass(frozen=True)
class Submitted:
    """A submission's result: ``error`` is None when the Jobs API took it (or already had it)."""

    submission_id: str
    already_existed: bool
    overrides: list[str]
    seconds: float
    error: Exception | None = None


@dataclass(frozen=True)
class JobPoll:
    """One look at a running attempt. ``outcome`` is set once the job is over (what the registry shows
    it did); ``unanswered`` carries the error on the poll that makes ``MAX_STATUS_ERRORS`` in a row."""

    outcome: RetrainOutcome | None = None
    cause: str | None = None  # a failed attempt's cause, from its log
    unanswered: str | None = None
    retryable: bool = True  # False: the job exited as a configuration error, which the same command repeats


class RetrainRunner:
    def __init__(self, cfg: MonitorSections, client: Any = None):
        self.cfg = cfg
        self.client = client  # a JobSubmissionClient, made on first use (tests set a fake)
        self.status_errors = 0
        self.stopping: str | None = None

    def job_client(self):
        if self.client is None:
            from foundry.runtime import connection

            self.client = connection.job_client(self.cfg.cluster)
        return self.client

    # ---- submit -------------------------------------------------------------------------------------------
    def prepare(self, episode: str, reference: pd.DataFrame | None, since: float | None, generation: int,
                min_new_rows: int) -> RetrainData | None:
        """The attempt's data set (reads every stored label, writes the set); None while too few rows exist."""
        return retrain.prepare_dataset(self.cfg, episode, reference, since=since, generation=generation,
                                       min_new_rows=min_new_rows)

    def submit(self, decision: Decision, reference_version: str, data: RetrainData) -> Submitted:
        """Submit ``python -m jobs.train`` for the decided attempt (idempotent on its submission id)."""
        from foundry.runtime import jobs as job_submission

        episode = decision.episode_id
        overrides = retrain.job_arguments(self.cfg, reference_version, data, episode)
        meta = job_submission.metadata("retrain", self.cfg.model_name, trigger="drift", episode=episode)
        started = time.perf_counter()
        try:
            sub = job_submission.submit(self.job_client(), retrain.TRAIN_MODULE, overrides, meta,
                                        submission_id=decision.submission_id)
        except Exception as exc:
            return Submitted(decision.submission_id, False, overrides, time.perf_counter() - started, exc)
        return Submitted(sub.submission_id, sub.already_existed, overrides, time.perf_counter() - started)

    # ---- poll ---------------------------------------------------------------------------------------------
    def poll(self, sid: str, submitted_at: float | None, now: float, episode: str) -> JobPoll:
        """The job's status; a stop once it ran past ``job_timeout_s``; once it is over, its outcome."""
        try:
            status = self.job_client().get_job_status(sid).value
        except Exception as exc:
            if not job_is_gone(exc):
                # No answer (a dashboard restart, the network): the job may still be running.
                self.status_errors += 1
                return JobPoll(unanswered=str(exc) if self.status_errors == MAX_STATUS_ERRORS else None)
            status = f"LOST (the cluster does not know the job: {exc})"  # e.g. the cluster was restarted
        self.status_errors = 0
        if status in ("PENDING", "RUNNING"):
            timeout = self.cfg.drift.retrain.job_timeout_s
            if submitted_at is not None and now - submitted_at > timeout and self.stopping != sid:
                try:
                    self.job_client().stop_job(sid)
                    self.stopping = sid  # a retry waits until the job is confirmed stopped
                except Exception as exc:
                    log.warning("could not stop %s: %s", sid, exc)
            return JobPoll()
        if self.stopping == sid:
            status = f"TIMEOUT after {self.cfg.drift.retrain.job_timeout_s:.0f} s (then {status})"
            self.stopping = None
        outcome = retrain.read_outcome(self.cfg, episode, status, sid)
        if outcome.outcome != "failed":
            return JobPoll(outcome)
        return JobPoll(outcome, self.failure_cause(sid), retryable=self.exit_code(sid) != ConfigError.exit_code)

    def exit_code(self, sid: str) -> int | None:
        """The job driver's exit code (None: unknown, e.g. stopped, or an older cluster)."""
        try:
            return self.job_client().get_job_info(sid).driver_exit_code
        except Exception:
            return None

    def failure_cause(self, sid: str) -> str | None:
        """Why a job failed, from the end of its log: the ``error: ...`` line every Foundry command prints
        for an expected failure, else the last lines (a traceback's end)."""
        try:
            logs = self.job_client().get_job_logs(sid)
        except Exception:
            return None
        lines = [line.strip() for line in (logs or "").splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith("error:")]
        return (errors[-1] if errors else " | ".join(lines[-3:]))[:1000] or None


def job_is_gone(exc: BaseException) -> bool:
    """The Jobs API answered that it does not know the job (HTTP 404), as opposed to not answering."""
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("status code 404" in text or "does not exist" in text)


__all__ = ["MAX_STATUS_ERRORS", "JobPoll", "RetrainRunner", "Submitted", "job_is_gone"]
