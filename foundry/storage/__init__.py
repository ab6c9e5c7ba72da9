"""One way to reach storage: a local path or any URI that pyarrow's filesystem layer understands.

Everything the platform persists (data sets, checkpoints, the registry, monitor state) goes through
here, so pointing ``storage.root`` at ``s3://bucket/foundry`` moves all of it to a shared bucket.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.fs as pafs

if TYPE_CHECKING:
    import pandas as pd


def normalize(uri: str) -> str:
    """Expand ``~`` and make local paths absolute (Ray workers and jobs run in other directories)."""
    if "://" in uri:
        return uri.rstrip("/")
    return str(Path(os.path.expanduser(uri)).resolve())


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """Filesystem and path inside it for ``uri``."""
    uri = normalize(uri)
    if "://" not in uri:
        return pafs.LocalFileSystem(), uri
    return pafs.FileSystem.from_uri(uri)


def join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def exists(fs: pafs.FileSystem, path: str) -> bool:
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def read_bytes(fs: pafs.FileSystem, path: str) -> bytes:
    with fs.open_input_stream(path) as f:
        return f.read()


def write_bytes_atomic(fs: pafs.FileSystem, path: str, data: bytes | pa.Buffer) -> None:
    """Write then move into place, so a reader sees the old file or the whole new one, never a part.

    The bytes go to a dot-named temporary next to ``path`` (readers and listings skip dot-names),
    then move. On a local disk the temporary is fsynced before the rename (atomic) and the folder
    after it, so a crash leaves the old file or the whole new one. On object stores the move is a
    copy of a complete object: a PUT cut off half-way (pyarrow commits what an output stream holds
    when the stream closes, even on an exception) lands on the temporary, never on ``path``.
    A failed write deletes its temporary.
    """
    parent = path.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    tmp = f"{parent}/.tmp-{uuid.uuid4().hex}-{path.rsplit('/', 1)[-1]}"
    local = isinstance(fs, pafs.LocalFileSystem)
    try:
        with fs.open_output_stream(tmp) as f:
            f.write(data)
        if local:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        fs.move(tmp, path)
    except BaseException:
        with contextlib.suppress(Exception):
            fs.delete_file(tmp)
        raise
    if local:
        _fsync_dir(parent)


def _fsync_dir(path: str) -> None:
    """Make a rename in ``path`` durable (best effort: some filesystems refuse to fsync a folder)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_table_atomic(fs: pafs.FileSystem, path: str, table: pa.Table | pd.DataFrame) -> None:
    """One Parquet file, atomically (``write_bytes_atomic``); a DataFrame is written without its index.

    The file is encoded in memory first, so a table that fails to encode leaves nothing on storage;
    every Parquet file the platform writes whole (live rows, labels, events, retrain sets, new-normal
    references) goes through here.
    """
    import pyarrow.parquet as pq

    if not isinstance(table, pa.Table):
        table = pa.Table.from_pandas(table, preserve_index=False)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    write_bytes_atomic(fs, path, sink.getvalue())
