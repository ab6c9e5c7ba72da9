"""Aliases: movable names (``production``, ``candidate``...) pointing at complete versions.

An alias is one small JSON file (``<model>/aliases/<alias>.json``: version, previous, updated_at,
reason) replaced in one atomic step, so a reader sees the old pointer or the new one, never a torn one.
Every move also writes a new object under ``aliases/history/`` (object stores cannot append, and
concurrent appenders could interleave). ``set_alias(expected=...)`` is a compare-and-set, held under
``alias_lock`` for as long as the read and the write take.

A mixin of ``Registry`` (``foundry.registry.store``): it uses the registry's filesystem (``_fs``), its
layout helpers (``_path``, ``_uri``, ``_alias_path``, ``_list``) and ``get``.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timezone

import pyarrow.fs as pafs

from foundry import storage
from foundry.errors import AliasConflictError, RegistryError
from foundry.registry import alias_lock
from foundry.registry.files import _base_name, _is_valid_alias
from foundry.registry.model_version import dumps
from foundry.registry.names import check_alias, check_model, check_version, utc_now_iso

ANY = object()  # set_alias(expected=ANY): move the alias whatever it points at now


class AliasStore:
    """Reading, moving and listing a model's aliases, and their history."""

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
