"""A driver's working directory that cannot vanish under it.

Ray unpacks a job's ``working_dir`` into ``<session>/runtime_resources/working_dir_files/`` and runs
the driver there. On a fake multi-node cluster whose "nodes" share that folder, a node that unpacks the
package again (Ray does so with ``overwrite=True``) deletes it under a running driver: from then on
``os.getcwd()`` raises ``FileNotFoundError``, and so does every library call that resolves a relative path
(``os.path.relpath`` in Ray Tune's result listing, ``transformers`` at import). The local cluster's worker
nodes now have folders of their own (cluster/fake_nodes.py); this stays for clusters started otherwise
(Ray's own fake provider, ``ray start`` twice on one host).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator

log = logging.getLogger(__name__)


def ensure_cwd() -> None:
    """If the working directory is gone, continue in the system's temp directory (and say so)."""
    try:
        os.getcwd()
    except FileNotFoundError:
        os.chdir(tempfile.gettempdir())
        log.warning("the working directory was gone; continuing in %s", tempfile.gettempdir())


@contextlib.contextmanager
def stable_cwd() -> Iterator[None]:
    """Run the block in the temp directory (which no clean-up removes), then return if possible.

    For long library calls that resolve relative paths at their end (Ray Tune's ``Tuner.fit``):
    checking before the call is not enough when the directory disappears during it."""
    try:
        previous = os.getcwd()
    except FileNotFoundError:
        previous = None
    os.chdir(tempfile.gettempdir())
    try:
        yield
    finally:
        if previous is not None and os.path.isdir(previous):
            os.chdir(previous)
