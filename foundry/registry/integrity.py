"""Checksums computed while bytes move, so every copy is hashed in the same pass that makes it.

Hashing in-stream means registering or downloading a model reads each byte once, and a fetched
file is compared against the manifest before it is moved to where a loader would find it.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow.fs as pafs

CHUNK = 8 * 1024 * 1024


def pump(src: BinaryIO, dst: BinaryIO | None = None) -> dict[str, Any]:
    """Copy ``src`` to ``dst`` (or just read it) and return the manifest record of the bytes seen."""
    digest, size = hashlib.sha256(), 0
    while chunk := src.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
        if dst is not None:
            dst.write(chunk)
    return {"sha256": digest.hexdigest(), "size": size}


def upload(fs: pafs.FileSystem, local: Path, dst: str) -> dict[str, Any]:
    fs.create_dir(dst.rsplit("/", 1)[0], recursive=True)
    with open(local, "rb") as src, fs.open_output_stream(dst) as out:
        record = pump(src, out)
    if isinstance(fs, pafs.LocalFileSystem):
        # The manifest that follows promises these bytes exist; make that survive a power cut.
        with open(dst, "rb+") as fh:
            os.fsync(fh.fileno())
    return record


def hash_stored(fs: pafs.FileSystem, path: str) -> dict[str, Any]:
    with fs.open_input_stream(path) as src:
        return pump(src)


def hash_local(path: Path) -> dict[str, Any]:
    with open(path, "rb") as src:
        return pump(src)


def download(fs: pafs.FileSystem, src_path: str, dst: Path, expected: dict[str, Any]) -> dict[str, Any] | None:
    """Copy into ``dst`` only if the bytes match ``expected``; returns the mismatching record otherwise.

    The copy lands under a temporary name and is renamed into place after the check, so neither a
    tampered download nor a concurrent fetch of the same version ever leaves a bad file at ``dst``.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".tmp-{uuid.uuid4().hex}-{dst.name}")
    try:
        with fs.open_input_stream(src_path) as src, open(tmp, "wb") as out:
            record = pump(src, out)
        if record["sha256"] != expected["sha256"] or record["size"] != expected["size"]:
            return record
        os.replace(tmp, dst)
        return None
    finally:
        tmp.unlink(missing_ok=True)
