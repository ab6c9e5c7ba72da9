"""The model registry: immutable versions plus movable aliases, on any pyarrow filesystem.

Layout under the root (a local directory or an object-store URI)::

    <model>/versions/<version>/<artifact files...>
    <model>/versions/<version>/manifest.json      # written last: a version exists iff this does
    <model>/aliases/<alias>.json                  # {"version", "previous", "updated_at", "reason"}
    <model>/aliases/history/<time>-<rand>.json    # one object per alias move, never rewritten

Nothing here takes a lock. Writers never share a file: each version has its own random id, and
every file that readers trust (manifest, alias) appears in one atomic step (a rename on a local
disk, a single PUT on an object store). So concurrent registrations need no coordination, a
crashed writer leaves only an invisible directory, and a reader sees either the old alias or the
new one. Concurrent moves of the same alias are last-writer-wins; the history keeps every move.

This module registers, lists and resolves versions; aliases are ``aliases``, fetching ``fetch``,
deleting ``retention``, and the file helpers ``files`` (``ANY`` and ``default_cache_dir`` are
re-exported here).
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.fs as pafs

from foundry import storage
from foundry.errors import RegistryError
from foundry.registry import integrity
from foundry.registry.aliases import ANY, AliasStore
from foundry.registry.fetch import VersionFetch
from foundry.registry.files import _base_name, _is_valid_model, _local_files, _rel, default_cache_dir
from foundry.registry.model_version import MANIFEST, ModelVersion, dumps, normalize_metadata, parse
from foundry.registry.names import LATEST, check_alias, check_model, is_version_id, new_version_id
from foundry.registry.retention import Retention

_SHOWN_IN_ERRORS = 5  # how many versions/aliases an "unknown ref" message lists


class Registry(AliasStore, VersionFetch, Retention):
    """Versions and aliases of models under one root.

    ``filesystem`` lets callers (and tests) hand in an already-built pyarrow filesystem, e.g. one
    with explicit S3 credentials; ``root`` is then a path inside it rather than a URI.

    Registering, listing and resolving versions are here; aliases (``AliasStore``, ``aliases``), fetching
    with verification (``VersionFetch``, ``fetch``) and deletes (``Retention``, ``retention``) are mixins
    in their own modules, over the layout helpers below.
    """

    def __init__(self, root: str | os.PathLike, filesystem: pafs.FileSystem | None = None):
        if filesystem is None:
            self.root = storage.normalize(str(root))
            self._fs, self._base = storage.resolve(self.root)
        else:
            self.root = str(root).rstrip("/")
            self._fs, self._base = filesystem, self.root
        self._local = isinstance(self._fs, pafs.LocalFileSystem)

    def __repr__(self) -> str:
        return f"Registry({self.root!r})"

    # ---- layout ---------------------------------------------------------------------------------

    def _path(self, *parts: str) -> str:
        return storage.join(self._base, *parts)

    def _uri(self, *parts: str) -> str:
        return storage.join(self.root, *parts)

    def _version_path(self, model: str, version: str) -> str:
        return self._path(model, "versions", version)

    def _manifest_path(self, model: str, version: str) -> str:
        return self._path(model, "versions", version, MANIFEST)

    def _alias_path(self, model: str, alias: str) -> str:
        return self._path(model, "aliases", f"{alias}.json")

    def _list(self, path: str, recursive: bool = False) -> list[pafs.FileInfo]:
        return self._fs.get_file_info(pafs.FileSelector(path, recursive=recursive, allow_not_found=True))

    # ---- versions -------------------------------------------------------------------------------

    def register(self, model: str, artifacts_dir: str | os.PathLike, metadata: dict | None = None) -> ModelVersion:
        """Store every file of ``artifacts_dir`` as a new immutable version.

        The manifest goes last, after the copied files have been checked to still be there, so a
        failure at any point (or a killed process) leaves no visible version; the partial directory
        is removed here when possible and by ``gc_incomplete`` otherwise.
        """
        check_model(model)
        src = Path(artifacts_dir).expanduser()
        files = _local_files(src)
        meta = normalize_metadata(metadata)
        now = datetime.now(timezone.utc)
        version = self._claim_version_id(model, now)
        vpath = self._version_path(model, version)
        try:
            self._fs.create_dir(vpath, recursive=True)
            recorded = {rel: integrity.upload(self._fs, local, storage.join(vpath, rel)) for rel, local in files}
            self._check_uploaded(model, version, recorded)
            mv = ModelVersion(model=model, version=version, created_at=now.isoformat(timespec="milliseconds"),
                              files=recorded, metadata=meta, uri=self._uri(model, "versions", version))
            self._write_manifest(mv)
        except BaseException:
            self._discard_partial(model, version)
            raise
        return mv

    def _claim_version_id(self, model: str, now: datetime) -> str:
        for _ in range(8):
            version = new_version_id(now)
            if not storage.exists(self._fs, self._version_path(model, version)):
                return version
        raise RegistryError(f"could not find a free version id for {model!r} (clock or randomness broken?)")

    def _check_uploaded(self, model: str, version: str, recorded: dict[str, dict]) -> None:
        """A writer stalled past ``gc_incomplete``'s threshold may have lost its directory; never
        publish a manifest for files that are no longer there."""
        vpath = self._version_path(model, version)
        sizes = {_rel(vpath, i.path): i.size for i in self._list(vpath, recursive=True)
                 if i.type == pafs.FileType.File}
        lost = sorted(rel for rel, rec in recorded.items() if sizes.get(rel) != rec["size"])
        if lost:
            raise RegistryError(f"{model}/{version}: {len(lost)} uploaded file(s) vanished before the "
                                f"manifest was written (e.g. {lost[0]}); was gc_incomplete run concurrently?")

    def _write_manifest(self, mv: ModelVersion) -> None:
        """The commit point of ``register`` (tests replace it to simulate a crash right before it)."""
        path = self._manifest_path(mv.model, mv.version)
        if storage.exists(self._fs, path):
            raise RegistryError(f"{mv.model}/{mv.version} already exists; versions are never overwritten")
        storage.write_bytes_atomic(self._fs, path, dumps(mv.manifest()))

    def _discard_partial(self, model: str, version: str) -> None:
        """Best effort; a version whose manifest made it is complete and must not be deleted."""
        try:
            if not storage.exists(self._fs, self._manifest_path(model, version)):
                self._fs.delete_dir(self._version_path(model, version))
        except Exception:
            pass

    def _version_ids(self, model: str) -> list[str]:
        """Every version directory, complete or not, oldest first (ids sort by time)."""
        return sorted(_base_name(i.path) for i in self._list(self._path(model, "versions"))
                      if i.type == pafs.FileType.Directory and is_version_id(_base_name(i.path)))

    def _complete_ids(self, model: str) -> list[str]:
        ids = self._version_ids(model)
        if not ids:
            return []
        infos = self._fs.get_file_info([self._manifest_path(model, v) for v in ids])
        return [v for v, info in zip(ids, infos, strict=True) if info.type == pafs.FileType.File]

    def _load(self, model: str, version: str) -> ModelVersion | None:
        try:
            raw = storage.read_bytes(self._fs, self._manifest_path(model, version))
        except FileNotFoundError:
            return None
        return parse(raw, model, version, self._uri(model, "versions", version))

    def versions(self, model: str) -> list[ModelVersion]:
        """Complete versions, oldest first; in-progress and crashed writes are not listed."""
        check_model(model)
        loaded = (self._load(model, v) for v in self._complete_ids(model))
        return [mv for mv in loaded if mv is not None]

    def models(self) -> list[str]:
        return sorted(_base_name(i.path) for i in self._list(self._base)
                      if i.type == pafs.FileType.Directory and _is_valid_model(_base_name(i.path)))

    def get(self, model: str, ref: str) -> ModelVersion:
        """Resolve a version id, an alias name or ``latest`` to a complete version."""
        check_model(model)
        if not isinstance(ref, str) or not ref:
            raise RegistryError(f"invalid ref {ref!r} for model {model!r}: give a version id, an alias or 'latest'")
        if ref == LATEST:
            for version in reversed(self._complete_ids(model)):
                mv = self._load(model, version)
                if mv is not None:
                    return mv
            raise self._unknown(model, ref)
        if is_version_id(ref):
            mv = self._load(model, ref)
            if mv is None:
                raise self._unknown(model, ref)
            return mv
        try:
            check_alias(ref)
        except RegistryError as exc:
            raise RegistryError(f"invalid ref {ref!r} for model {model!r}: not a version id, 'latest' "
                                f"or a valid alias name") from exc
        record = self._read_alias(model, ref)
        if record is None:
            raise self._unknown(model, ref)
        mv = self._load(model, record["version"])
        if mv is None:
            raise RegistryError(f"alias {model}:{ref} points to {record['version']}, which has no manifest "
                                f"(registry inconsistent: was the version deleted by hand?)")
        return mv

    def _unknown(self, model: str, ref: str) -> RegistryError:
        ids = self._complete_ids(model)
        if not ids:
            known = self.models()
            if model not in known:
                listed = ", ".join(known[:20]) or "none"
                return RegistryError(f"unknown model {model!r} in {self.root} (models: {listed})")
            return RegistryError(f"model {model!r} has no complete versions, so {ref!r} does not resolve")
        shown = ", ".join(ids[-_SHOWN_IN_ERRORS:])
        more = f" (newest {_SHOWN_IN_ERRORS} of {len(ids)})" if len(ids) > _SHOWN_IN_ERRORS else ""
        aliases = ", ".join(sorted(self.aliases(model))) or "none"
        return RegistryError(f"model {model!r} has no version or alias {ref!r}; versions{more}: {shown}; "
                             f"aliases: {aliases}")


__all__ = ["ANY", "Registry", "default_cache_dir"]
