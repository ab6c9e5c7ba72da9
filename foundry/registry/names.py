"""Names that become path components, so every one is checked before it touches storage.

A model, alias or version string comes from configs, CLIs and HTTP callers; validating it here
(rather than trusting callers) is what keeps ``../x`` or ``a/b`` from escaping the registry root.
"""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timezone

from foundry.errors import RegistryError

# Starts with a letter or digit, so ".", "..", hidden names and "-flags" are impossible.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
# vYYYYMMDD-HHMMSS-mmm-<6 hex>: sorts by time to the millisecond; the random suffix lets writers
# on different processes or machines mint ids without talking to each other.
_VERSION = re.compile(r"v\d{8}-\d{6}-\d{3}-[0-9a-f]{6}")

LATEST = "latest"
RESERVED_ALIASES = frozenset({LATEST})


def _check_name(kind: str, value: object) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value) or ".." in value:
        raise RegistryError(
            f"invalid {kind} name {value!r}: use 1-128 letters, digits, '.', '-' or '_', "
            "starting with a letter or digit (no '/', no '..')")
    return value


def check_model(model: object) -> str:
    return _check_name("model", model)


def check_alias(alias: object) -> str:
    _check_name("alias", alias)
    if alias in RESERVED_ALIASES or is_version_id(alias):
        raise RegistryError(f"invalid alias name {alias!r}: reserved (it would be ambiguous with a version ref)")
    return alias


def is_version_id(value: object) -> bool:
    return isinstance(value, str) and _VERSION.fullmatch(value) is not None


def check_version(version: object) -> str:
    if not is_version_id(version):
        raise RegistryError(f"invalid version id {version!r}: expected e.g. v20250101-120000-000-a1b2c3")
    return version


def new_version_id(now: datetime | None = None) -> str:
    now = now or datetime.now(timezone.utc)
    return f"v{now:%Y%m%d-%H%M%S}-{now.microsecond // 1000:03d}-{secrets.token_hex(3)}"


def utc_now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
