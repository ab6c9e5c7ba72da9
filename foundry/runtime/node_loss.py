"""Retry a piece of Ray work that failed only because a node or a worker process went away.

On an autoscaling cluster nodes leave: idle ones are removed, spot ones are taken back, a worker
is killed for memory. Ray retries plain tasks by itself, but a Ray Data execution that lost an
actor or a node, and the driver code around it, fail as a whole. Those failures say nothing about
the data or the code, so the training job runs such steps again (``data.execution_retries``
times) instead of failing a retrain that would succeed on the second try. Any other error (bad
data, a bug) is raised at once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

# Ray's errors for lost processes and nodes (by name: some are not importable in every Ray build).
NODE_LOSS_ERRORS = ("ActorDiedError", "ActorUnavailableError", "NodeDiedError", "ObjectLostError",
                    "OwnerDiedError", "WorkerCrashedError", "LocalRayletDiedError", "ObjectReconstructionFailedError")


def is_node_loss(exc: BaseException) -> bool:
    """Does this error (or one it was raised from) mean a process or node was lost?"""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        names = {cls.__name__ for cls in type(exc).__mro__}
        cause = getattr(exc, "cause", None)  # RayTaskError keeps the remote error here
        if names & set(NODE_LOSS_ERRORS) or (cause is not None and is_node_loss(cause)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def retry_on_node_loss(fn: Callable[[], T], what: str, retries: int, say=print, backoff_s: float = 2.0) -> T:
    """``fn()``, run again up to ``retries`` times while it fails with a node/process loss."""
    attempt = 0
    while True:
        try:
            return fn()
        except Exception as exc:
            if attempt >= retries or not is_node_loss(exc):
                raise
            attempt += 1
            say(f"      {what}: lost a node or worker ({type(exc).__name__}); retry {attempt}/{retries}")
            log.warning("%s failed with a node/process loss, retrying (%d/%d)", what, attempt, retries, exc_info=True)
            time.sleep(backoff_s * attempt)
