"""The files around a registry version: which local files a version is made of, where fetches land,
checks of fetched bytes, and the names a listing returns.

Small helpers of ``Registry`` (``foundry.registry.store``) and its mixins, kept out of the class so the
class reads as the registry's operations only. ``default_cache_dir`` is public (re-exported by
``foundry.registry`` and ``store``); the rest is private to the package.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from foundry.errors import RegistryError, TamperedArtifactError
from foundry.registry.model_version import MANIFEST, ModelVersion, is_safe_relpath
from foundry.registry.names import check_alias, check_model


def default_cache_dir() -> Path:
    """Where fetches from a remote root land when the caller names no directory."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "foundry" / "registry"


def _local_files(src: Path) -> list[tuple[str, Path]]:
    """Regular files under ``src`` (symlinked files are copied as content; symlinked dirs are not
    followed, so a link loop cannot make a version infinite)."""
    if not src.is_dir():
        raise RegistryError(f"artifacts dir {src} does not exist or is not a directory")
    files = []
    for dirpath, _dirs, names in os.walk(src, followlinks=False):
        for name in names:
            path = Path(dirpath) / name
            if path.is_file():
                files.append((path.relative_to(src).as_posix(), path))
    if not files:
        raise RegistryError(f"artifacts dir {src} contains no files; refusing to register an empty version")
    bad = [rel for rel, _ in files if not is_safe_relpath(rel)]
    if bad:
        raise RegistryError(f"artifacts dir {src} has file names the registry cannot store: {bad[:5]} "
                            f"('{MANIFEST}' at the top level is reserved; no backslashes)")
    return sorted(files)


def _compare(mv: ModelVersion, rel: str, expected: dict, actual: dict) -> None:
    if actual["sha256"] != expected["sha256"] or actual["size"] != expected["size"]:
        raise TamperedArtifactError(
            f"{mv.model}/{mv.version}: file {rel!r} does not match its manifest (sha256 {actual['sha256'][:12]}.., "
            f"{actual['size']} bytes; expected {expected['sha256'][:12]}.., {expected['size']} bytes) in {mv.uri}")


def _write_local_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _base_name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _rel(base: str, path: str) -> str:
    return path[len(base.rstrip("/")) + 1:]


def _is_atomic_write_leftover(rel: str) -> bool:
    """An object-store move is copy + delete; a failed delete can leave the manifest's temporary."""
    return "/" not in rel and rel.startswith(".tmp-") and rel.endswith(f"-{MANIFEST}")


def _is_valid_model(name: str) -> bool:
    try:
        check_model(name)
    except RegistryError:
        return False
    return True


def _is_valid_alias(name: str) -> bool:
    try:
        check_alias(name)
    except RegistryError:
        return False
    return True
