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
"""

from __future__ import annotations

import json
import os
import secrets
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pyarrow.fs as pafs

from foundry import storage
from foundry.errors import AliasConflictError, RegistryError, TamperedArtifactError
from foundry.registry import alias_lock, integrity
from foundry.registry.model_version import (
    MANIFEST,
    ModelVersion,
    dumps,
    is_safe_relpath,
    normalize_metadata,
    parse,
)
from foundry.registry.names import (
    LATEST,
    check_alias,
    check_model,
    check_version,
    is_version_id,
    new_version_id,
    utc_now_iso,
)

ANY = object()  # set_alias(expected=ANY): move the alias whatever it points at now
_SHOWN_IN_ERRORS = 5  # how many versions/aliases an "unknown ref" message lists


def default_cache_dir() -> Path:
    """Where fetches from a remote root land when the caller names no directory."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "foundry" / "registry"


class Registry:
    """Versions and aliases of models under one root.

    ``filesystem`` lets callers (and tests) hand in an already-built pyarrow filesystem, e.g. one
    with explicit S3 credentials; ``root`` is then a path inside it rather than a URI.
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

    # ---- fetch and verification -----------------------------------------------------------------

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

    # ---- aliases --------------------------------------------------------------------------------

    def set_alias(self, model: str, alias: str, version: str, reason: str = "",
                  expected: str | None | object = ANY) -> None:
        """Point ``alias`` at a complete version (any ref: id, another alias, ``latest``).

        The alias file is replaced in one atomic step; ``previous`` is the version it pointed to
        before, so a rollback knows where to go. Re-pointing to the same version keeps ``previous``.
        ``expected`` (a version id, or None for "not set"): compare-and-set; the move happens only if
        the alias still points there, else ``AliasConflictError`` (``alias_lock`` says how exact).
        """
        check_model(model)
        check_alias(alias)
        target = self.get(model, version)
        path = self._alias_path(model, alias)
        with alias_lock.locked(self._fs, path):
            current = self._read_alias(model, alias)
            now = None if current is None else current["version"]
            if expected is not ANY and now != expected:
                raise AliasConflictError(f"{model}:{alias} points at {now or '(unset)'}, not {expected or '(unset)'}: "
                                         f"another writer moved it; {target.version} was not promoted")
            if current is None:
                previous = None
            elif current["version"] == target.version:
                previous = current.get("previous")
            else:
                previous = current["version"]
            record = {"version": target.version, "previous": previous, "updated_at": utc_now_iso(),
                      "reason": str(reason or "")}
            storage.write_bytes_atomic(self._fs, path, dumps(record))
            self._log_alias_move(model, alias, record)

    def _log_alias_move(self, model: str, alias: str, record: dict) -> None:
        """One new object per move instead of appending to a shared log: object stores cannot
        append, and concurrent appenders could interleave. Names sort by time."""
        stamp = datetime.now(timezone.utc)
        name = f"{stamp:%Y%m%d-%H%M%S}-{stamp.microsecond:06d}-{secrets.token_hex(4)}.json"
        event = {"alias": alias, **record}
        storage.write_bytes_atomic(self._fs, self._path(model, "aliases", "history", name), dumps(event))

    def alias(self, model: str, alias: str) -> str | None:
        check_model(model)
        check_alias(alias)
        record = self._read_alias(model, alias)
        return None if record is None else record["version"]

    def aliases(self, model: str) -> dict[str, dict]:
        """Every alias of ``model`` with its full record (version, previous, updated_at, reason)."""
        check_model(model)
        out = {}
        for info in self._list(self._path(model, "aliases")):
            name = _base_name(info.path)
            if info.type != pafs.FileType.File or not name.endswith(".json"):
                continue
            alias = name[: -len(".json")]
            if not _is_valid_alias(alias):
                continue  # atomic-write temporaries (".tmp-...") and anything not written by us
            record = self._read_alias(model, alias)
            if record is not None:
                out[alias] = record
        return dict(sorted(out.items()))

    def alias_history(self, model: str, alias: str | None = None) -> list[dict]:
        """Every recorded alias move of ``model`` (optionally one alias), oldest first."""
        check_model(model)
        if alias is not None:
            check_alias(alias)
        events = []
        for info in sorted(self._list(self._path(model, "aliases", "history")), key=lambda i: i.path):
            name = _base_name(info.path)
            if info.type != pafs.FileType.File or name.startswith(".") or not name.endswith(".json"):
                continue
            event = json.loads(storage.read_bytes(self._fs, info.path))
            if alias is None or event.get("alias") == alias:
                events.append(event)
        return events

    def _read_alias(self, model: str, alias: str) -> dict | None:
        path = self._alias_path(model, alias)
        try:
            raw = storage.read_bytes(self._fs, path)
        except FileNotFoundError:
            return None
        try:
            record = json.loads(raw)
            check_version(record["version"])
        except (ValueError, KeyError, TypeError, RegistryError) as exc:
            raise RegistryError(f"alias file {self._uri(model, 'aliases', alias + '.json')} is corrupt: {exc}") \
                from exc
        return record

    # ---- maintenance ----------------------------------------------------------------------------

    def delete_version(self, model: str, version: str) -> None:
        """Remove a version (retention; ``foundry.maintenance`` decides which). The manifest goes first,
        so a reader sees a complete version or none, never one with missing files."""
        check_model(model)
        if version in {r.get("version") for r in self.aliases(model).values()}:
            raise RegistryError(f"{model}@{version} is the target of an alias; move the alias first")
        manifest = self._manifest_path(model, version)
        if storage.exists(self._fs, manifest):
            self._fs.delete_file(manifest)
        vpath = self._version_path(model, version)
        if storage.exists(self._fs, vpath):
            self._fs.delete_dir(vpath)

    def gc_incomplete(self, model: str, older_than_s: float = 3600) -> list[str]:
        """Delete version directories that never got a manifest (a crashed writer's leftovers).

        Age is measured from the newest file inside, so a slow writer that is still copying is not
        collected; the threshold must exceed the longest pause a live writer can have.
        """
        check_model(model)
        if older_than_s < 0:
            raise RegistryError(f"older_than_s must be >= 0, got {older_than_s}")
        now_ns = time.time_ns()
        removed = []
        for version in self._version_ids(model):
            manifest = self._manifest_path(model, version)
            if storage.exists(self._fs, manifest):
                continue
            vpath = self._version_path(model, version)
            stamps = [i.mtime_ns for i in [self._fs.get_file_info(vpath), *self._list(vpath, recursive=True)]
                      if i.mtime_ns is not None]
            if older_than_s > 0 and (not stamps or now_ns - max(stamps) < older_than_s * 1e9):
                continue
            if storage.exists(self._fs, manifest):  # finished while we looked
                continue
            self._fs.delete_dir(vpath)
            removed.append(version)
        return removed


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
