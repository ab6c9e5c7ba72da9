"""The API key that guards /predict, /feedback and /model.

- Where the key comes from (``serve.auth``): the file ``api_key_file`` if set (e.g. a mounted
  secret), otherwise the environment variable ``api_key_env`` of the process that deploys. A
  missing or empty key with auth on is a start-up error, never an open endpoint; only
  ``serve.auth.enabled=false`` serves without one.
- What reaches the cluster: only the key's SHA-256 (``api_key_sha256_env`` in the runtime_env of
  the replicas, and of a job that deploys them). Ray writes every runtime_env in full to its logs
  (``runtime_env_agent.log``) and shows it in the Serve and Jobs pages, so the key itself must never
  be in one; a digest of a key of at least 16 random characters gives nothing away.
- How it is compared: SHA-256 of the presented key against the digest with ``hmac.compare_digest``
  (fixed length: constant time, and the key's length stays hidden).
- How clients send it: ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``.

``python -m foundry.serving.auth`` prints the digest of ``$FOUNDRY_API_KEY`` (for a job's runtime_env).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import os
from collections.abc import Mapping
from pathlib import Path

from foundry.config import ServeAuthConfig
from foundry.errors import ConfigError

API_KEY_HEADER = "x-api-key"
MIN_KEY_LENGTH = 16  # shorter keys can be guessed; `secrets.token_urlsafe(32)` makes a good one


class AuthResult(enum.Enum):
    ok = "ok"
    missing = "missing"  # 401
    invalid = "invalid"  # 403


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def key_digest(key: str) -> str:
    """The hex SHA-256 that stands for ``key`` everywhere inside the cluster."""
    return _digest(key).hex()


def load_api_key(auth: ServeAuthConfig, environ: Mapping[str, str] | None = None) -> str | None:
    """The configured key, or None when auth is explicitly off. Raises ConfigError naming the source."""
    if not auth.enabled:
        return None
    environ = os.environ if environ is None else environ
    if auth.api_key_file:
        path = Path(os.path.expanduser(auth.api_key_file))
        try:
            key = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"serve.auth.api_key_file: cannot read {path} ({exc.strerror or exc})") from None
        source = f"serve.auth.api_key_file ({path})"
    elif auth.api_key_env:
        key = environ.get(auth.api_key_env, "").strip()
        source = f"serve.auth.api_key_env (${auth.api_key_env})"
        if not key:
            raise ConfigError(f"{source}: the variable is not set or empty; export a key "
                              f"(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))') "
                              "or set serve.auth.enabled=false to serve without one")
    else:
        raise ConfigError("serve.auth: auth is on but neither api_key_env nor api_key_file is set")
    if len(key) < MIN_KEY_LENGTH:
        raise ConfigError(f"{source}: the key is shorter than {MIN_KEY_LENGTH} characters")
    return key


def load_key_digest(auth: ServeAuthConfig, environ: Mapping[str, str] | None = None) -> bytes | None:
    """What a replica checks keys against: the key file's digest, the digest handed over in
    ``api_key_sha256_env``, or the digest of the key in ``api_key_env`` (e.g. a Kubernetes Secret
    mounted as an environment variable). None when auth is off; ConfigError naming the source."""
    if not auth.enabled:
        return None
    environ = os.environ if environ is None else environ
    handed = environ.get(auth.api_key_sha256_env, "").strip() if auth.api_key_sha256_env else ""
    if auth.api_key_file or not handed:
        return _digest(load_api_key(auth, environ))
    try:
        digest = bytes.fromhex(handed)
    except ValueError:
        digest = b""
    if len(digest) != hashlib.sha256().digest_size:
        raise ConfigError(f"serve.auth.api_key_sha256_env (${auth.api_key_sha256_env}): not a SHA-256 hex "
                          "digest (64 hex characters); make one with `python -m foundry.serving.auth`")
    return digest


class ApiKeyChecker:
    """Checks request headers against the key; ``ApiKeyChecker(None)`` lets everything through."""

    __slots__ = ("_digest",)

    def __init__(self, key: str | None):
        self._digest = None if key is None else _digest(key)

    @classmethod
    def from_digest(cls, digest: bytes | None) -> ApiKeyChecker:
        checker = cls(None)
        checker._digest = digest
        return checker

    @property
    def enabled(self) -> bool:
        return self._digest is not None

    def __repr__(self) -> str:
        return f"ApiKeyChecker(enabled={self.enabled})"

    def check(self, presented: str | None) -> AuthResult:
        if self._digest is None:
            return AuthResult.ok
        if not presented:
            return AuthResult.missing
        return AuthResult.ok if hmac.compare_digest(_digest(presented), self._digest) else AuthResult.invalid

    def check_headers(self, headers: Mapping[str, str]) -> AuthResult:
        """``headers`` with lower-case names (ASGI and Starlette both give them so)."""
        return self.check(presented_key(headers))


def presented_key(headers: Mapping[str, str]) -> str | None:
    key = headers.get(API_KEY_HEADER)
    if key:
        return key.strip()
    auth = headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def main() -> int:
    """Print the SHA-256 of ``serve.auth.api_key_env`` (default ``$FOUNDRY_API_KEY``), checked like a
    deploy checks it: what to give a job as ``FOUNDRY_API_KEY_SHA256`` instead of the key."""

    from foundry import config_sources
    from foundry.cli import run_or_exit

    args = config_sources.parser("python -m foundry.serving.auth", main.__doc__.split("\n")[0]).parse_args()
    print(run_or_exit(lambda: _digest(load_api_key(config_sources.load(config_sources.from_args(args)).serve.auth))
                      .hex()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
