"""Submitting Foundry jobs through the Ray Jobs API, the way the dashboard's Jobs page can explain them.

Every submission carries metadata (``job_name``, ``model``, ``trigger``, and the drift ``episode`` when
there is one), so the Jobs page tells what each job is. A caller may fix the ``submission_id``: the
self-healing loop derives it from (model, episode), so submitting the same retrain twice is a no-op.
Ray answers a duplicate id with a plain RuntimeError ("already exists"); that is treated as "already
submitted", never as a failure.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from foundry.errors import FoundryError

REPO_ROOT = Path(__file__).resolve().parents[2]  # foundry/runtime/jobs.py -> the checkout
# The code a job needs: this source checkout, uploaded as the job's working_dir. An installed Foundry
# (a wheel, an image) has no checkout to upload: its jobs run the copy installed on the cluster.
CODE_DIR: Path | None = REPO_ROOT if (REPO_ROOT / "pyproject.toml").is_file() else None
# Never upload these with a job: the venv is large and machine-specific, the rest is local state.
UPLOAD_EXCLUDES = [".venv", ".git", "outputs", "multirun", "benchmarks/results", "**/__pycache__"]
POLL_S = 2.0
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
MAX_POLL_FAILURES = 5


@dataclass(frozen=True)
class Submission:
    submission_id: str
    already_existed: bool


def metadata(job_name: str, model: str, trigger: str = "manual", episode: str | None = None) -> dict[str, str]:
    """Ray requires string values; secrets never go here (metadata is shown on the dashboard)."""
    meta = {"job_name": job_name, "model": model, "trigger": trigger}
    if episode is not None:
        meta["episode"] = episode
    return meta


def submit(client, module: str, overrides: list[str], meta: dict[str, str], submission_id: str | None = None,
           working_dir: str | Path | None = CODE_DIR, env_vars: dict[str, str] | None = None) -> Submission:
    """Submit ``python -m <module> <overrides>``; idempotent when ``submission_id`` is given.

    The entrypoint runs in a shell, so each override is quoted (list values hold brackets and
    commas). ``env_vars`` reach the job's driver only (e.g. the Serve API key for ``jobs.pipeline``).
    """
    entrypoint = " ".join(["python", "-m", module, *(shlex.quote(o) for o in overrides)])
    runtime_env = {"working_dir": str(working_dir), "excludes": UPLOAD_EXCLUDES} if working_dir else {}
    if env_vars:
        runtime_env["env_vars"] = dict(env_vars)
    runtime_env = runtime_env or None
    try:
        sid = client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env, metadata=meta,
                                submission_id=submission_id)
    except RuntimeError as exc:
        if submission_id is not None and "already exists" in str(exc):
            return Submission(submission_id, already_existed=True)
        raise
    return Submission(sid, already_existed=False)


def follow(client, submission_id: str, timeout_s: float, out=print, show=lambda line: True) -> str:
    """Print the job's log as it grows (lines passing ``show``) and return its final status name."""
    shown = 0
    deadline = time.monotonic() + timeout_s
    failures = 0
    while True:
        try:
            status = client.get_job_status(submission_id)
            logs = client.get_job_logs(submission_id)
            failures = 0
        except (ConnectionError, OSError) as exc:  # requests' errors derive from OSError
            # A busy head can drop one poll; a cluster that stays unreachable is an error.
            failures += 1
            if failures > MAX_POLL_FAILURES:
                raise FoundryError(f"lost the Jobs API while following {submission_id}: {exc}") from exc
            time.sleep(POLL_S * failures)
            continue
        # Print whole lines only: a poll can end mid-line, and the rest arrives with the next one.
        end = len(logs) if status.is_terminal() else logs.rfind("\n", shown) + 1
        for raw in logs[shown:end].splitlines():
            line = ANSI_ESCAPE.sub("", raw)  # progress bars redraw with cursor moves; keep the text
            if show(line):
                out(f"  | {line}")
        shown = max(shown, end)
        if status.is_terminal():
            return status.value
        if time.monotonic() > deadline:
            client.stop_job(submission_id)
            raise FoundryError(f"job {submission_id} did not finish within {timeout_s:.0f} s; stopped it")
        time.sleep(POLL_S)
