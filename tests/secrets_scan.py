"""Where a secret has leaked to: every place Foundry or Ray writes down what happened.

Secrets reach Foundry processes only through their environment (``FOUNDRY_API_KEY`` in a job's or
a Serve application's ``runtime_env``, the cluster token file). This scan reads the places that
are kept and shown to people: every file under the storage root (registry, events, live rows,
labels, monitor state, checkpoints), every Ray log of the session (drivers, workers, Serve,
dashboard, GCS), and each job's entrypoint, metadata and log through the Jobs API.
"""

from __future__ import annotations

from pathlib import Path

MAX_FILE_BYTES = 256 * 1024 * 1024


def _files(root: Path):
    for path in root.rglob("*"):
        try:
            if path.is_file() and not path.is_symlink() and path.stat().st_size <= MAX_FILE_BYTES:
                yield path
        except OSError:  # rotated or removed while scanning
            continue


def session_dir() -> Path:
    """The Ray session directory of the cluster this process is connected to."""
    import ray

    node = ray._private.worker.global_worker.node  # the only public route is the CLI's temp dir
    return Path(node.get_session_dir_path())


def leaks(secret: str, roots: list[Path], job_client=None) -> list[str]:
    """Every place that holds ``secret``: file paths, and ``job <id>: <field>`` for Jobs API records."""
    needle = secret.encode()
    found = []
    for root in roots:
        for path in _files(root):
            try:
                if needle in path.read_bytes():
                    found.append(str(path))
            except OSError:
                continue
    if job_client is not None:
        for job in job_client.list_jobs():
            sid = job.submission_id or job.job_id
            if secret in (job.entrypoint or ""):
                found.append(f"job {sid}: entrypoint")
            if secret in repr(job.metadata or {}):
                found.append(f"job {sid}: metadata")
            # Only submitted jobs have a log here; a plain driver's output is in the session's logs.
            if job.submission_id and secret in job_client.get_job_logs(job.submission_id):
                found.append(f"job {sid}: log")
    return found


def token(cluster_config) -> str:
    """The cluster's auth token (the file ``python -m cluster up`` ensured)."""
    from foundry.runtime.connection import token_path

    return token_path(cluster_config).read_text().strip()
