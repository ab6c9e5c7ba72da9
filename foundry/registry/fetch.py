"""Fetching a version to a local directory, every file checked against its manifest on the way.

One listing first catches missing, truncated and planted files before any byte is hashed; then each
file's checksum is computed while its bytes move (``integrity``). A local root with no destination is
verified in place (no copy); a remote one lands in ``dest`` or the per-version cache
(``default_cache_dir``), where files already present with the right checksum are not downloaded again.

A mixin of ``Registry`` (``foundry.registry.store``): it uses the registry's filesystem (``_fs``,
``_local``), its layout helpers (``_version_path``, ``_list``) and ``get``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.fs as pafs

from foundry import storage
from foundry.errors import TamperedArtifactError
from foundry.registry import integrity
from foundry.registry.files import (
    _compare,
    _is_atomic_write_leftover,
    _rel,
    _write_local_atomic,
    default_cache_dir,
)
from foundry.registry.model_version import MANIFEST, ModelVersion, dumps


class VersionFetch:
    """``Registry.fetch`` and the listing check behind it."""

    def fetch(self, model: str, ref: str, dest: str | os.PathLike | None = None) -> Path:
        """A local directory holding the version's files, each checked against the manifest.

        With a local root and no ``dest`` the stored directory itself is verified and returned (no
        copy); otherwise the files are copied into ``dest`` (default: a per-version cache dir), and
        files already there with the right checksum are not downloaded again.
        """
        mv = self.get(model, ref)
        vpath = self._version_path(model, mv.version)
        self._check_listing(mv, vpath)
        if dest is None and self._local:
            for rel, expected in mv.files.items():
                _compare(mv, rel, expected, integrity.hash_stored(self._fs, storage.join(vpath, rel)))
            return Path(vpath)
        target = Path(dest).expanduser() if dest is not None else default_cache_dir() / model / mv.version
        target.mkdir(parents=True, exist_ok=True)
        for rel, expected in mv.files.items():
            out = target / rel
            if out.is_file() and out.stat().st_size == expected["size"] and \
                    integrity.hash_local(out)["sha256"] == expected["sha256"]:
                continue
            bad = integrity.download(self._fs, storage.join(vpath, rel), out, expected)
            if bad is not None:
                _compare(mv, rel, expected, bad)
        _write_local_atomic(target / MANIFEST, dumps(mv.manifest()))
        return target

    def _check_listing(self, mv: ModelVersion, vpath: str) -> None:
        """One listing catches missing, truncated and planted files before any byte is hashed."""
        stored = {_rel(vpath, i.path): i.size for i in self._list(vpath, recursive=True)
                  if i.type == pafs.FileType.File}
        for rel, expected in sorted(mv.files.items()):
            if rel not in stored:
                raise TamperedArtifactError(f"{mv.model}/{mv.version}: file {rel!r} listed in the manifest is "
                                            f"missing from {mv.uri}")
            if stored[rel] != expected["size"]:
                raise TamperedArtifactError(f"{mv.model}/{mv.version}: file {rel!r} has {stored[rel]} bytes, "
                                            f"the manifest recorded {expected['size']} ({mv.uri}/{rel})")
        extra = sorted(rel for rel in stored if rel not in mv.files and rel != MANIFEST
                       and not _is_atomic_write_leftover(rel))
        if extra:
            raise TamperedArtifactError(f"{mv.model}/{mv.version}: file {extra[0]!r} is not in the manifest "
                                        f"({len(extra)} unexpected file(s) in {mv.uri})")
