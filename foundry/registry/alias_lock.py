"""Compare-and-set for alias moves: two writers that both read ``production = v1`` cannot both move it.

An alias move is read-check-write. On a local or shared POSIX file system the three steps run under an
exclusive ``fcntl`` lock on a file next to the alias, so the check is exact across processes (and
hosts, where the file system honours locks, as NFS does). Object stores (S3, GCS) give pyarrow no
conditional write, so there the check runs without a lock: it catches every writer that moved the
alias before this one read it, not two writes in the same few milliseconds.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator

import pyarrow.fs as pafs


@contextlib.contextmanager
def locked(fs: pafs.FileSystem, alias_path: str) -> Iterator[None]:
    """Hold the alias's lock (local file systems) while the caller reads, checks and writes it."""
    if not isinstance(fs, pafs.LocalFileSystem):
        yield
        return
    os.makedirs(os.path.dirname(alias_path), exist_ok=True)
    fd = os.open(f"{alias_path}.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
