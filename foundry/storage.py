"""One way to reach storage: a local path or any URI that pyarrow's filesystem layer understands.

Everything the platform persists (data sets, checkpoints, the registry, monitor state) goes through
here, so pointing ``storage.root`` at ``s3://bucket/foundry`` moves all of it to a shared bucket.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pyarrow.fs as pafs


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


def write_bytes_atomic(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Write then move into place, so a reader sees the old file or the whole new one, never a part.

    On a local disk the move is a rename (atomic). On object stores a single PUT is already atomic,
    and pyarrow's move is a copy of a complete object.
    """
    parent = path.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    tmp = f"{parent}/.tmp-{uuid.uuid4().hex}-{path.rsplit('/', 1)[-1]}"
    with fs.open_output_stream(tmp) as f:
        f.write(data)
    if isinstance(fs, pafs.LocalFileSystem):
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
    fs.move(tmp, path)
